"""MEP TLS mode over a ``SerialLink``: handshake, then bare C12.18 reads in TLS records.

Framing (guide Tables 2.1-2.3): a request is ``LEN | code | TLS records`` with code 58
(first handshake flight; resets the meter's session), 59 (later flights), 80 (one
C12.18 request as application data) or 57 (terminate); a reply is ``LEN | result |
TLS records`` with result 00 ok, 01 TLS error, 03 invalid identity or key, 0A no
session. Inside TLS the C12.18 messages are bare: no MEP sequence number, no digest.

The line has no integrity check of its own in this mode: TLS's AES-GCM is the check.
Every damaged, lost or refused exchange ends the session (mbed TLS treats record
errors as fatal, and a resent record would be a replay), so the recovery is a new
handshake and the same read again. Reads are idempotent.

Nothing secret is logged: the PSK and everything derived from it stay inside the TLS
objects; the frame log sees only records, which are encrypted after the handshake.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
import logging
from typing import TYPE_CHECKING, Any

from nesmeter.errors import AuthenticationError, FrameError, MeterError, NoResponseError, RefusedError, TlsError
from nesmeter.keys import MeterKey
from nesmeter.link.trace import MASK
from nesmeter.link.transport import BYTE_TIME, LineTimeout, SerialLink
from nesmeter.mep import framing as mep, tls
from nesmeter.mep.session import RESULT_MESSAGES, MepPort, MepTiming
from nesmeter.mep.tls import KeyId, PskIdentity, TlsCode, TlsResult
from nesmeter.mep.tls_client import TlsClient
from nesmeter.stats import FrameLog, LinkStats

if TYPE_CHECKING:
    from nesmeter.link.trace import Trace

_LOGGER = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = 0x534E  # "NS" on the wire (LSB first); the meter records it in its events (guide p.18)
TERMINATE_DATA = b"\x00"  # the guide: at least one byte, content irrelevant
# A refused key exchange is what a wrong key looks like, but also what a damaged ServerHello
# causes (nothing authenticates it before the Finished, so both sides hash different
# transcripts). Three refusals in a row, each after a fresh handshake, are the key.
REFUSALS_FOR_WRONG_KEY = 3


@dataclass(frozen=True, slots=True)
class TlsTiming(MepTiming):
    """MEP timing plus the meter's time to answer a handshake flight (mbed TLS, unknown)."""

    handshake_timeout: float = 2.0


class _SessionLost(Exception):
    """Internal: the meter has no usable session for this request (0A, 01 on a TLS_TABLE)."""


class _Refused(Exception):
    """Internal: the meter refused the key exchange (invalid identity or key)."""


