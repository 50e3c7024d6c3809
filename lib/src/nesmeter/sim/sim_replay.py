"""A meter built from a trace: ``scripts/meter simulate --replay FILE``.

The trace (``nesmeter.link.trace``) is read back into what it shows about the meter:

* **Tables.** Every read request is paired with its reply (MEP ``00 COUNT DATA``; C12.18
  ``00 COUNT DATA CKSUM``, reassembled from multi-packet replies) and the data is put at
  its table, offset and count; a later reply overwrites an earlier one. A full read gives
  the table's size. A read refused with an error code keeps that refusal (e.g. BT21 on
  firmware 2.x). Tables never read are absent: the meter refuses them. Values stay as
  recorded: the replayed meter is static. Only what the trace holds is served: a read that
  runs past the recorded bytes gets the recorded part (a short answer), one that starts
  outside them, or a full read of a table the trace has only in part, is refused ("operation
  not possible"), never filled with zeros a real meter would not have sent.
* **Link.** IR: the Identify and Negotiate answers verbatim, the reply toggle pattern
  (alternating, fixed or mirroring the request's), an echoing probe, a session left over
  from before. Both: the median response latency (less the 9600-baud wire time of the
  frames), and on MEP the sequence number of a recorded ``0C`` reply.
* **Fill.** A hand-made trace (e.g. from a published capture) may carry ``fill``: tables
  the capture lacks but a session needs, used only where nothing was recorded.

It is served by a ``SimulatedMeter`` with that image and the inferred variants, so it
signs (MEP) with the simulator's key: the trace's digests are masked anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
import itertools
import statistics
import struct
from typing import Any, Final

from nesmeter.c1218 import framing as c1218
from nesmeter.errors import FrameError
from nesmeter.keys import MeterKey
from nesmeter.link.transport import BYTE_TIME
from nesmeter.mep import framing as mep
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.sim_variants import IR_ONLY
from nesmeter.sim.simulator import Faults, SimulatedMeter, _IrState

READS: Final = frozenset({0x30, 0x3F})  # full and partial read, the same codes on both transports
NOT_ABOUT_THE_TABLE: Final = frozenset({0x06, 0x07, 0x0A, 0x0B, 0x0C})  # busy, not ready, state, key, sequence
ONP: Final = 0x04  # C12.18 "operation not possible": what a read beyond the trace gets
MIN_LATENCY: Final = 0.01  # below this a recorded latency is noise (loopback, USB buffering)

Frame = tuple[float | None, str, bytes, dict[str, Any]]


@dataclass(slots=True)
class Replay:
    """What a trace shows about its meter."""

    transport: str
    tables: dict[int, bytearray] = field(default_factory=dict)
    covered: dict[int, bytearray] = field(default_factory=dict)  # per byte: 1 if recorded
    sizes: dict[int, int] = field(default_factory=dict)  # from full reads
    refused: dict[int, int] = field(default_factory=dict)
    filled: list[int] = field(default_factory=list)
    identify_reply: bytes | None = None
    negotiate_reply: bytes | None = None
    variants: set[str] = field(default_factory=set)
    latency: float = 0.0
    mep_sequence: int | None = None  # the meter's last accepted sequence number, from a 0C reply

    def put(self, table_id: int, offset: int, data: bytes, *, full: bool = False) -> None:
        """Record ``data`` at ``offset`` of a table; a ``full`` read also gives the table's size."""
        table = self.tables.setdefault(table_id, bytearray())
        covered = self.covered.setdefault(table_id, bytearray())
        end = offset + len(data)
        if len(table) < end:
            table.extend(bytes(end - len(table)))
            covered.extend(bytes(end - len(covered)))
        table[offset:end] = data
        covered[offset:end] = b"\x01" * len(data)
        if full:
            self.sizes[table_id] = len(data)

    def summary(self) -> dict[str, Any]:
        """Return what was inferred, for the CLI and for test messages."""
        return {
            "tables": {f"{t:#06x}": len(data) for t, data in sorted(self.tables.items())},
            "refused": {f"{t:#06x}": f"{code:#04x}" for t, code in sorted(self.refused.items())},
            "filled": [f"{t:#06x}" for t in self.filled],
            "variants": sorted(self.variants),
            "latency": round(self.latency, 3),
        }


