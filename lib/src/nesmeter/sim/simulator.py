"""A simulated NES meter that speaks MEP and the optical port on loopback TCP or a pty.

It is a test peer for the real client (and for termineter), so it follows the meter's
documented behaviour, not the client's expectations: digest and sequence window checks,
0x0C/0x0B answers, RC4 replies to encrypted requests, alert markers, C12.18 ACK/NAK and
toggles, multi-packet replies, session states, optional 9600-baud pacing, and fault
injection driven by a seeded random generator.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
import contextlib
from dataclasses import dataclass, field
import logging
import os
import random
import struct
import time
import tty
from typing import Final, SupportsIndex

from nesmeter.c1218 import framing as c1218
from nesmeter.errors import FrameError
from nesmeter.keys import MeterKey
from nesmeter.link.transport import BYTE_TIME
from nesmeter.mep import framing as mep
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.sim_variants import apply_table_variants, parse_variants
from nesmeter.tables import tables

_LOGGER = logging.getLogger(__name__)

OPEN_TABLES: Final = frozenset({tables.BT00, tables.BT01, tables.ET03})
IR_READ_KEY_REFUSED: Final = frozenset({tables.ET21})  # MK/PK only, not the read key (O p.38)
MEP_SEGMENT: Final = 117
MEP_SEGMENT_GAP: Final = 0.025
MEP_MIN_SPACING: Final = 0.1
PACED_CHUNK: Final = 16  # bytes written at once when paced: small against the 50 ms inter-byte limit
SEQUENCE_WINDOW: Final = 8
SLOW_REPLY: Final = 0.7  # the slow-reply variant's latency: past the guide's 500 ms timeout


@dataclass(slots=True)
class Faults:
    """What can go wrong on the line, as probabilities per reply (0..1)."""

    drop: float = 0.0  # reply never sent
    corrupt: float = 0.0  # one byte of the reply flipped
    garbage: float = 0.0  # random bytes before the reply
    split: float = 0.0  # reply written byte by byte with small gaps
    delay: float = 0.0  # probability of delaying a reply by delay_seconds
    delay_seconds: float = 0.0
    sequence_storm: float = 0.0  # MEP: answer 0x0C with a fresh number
    disconnect: float = 0.0  # close the connection instead of answering
    alerts: bool = False  # MEP: send 00 00 markers while idle and before replies
    alert_inside: float = 0.0  # MEP: a 00 00 marker inserted inside a reply
    silent: bool = False  # never answer anything
    nak_first: bool = False  # IR: NAK the first frame of every session
    repeat: float = 0.0  # IR: a reply packet sent twice, as if our ACK had been missed
    seed: int | None = None

    @classmethod
    def parse(cls, text: str) -> Faults:
        """``drop=0.1,corrupt=0.05,alerts,silent`` (CLI form)."""
        faults = cls()
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, value = item.partition("=")
            name = name.replace("-", "_")
            if name not in cls.__dataclass_fields__:
                raise ValueError(f"unknown fault {name!r}")
            current = getattr(faults, name)
            if isinstance(current, bool):
                setattr(faults, name, value.lower() not in ("0", "false", "no") if value else True)
            elif name == "seed":
                faults.seed = int(value)
            else:
                setattr(faults, name, float(value))
        return faults


@dataclass(slots=True)
class SimStats:
    """What the simulated meter saw and did: requests, replies, faults, reads per table."""

    requests: int = 0
    replies: int = 0
    rejected_digest: int = 0
    sequence_errors: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    connections: int = 0
    table_reads: Counter[int] = field(default_factory=Counter)  # table id -> reads served


class _TimedReader(asyncio.StreamReader):
    """A stream reader that remembers when each received chunk arrived.

    Paced reads start the 9600-baud clock at the arrival of their first byte, not at the
    moment the simulator got round to reading it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._arrivals: deque[list[float]] = deque()  # [arrival time, bytes not yet read]

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        data = bytes(data)
        if data:
            self._arrivals.append([asyncio.get_running_loop().time(), len(data)])
        super().feed_data(data)

    async def read_timed(self, size: int) -> tuple[bytes, float]:
        """``size`` bytes and the arrival time of the first of them."""
        data = await self.readexactly(size)
        arrived = self._arrivals[0][0]
        remaining = size
        while remaining:
            chunk = self._arrivals[0]
            taken = min(remaining, int(chunk[1]))
            chunk[1] -= taken
            remaining -= taken
            if not chunk[1]:
                self._arrivals.popleft()
        return data, arrived