class MepTlsSession(MepPort):
    """Reads over MEP TLS mode; the same interface as ``MepSession`` (start, stop, read, transact)."""

    max_read_data = tls.MAX_TLS_READ_DATA  # a reply's record carries less than a plain reply

    def __init__(
        self,
        link: SerialLink,
        key: MeterKey,
        *,
        key_id: KeyId = KeyId.MBK,
        client_id: int = DEFAULT_CLIENT_ID,
        timing: MepTiming | None = None,
        stats: LinkStats | None = None,
        frames: FrameLog | None = None,
    ) -> None:
        """Talk MEP TLS over ``link`` with the key ``key_id`` names (MBK or MAK)."""
        self._link = link
        self._psk = key.mep_key  # the guide: the first 16 bytes of the MBK or MAK (p.18)
        self._identity = PskIdentity(client_id, key_id).encode()
        if timing is None:
            timing = TlsTiming()
        elif not isinstance(timing, TlsTiming):
            timing = TlsTiming(**{f.name: getattr(timing, f.name) for f in dataclasses.fields(timing)})
        self.timing: TlsTiming = timing
        self.stats = stats or LinkStats()
        self.frames = frames or FrameLog()
        self._tls: TlsClient | None = None
        self._meter_session = False  # a 58 went out: the meter may hold a (half-made) session
        self._last_tx = 0.0
        self._consecutive_timeouts = 0
        self.alert_pending = False
        self.trace: Trace | None = None  # set while a trace records (nesmeter.link.trace)

    def __repr__(self) -> str:
        """Show whether a session is established, never keys."""
        return f"MepTlsSession(<redacted>, established={self.established})"

    @property
    def established(self) -> bool:
        """Whether a TLS session is established with the meter."""
        return self._tls is not None and self._tls.established

    async def start(self) -> None:
        """Assert ENABLE, let it settle, flush, and run the handshake."""
        await self._power_up()
        await self._run(None)

    async def stop(self) -> None:
        """TLS_TERMINATE, best effort: the meter then accepts a new handshake (or RC4)."""
        if not self._meter_session:
            return
        self._tls = None
        self._meter_session = False
        try:
            await self._round_trip(TlsCode.TERMINATE, TERMINATE_DATA, self.timing.response_timeout)
        except (LineTimeout, FrameError, TlsError) as err:
            _LOGGER.debug("TLS terminate not confirmed: %s", err)

    async def transact(self, apdu: bytes) -> bytes:
        """Send one read APDU inside TLS until an authenticated answer arrives; return its data."""
        mep.check_read_only(apdu)
        data = await self._run(apdu)
        if self.trace is not None:
            self._trace_read(apdu, data)
        return data

    def trace_settings(self) -> dict[str, Any]:
        """Return what a trace notes about this link: TLS, and the reply timeout."""
        return {"tls": True, "response_timeout": self.timing.response_timeout}

    def _trace_read(self, apdu: bytes, data: bytes) -> None:
        """Record a read carried in MEP TLS mode as the plaintext MEP exchange it stands for.

        The TLS records themselves are encrypted under keys derived from the meter key and
        are useless to a replay; the handshake is not recorded at all.
        """
        assert self.trace is not None
        mask = bytes([MASK]) * mep.DIGEST_SIZE
        self.trace.record(
            "tx", mep.frame(apdu + bytes(mep.SEQUENCE_SIZE), mask), masked="digest", plaintext=True, tls=True
        )
        reply = b"\x00" + len(data).to_bytes(2, "big") + data
        self.trace.record("rx", mep.frame(reply, mask), masked="digest", plaintext=True, tls=True)

    # ---- internals ----

    async def _run(self, apdu: bytes | None) -> bytes:
        """Handshake when needed, then the request; every failure costs the session.

        Handshakes and the request each get ``timing.attempts`` tries: a request lost on a
        noisy line needs a new handshake, and that one's failures are not the request's.
        """
        failures = {True: 0, False: 0}  # by phase: in the handshake, in the request
        refusals = 0
        last_error: MeterError | None = None
        while True:
            in_handshake = False
            try:
                if self._tls is None:
                    in_handshake = True
                    await self._handshake()
                    in_handshake = False
                    refusals = 0
                if apdu is None:
                    return b""
                code, data, _ = mep.parse_response_body(await self._table(apdu))
            except LineTimeout:
                self._tls = None
                last_error = None  # the error raised in the end names the last failure
                self.stats.timeouts += 1
                self.stats.error("timeout")
                self._consecutive_timeouts += 1
                if self._consecutive_timeouts % self.timing.timeouts_before_enable_reset == 0:
                    await self._reset_enable()
            except _Refused:
                self._tls = None
                self.stats.error("tls_refused")
                refusals += 1
                if refusals >= REFUSALS_FOR_WRONG_KEY:
                    raise AuthenticationError("the meter refused the TLS key exchange: wrong key or key id") from None
                continue
            except _SessionLost as err:
                self._tls = None
                self.stats.error("tls_session_lost")
                _LOGGER.debug("TLS session lost: %s", err)
            except (FrameError, TlsError) as err:
                self._tls = None
                self.stats.error("tls_error" if isinstance(err, TlsError) else "bad_frame")
                _LOGGER.debug("TLS exchange failed: %s", err)
                last_error = err
                await self._link.wait_quiet(0.05)
            else:
                self._consecutive_timeouts = 0
                if code == mep.MepResult.OK:
                    return data
                self.stats.error(f"0x{code:02X}")
                name, message = RESULT_MESSAGES.get(code, ("unknown", "request failed"))
                raise RefusedError(code, name, message)
            failures[in_handshake] += 1
            if failures[in_handshake] >= self.timing.attempts:
                if last_error is not None:
                    raise last_error
                raise NoResponseError("no valid TLS reply from the meter on the MEP port")
            self.stats.retries += 1

    async def _handshake(self) -> None:
        """Run the handshake in two round trips.

        The result byte is outside TLS: the records decide, the byte only explains a failure
        (a damaged byte on an authentic reply costs nothing).
        """
        client = TlsClient(self._psk, self._identity)
        self._meter_session = True
        result, records = await self._round_trip(
            TlsCode.HANDSHAKE, client.client_hello(), self.timing.handshake_timeout
        )
        try:
            flight = client.receive(records)
        except TlsError:
            if result == TlsResult.OK:
                raise
            flight = b""
        if not flight:
            if result != TlsResult.OK:
                raise TlsError(_refusal_text(result, records, "the TLS handshake"))
            raise TlsError("the meter's handshake reply ends before ServerHelloDone")
        result, records = await self._round_trip(TlsCode.HANDSHAKE_CONT, flight, self.timing.handshake_timeout)
        try:
            rest = client.receive(records)
        except TlsError:
            if result == TlsResult.OK:
                raise
            rest = b""
        if rest or not client.established:
            if result in (TlsResult.INVALID_IDENTITY_OR_KEY, TlsResult.TLS_ERROR):
                raise _Refused
            if result != TlsResult.OK:
                raise TlsError(_refusal_text(result, records, "the TLS key exchange"))
            raise TlsError("the meter's handshake reply does not end with its Finished")
        if result != TlsResult.OK:
            self.stats.error("tls_result_damaged")  # the Finished verified: only the byte was hit
        self._tls = client
        self.stats.session_starts += 1

    async def _table(self, apdu: bytes) -> bytes:
        assert self._tls is not None
        result, records = await self._round_trip(TlsCode.TABLE, self._tls.seal(apdu), self.timing.response_timeout)
        try:
            plaintext = self._tls.open(records)
        except TlsError:
            if result in (TlsResult.NO_SESSION, TlsResult.TLS_ERROR):
                raise _SessionLost(f"result 0x{result:02X}") from None
            raise
        if result != TlsResult.OK:
            self.stats.error("tls_result_damaged")  # the record authenticated: only the byte was hit
        return plaintext

    async def _round_trip(self, code: int, payload: bytes, timeout: float) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        wait = self._last_tx + self.timing.min_spacing - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = tls.mep_request(code, payload)
        if mep.ALERT_MARKER in self._link.discard():
            self._note_alert()
        self._link.write(frame)
        self._last_tx = loop.time()
        self.stats.frames_sent += 1
        self.frames.add("tx", frame)
        _header, payload = await self._read_reply(timeout + len(frame) * BYTE_TIME)
        if len(payload) == mep.DIGEST_SIZE + 1 and payload[0] == mep.MepResult.AUTHENTICATION_FAILURE:
            raise TlsError(
                "the meter answered a TLS message as a digest message (0x0B): it does not speak MEP TLS "
                "(firmware before 4.60?); use the plain or RC4 transport"
            )
        return payload[0], payload[1:]


def _refusal_text(result: int, records: bytes, what: str) -> str:
    """Describe a non-zero result, naming a TLS alert the meter attached if there is one."""
    try:
        meaning = TlsResult(result).name.lower().replace("_", " ")
    except ValueError:
        meaning = "unknown result"
    text = f"the meter refused {what} (result 0x{result:02X}, {meaning})"
    try:
        for content_type, payload in tls.parse_records(records):
            if content_type == tls.ContentType.ALERT:
                return f"{text}: {tls.alert_error(payload, peer='meter')}"
    except TlsError:
        pass
    return text
