"""The load profile reader: BT61-BT64 and ET21, one table read per step.

The decoders and result types are in ``nesmeter.tables.load_profile`` (whose docstring has
the layouts and the reading order); the reader takes a ``TableSource`` (the client).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
import logging
import math
from typing import TYPE_CHECKING

from nesmeter.errors import ABSENT, DecodeError
from nesmeter.tables import tables
from nesmeter.tables.load_profile import (
    AT_RISK_BLOCKS,
    BT61_HEADER,
    BT61_SET,
    BT63_SET,
    ET21_ELEMENT,
    ET21_HEAD,
    MAX_DATA_SETS,
    NO_VALUE,
    BlockHeader,
    IntervalRecord,
    LoadProfile,
    LoadProfileInterval,
    LoadProfileLayout,
    LoadProfileStatus,
    channel_names,
    compute_layout,
    decode_block_header,
    decode_bt61,
    decode_bt62,
    decode_bt63,
    decode_et21,
    decode_interval,
)
from nesmeter.tables.snapshot import scaled

if TYPE_CHECKING:
    from nesmeter.client.source import TableSource

_LOGGER = logging.getLogger(__name__)


ProgressCallback = Callable[[int, int], None]


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
        client: TableSource,
        since: datetime | None = None,
        *,
        data_set: int = 0,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Read the intervals ending after ``since`` (all the meter holds when None) of ``data_set``."""
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
        """Iterate the steps: each yields the intervals that read made final."""
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
        """Return the newest processed slot ending at or before ``since`` (0 when none)."""
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
                    name: float(scaled(raw, scale))
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
    client: TableSource,
    since: datetime | None = None,
    *,
    data_set: int = 0,
    progress: ProgressCallback | None = None,
) -> LoadProfile:
    """All intervals ending after ``since`` (everything the meter holds when None)."""
    return await LoadProfileReader(client, since, data_set=data_set, progress=progress).run()