class _Wire:
    """Reader + writer for one client connection, with optional 9600-baud pacing.

    Paced, the wire keeps a model clock: when the last byte in either direction finished
    crossing a 9600-baud line. Every wait targets an absolute time on that clock, so the
    event loop's sleep overshoot does not add up over a conversation.
    """

    def __init__(
        self,
        reader: _TimedReader,
        write: Callable[[bytes], object],
        close: Callable[[], object],
        *,
        pace: bool,
        echo: bool = False,
        transport: str = "mep",
    ) -> None:
        self.reader = reader
        self._write = write
        self._close = close
        self.pace = pace
        self.echo = echo  # an IR head that hands every byte back to its sender
        self.transport = transport  # which port this connection is: "mep" or "ir"
        self.closed = False
        self.line_time = 0.0  # loop time at which the line is next idle

    async def hold_until(self, deadline: float) -> None:
        """Keep the line quiet until ``deadline`` (loop time) and move the model clock there."""
        loop = asyncio.get_running_loop()
        self.line_time = max(self.line_time, loop.time(), deadline)
        delay = self.line_time - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def pause(self, seconds: float) -> None:
        """Pause the line after the last byte, e.g. for the meter's turnaround."""
        await self.hold_until(self.line_time + seconds)

    async def read(self, size: int, timeout: float | None = None) -> bytes:
        """Read ``size`` bytes; paced, they count as arrived only after their wire time.

        The client's writes land at once on a pty or socket, so the meter's view of a
        request is delayed by what a 9600-baud line would take to carry it.
        """
        async with asyncio.timeout(timeout):
            data, arrived = await self.reader.read_timed(size)
        if self.echo:
            self._write(data)
        if self.pace:
            await self.hold_until(max(self.line_time, arrived) + size * BYTE_TIME)
        return data

    async def send(self, data: bytes, *, segment: int = 0, gap: float = 0.0, bytewise: bool = False) -> None:
        """Write a reply, paced like a 9600-baud line when the wire is paced.

        Paced, each chunk is written when its last byte would arrive, and a reply longer than
        ``segment`` pauses ``gap`` after each segment as the meter does.
        """
        if bytewise:
            for byte in data:
                self._write(bytes([byte]))
                await asyncio.sleep(0.001)
            return
        if not self.pace:
            self._write(data)
            return
        step = segment or len(data)
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            if start:
                await self.pause(gap)
            for index in range(0, len(piece), PACED_CHUNK):
                chunk = piece[index : index + PACED_CHUNK]
                await self.pause(len(chunk) * BYTE_TIME)
                self._write(chunk)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._close()


Wire = _Wire  # public name for subclasses' type hints