def _frames(doc: dict[str, Any]) -> list[Frame]:
    return [(entry.get("t"), entry["dir"], bytes.fromhex(entry["hex"]), entry) for entry in doc.get("frames", ())]


def analyse(doc: dict[str, Any]) -> Replay:
    """Read a trace document (``trace.load``) into a ``Replay``."""
    transport = doc["transport"]
    replay = Replay(transport)
    frames = _frames(doc)
    exchanges = _mep_exchanges(frames) if transport == "mep" else _ir_exchanges(frames, replay)
    for request, reply, truncated in exchanges:
        _learn(replay, request, reply, truncated=truncated)
    for table_id, data in ((int(t), bytes.fromhex(h)) for t, h in doc.get("fill", {}).items()):
        if table_id not in replay.tables and table_id not in replay.refused:
            replay.put(table_id, 0, data, full=True)
            replay.filled.append(table_id)
    if doc.get("stats", {}).get("echoes") and transport == "ir":
        replay.variants.add("echo")
    replay.latency = _latency(frames)
    return replay


def _learn(replay: Replay, request: bytes, reply: bytes, *, truncated: bool) -> None:
    """One request and its reply: a table read, a refusal, an Identify/Negotiate answer, a 0C."""
    if not request or not reply:
        return
    service, code = request[0], reply[0]
    if replay.transport == "mep" and code == mep.MepResult.INVALID_SEQUENCE and len(reply) >= 5:
        if replay.mep_sequence is None:
            replay.mep_sequence = (struct.unpack_from(">I", reply, 1)[0] - 1) & 0xFFFFFFFF
        return
    if replay.transport == "ir" and service == c1218.Service.IDENTIFY:
        if code == 0:
            replay.identify_reply = reply
        elif code == 0x0A and replay.identify_reply is None:
            replay.variants.add("leftover-session")
        return
    if replay.transport == "ir" and service in (c1218.Service.NEGOTIATE, c1218.Service.NEGOTIATE_BAUD):
        if code == 0:
            replay.negotiate_reply = reply
        return
    if service not in READS or len(request) < 3:
        return
    (table_id,) = struct.unpack_from(">H", request, 1)
    if code != 0:
        if code not in NOT_ABOUT_THE_TABLE and table_id not in replay.tables:
            replay.refused[table_id] = code
        return
    data = _read_data(replay.transport, reply, truncated=truncated)
    if data is None:
        return
    if service == c1218.Service.PARTIAL_READ and len(request) >= 8:
        offset = int.from_bytes(request[3:6], "big")
        (count,) = struct.unpack_from(">H", request, 6)
        if len(data) != count and not truncated:
            return  # not the answer to this request (a late reply to another)
        replay.put(table_id, offset, data)
    else:
        replay.put(table_id, 0, data, full=not truncated)
    replay.refused.pop(table_id, None)


def _read_data(transport: str, reply: bytes, *, truncated: bool) -> bytes | None:
    """Return the table data of an OK read reply, checked; a truncated reply gives what it has."""
    if len(reply) < 3:
        return None
    (count,) = struct.unpack_from(">H", reply, 1)
    data = reply[3 : 3 + count]
    if truncated:
        return data
    if transport == "mep":
        return data if len(reply) == 3 + count else None
    if len(reply) != count + 4 or c1218.table_checksum(data) != reply[-1]:
        return None
    return data


def _mep_exchanges(frames: list[Frame]) -> Iterator[tuple[bytes, bytes, bool]]:
    """(APDU, plaintext reply body, truncated) for each reply, with the request before it."""
    apdu = b""
    for _t, direction, data, entry in frames:
        if len(data) < 2:
            continue
        if direction == "tx":
            body = data[2 : -mep.DIGEST_SIZE]
            apdu = body[: -mep.SEQUENCE_SIZE]
            continue
        if entry.get("masked") == "body" or not apdu:
            continue
        payload = data[2:]
        truncated = bool(entry.get("truncated"))
        if truncated or len(payload) <= mep.DIGEST_SIZE:
            yield apdu, payload, truncated
        else:
            yield apdu, payload[: -mep.DIGEST_SIZE], False


