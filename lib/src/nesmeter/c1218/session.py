"""ANSI C12.18 link layer and PSEM session over a ``SerialLink`` (the optical port).

Link: 0xEE framing, CRC-16/X.25, ACK/NAK, a toggle bit per direction, three retries,
multi-packet replies, resynchronising on stray bytes. Session: identify (retried: shared
UART meters drop the first frame), negotiate, logon, security, reads; the session is held
open between polls with the Wait service and renewed before the NES optical session
cut-off (600 s by default).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import logging
import struct
from typing import TYPE_CHECKING, Any

from nesmeter.c1218 import framing as c1218
from nesmeter.errors import (
    AuthenticationError,
    FrameError,
    NoResponseError,
    RefusedError,
    ResponseError,
    ShortReadError,
)
from nesmeter.keys import MeterKey
from nesmeter.link.transport import BYTE_TIME, LineTimeout, SerialLink
from nesmeter.stats import FrameLog, LinkStats

if TYPE_CHECKING:
    from nesmeter.link.trace import Trace

_LOGGER = logging.getLogger(__name__)

RETRYABLE = frozenset({0x06, 0x07})  # bsy, dnr
ISSS = 0x0A  # invalid service sequence state: no session at the meter
HOLD_MARGIN = 1.5  # seconds a poll may start late without the session lapsing


@dataclass(frozen=True, slots=True)
class C1218Timing:
    """Timeouts and retries of the optical link; tests scale them down to run fast."""

    ack_timeout: float = 2.0
    byte_slack: float = 0.5
    retries: int = 3
    packet_size: int = 64  # what every NES-proven optical client negotiates
    packets: int = 2
    channel_timeout: float = 6.0
    session_max: float = 540.0  # renew well before the 600 s optical D.O.S. timer
    busy_delay: float = 0.2


class C1218Session:
    """A logged-on PSEM session that reads tables."""

    def __init__(
        self,
        link: SerialLink,
        key: MeterKey,
        *,
        timing: C1218Timing | None = None,
        stats: LinkStats | None = None,
        frames: FrameLog | None = None,
        user_id: int = 2,
        user: str = "nesmeter",
    ) -> None:
        """Talk C12.18 over ``link`` with ``key``; counters and frames go to ``stats`` and ``frames``."""
        self._link = link
        self._password = key.password
        self.timing = timing or C1218Timing()
        self.stats = stats or LinkStats()
        self.frames = frames or FrameLog()
        self._user_id = user_id
        self._user = user
        self._tx_toggle = True  # toggle of the last frame sent: a session's first frame goes out with 0
        self._last_rx: c1218.Packet | None = None  # last accepted packet, for telling retransmissions apart
        self._rx_alternates: bool | None = None  # whether this meter's reply toggle alternates (learned)
        self._sent_frame = b""  # what an echoing probe would hand back
        self._echoing = False  # learned: this IR head hands back every byte we send
        self._echo_byte: int | None = None  # an ACK/NAK of ours still to come back from such a head
        self.packet_size = c1218.DEFAULT_PACKET_SIZE
        self.packets = 1
        self._active = False
        self._started_at = 0.0
        self._alive_until = 0.0
        self.alert_pending = False
        self.trace: Trace | None = None  # set while a trace records (nesmeter.link.trace)

    def trace_settings(self) -> dict[str, Any]:
        """Return what a trace notes about this link: the packet size and count asked for."""
        return {"asked_packet_size": self.timing.packet_size, "asked_packets": self.timing.packets}

    # ---- session ----

    @property
    def max_read(self) -> int:
        """Largest table read whose reply fits the negotiated packets."""
        return self.packets * (self.packet_size - c1218.OVERHEAD) - 4

    async def start(self) -> None:
        """Identify, negotiate, logon, security. Raises ``AuthenticationError`` on a bad key."""
        self._active = False
        self._reset_link()
        self._link.discard()
        await self._identify()
        await self._negotiate()
        await self._request(c1218.logon_request(self._user_id, self._user))
        try:
            await self._request(c1218.security_request(self._password))
        except ResponseError:
            self.stats.error("security_rejected")
            raise AuthenticationError("the meter rejected the key on the optical port") from None
        loop = asyncio.get_running_loop()
        self._started_at = loop.time()
        self._alive_until = loop.time() + self.timing.channel_timeout
        self._active = True
        self.stats.session_starts += 1

    def _reset_link(self) -> None:
        """Start a new session from the link's base state, as the NES-proven clients do."""
        self._tx_toggle = True
        self._last_rx = None
        self.packet_size, self.packets = c1218.DEFAULT_PACKET_SIZE, 1

    async def _identify(self) -> None:
        try:
            try:
                await self._request(c1218.identify_request())
            except ResponseError as err:
                if err.code != ISSS:
                    raise
                # A session left over from before a crash or an unplugged probe (held by
                # Wait for up to 255 s): end it instead of waiting it out.
                _LOGGER.debug("the meter is still in an earlier session; terminating it")
                await self._request(c1218.simple_request(c1218.Service.TERMINATE))
                self._reset_link()
                await self._request(c1218.identify_request())
        except NoResponseError as err:
            raise NoResponseError(f"the meter does not answer on the optical port ({err})") from None

    async def _negotiate(self) -> None:
        asked = c1218.NegotiatedLink(self.timing.packet_size, self.timing.packets)
        try:
            reply = await self._request(c1218.negotiate_request(asked.packet_size, asked.packets))
        except ResponseError as err:
            _LOGGER.debug("negotiate refused (%s); staying at %d bytes", err, self.packet_size)
            return
        link = c1218.parse_negotiate(reply, asked)
        self.packet_size, self.packets = link.packet_size, link.packets
        if self.trace is not None:
            self.trace.link.update(packet_size=link.packet_size, packets=link.packets)

    async def ensure_session(self) -> None:
        """Start a session unless one is alive: the meter's channel timer and session limit decide."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        alive = self._active and now < self._alive_until - min(0.5, self.timing.channel_timeout / 4)
        if alive and now - self._started_at < self.timing.session_max:
            return
        if alive:
            await self.stop()
        await self.start()

    async def hold(self, seconds: float) -> None:
        """Keep the session open until the next poll, ``seconds`` from now.

        Every reply restarts the meter's channel-traffic timer, so when the next poll comes
        well within it (``HOLD_MARGIN`` to spare) nothing needs sending; else the Wait service.
        """
        if not self._active:
            return
        if asyncio.get_running_loop().time() + seconds + HOLD_MARGIN <= self._alive_until:
            return
        wait = max(1, min(255, int(seconds) + 3))
        try:
            await self._request(c1218.wait_request(wait))
        except ResponseError as err:
            _LOGGER.debug("wait refused (%s); the session will be renewed when needed", err)
            return
        self._alive_until = asyncio.get_running_loop().time() + wait

    async def stop(self) -> None:
        """Logoff and terminate; failures are irrelevant, the meter times out anyway."""
        if not self._active:
            return
        self._active = False
        try:
            for request in (c1218.simple_request(c1218.Service.LOGOFF), c1218.simple_request(c1218.Service.TERMINATE)):
                await self._request(request)
        except (NoResponseError, FrameError, ResponseError, LineTimeout) as err:
            _LOGGER.debug("closing the optical session: %s", err)
        finally:
            self._reset_link()

    async def read(self, table_id: int, offset: int, count: int) -> bytes:
        """Read ``count`` bytes of a table in reads that fit the negotiated packets."""
        await self.ensure_session()
        out = bytearray()
        while len(out) < count:
            size = min(self.max_read, count - len(out))
            data = await self._read_chunk(table_id, offset + len(out), size)
            if len(data) != size:
                raise ShortReadError(f"asked for {size} bytes, got {len(data)}")
            out += data
        return bytes(out)

    async def _read_chunk(self, table_id: int, offset: int, size: int) -> bytes:
        request = c1218.read_request(table_id, offset, size)
        try:
            try:
                return c1218.parse_read(await self._request(request))
            except ResponseError as err:
                if err.code != ISSS:
                    raise
                # The meter dropped the session (channel or D.O.S. timer): log on again.
                await self.start()
                return c1218.parse_read(await self._request(request))
        except (NoResponseError, FrameError):
            self._active = False  # the next read starts a fresh session
            raise

    # ---- PSEM ----

    async def _request(self, request: bytes) -> bytes:
        """Send a service and return its OK reply.

        A reply lost or damaged after the meter ACKed the request is asked again as a new
        packet (every service we send is idempotent); no ACK at all means no meter.
        """
        c1218.check_read_only(request)
        attempt = 0
        while True:
            attempt += 1
            await self._send(request)
            try:
                payload = await self._receive_payload()
            except (NoResponseError, FrameError):
                if attempt >= self.timing.retries:
                    raise
                self.stats.retries += 1
                await self._link.wait_quiet(0.02, 0.2)
                continue
            self._alive_until = asyncio.get_running_loop().time() + self.timing.channel_timeout
            if not payload:
                raise FrameError("empty PSEM reply")
            code = payload[0]
            if code == 0:
                return payload
            name = c1218.response_name(code)
            self.stats.error(name)
            if code in RETRYABLE and attempt < self.timing.retries:
                self.stats.retries += 1
                await asyncio.sleep(self.timing.busy_delay)
                continue
            if code == ISSS:
                self._active = False
            raise RefusedError(code, name, f"service 0x{request[0]:02X} refused")

    # ---- link layer ----

    async def _send(self, request: bytes) -> None:
        packets = c1218.split_packets(request, self.packet_size)
        stale = self._link.discard()  # late duplicates of the previous reply
        if self._echo_byte is not None and self._echo_byte in stale:
            self._echo_byte = None
        for control, sequence, data in packets:
            self._tx_toggle = not self._tx_toggle
            frame = c1218.encode_packet(data, toggle=self._tx_toggle, control=control, sequence=sequence)
            await self._send_frame(frame, masked=c1218.mask_security(data) != data)

    async def _send_frame(self, frame: bytes, *, masked: bool) -> None:
        # The password and the CRC computed over it.
        shown = frame[: c1218.HEADER_SIZE + 1] + b"\xff" * (len(frame) - c1218.HEADER_SIZE - 1) if masked else frame
        for attempt in range(self.timing.retries + 1):
            if attempt:
                self.stats.retries += 1
            self._link.write(frame)
            self._sent_frame = frame
            self.stats.frames_sent += 1
            self.frames.add("tx", shown)
            if self.trace is not None:
                self.trace.record("tx", shown, masked="password" if masked else None)
            try:
                if await self._await_ack():
                    return
                self.stats.error("nak")
            except LineTimeout:
                self.stats.timeouts += 1
                self.stats.error("timeout")
        raise NoResponseError("the meter did not acknowledge the request")

    async def _await_ack(self) -> bool:
        """Wait for the answer to a frame: True on ACK (or a reply whose ACK was lost), False on NAK.

        One deadline for the whole wait: a head that sends noise must not keep it open.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timing.ack_timeout
        while True:
            if self._link.peek()[:1] == bytes([c1218.STP]):
                if await self._skip_echo():
                    continue
                return True  # the reply itself: its ACK went missing
            byte = (await self._link.read_exactly(1, max(0.0, deadline - loop.time())))[0]
            if self._is_echoed_byte(byte):
                continue
            if byte == c1218.ACK:
                return True
            if byte == c1218.NAK:
                return False
            if byte == c1218.STP:
                self._link.unread(bytes([byte]))
                continue
            self.stats.error("stray_byte")

    async def _skip_echo(self) -> bool:
        """Drop our own frame coming back from an echoing IR head.

        A meter never sends a frame identical to a request (its replies start with a
        result code, requests with a service code), so a byte-exact copy is an echo.
        """
        frame = self._sent_frame
        if not frame:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + len(frame) * BYTE_TIME * 1.5 + self.timing.byte_slack
        while True:  # wait only while what has arrived could still be our frame
            buffered = self._link.peek()[: len(frame)]
            if buffered != frame[: len(buffered)]:
                return False
            if len(buffered) == len(frame):
                break
            try:
                await self._link.wait_for(len(buffered) + 1, deadline - loop.time())
            except LineTimeout:
                return False
        await self._link.read_exactly(len(frame), 0)
        self._sent_frame = b""
        self._echoing = True
        self.stats.echoes += 1
        return True

    def _is_echoed_byte(self, byte: int) -> bool:
        if byte != self._echo_byte:
            return False
        self._echo_byte = None
        self.stats.echoes += 1
        return True

    def _acknowledge(self, byte: int) -> None:
        """ACK/NAK a packet; an echoing head hands the byte back, which is not the meter's."""
        self._link.write(bytes([byte]))
        self._sent_frame = b""
        self._echo_byte = byte if self._echoing else None

    async def _receive_packet(self) -> c1218.Packet:
        """Read one good new packet: skip noise, NAK bad CRCs, drop duplicates.

        Within the channel timeout: noise or repeats must not keep the wait open for ever.
        """
        naks = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timing.channel_timeout
        while True:
            if self._link.peek()[:1] == bytes([c1218.STP]) and await self._skip_echo():
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LineTimeout
            start = await self._link.read_exactly(1, min(self.timing.ack_timeout, remaining))
            if start[0] != c1218.STP:
                self._is_echoed_byte(start[0])
                continue
            try:
                header = await self._link.read_exactly(5, 5 * BYTE_TIME + self.timing.byte_slack)
            except LineTimeout:
                continue
            (length,) = struct.unpack_from(">H", header, 3)
            if header[0] != 0 or length > self.packet_size - c1218.OVERHEAD + 1024:
                self._link.unread(header)  # not a real start: resynchronise after this 0xEE
                continue
            try:
                rest = await self._link.read_exactly(
                    length + 2, (length + 2) * BYTE_TIME * 1.1 + self.timing.byte_slack
                )
            except LineTimeout:
                self._acknowledge(c1218.NAK)
                continue
            frame = start + header + rest
            self.stats.frames_received += 1
            self.frames.add("rx", frame)
            if self.trace is not None:
                self.trace.record("rx", frame)
            try:
                packet = c1218.decode_packet(frame)
            except FrameError:
                self.stats.error("bad_crc")
                naks += 1
                if naks > self.timing.retries:
                    raise
                self._acknowledge(c1218.NAK)
                continue
            self._acknowledge(c1218.ACK)
            if self._is_retransmission(packet):
                self.stats.error("duplicate")
                continue
            self._last_rx = packet
            return packet

    def _is_retransmission(self, packet: c1218.Packet) -> bool:
        """Tell whether a packet repeats the last accepted one (its sender missed our ACK).

        Toggle alone cannot tell: some meters never alternate it, some mirror ours, and
        two different replies can be byte-identical (``00`` to Logon and to Security).
        A repeat is the same toggle *and* the same bytes, and only from a meter seen to
        alternate its toggle; a meter that does not alternate gets every packet through,
        as every NES-proven client does.
        """
        last = self._last_rx
        if last is None:
            return False
        new_reply = not packet.multi or packet.first  # inside a reply, mirrored toggles stay put
        if packet.toggle != last.toggle:
            if new_reply:
                self._rx_alternates = True
            return False
        if packet != last:
            if new_reply:
                self._rx_alternates = False
            return False
        return self._rx_alternates is True

    async def _receive_payload(self) -> bytes:
        try:
            packet = await self._receive_packet()
            if not packet.multi:
                return packet.data
            if not packet.first:
                raise FrameError("multi-packet reply without its first packet")
            parts = [packet.data]
            remaining = packet.sequence
            while remaining > 0:
                packet = await self._receive_packet()
                if not packet.multi or packet.first or packet.sequence != remaining - 1:
                    raise FrameError("multi-packet reply out of order")
                parts.append(packet.data)
                remaining = packet.sequence
            return b"".join(parts)
        except LineTimeout:
            self.stats.timeouts += 1
            self.stats.error("timeout")
            raise NoResponseError("no reply from the meter on the optical port") from None
