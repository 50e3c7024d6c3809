"""The MEP request/response exchange over a ``SerialLink``.

One outstanding request; sequence numbers are assigned at transmit time and never reused
(a retry gets the next number, which the meter's window of 8 accepts); a verified 0x0C
hands over the meter's number. Every reply's digest is checked: it is the only integrity
check on the line. Timing follows the guide (p.20-21): 500 ms reply timeout, at most one
request per 100 ms, 117-byte reply segments with 25 ms gaps.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import logging
import secrets
import struct

from cryptography.hazmat.primitives.ciphers import CipherContext

from . import mep
from .errors import AuthenticationError, FrameError, NoResponseError, ResponseError
from .keys import MeterKey
from .stats import FrameLog, LinkStats
from .transport import BYTE_TIME, LineTimeout, SerialLink

_LOGGER = logging.getLogger(__name__)

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
    response_timeout: float = 0.5
    byte_slack: float = 0.15  # on top of the wire time of a reply (segment gaps, jitter)
    min_spacing: float = 0.1
    enable_settle: float = 0.5
    enable_reset_off: float = 1.0
    attempts: int = 4
    timeouts_before_enable_reset: int = 2


class MepSession:
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
        self._link = link
        self._key = key.mep_key
        self._rc4_base = mep.rc4_base_key(self._key) if encrypt else None
        self.timing = timing or MepTiming()
        self.stats = stats or LinkStats()
        self.frames = frames or FrameLog()
        self._next_sequence = secrets.randbits(32)
        self._last_tx = 0.0
        self._consecutive_timeouts = 0
        self.alert_pending = False

    async def start(self) -> None:
        """Assert ENABLE (it powers the meter-side interface), let it settle, flush."""
        if await self._link.set_enable(True):
            await asyncio.sleep(self.timing.enable_settle)
        self._link.discard()

    async def stop(self) -> None:
        """Nothing to log off from: MEP has no session."""

    async def read(self, table_id: int, offset: int, count: int) -> bytes:
        """Read ``count`` bytes of a table, in chunks that fit one MEP reply."""
        out = bytearray()
        while len(out) < count:
            size = min(mep.MAX_READ_DATA, count - len(out))
            chunk = await self.transact(mep.read_apdu(table_id, offset + len(out), size))
            if len(chunk) != size:
                raise FrameError(f"asked for {size} bytes, got {len(chunk)}")
            out += chunk
        return bytes(out)

    async def transact(self, apdu: bytes) -> bytes:
        """Send one read APDU until a verified answer arrives; return its data."""
        mep.check_read_only(apdu)
        failures = 0
        rejected = 0
        resyncs = 0
        while True:
            try:
                code, data, sequence = await self._exchange(apdu)
            except LineTimeout:
                self.stats.timeouts += 1
                self.stats.error("timeout")
                failures += 1
                self._consecutive_timeouts += 1
                if self._consecutive_timeouts % self.timing.timeouts_before_enable_reset == 0:
                    await self._reset_enable()
            except FrameError as err:
                self.stats.error("bad_frame")
                _LOGGER.debug("discarding MEP reply: %s", err)
                failures += 1
                await self._link.wait_quiet(0.05)
            else:
                self._consecutive_timeouts = 0
                if code == mep.MepResult.OK:
                    return data
                self.stats.error(f"0x{code:02X}")
                if code == mep.MepResult.INVALID_SEQUENCE and sequence is not None and resyncs < 3:
                    resyncs += 1
                    self.stats.sequence_resyncs += 1
                    self._next_sequence = sequence
                    continue
                if code == mep.MepResult.AUTHENTICATION_FAILURE:
                    # One 0x0B can be a corrupted request; two in a row is the key.
                    rejected += 1
                    if rejected >= 2:
                        raise AuthenticationError("the meter rejected the key")
                    continue
                name, message = RESULT_MESSAGES.get(code, ("unknown", "request failed"))
                raise ResponseError(code, name, message)
            if failures >= self.timing.attempts:
                raise NoResponseError("no valid reply from the meter on the MEP port")
            self.stats.retries += 1

    async def _exchange(self, apdu: bytes) -> tuple[int, bytes, int | None]:
        loop = asyncio.get_running_loop()
        wait = self._last_tx + self.timing.min_spacing - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        sequence = self._next_sequence
        self._next_sequence = (sequence + 1) & 0xFFFFFFFF
        message = mep.request_message(apdu, sequence)
        request_digest = mep.digest(self._key, message)
        cipher = mep.rc4_packet_cipher(self._rc4_base, request_digest) if self._rc4_base else None
        frame = mep.frame(cipher.update(message) if cipher else message, request_digest)
        if mep.ALERT_MARKER in self._link.discard():
            self._note_alert()
        self._link.write(frame)
        self._last_tx = loop.time()
        self.stats.frames_sent += 1
        self.frames.add("tx", frame)
        return await self._receive(message, cipher, len(frame))

    async def _receive(self, request: bytes, cipher: CipherContext | None, sent: int) -> tuple[int, bytes, int | None]:
        timeout = self.timing.response_timeout + sent * BYTE_TIME
        header = await self._link.read_exactly(2, timeout)
        while header == mep.ALERT_MARKER:
            self._note_alert()
            header = await self._link.read_exactly(2, self.timing.response_timeout)
        (length,) = struct.unpack(">H", header)
        if not mep.DIGEST_SIZE + 1 <= length <= mep.MAX_MESSAGE:
            raise FrameError(f"implausible reply length {length}")
        payload = await self._link.read_exactly(
            length, length * BYTE_TIME * 1.1 + self.timing.byte_slack + length // 117 * 0.025
        )
        self.stats.frames_received += 1
        self.frames.add("rx", header + payload)
        body, received_digest = payload[: -mep.DIGEST_SIZE], payload[-mep.DIGEST_SIZE :]
        if body == bytes([mep.MepResult.AUTHENTICATION_FAILURE]):
            # Sent in clear and unverifiable: the meter accepted neither key.
            return mep.MepResult.AUTHENTICATION_FAILURE, b"", None
        if cipher is not None:
            body = cipher.update(body)
        if mep.digest(self._key, request + body) != received_digest:
            raise FrameError("reply digest mismatch (corrupted or foreign frame)")
        return mep.parse_response_body(body)

    def _note_alert(self) -> None:
        """An unsolicited 00 00: the meter has an alert pending (guide p.17)."""
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