def _tx_packet(frame: bytes) -> c1218.Packet | None:
    """Decode a request packet; its CRC is not checked (masked on the Security request)."""
    if len(frame) < c1218.OVERHEAD or frame[0] != c1218.STP:
        return None
    (length,) = struct.unpack_from(">H", frame, 4)
    return c1218.Packet(control=frame[2], sequence=frame[3], data=frame[c1218.HEADER_SIZE : c1218.HEADER_SIZE + length])


def _ir_exchanges(frames: list[Frame], replay: Replay) -> Iterator[tuple[bytes, bytes, bool]]:
    """(request, reply payload, False) for each complete C12.18 reply; learns the toggle pattern."""
    request = b""
    request_parts: list[bytes] = []
    reply_parts: list[bytes] = []
    request_toggle = False
    last_rx = b""
    toggles: list[tuple[bool, bool]] = []  # (reply toggle, toggle of the request it answers)
    for _t, direction, data, _entry in frames:
        if direction == "tx":
            packet = _tx_packet(data)
            if packet is None:
                continue
            request_toggle, last_rx = packet.toggle, b""
            if not packet.multi or packet.first:
                request_parts = []
            request_parts.append(packet.data)
            if not packet.multi or packet.sequence == 0:
                request = b"".join(request_parts)
            continue
        try:
            packet = c1218.decode_packet(data)
        except FrameError:
            continue  # the client NAKed it
        if data == last_rx:
            continue  # a retransmission: the meter missed our ACK
        last_rx = data
        toggles.append((packet.toggle, request_toggle))
        if not packet.multi or packet.first:
            reply_parts = []
        reply_parts.append(packet.data)
        if not packet.multi or packet.sequence == 0:
            yield request, b"".join(reply_parts), False
    replay.variants |= _toggle_variant(toggles)


def _toggle_variant(toggles: list[tuple[bool, bool]]) -> set[str]:
    """Alternating (the simulator's default), fixed, or mirroring the request's toggle.

    Without multi-packet replies a mirroring meter and an alternating one in step with the
    client look the same on the line, and behave the same for the client.
    """
    if len(toggles) < 2:
        return set()
    replies = [reply for reply, _request in toggles]
    if all(a != b for a, b in itertools.pairwise(replies)):
        return set()
    if len(set(replies)) == 1:
        return {"fixed-toggle"}
    if all(reply == request for reply, request in toggles):
        return {"mirror-toggle"}
    return set()


def _latency(frames: list[Frame]) -> float:
    """Median time from a request to its reply, less the wire time if the line had one.

    Frames are stamped when written and when fully received: over a 9600-baud line every
    exchange takes at least the wire time of both frames, which is then not the meter's.
    A trace made over loopback (the simulator) shows exchanges faster than that.
    """
    samples: list[tuple[float, float]] = []  # (request to reply, wire time of both)
    sent: tuple[float, int] | None = None
    for t, direction, data, _entry in frames:
        if t is None:
            sent = None
        elif direction == "tx":
            sent = (t, len(data))
        elif sent is not None:
            samples.append((t - sent[0], (sent[1] + len(data)) * BYTE_TIME))
            sent = None
    if not samples:
        return 0.0
    on_a_line = all(elapsed >= 0.9 * wire for elapsed, wire in samples)
    latency = statistics.median(elapsed - wire if on_a_line else elapsed for elapsed, wire in samples)
    return latency if latency >= MIN_LATENCY else 0.0