class SimulatedMeter:
    """One meter: a key, a table image, faults, and a responder per transport.

    Subclasses (the MEP TLS meter in ``tls_server``) change the MEP side through
    ``mep_min_request`` and ``_answer_mep``, and use ``_reply`` and ``_mep_service``.
    """

    mep_min_request: int = mep.DIGEST_SIZE + 1  # shorter MEP messages are skipped as garbage

    def __init__(
        self,
        key: MeterKey,
        *,
        image: MeterImage | None = None,
        faults: Faults | None = None,
        pace: bool = False,
        turnaround: float = 0.0,
        variants: Iterable[str] | str = (),
        reply_latency: float | None = None,
    ) -> None:
        """Simulate a meter with ``key``: ``image`` holds its tables, ``faults`` spoil the line."""
        self.key = key
        self.variants = parse_variants(variants)
        self.image = image or MeterImage()
        apply_table_variants(self.image, self.variants)
        self.faults = faults or Faults()
        self.pace = pace
        self.turnaround = turnaround
        # Extra seconds before every reply: ``reply_latency`` on both ports (a replayed trace's
        # latency), and the slow-reply variant's on MEP only, as the variant says (optical port
        # meters answer within the C12.18 timing).
        self.reply_latency = reply_latency
        self.slow_mep = "slow-reply" in self.variants
        self.stats = SimStats()
        self._rng = random.Random(self.faults.seed)
        self._mep_sequence = self._rng.getrandbits(32)
        self._mep_last_request = 0.0  # holds off alert markers
        self._mep_last_served = 0.0  # paces requests

    # ---- shared helpers ----

    def _chance(self, name: str, probability: float) -> bool:
        if probability > 0 and self._rng.random() < probability:
            self.stats.faults[name] = self.stats.faults.get(name, 0) + 1
            return True
        return False

    def _latency(self, wire: _Wire) -> float | None:
        """Return the extra wait before a reply on ``wire``: slow-reply slows MEP only."""
        if self.slow_mep:
            if wire.transport != "mep":
                return None
            return SLOW_REPLY if self.reply_latency is None else self.reply_latency
        return self.reply_latency

    async def _reply(self, wire: _Wire, data: bytes, *, segment: int = 0, gap: float = 0.0) -> None:
        """Send a reply through the fault filter."""
        faults = self.faults
        if faults.silent or self._chance("drop", faults.drop):
            return
        if self._chance("disconnect", faults.disconnect):
            wire.close()
            return
        if self._chance("delay", faults.delay):
            await asyncio.sleep(faults.delay_seconds)
        if self.turnaround:
            await (wire.pause(self.turnaround) if wire.pace else asyncio.sleep(self.turnaround))
        if latency := self._latency(wire):
            await asyncio.sleep(latency)
        if self._chance("corrupt", faults.corrupt):
            index = self._rng.randrange(len(data))
            data = data[:index] + bytes([data[index] ^ (1 << self._rng.randrange(8))]) + data[index + 1 :]
        if self._chance("garbage", faults.garbage):
            data = bytes(self._rng.randrange(1, 256) for _ in range(self._rng.randint(1, 6))) + data
        if self._chance("alert_inside", faults.alert_inside):
            index = self._rng.randrange(1, len(data))
            data = data[:index] + mep.ALERT_MARKER + data[index:]
        bytewise = self._chance("split", faults.split)
        self.stats.replies += 1
        await wire.send(data, segment=segment, gap=gap, bytewise=bytewise)

    def change_key(self, key: MeterKey) -> None:
        """As if the utility re-keyed the meter."""
        self.key = key

    # ---- MEP ----

    async def serve_mep(self, wire: _Wire) -> None:
        """Answer MEP requests on ``wire`` until the client goes (alert markers in between, if set)."""
        alert_task = asyncio.create_task(self._alert_loop(wire)) if self.faults.alerts else None
        try:
            while not wire.closed:
                header = await wire.read(2)
                (length,) = struct.unpack(">H", header)
                if length < self.mep_min_request or length > mep.MAX_MESSAGE:
                    continue  # garbage; a real meter's receiver times out and resyncs
                try:
                    body = await wire.read(length, 0.5 + length * BYTE_TIME * 2)
                except TimeoutError:
                    continue
                if self.pace:
                    await self._throttle_mep(wire)
                key = self.key.mep_key
                self._mep_last_request = time.monotonic()
                await self._answer_mep(wire, key, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if alert_task:
                alert_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await alert_task

    async def _throttle_mep(self, wire: _Wire) -> None:
        """Keep the guide's pace: the meter serves no more than one MEP request every 100 ms."""
        await wire.hold_until(self._mep_last_served + MEP_MIN_SPACING)
        self._mep_last_served = wire.line_time

    async def _alert_loop(self, wire: _Wire) -> None:
        """Repeat an alert every second, held off 1 s after each received frame."""
        while not wire.closed:
            await asyncio.sleep(0.25)
            if time.monotonic() - self._mep_last_request >= 1.0:
                try:
                    await wire.send(mep.ALERT_MARKER)
                except ConnectionError:
                    return
                self._mep_last_request = time.monotonic()

    async def _answer_mep(self, wire: _Wire, key: bytes, body: bytes) -> None:
        """Answer one MEP message (``body`` is what followed LEN) under ``key``; a subclass hook."""
        self.stats.requests += 1
        message, request_digest = body[: -mep.DIGEST_SIZE], body[-mep.DIGEST_SIZE :]
        cipher = None
        if mep.digest(key, message) != request_digest:
            cipher = mep.rc4_packet_cipher(mep.rc4_base_key(key), request_digest)
            message = cipher.update(message)
            if mep.digest(key, message) != request_digest:
                self.stats.rejected_digest += 1
                rejection = bytes([mep.MepResult.AUTHENTICATION_FAILURE])
                # Unsigned either way: the meter found no key that fits.
                short = "short-0b" in self.variants
                await self._reply(wire, b"\x00\x01" + rejection if short else mep.frame(rejection, bytes(8)))
                return
        apdu, (sequence,) = message[:-4], struct.unpack(">I", message[-4:])
        ahead = (sequence - self._mep_sequence) & 0xFFFFFFFF
        if not 1 <= ahead <= SEQUENCE_WINDOW or self._chance("sequence_storm", self.faults.sequence_storm):
            self.stats.sequence_errors += 1
            if self.faults.sequence_storm:
                self._mep_sequence = (self._mep_sequence + self._rng.randrange(9, 1000)) & 0xFFFFFFFF
            reply = bytes([mep.MepResult.INVALID_SEQUENCE]) + struct.pack(">I", (self._mep_sequence + 1) & 0xFFFFFFFF)
        else:
            self._mep_sequence = sequence
            reply = self._mep_service(apdu)
        frame = mep.frame(cipher.update(reply) if cipher else reply, mep.digest(key, message + reply))
        await self._reply(wire, frame, segment=MEP_SEGMENT, gap=MEP_SEGMENT_GAP)

    def _mep_service(self, apdu: bytes) -> bytes:
        """Return the reply body (result, count, data) to one read APDU; a subclass hook."""
        code = apdu[0] if apdu else 0
        if code == mep.MepCode.PARTIAL_READ and len(apdu) == 8:
            table_id = struct.unpack_from(">H", apdu, 1)[0]
            offset = int.from_bytes(apdu[3:6], "big")
            count = struct.unpack_from(">H", apdu, 6)[0]
        elif code == mep.MepCode.FULL_READ and len(apdu) in (3, 5):
            # Table 2.7 has a length field, but peers proven on real meters send
            # ``30 TTTT`` alone too; the meter answers with the whole table either way.
            (table_id,) = struct.unpack_from(">H", apdu, 1)
            offset = 0
            count = self.image.size(table_id) or 0
        elif code in (mep.MepCode.FULL_WRITE, mep.MepCode.PARTIAL_WRITE):
            return bytes([mep.MepResult.NO_PERMISSION])
        else:
            return bytes([mep.MepResult.UNRECOGNIZED])
        if count > mep.MAX_READ_DATA:
            return bytes([mep.MepResult.TABLE_OPERATION_NOT_POSSIBLE])
        if table_id in self.image.refused:
            return bytes([self.image.refused[table_id]])
        self.stats.table_reads[table_id] += 1
        data = self.image.read(table_id, offset, count)
        if data is None:
            return bytes([mep.MepResult.TABLE_OPERATION_NOT_POSSIBLE])
        return b"\x00" + struct.pack(">H", len(data)) + data

    # ---- optical port (C12.18) ----

    async def serve_ir(
        self, wire: _Wire, *, channel_timeout: float = 6.0, max_packet: int = 1024, max_packets: int = 8
    ) -> None:
        """Answer C12.18 on ``wire`` as the optical port does, session states and timeouts included."""
        state = _IrState()
        if "leftover-session" in self.variants:
            state.level = _IrLevel.AUTHORISED  # a client crashed mid-session; Wait holds it
        try:
            while not wire.closed:
                try:
                    first = await wire.read(1, channel_timeout)
                except TimeoutError:
                    state.reset()
                    continue
                if first[0] == c1218.NAK and state.last_frame and state.resends < 3:
                    state.resends += 1
                    await self._reply(wire, state.last_frame)  # the client saw a bad CRC
                    continue
                if first[0] != c1218.STP:
                    continue
                try:
                    header = await wire.read(5, 1.0)
                    (length,) = struct.unpack_from(">H", header, 3)
                    rest = await wire.read(length + 2, 1.0 + length * BYTE_TIME * 2)
                except TimeoutError:
                    continue
                frame = first + header + rest
                try:
                    packet = c1218.decode_packet(frame)
                except FrameError:
                    await wire.send(bytes([c1218.NAK]))
                    continue
                if self.faults.nak_first and state.fresh and not self.faults.silent:
                    state.fresh = False
                    self.stats.faults["nak_first"] = self.stats.faults.get("nak_first", 0) + 1
                    await wire.send(bytes([c1218.NAK]))
                    continue
                if self.faults.silent:
                    continue
                await wire.send(bytes([c1218.ACK]))
                if frame == state.last_request and state.last_reply:
                    await self._send_ir_payload(wire, state, state.last_reply)  # our reply was lost
                    continue
                state.last_request = frame
                state.request_toggle = packet.toggle
                self.stats.requests += 1
                reply = self._ir_service(state, packet.data, max_packet, max_packets)
                state.last_reply = reply
                await self._send_ir_payload(wire, state, reply)
                if state.negotiated:
                    state.packet_size, state.packets = state.negotiated
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def _send_ir_payload(self, wire: _Wire, state: _IrState, payload: bytes) -> None:
        for control, sequence, data in c1218.split_packets(payload, state.packet_size):
            if "mirror-toggle" in self.variants:
                state.tx_toggle = state.request_toggle
            elif "fixed-toggle" not in self.variants:
                state.tx_toggle = not state.tx_toggle
            frame = c1218.encode_packet(data, toggle=state.tx_toggle, control=control, sequence=sequence)
            state.last_frame, state.resends = frame, 0
            await self._reply(wire, frame)
            if self._chance("repeat", self.faults.repeat):
                await self._reply(wire, frame)
            if control & c1218.CTRL_MULTI and sequence > 0 and not await self._await_ir_ack(wire, frame):
                return

    async def _await_ir_ack(self, wire: _Wire, frame: bytes) -> bool:
        for _ in range(3):
            try:
                byte = await wire.read(1, 2.0)
            except TimeoutError:
                await self._reply(wire, frame)
                continue
            if byte[0] == c1218.ACK:
                return True
            if byte[0] == c1218.NAK:
                await self._reply(wire, frame)
                continue
            return False
        return False

    def _ir_service(self, state: _IrState, request: bytes, max_packet: int, max_packets: int) -> bytes:
        service = request[0] if request else 0
        if service == c1218.Service.IDENTIFY:
            if state.level in (_IrLevel.SESSION, _IrLevel.AUTHORISED):
                return b"\x0a"  # C12.18: Identify is only valid in the base state
            state.reset()
            state.level = _IrLevel.IDENTIFIED
            return bytes([0, 0, 1, 0, 0])
        if service == c1218.Service.TERMINATE:
            state.reset()
            return b"\x00"
        if state.level is _IrLevel.BASE:
            return b"\x0a"
        if service in (c1218.Service.NEGOTIATE, c1218.Service.NEGOTIATE_BAUD) and len(request) >= 4:
            size, packets = struct.unpack_from(">HB", request, 1)
            state.negotiated = (max(64, min(size, max_packet)), max(1, min(packets, max_packets)))
            if "bare-negotiate" in self.variants:
                state.negotiated = (c1218.DEFAULT_PACKET_SIZE, 1)  # nothing said: the defaults stay
                return b"\x00"
            baud = request[4:5] or b""
            return b"\x00" + struct.pack(">HB", *state.negotiated) + baud
        if service == c1218.Service.LOGON:
            state.level = _IrLevel.SESSION
            return b"\x00"
        if service == c1218.Service.SECURITY:
            if state.level is _IrLevel.IDENTIFIED:
                return b"\x0a"
            if request[1:21] == self.key.password:
                state.level = _IrLevel.AUTHORISED
                return b"\x00"
            return b"\x01"
        if service == c1218.Service.LOGOFF:
            state.level = _IrLevel.IDENTIFIED
            return b"\x00"
        if service == c1218.Service.WAIT:
            return b"\x00"
        if service in (c1218.Service.FULL_READ, c1218.Service.PARTIAL_READ):
            return self._ir_read(state, request)
        if service in (c1218.Service.FULL_WRITE, c1218.Service.PARTIAL_WRITE):
            return b"\x03"
        return b"\x02"

    def _ir_read(self, state: _IrState, request: bytes) -> bytes:
        if state.level in (_IrLevel.BASE, _IrLevel.IDENTIFIED):
            return b"\x0a"
        table_id = struct.unpack_from(">H", request, 1)[0]
        if request[0] == c1218.Service.PARTIAL_READ:
            offset = int.from_bytes(request[3:6], "big")
            count = struct.unpack_from(">H", request, 6)[0]
        else:
            offset, count = 0, self.image.size(table_id) or 0
        if table_id in self.image.refused:
            return bytes([self.image.refused[table_id]])
        if self.image.size(table_id) is None:
            return b"\x05"
        if (table_id not in OPEN_TABLES and state.level is not _IrLevel.AUTHORISED) or table_id in IR_READ_KEY_REFUSED:
            return b"\x03"
        self.stats.table_reads[table_id] += 1
        data = self.image.read(table_id, offset, count)
        if data is None:  # a replayed meter asked for bytes its trace does not hold
            return bytes([0x04])  # onp: operation not possible
        return c1218.read_response(data)

    # ---- servers ----

    async def _run(self, transport: str, wire: _Wire) -> None:
        self.stats.connections += 1
        try:
            if transport == "mep":
                await self.serve_mep(wire)
            else:
                await self.serve_ir(wire)
        finally:
            wire.close()

    def _wire(
        self, reader: _TimedReader, write: Callable[[bytes], object], close: Callable[[], object], transport: str
    ) -> _Wire:
        echo = transport == "ir" and "echo" in self.variants
        return _Wire(reader, write, close, pace=self.pace, echo=echo, transport=transport)

    async def serve_tcp(self, transport: str, host: str = "127.0.0.1", port: int = 0) -> SimServer:
        """Listen on loopback TCP; every connection gets its own responder."""
        tasks: set[asyncio.Task[None]] = set()
        writers: set[asyncio.StreamWriter] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            writers.add(writer)
            assert isinstance(reader, _TimedReader)

            def write(data: bytes) -> None:
                if writer.transport.is_closing():
                    raise ConnectionResetError("the client went away")
                writer.write(data)

            try:
                await self._run(transport, self._wire(reader, write, writer.close, transport))
            finally:
                tasks.discard(task)
                writers.discard(writer)
                writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()

        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: asyncio.StreamReaderProtocol(_TimedReader(), handle), host, port)
        bound = server.sockets[0].getsockname()

        async def close() -> None:
            server.close()
            for writer in list(writers):
                writer.transport.abort()
            if tasks:
                await asyncio.wait(list(tasks), timeout=2)
            await server.wait_closed()

        return SimServer(f"socket://{bound[0]}:{bound[1]}", closer=close)

    async def serve_pty(self, transport: str) -> SimServer:
        """Serve on a pseudo-terminal; the returned URL is the slave device path."""
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        os.set_blocking(master, False)
        loop = asyncio.get_running_loop()
        reader = _TimedReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        read_transport, _ = await loop.connect_read_pipe(
            lambda: protocol, os.fdopen(master, "rb", buffering=0, closefd=False)
        )

        def write(data: bytes) -> None:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(master, data)

        wire = self._wire(reader, write, lambda: None, transport)
        task = asyncio.create_task(self._run(transport, wire))
        path = os.ttyname(slave)

        async def close() -> None:
            wire.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            read_transport.close()
            await asyncio.sleep(0)
            for fd in (master, slave):
                with contextlib.suppress(OSError):
                    os.close(fd)

        return SimServer(path, closer=close)


