"""The MEP request/response exchange over a ``SerialLink``.

Sequence numbers are assigned at transmit time. After a timeout the identical packet is
delivered once more (guide p.21), later retries take fresh numbers (the meter's window
of 8 accepts them); a reply that verifies against any request still outstanding for the
same read is accepted, so a slow meter's late answer is not thrown away. A verified 0x0C
hands over the meter's number. Every reply's digest is checked: it is the only integrity
check on the line. Timing follows the guide (p.20-21): 500 ms reply timeout, at most one
request per 100 ms, 117-byte reply segments with 25 ms gaps.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
import logging
import secrets
import struct
from typing import TYPE_CHECKING, Any

from nesmeter.errors import (
    AuthenticationError,
    FrameError,
    NoResponseError,
    RefusedError,
    ShortReadError,
    TlsRequiredError,
)
from nesmeter.keys import MeterKey
from nesmeter.link.trace import MASK
from nesmeter.link.transport import BYTE_TIME, LineTimeout, SerialLink
from nesmeter.mep import framing as mep
from nesmeter.stats import FrameLog, LinkStats

if TYPE_CHECKING:
    from nesmeter.link.trace import Trace

_LOGGER = logging.getLogger(__name__)

TLS_REQUIRED_MESSAGE = "the meter requires TLS on this MEP port; choose the TLS option to read it"
# An unsigned one-byte reply (00 01 0A or 00 01 01) is MEP TLS mode's framing: a meter
# that requires TLS may answer a digest message that way. Unsigned, one could be noise.
_TLS_STYLE_REPLY = 0x100  # not a byte: what ``_receive`` returns for such a reply
_TLS_STYLE_RESULTS = frozenset({mep.MepResult.TLS_SESSION_REQUIRED, 0x01})

RESULT_MESSAGES: dict[int, tuple[str, str]] = {
    result: (result.name, message)
    for result, message in (
        (mep.MepResult.UNRECOGNIZED, "request not recognised"),
        (mep.MepResult.UNSUPPORTED, "request not supported"),
        (mep.MepResult.NO_PERMISSION, "no permission for this table with this key"),
        (mep.MepResult.NOT_POSSIBLE, "operation not possible"),
        (mep.MepResult.TABLE_OPERATION_NOT_POSSIBLE, "table operation not possible"),
        (mep.MepResult.TLS_SESSION_REQUIRED, "the meter requires TLS on this port"),
    )
}


@dataclass(frozen=True, slots=True)
class MepTiming:
    """Timeouts and pacing of the MEP link (guide p.9-12); tests scale them down to run fast."""

    response_timeout: float = 0.5
    byte_slack: float = 0.15  # on top of the wire time of a reply (segment gaps, jitter)
    min_spacing: float = 0.1
    enable_settle: float = 0.5
    enable_reset_off: float = 1.0
    attempts: int = 4
    timeouts_before_enable_reset: int = 2
    max_response_timeout: float = 2.0  # how far a slow meter's observed latency may stretch the timeout


@dataclass(frozen=True, slots=True)
class _Request:
    """One transmitted request, kept to match (late) replies against it."""

    message: bytes  # APDU + sequence, plaintext
    digest: bytes
    sent_at: float

    def reply_body(self, rc4_base: bytes | None, body: bytes) -> bytes:
        """Return the reply's plaintext: under RC4 the reply continues the request's keystream."""
        if rc4_base is None:
            return body
        cipher = mep.rc4_packet_cipher(rc4_base, self.digest)
        cipher.update(self.message)
        return cipher.update(body)


class MepPort:
    """What every MEP session does on the line, whatever protects its messages (digest, RC4, TLS).

    ENABLE powers the meter-side interface; unsolicited ``00 00`` mark a pending alert;
    replies are ``LEN | payload``; reads are split into chunks that fit one reply.
    """

    _link: SerialLink
    stats: LinkStats
    frames: FrameLog
    timing: MepTiming
    alert_pending: bool
    max_read_data: int = mep.MAX_READ_DATA

    async def _power_up(self) -> None:
        """Assert ENABLE, let it settle, flush."""
        if await self._link.set_enable(True):
            await asyncio.sleep(self.timing.enable_settle)
        self._link.discard()

    async def transact(self, apdu: bytes) -> bytes:
        """Send one read APDU until an answer that checks out arrives; return its data."""
        raise NotImplementedError

    async def read(self, table_id: int, offset: int, count: int) -> bytes:
        """Read ``count`` bytes of a table, in chunks that fit one reply."""
        out = bytearray()
        while len(out) < count:
            size = min(self.max_read_data, count - len(out))
            chunk = await self.transact(mep.read_apdu(table_id, offset + len(out), size))
            if len(chunk) != size:
                raise ShortReadError(f"asked for {size} bytes, got {len(chunk)}")
            out += chunk
        return bytes(out)

    async def _read_reply(self, timeout: float) -> tuple[bytes, bytes]:
        """Read the next reply's ``LEN`` header and payload, alert markers before it taken out.

        Markers get the reply timeout once, not each: a line stuck at 0x00 must not hang the poll.
        """
        loop = asyncio.get_running_loop()
        header = await self._link.read_exactly(2, timeout)
        markers_until = loop.time() + self.timing.response_timeout
        while header == mep.ALERT_MARKER:
            self._note_alert()
            header = await self._link.read_exactly(2, max(0.0, markers_until - loop.time()))
        (length,) = struct.unpack(">H", header)
        if not 1 <= length <= mep.MAX_MESSAGE:
            raise FrameError(f"implausible reply length {length}")
        payload = await self._link.read_exactly(
            length, length * BYTE_TIME * 1.1 + self.timing.byte_slack + length // 117 * 0.025
        )
        self.stats.frames_received += 1
        self.frames.add("rx", header + payload)
        return header, payload

    def _note_alert(self) -> None:
        """Note an unsolicited 00 00: the meter has an alert pending (guide p.17)."""
        self.stats.alert_markers += 1
        self.alert_pending = True

    async def _reset_enable(self) -> None:
        """Power-cycle the meter-side interface through ENABLE after repeated timeouts."""
        if await self._link.set_enable(False):
            self.stats.enable_resets += 1
            await asyncio.sleep(self.timing.enable_reset_off)
            await self._link.set_enable(True)
            await asyncio.sleep(self.timing.enable_settle)
            self._link.discard()


class MepSession(MepPort):
    """Signs, sends and verifies MEP reads."""

    def __init__(
        self,
        link: SerialLink,
        key: MeterKey,
        *,
        encrypt: bool = False,
        timing: MepTiming | None = None,
        stats: LinkStats | None = None,
        frames: FrameLog | None = None,
    ) -> None:
        """Talk MEP over ``link`` with ``key`` (RC4 when ``encrypt``); counters go to ``stats``."""
        self._link = link
        self._key = key.mep_key
        self._rc4_base = mep.rc4_base_key(self._key) if encrypt else None
        self.timing = timing or MepTiming()
        self.stats = stats or LinkStats()
        self.frames = frames or FrameLog()
        self._next_sequence = secrets.randbits(32)
        self._last_tx = 0.0
        self._consecutive_timeouts = 0
        self._response_timeout = self.timing.response_timeout
        self._answered: deque[_Request] = deque(maxlen=4)  # earlier reads: their late replies are dropped
        self.alert_pending = False
        self.trace: Trace | None = None  # set while a trace records (nesmeter.link.trace)

    @property
    def encrypted(self) -> bool:
        """Whether the reads are RC4-encrypted (``encrypt=True``)."""
        return self._rc4_base is not None

    def trace_settings(self) -> dict[str, Any]:
        """Return what a trace notes about this link: RC4 or not, and the reply timeout."""
        return {"encrypt": self.encrypted, "response_timeout": self.timing.response_timeout}

    async def start(self) -> None:
        """Assert ENABLE (it powers the meter-side interface), let it settle, flush."""
        await self._power_up()

    async def stop(self) -> None:
        """Nothing to log off from: MEP has no session."""

    async def transact(self, apdu: bytes) -> bytes:
        """Send one read APDU until a verified answer arrives; return its data."""
        mep.check_read_only(apdu)
        failures = 0
        rejected = 0
        tls_style = 0
        resyncs = 0
        outstanding: list[_Request] = []  # this APDU's requests without a reply yet, oldest first
        resend = False
        try:
            while True:
                try:
                    code, data, sequence = await self._exchange(apdu, outstanding, resend=resend)
                except LineTimeout:
                    self.stats.timeouts += 1
                    self.stats.error("timeout")
                    failures += 1
                    resend = failures == 1  # the guide's first retry: the identical packet again
                    self._consecutive_timeouts += 1
                    if self._consecutive_timeouts % self.timing.timeouts_before_enable_reset == 0:
                        await self._reset_enable()
                except FrameError as err:
                    self.stats.error("bad_frame")
                    _LOGGER.debug("discarding MEP reply: %s", err)
                    failures += 1
                    resend = False
                    await self._link.wait_quiet(0.05)
                else:
                    self._consecutive_timeouts = 0
                    resend = False
                    if code == mep.MepResult.OK:
                        return data
                    if code == _TLS_STYLE_REPLY:
                        self.stats.error("tls_style_reply")
                        tls_style += 1
                        if tls_style >= 2:
                            raise TlsRequiredError(
                                mep.MepResult.TLS_SESSION_REQUIRED, "TLS_SESSION_REQUIRED", TLS_REQUIRED_MESSAGE
                            )
                        continue
                    self.stats.error(f"0x{code:02X}")
                    if code == mep.MepResult.INVALID_SEQUENCE and sequence is not None and resyncs < 3:
                        resyncs += 1
                        self.stats.sequence_resyncs += 1
                        self._next_sequence = sequence
                        continue
                    if code == mep.MepResult.TLS_SESSION_REQUIRED:
                        raise TlsRequiredError(code, "TLS_SESSION_REQUIRED", TLS_REQUIRED_MESSAGE)
                    if code == mep.MepResult.AUTHENTICATION_FAILURE:
                        # One 0x0B can be a corrupted request; two in a row is the key.
                        rejected += 1
                        if rejected >= 2:
                            raise AuthenticationError("the meter rejected the key")
                        continue
                    name, message = RESULT_MESSAGES.get(code, ("unknown", "request failed"))
                    raise RefusedError(code, name, message)
                if failures >= self.timing.attempts:
                    raise NoResponseError("no valid reply from the meter on the MEP port")
                self.stats.retries += 1
        finally:
            self._answered.extend(outstanding)

    async def _exchange(
        self, apdu: bytes, outstanding: list[_Request], *, resend: bool
    ) -> tuple[int, bytes, int | None]:
        loop = asyncio.get_running_loop()
        wait = self._last_tx + self.timing.min_spacing - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if mep.ALERT_MARKER in self._link.discard():
            self._note_alert()
        if resend and outstanding:
            request = outstanding[-1]  # same bytes; its latency still counts from the first send
        else:
            sequence = self._next_sequence
            self._next_sequence = (sequence + 1) & 0xFFFFFFFF
            message = mep.request_message(apdu, sequence)
            request = _Request(message, mep.digest(self._key, message), loop.time())
            outstanding[:] = [*outstanding[-1:], request]  # a late reply may answer the previous one
        body = request.message
        if self._rc4_base is not None:
            body = mep.rc4_packet_cipher(self._rc4_base, request.digest).update(body)
        frame = mep.frame(body, request.digest)
        self._link.write(frame)
        self._last_tx = loop.time()
        self.stats.frames_sent += 1
        self.frames.add("tx", frame)
        if self.trace is not None:
            trace_request(self.trace, request.message, plaintext=self.encrypted)
        return await self._receive(outstanding, len(frame))

    async def _receive(self, outstanding: list[_Request], sent: int) -> tuple[int, bytes, int | None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._response_timeout + sent * BYTE_TIME
        while True:
            header, payload = await self._read_reply(max(0.0, deadline - loop.time()))
            length = len(payload)
            if self.trace is not None:
                trace_reply(
                    self.trace, header + payload, self._plaintext(outstanding, payload), plaintext=self.encrypted
                )
            if payload[0] == mep.MepResult.AUTHENTICATION_FAILURE and length <= mep.DIGEST_SIZE + 1:
                # Sent in clear, with or without (unverifiable) digest bytes: the meter
                # accepted neither the key nor, so it cannot sign its answer.
                return mep.MepResult.AUTHENTICATION_FAILURE, b"", None
            if length == 1 and payload[0] in _TLS_STYLE_RESULTS:
                return _TLS_STYLE_REPLY, b"", None
            if length < mep.DIGEST_SIZE + 1:
                raise FrameError(f"implausible reply length {length}")
            body, received_digest = payload[: -mep.DIGEST_SIZE], payload[-mep.DIGEST_SIZE :]
            request = self._verified_by(outstanding, body, received_digest)
            if request is not None:
                self._learn_latency(loop.time() - request.sent_at)
                return mep.parse_response_body(request.reply_body(self._rc4_base, body))
            if self._verified_by(self._answered, body, received_digest) is None:
                raise FrameError("reply digest mismatch (corrupted or foreign frame)")
            self.stats.error("late_reply")  # an earlier read's answer, already served: keep listening

    def _plaintext(self, outstanding: list[_Request], payload: bytes) -> bytes | None:
        """Return a reply's body without its digest, decrypted; ``None`` if that is impossible (for traces)."""
        if payload[0] == mep.MepResult.AUTHENTICATION_FAILURE and len(payload) <= mep.DIGEST_SIZE + 1:
            return payload[:1]  # sent in clear
        if len(payload) <= mep.DIGEST_SIZE:
            return None if self._rc4_base else payload
        body, received = payload[: -mep.DIGEST_SIZE], payload[-mep.DIGEST_SIZE :]
        if self._rc4_base is None:
            return body
        request = self._verified_by([*self._answered, *outstanding], body, received)
        return None if request is None else request.reply_body(self._rc4_base, body)

    def _verified_by(self, requests: Iterable[_Request], body: bytes, received: bytes) -> _Request | None:
        """Find the request (newest first) whose digest over request||reply matches ``received``."""
        for request in reversed(list(requests)):
            if mep.digest(self._key, request.message + request.reply_body(self._rc4_base, body)) == received:
                return request
        return None

    def _learn_latency(self, latency: float) -> None:
        """Adapt to a reply that came after the timeout: wait that long (and a quarter) from now on."""
        if latency <= self._response_timeout:
            return
        stretched = min(self.timing.max_response_timeout, latency * 1.25)
        if stretched > self._response_timeout:
            _LOGGER.debug("the meter answers after %.2f s; waiting up to %.2f s", latency, stretched)
            self._response_timeout = stretched


def trace_request(trace: Trace, message: bytes, *, plaintext: bool) -> None:
    """Record a MEP request: its plaintext ``APDU | SEQ``, the digest masked (it is made with the key)."""
    trace.record("tx", mep.frame(message, bytes([MASK]) * mep.DIGEST_SIZE), masked="digest", plaintext=plaintext)


def trace_reply(trace: Trace, frame: bytes, body: bytes | None, *, plaintext: bool) -> None:
    """Record a MEP reply as received (``LEN | ...``), with its plaintext body if known.

    ``body`` is the reply without its digest, decrypted under RC4; ``None`` when it could
    not be decrypted (then the whole payload is masked). Whatever follows the body (the
    digest) is masked.
    """
    header, payload = frame[:2], frame[2:]
    if body is None:
        trace.record("rx", header + bytes([MASK]) * len(payload), masked="body")
        return
    tail = len(payload) - len(body)
    trace.record(
        "rx",
        header + body + bytes([MASK]) * tail,
        masked="digest" if tail else None,
        plaintext=plaintext and bool(body),
    )