class ReplayImage(MeterImage):
    """The recorded tables, static; counts reads that touch bytes the trace never had."""

    def __init__(self, replay: Replay) -> None:
        """Serve the tables ``replay`` recorded, and nothing else."""
        super().__init__(speed=0)
        self.tables = {table_id: bytearray(data) for table_id, data in replay.tables.items()}
        for table_id, size in replay.sizes.items():
            self.tables[table_id] = self.tables[table_id][:size]
        self.refused = dict(replay.refused)
        self.covered = {table_id: bytes(mask) for table_id, mask in replay.covered.items()}
        self.unrecorded_reads = 0

    def update(self, now: float | None = None) -> None:
        """Values stay as recorded."""

    def read(self, table_id: int, offset: int, count: int) -> bytes | None:
        """Return the recorded bytes from ``offset``: all ``count`` of them, the recorded run (short), or None."""
        data = super().read(table_id, offset, count)
        if data is None:
            return None
        recorded = self.covered.get(table_id, b"")[offset : offset + count]
        if len(recorded) == count and all(recorded):
            return data
        self.unrecorded_reads += 1
        run = len(recorded) - len(recorded.lstrip(b"\x01"))  # recorded bytes from ``offset`` on
        return data[:run] if run else None


class ReplayedMeter(SimulatedMeter):
    """A ``SimulatedMeter`` serving a trace's tables with its link behaviour."""

    def __init__(
        self,
        replay: Replay,
        key: MeterKey,
        *,
        faults: Faults | None = None,
        pace: bool = False,
        variants: Iterable[str] | str = (),
        reply_latency: float | None = None,
    ) -> None:
        """Serve ``replay``'s meter signing with ``key``; ``variants`` add to the inferred ones."""
        self.replay = replay
        inferred = replay.variants - IR_ONLY if replay.transport == "mep" else replay.variants
        extra = [variants] if isinstance(variants, str) else list(variants)
        super().__init__(
            key,
            image=ReplayImage(replay),
            faults=faults,
            pace=pace,
            variants=",".join([*sorted(inferred), *extra]),
            reply_latency=replay.latency if reply_latency is None else reply_latency,
        )
        if replay.mep_sequence is not None:
            self._mep_sequence = replay.mep_sequence

    def _full_read_unknown(self, table_id: int) -> bool:
        """Tell a full read of a table the trace read only in part (its size is not known): counted, refused."""
        unknown = table_id in self.replay.tables and table_id not in self.replay.sizes
        if unknown:
            assert isinstance(self.image, ReplayImage)
            self.image.unrecorded_reads += 1
        return unknown

    def _mep_service(self, apdu: bytes) -> bytes:
        full = apdu[:1] == bytes([mep.MepCode.FULL_READ]) and len(apdu) >= 3
        if full and self._full_read_unknown(struct.unpack_from(">H", apdu, 1)[0]):
            return bytes([mep.MepResult.NOT_POSSIBLE])
        return super()._mep_service(apdu)

    @property
    def unrecorded_reads(self) -> int:
        """How many reads asked for bytes the trace does not hold."""
        assert isinstance(self.image, ReplayImage)
        return self.image.unrecorded_reads

    def _ir_read(self, state: _IrState, request: bytes) -> bytes:
        full = request[:1] == bytes([c1218.Service.FULL_READ]) and len(request) >= 3
        if full and self._full_read_unknown(struct.unpack_from(">H", request, 1)[0]):
            return bytes([ONP])
        return super()._ir_read(state, request)

    def _ir_service(self, state: _IrState, request: bytes, max_packet: int, max_packets: int) -> bytes:
        reply = super()._ir_service(state, request, max_packet, max_packets)
        if reply[:1] != b"\x00" or not request:
            return reply
        if request[0] == c1218.Service.IDENTIFY and self.replay.identify_reply is not None:
            return self.replay.identify_reply
        if request[0] in (c1218.Service.NEGOTIATE, c1218.Service.NEGOTIATE_BAUD) and self.replay.negotiate_reply:
            answer = self.replay.negotiate_reply
            size = struct.unpack_from(">H", answer, 1)[0] if len(answer) >= 3 else c1218.DEFAULT_PACKET_SIZE
            packets = answer[3] if len(answer) >= 4 else 1
            state.negotiated = (max(c1218.MIN_PACKET_SIZE, size), max(1, packets))
            return answer
        return reply


def replayed_meter(doc: dict[str, Any], key: MeterKey, **kwargs: Any) -> ReplayedMeter:
    """Return the meter a trace document shows, signing with ``key``."""
    return ReplayedMeter(analyse(doc), key, **kwargs)