class _IrLevel:
    BASE = "base"
    IDENTIFIED = "identified"
    SESSION = "session"
    AUTHORISED = "authorised"


@dataclass(slots=True)
class _IrState:
    packet_size: int = c1218.DEFAULT_PACKET_SIZE
    packets: int = 1
    level: str = _IrLevel.BASE
    request_toggle: bool = False
    tx_toggle: bool = False
    last_request: bytes = b""  # a repeat of it (same toggle and bytes) is a retransmission
    last_reply: bytes = b""
    last_frame: bytes = b""
    resends: int = 0
    fresh: bool = True
    negotiated: tuple[int, int] | None = None

    def reset(self) -> None:
        self.level = _IrLevel.BASE
        self.last_request = b""
        self.last_reply = b""
        self.fresh = True
        self.packet_size, self.packets = c1218.DEFAULT_PACKET_SIZE, 1
        self.negotiated = None


class SimServer:
    """A running simulator endpoint; ``url`` is what a client opens."""

    def __init__(self, url: str, *, closer: Callable[[], Awaitable[None]]) -> None:
        """Hold a running server's ``url`` and what stops it."""
        self.url = url
        self._closer = closer

    async def close(self) -> None:
        """Stop the server and close its connections."""
        await self._closer()

    async def __aenter__(self) -> SimServer:
        """Use the running server."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the server."""
        await self.close()
