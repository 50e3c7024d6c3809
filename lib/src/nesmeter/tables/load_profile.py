"""Load profile (interval data): BT61-BT64 and ET21 decoders, and the reader.

NES meters snapshot chosen registers at the end of every interval into a ring of blocks
(one calendar day each on NES, O p.33). Layouts (MEP guide "G", printed pages):

* BT61 (G p.233-235): 0 UINT32 memory length, 4 UINT16 flags (bit 4 end readings: always
  False on NES), 6 UINT8 formats, then per data set n at ``7 + 6n``: UINT16 blocks,
  UINT16 intervals per block, UINT8 channels, UINT8 interval length (minutes; 84 = 24 h).
* BT62 (G p.235-236): per set ``channels`` 3-byte records (end-reading flag, interval
  source id, end-reading source) then a format byte; sets concatenated.
* BT63 (G p.236-238): per set 13 bytes at ``13n``: flags (bit 1 overflow, bit 2 circular,
  bit 5 active), UINT16 valid blocks, UINT16 last block, UINT32 last block sequence,
  UINT16 unread blocks, UINT16 valid intervals in the last block.
* BT64 (G p.238-241): ``Array[blocks]`` of ``end time STIME_DATE (UTC) | simple status
  SET(ceil(I/8)) | I x (extended status (C div 2 + 1 bytes) | C x INT32)``. The guide's
  printed offsets count ``4 x C`` end-reading bytes before the simple status; BT61.4.4
  says there are none, so the header is ``5 + ceil(I/8)`` unless ET21 says otherwise.
* ET21 (G p.95-98): per set a 131-byte element; 8 UINT32 block size, 12 UINT16 header
  size, 22 simple-status offset, 23 its size, 24 interval-0 offset, 25 interval size,
  26 channel-0 offset, 28 channels, 29 interval length. The optical read key may not
  read it (O p.38): the layout is then computed from BT61.

Values are register snapshots ("total values", G p.29) in the source's unit; the block's
end time is that of its newest recorded interval, so slot ``j`` of a block whose newest
slot is ``k`` ends ``(k - j)`` intervals before it. Intervals whose simple-status bit is
clear are ignored (G p.239), and so are channels whose extended status says the value
was skipped, opted out or never collected (G p.240-241).

Reading: the newest block's header first, then (newest to oldest, never assuming blocks
are consecutive days) the header of the oldest block that covers ``since``; then the
data is swept oldest first in reads of whole intervals (and whole headers) that each fit
one reply. Oldest first means each released piece extends what a consumer already has
(Home Assistant sums grow forward) and the blocks nearest to being overwritten are read
first. BT63 is read again after the blocks a new day could overwrite, and at the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
import logging
import math
import struct
from typing import TYPE_CHECKING, Any, Final

from nesmeter.errors import ABSENT, DecodeError
from nesmeter.tables import tables
from nesmeter.tables.snapshot import PRESENT_SOURCES, SUMMATION_SOURCES

if TYPE_CHECKING:
    from nesmeter.client.client import MeterClient

_LOGGER = logging.getLogger(__name__)

BT61_HEADER: Final = 7
BT61_SET: Final = 6
BT63_SET: Final = 13
ET21_ELEMENT: Final = 131
ET21_HEAD: Final = 30  # through the interval length (offset 29)
STIME_DATE_SIZE: Final = 5
DAY_CODE: Final = 84  # BT61 interval length meaning 24 hours
MAX_DATA_SETS: Final = 4
AT_RISK_BLOCKS: Final = 2  # blocks this close to being overwritten are checked with BT63

COMMON_FLAGS: Final = ((0x10, "dst"), (0x20, "power_fail"), (0x40, "clock_forward"), (0x80, "clock_backward"))
CHANNEL_STATUS: Final[dict[int, str]] = {
    1: "overflow",
    2: "partial_interval",
    3: "long_interval",
    4: "skipped",
    5: "test_mode",
    8: "decrypt_failure",
    9: "clock_error",
    10: "device_missing",
    11: "not_current",
    12: "opt_out",
    15: "placeholder",
}
# Channel codes whose value is not a register reading of this interval (zeroed, encrypted,
# stale or missing): never handed out as values.
NO_VALUE: Final = frozenset({4, 8, 10, 11, 12, 15})

ProgressCallback = Callable[[int, int], None]


# ---- decoders --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataSetConfig:
    """One BT61 data-set element."""

    blocks: int
    intervals_per_block: int
    channels: int
    interval_code: int

    @property
    def interval_minutes(self) -> int:
        return 1440 if self.interval_code == DAY_CODE else self.interval_code


def decode_bt61(data: bytes, data_set: int = 0) -> tuple[bool, DataSetConfig]:
    """(end readings present, the data set's dimensions)."""
    tables._need(data, BT61_HEADER + BT61_SET * (data_set + 1), "BT61")
    (flags,) = struct.unpack_from("<H", data, 4)
    config = DataSetConfig(*struct.unpack_from("<HHBB", data, BT61_HEADER + BT61_SET * data_set))
    if config.blocks == 0 or config.intervals_per_block == 0 or config.channels == 0:
        raise DecodeError(f"BT61 data set {data_set + 1} has no blocks, intervals or channels")
    if not (1 <= config.interval_code <= 60 or config.interval_code == DAY_CODE):
        raise DecodeError(f"BT61 interval length {config.interval_code} is not 1..60 or 84")
    return bool(flags & 0x10), config


def decode_bt62(data: bytes, channels_per_set: tuple[int, ...], data_set: int = 0) -> tuple[int, ...]:
    """Interval source id per channel of one data set (sets are concatenated)."""
    start = sum(3 * count + 1 for count in channels_per_set[:data_set])
    count = channels_per_set[data_set]
    tables._need(data, start + 3 * count, "BT62")
    return tuple(data[start + 3 * k + 1] for k in range(count))


@dataclass(frozen=True, slots=True)
class BlockLayout:
    """Where things are in a BT64 block (bytes)."""

    header_size: int
    simple_status_offset: int
    interval_size: int
    channel_offset: int  # first channel value within an interval record
    block_size: int
    from_et21: bool = False

    def slot_offset(self, block: int, slot: int) -> int:
        return block * self.block_size + self.header_size + slot * self.interval_size


def compute_layout(config: DataSetConfig, *, end_readings: bool = False) -> BlockLayout:
    """The layout from BT61 alone (G p.239; end readings only if BT61.4.4)."""
    status = 5 + (4 * config.channels if end_readings else 0)
    header = status + (config.intervals_per_block + 7) // 8
    channel_offset = config.channels // 2 + 1
    interval = channel_offset + 4 * config.channels
    return BlockLayout(header, status, interval, channel_offset, header + config.intervals_per_block * interval)


def decode_et21(data: bytes, config: DataSetConfig) -> BlockLayout:
    """ET21's sizes for one data set (the element, from its offset 0), checked against BT61."""
    tables._need(data, ET21_HEAD, "ET21")
    (block_size,) = struct.unpack_from("<I", data, 8)
    (header_size,) = struct.unpack_from("<H", data, 12)
    status_offset, status_size, interval0, interval_size, channel0 = data[22:27]
    channels, interval_code = data[28], data[29]
    if (channels, interval_code) != (config.channels, config.interval_code):
        raise DecodeError(f"ET21 ({channels} channels, {interval_code} min) disagrees with BT61")
    if (
        interval0 != header_size
        or status_size != (config.intervals_per_block + 7) // 8
        or status_offset + status_size > header_size
        or block_size != header_size + config.intervals_per_block * interval_size
        or channel0 + 4 * channels > interval_size
    ):
        raise DecodeError("ET21 sizes are inconsistent")
    return BlockLayout(header_size, status_offset, interval_size, channel0, block_size, from_et21=True)


@dataclass(frozen=True, slots=True)
class LoadProfileStatus:
    """One BT63 data-set element."""

    active: bool
    overflow: bool
    circular: bool
    valid_blocks: int
    last_block: int
    last_block_sequence: int
    valid_intervals: int


def decode_bt63(data: bytes, data_set: int = 0) -> LoadProfileStatus:
    start = BT63_SET * data_set
    tables._need(data, start + BT63_SET, "BT63")
    flags = data[start]
    valid_blocks, last_block, sequence, _unread, valid_intervals = struct.unpack_from("<HHIHH", data, start + 1)
    return LoadProfileStatus(
        active=bool(flags & 0x20),
        overflow=bool(flags & 0x02),
        circular=bool(flags & 0x04),
        valid_blocks=valid_blocks,
        last_block=last_block,
        last_block_sequence=sequence,
        valid_intervals=valid_intervals,
    )


def decode_stime_date(data: bytes, offset: int = 0) -> datetime:
    """STIME_DATE: YY MM DD hh mm (UTC in the load profile)."""
    return tables.decode_ltime_date(data, offset, STIME_DATE_SIZE).replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """A block's end time and which of its slots hold a processed interval."""

    end_time: datetime
    processed: tuple[bool, ...]

    @property
    def last_slot(self) -> int | None:
        for slot in range(len(self.processed) - 1, -1, -1):
            if self.processed[slot]:
                return slot
        return None

    def slot_end(self, slot: int, minutes: int) -> datetime:
        """When slot ``slot`` ends: counted back from the block's newest recorded slot."""
        last = self.last_slot
        return self.end_time - timedelta(minutes=minutes * ((last if last is not None else -1) - slot))


def decode_block_header(data: bytes, config: DataSetConfig, layout: BlockLayout) -> BlockHeader:
    """Simple status: one bit per slot, slot ``j`` = byte ``j // 8`` bit ``j % 8`` (LSB first)."""
    tables._need(data, layout.header_size, "BT64 block header")
    status = data[layout.simple_status_offset : layout.header_size]
    processed = tuple(bool(status[j // 8] >> (j % 8) & 1) for j in range(config.intervals_per_block))
    return BlockHeader(decode_stime_date(data), processed)


@dataclass(frozen=True, slots=True)
class IntervalRecord:
    """One raw interval record: common flags (high nibble of byte 0), channel codes, values."""

    common: int
    codes: tuple[int, ...]
    values: tuple[int, ...]

    @property
    def status(self) -> tuple[str, ...]:
        names = [name for bit, name in COMMON_FLAGS if self.common & bit]
        for code in self.codes:
            name = CHANNEL_STATUS.get(code, f"status_{code}") if code else None
            if name and name not in names:
                names.append(name)
        return tuple(names)


def decode_interval(data: bytes, offset: int, channels: int, layout: BlockLayout) -> IntervalRecord:
    """Extended status: byte 0 high nibble common, then channel k in nibble k + 1 (G p.240)."""
    tables._need(data, offset + layout.channel_offset + 4 * channels, "BT64 interval")
    nibbles = [n for byte in data[offset : offset + layout.channel_offset] for n in (byte >> 4, byte & 0x0F)]
    values = struct.unpack_from(f"<{channels}i", data, offset + layout.channel_offset)
    return IntervalRecord(nibbles[0] << 4, tuple(nibbles[1 : channels + 1]), values)


def channel_names(sources: tuple[int, ...], energy_unit: int = 1) -> tuple[tuple[str, float], ...]:
    """(name, scale) per channel, named like the snapshot fields; energies take the register unit."""
    out: list[tuple[str, float]] = []
    for source in sources:
        if source in SUMMATION_SOURCES:
            name, is_energy = SUMMATION_SOURCES[source]
            scale = float(energy_unit) if is_energy else 1.0
        elif source in PRESENT_SOURCES:
            name, scale = PRESENT_SOURCES[source]
        else:
            name, scale = f"source_{source}", 1.0
        if any(name == taken for taken, _ in out):
            name = f"{name}_{len(out)}"  # the same source twice: channel number appended
        out.append((name, scale))
    return tuple(out)


# ---- results ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadProfileInterval:
    """One recorded interval: register values at ``end`` (UTC) and the interval's status.

    ``values`` holds only the channels with a usable reading (in Wh, varh, or the
    snapshot field's unit); a skipped or opted-out channel is absent, never 0.
    """

    end: datetime
    values: Mapping[str, float]
    status: tuple[str, ...] = ()

    def as_dict(self, channels: tuple[str, ...]) -> dict[str, Any]:
        return {
            "end": self.end.isoformat().replace("+00:00", "Z"),
            **{name: self.values.get(name) for name in channels},
            "status": list(self.status),
        }


@dataclass(frozen=True, slots=True)
class LoadProfileLayout:
    """What the meter's load profile looks like (for diagnostics and planning)."""

    data_set: int
    config: DataSetConfig
    sources: tuple[int, ...]
    layout: BlockLayout

    @property
    def interval_minutes(self) -> int:
        return self.config.interval_minutes

    @property
    def block_duration(self) -> timedelta:
        return timedelta(minutes=self.config.interval_minutes * self.config.intervals_per_block)

    def as_dict(self) -> dict[str, Any]:
        return {
            "data_set": self.data_set + 1,
            "blocks": self.config.blocks,
            "intervals_per_block": self.config.intervals_per_block,
            "channels": self.config.channels,
            "interval_minutes": self.interval_minutes,
            "sources": list(self.sources),
            "block_size": self.layout.block_size,
            "header_size": self.layout.header_size,
            "interval_size": self.layout.interval_size,
            "layout_from": "ET21" if self.layout.from_et21 else "BT61",
        }


@dataclass(slots=True)
class LoadProfile:
    """The intervals ending after ``since``, oldest first.

    ``previous`` is the newest usable interval ending at or before ``since`` (the base
    for the first delta), when the meter still holds it. ``available`` is False when the
    meter keeps no load profile. ``ring_wrapped``: blocks were overwritten while they
    were read; their intervals are left out (``lost_blocks`` of them).
    """

    interval_minutes: int = 0
    channels: tuple[str, ...] = ()
    intervals: list[LoadProfileInterval] = field(default_factory=list)
    previous: LoadProfileInterval | None = None
    available: bool = True
    ring_wrapped: bool = False
    lost_blocks: int = 0
    newest_end: datetime | None = None
    layout: LoadProfileLayout | None = None
    reads: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The ``meter history --json`` shape."""
        return {
            "interval_minutes": self.interval_minutes,
            "channels": list(self.channels),
            "intervals": [interval.as_dict(self.channels) for interval in self.intervals],
        }


# ---- the reader ------------------------------------------------------------------


@dataclass(slots=True)
class _Block:
    distance: int  # 0 = newest
    index: int
    sequence: int
    header: BlockHeader | None = None
    first_slot: int = 0  # first slot the sweep reads
    records: dict[int, IntervalRecord] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Unit:
    """A header or an interval at a byte offset of the data table."""

    offset: int
    size: int
    block: _Block
    slot: int | None  # None: the header


class LoadProfileReader:
    """One pass over the meter's load profile, one table read per :meth:`step`.

    ``async for intervals in reader`` (or ``await reader.step()`` until ``reader.done``)
    hands out, after each read, the intervals that became final, oldest first, so a
    caller can interleave history reads with live polls and import what it gets as it
    goes. ``reader.result`` then holds the whole :class:`LoadProfile`.
    """

    def __init__(
        self,
        client: MeterClient,
        since: datetime | None = None,
        *,
        data_set: int = 0,
        progress: ProgressCallback | None = None,
    ) -> None:
        if since is not None and since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        if not 0 <= data_set < MAX_DATA_SETS:
            raise ValueError("data_set is 0..3")
        self._client = client
        self.since = since.astimezone(UTC) if since else None
        self.data_set = data_set
        self._progress = progress
        self.result = LoadProfile()
        self.done = False
        self._reads = 0
        self._total = 4
        self._gen = self._run()

    def __aiter__(self) -> AsyncIterator[list[LoadProfileInterval]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[list[LoadProfileInterval]]:
        while not self.done:
            yield await self.step()

    async def step(self) -> list[LoadProfileInterval]:
        """Do the next table read; the intervals it made final (possibly none)."""
        if self.done:
            return []
        try:
            return await anext(self._gen)
        except StopAsyncIteration:
            self.done = True
            self.result.reads = self._reads
            return []

    async def run(self) -> LoadProfile:
        """Read to the end."""
        while not self.done:
            await self.step()
        return self.result

    # ---- internals ----

    def _report(self) -> None:
        if self._progress is not None:
            self._progress(self._reads, max(self._total, self._reads))

    async def _read(self, table_id: int, offset: int, count: int) -> bytes:
        data = await self._client.read_table(table_id, offset, count)
        self._reads += 1
        self._report()
        return data

    async def _layout(self) -> AsyncIterator[LoadProfileLayout | None]:
        """None after each read but the last; then the layout."""
        cached: LoadProfileLayout | None = getattr(self._client, "load_profile_layout", None)
        if cached is not None and cached.data_set == self.data_set:
            yield cached
            return
        n = self.data_set
        bt61 = await self._read(tables.BT61, 0, BT61_HEADER + BT61_SET * (n + 1))
        end_readings, config = decode_bt61(bt61, n)
        counts = tuple(decode_bt61(bt61, k)[1].channels for k in range(n + 1))
        yield None
        bt62 = await self._read(tables.BT62, 0, sum(3 * c + 1 for c in counts))
        sources = decode_bt62(bt62, counts, n)
        yield None
        layout = compute_layout(config, end_readings=end_readings)
        try:
            et21 = await self._read(tables.ET21, ET21_ELEMENT * n, ET21_HEAD)
            from_et21 = decode_et21(et21, config)
        except ABSENT as err:
            _LOGGER.debug("ET21 not readable (%s); load profile layout computed from BT61", err)
        else:
            if (from_et21.header_size, from_et21.interval_size) != (layout.header_size, layout.interval_size):
                _LOGGER.debug("ET21 layout %s differs from BT61's %s; using ET21", from_et21, layout)
            layout = from_et21
        result = LoadProfileLayout(n, config, sources, layout)
        self._client.load_profile_layout = result
        yield result

    def _unavailable(self, why: str) -> None:
        self.result.available = False
        said: set[str] = self._client.load_profile_said
        if why not in said:
            said.add(why)
            _LOGGER.debug("no load profile: %s", why)

    async def _status(self) -> LoadProfileStatus:
        return decode_bt63(await self._read(tables.BT63, BT63_SET * self.data_set, BT63_SET), 0)

    async def _run(self) -> AsyncIterator[list[LoadProfileInterval]]:
        lp: LoadProfileLayout | None = None
        try:
            async for item in self._layout():
                if item is None:
                    yield []
                lp = item
            yield []
            status = await self._status()
        except ABSENT as err:
            self._unavailable(f"tables not readable ({err})")
            return
        assert lp is not None
        config, layout = lp.config, lp.layout
        identity = self._client.identity
        named = channel_names(lp.sources, identity.energy_unit if identity else 1)
        self.result.layout = lp
        self.result.interval_minutes = config.interval_minutes
        self.result.channels = tuple(name for name, _ in named)
        if not status.active or status.valid_blocks == 0:
            self._unavailable("the data set is not active (BT63)" if not status.active else "no blocks recorded yet")
            return
        if status.last_block >= config.blocks or status.valid_blocks > config.blocks:
            self._client.load_profile_layout = None
            raise DecodeError("BT63 points outside BT61's ring; the layout will be read again")
        yield []
        table = tables.BT64 + self.data_set
        minutes = config.interval_minutes
        nb = config.blocks
        seq0 = status.last_block_sequence

        def block_at(distance: int) -> _Block:
            return _Block(distance, (status.last_block - distance) % nb, seq0 - distance)

        async def read_header(block: _Block) -> BlockHeader:
            data = await self._read(table, block.index * layout.block_size, layout.header_size)
            return decode_block_header(data, config, layout)

        # 1. The newest block's header: the newest end time.
        newest = block_at(0)
        newest.header = await read_header(newest)
        yield []
        if newest.header.last_slot is None:
            self._unavailable("the newest block holds no interval")
            return
        self.result.newest_end = newest.header.end_time
        if self.since is not None and newest.header.end_time <= self.since:
            return  # nothing new

        def start_of(block: _Block) -> datetime:
            assert block.header is not None
            return block.header.slot_end(0, minutes) - timedelta(minutes=minutes)

        # 2. Walk back to the oldest block that covers ``since`` (its first slot ends at or
        # before it), estimating the distance by time but checking each header read.
        oldest = newest
        max_distance = status.valid_blocks - 1
        while self.since is not None and start_of(oldest) + timedelta(minutes=minutes) > self.since:
            if oldest.distance >= max_distance:
                break
            gap = (start_of(oldest) - self.since) / lp.block_duration
            step = max(1, math.ceil(gap))
            candidate = block_at(min(max_distance, oldest.distance + step))
            self._total = self._reads + 3
            candidate.header = await read_header(candidate)
            yield []
            if candidate.header.last_slot is None or candidate.header.end_time > start_of(oldest):
                # Empty, or newer than what it should precede: overwritten. Stop before it.
                _LOGGER.debug("load profile block %d is not older than block %d", candidate.index, oldest.index)
                max_distance = candidate.distance - 1
                if max_distance <= oldest.distance:
                    break
                continue
            oldest = candidate
        if self.since is None and max_distance:
            oldest = block_at(max_distance)  # its header comes with the sweep
        # 3. The sweep: whole headers and whole intervals, oldest block first.
        middle = [block_at(d) for d in range(oldest.distance - 1, 0, -1)]
        blocks = [oldest, *middle, newest] if oldest is not newest else [newest]
        if oldest.header is not None and self.since is not None:
            oldest.first_slot = self._first_slot(oldest, minutes)
        units: list[_Unit] = []
        for block in blocks:
            last = config.intervals_per_block - 1
            if block.header is None:
                units.append(_Unit(block.index * layout.block_size, layout.header_size, block, None))
            else:
                last = block.header.last_slot if block.header.last_slot is not None else -1
            units.extend(
                _Unit(layout.slot_offset(block.index, slot), layout.interval_size, block, slot)
                for slot in range(block.first_slot, last + 1)
            )
        remaining = {id(block): sum(unit.block is block for unit in units) for block in blocks}
        chunks = self._chunks(units)
        at_risk = {b.sequence for b in blocks if b.sequence - (seq0 - nb) <= AT_RISK_BLOCKS}
        final_check = len(blocks) > 1
        self._total = self._reads + len(chunks) + (1 if at_risk else 0) + (1 if final_check else 0)
        self._report()
        pending = list(blocks)
        lost: set[int] = set()
        checked = not at_risk

        def ready() -> list[LoadProfileInterval]:
            """Release the oldest blocks that are read and safe from being overwritten."""
            done: list[_Block] = []
            while pending and not remaining[id(pending[0])] and (checked or pending[0].sequence not in at_risk):
                done.append(pending.pop(0))
            return self._release(done, lost, named, minutes)

        for chunk in chunks:
            start = chunk[0].offset
            data = await self._read(table, start, chunk[-1].offset + chunk[-1].size - start)
            for unit in chunk:
                piece = data[unit.offset - start : unit.offset - start + unit.size]
                if unit.slot is None:
                    unit.block.header = decode_block_header(piece, config, layout)
                else:
                    unit.block.records[unit.slot] = decode_interval(piece, 0, config.channels, layout)
                remaining[id(unit.block)] -= 1
            yield ready()
            if not checked and all(not remaining[id(b)] for b in blocks if b.sequence in at_risk):
                # The blocks a new day could overwrite are read: was one overwritten meanwhile?
                after = await self._status()
                lost |= {s for s in at_risk if s <= after.last_block_sequence - nb}
                checked = True
                yield ready()
        if final_check:
            after = await self._status()
            if after.last_block_sequence != seq0:
                _LOGGER.debug("load profile moved on during the read (block %d -> %d)", seq0, after.last_block_sequence)
            lost |= {b.sequence for b in blocks if b.sequence <= after.last_block_sequence - nb}
        checked = True
        yield ready()

    def _first_slot(self, block: _Block, minutes: int) -> int:
        """The newest processed slot ending at or before ``since`` (0 when none)."""
        assert block.header is not None
        assert self.since is not None
        base = 0
        for slot, processed in enumerate(block.header.processed):
            if processed and block.header.slot_end(slot, minutes) <= self.since:
                base = slot
        return base

    def _chunks(self, units: list[_Unit]) -> list[list[_Unit]]:
        """Consecutive units that are contiguous in the table and fit one reply."""
        limit = self._client.max_read_size
        chunks: list[list[_Unit]] = []
        for unit in units:
            if chunks:
                last = chunks[-1]
                contiguous = last[-1].offset + last[-1].size == unit.offset
                size = unit.offset + unit.size - last[0].offset
                if contiguous and size <= limit:
                    last.append(unit)
                    continue
            chunks.append([unit])
        return chunks

    def _release(
        self, blocks: list[_Block], lost: set[int], named: tuple[tuple[str, float], ...], minutes: int
    ) -> list[LoadProfileInterval]:
        out: list[LoadProfileInterval] = []
        for block in blocks:
            if block.sequence in lost:
                self.result.ring_wrapped = True
                self.result.lost_blocks += 1
                _LOGGER.warning("load profile block %d was overwritten while it was read", block.sequence)
                continue
            header = block.header
            if header is None:
                continue
            for slot, record in sorted(block.records.items()):
                if not header.processed[slot]:
                    continue
                end = header.slot_end(slot, minutes)
                values = {
                    name: raw * scale if scale != 1 else float(raw)
                    for (name, scale), raw, code in zip(named, record.values, record.codes, strict=True)
                    if code not in NO_VALUE
                }
                interval = LoadProfileInterval(end, values, record.status)
                if self.since is not None and end <= self.since:
                    if values and len(values) == len(named):
                        self.result.previous = interval
                    continue
                if self.result.intervals and end <= self.result.intervals[-1].end:
                    _LOGGER.debug("load profile interval %s out of order; skipped", end.isoformat())
                    continue
                out.append(interval)
        self.result.intervals.extend(out)
        return out


async def read_load_profile(
    client: MeterClient,
    since: datetime | None = None,
    *,
    data_set: int = 0,
    progress: ProgressCallback | None = None,
) -> LoadProfile:
    """All intervals ending after ``since`` (everything the meter holds when None)."""
    return await LoadProfileReader(client, since, data_set=data_set, progress=progress).run()
