"""Readers of the alarm bits (BT03) and the event log (BT70/BT71, BT74), one table read at a time.

The decoders are in ``nesmeter.tables.events``; these readers decide what to read next and
take a ``TableSource`` (the client), so they run between live polls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
import logging
from typing import TYPE_CHECKING

from nesmeter.errors import ABSENT, RefusedError
from nesmeter.tables import tables
from nesmeter.tables.events import (
    BT00_MFG_STATUS_LENGTH,
    BT03,
    BT70,
    BT71,
    BT71_SIZE,
    BT74,
    BT74_HEADER,
    MAX_PASSES,
    SEQUENCE_MODULUS,
    HistoryEntry,
    LogDimensions,
    LogHeader,
    MeterStatus,
    decode_bt03,
    decode_bt71,
    decode_bt74_header,
    decode_record,
    ring_runs,
)

if TYPE_CHECKING:
    from nesmeter.client.source import TableSource

_LOGGER = logging.getLogger(__name__)


class StatusReader:
    """BT03, sized by BT00.17 (read once; 4 bytes, the optical guide's value, if refused).

    Whether the meter has alarm bits is decided by the first read only: a refusal later
    (busy, a transient "operation not possible") costs that read, not the alarm sensors.
    """

    def __init__(self, client: TableSource) -> None:
        """Read BT03 through ``client``; its size is learned on the first read."""
        self._client = client
        self.size: int | None = None
        self.available: bool | None = None

    async def read(self) -> MeterStatus | None:
        """Read the alarm bits; None for a meter that refuses BT03, or when this read was refused."""
        if self.available is False:
            return None
        if self.size is None:
            try:
                length = (await self._client.read_table(tables.BT00, BT00_MFG_STATUS_LENGTH, 1))[0]
            except ABSENT:
                length = 4
            self.size = 4 + length
        try:
            status = decode_bt03(await self._client.read_table(BT03, 0, self.size))
        except ABSENT as err:
            if self.available is None:
                _LOGGER.debug("no alarm bits (BT03: %s)", err)
                self.available = False
            else:
                _LOGGER.debug("alarm bits not read this time (BT03: %s)", err)
            return None
        self.available = True
        return status


class EventLogReader:
    """New event log entries, one table read per :meth:`step`.

    ``after_sequence`` is the newest sequence already seen (None: everything the log
    holds is new). A pass starts with the header and ends when the header stands still;
    its entries come back from the step that ends it, oldest first, and
    ``after_sequence`` moves to the header's. ``available`` is False for a meter without
    a history log (BT71 and BT70 refused, or no entries configured).
    """

    def __init__(self, client: TableSource, after_sequence: int | None = None) -> None:
        """Read the log through ``client``; entries up to ``after_sequence`` count as seen."""
        self._client = client
        self.after_sequence = after_sequence
        self.dimensions: LogDimensions | None = None
        self.available: bool | None = None
        self.reads = 0
        self._pass: AsyncIterator[list[HistoryEntry] | None] | None = None

    @property
    def in_pass(self) -> bool:
        """Whether a pass is under way (steps would continue it)."""
        return self._pass is not None

    async def dimensions_read(self) -> bool:
        """Read the log's dimensions (once); whether the meter keeps a history log.

        TLS required is no answer about the log: it propagates.
        """
        if self.available is None:
            before = self.reads
            try:
                dims = await self._dimensions()
            except ABSENT as err:
                tried = "BT71 refused, BT70" if self.reads - before > 1 else "BT71"
                _LOGGER.debug("no event log (%s: %s)", tried, err)
                self.available = False
            else:
                self.dimensions = dims
                self.available = dims.history_entries > 0
        return self.available

    async def _dimensions(self) -> LogDimensions:
        """BT71; a meter that refuses it keeps them in BT70 (firmware 2.01 and 2.10, O p.49-50).

        BT70 holds the maximum dimensions, BT71 the configured ones; the guide has BT74 read
        by BT70 on those firmware versions, by BT71 from 2.12.
        """
        try:
            return decode_bt71(await self._read(BT71, 0, BT71_SIZE))
        except RefusedError as err:
            dims = decode_bt71(await self._read(BT70, 0, BT71_SIZE), "BT70")
            _LOGGER.debug("event log dimensions from BT70 (BT71 refused: %s), as firmware 2.01/2.10 keep them", err)
            return dims

    async def step(self) -> list[HistoryEntry] | None:
        """One read; the new entries when this read ended a pass, else None."""
        if self._pass is None:
            self._pass = self._run()
        try:
            result = await anext(self._pass)
        except StopAsyncIteration:
            result = []
        except BaseException:
            self._pass = None
            raise
        if result is not None:
            self._pass = None
        return result

    def abort(self) -> None:
        """Forget a pass cut short (a failed read); the next step starts afresh."""
        self._pass = None

    async def read_new(self) -> list[HistoryEntry]:
        """Read a whole pass at once."""
        while (entries := await self.step()) is None:
            pass
        return entries

    async def _read(self, table_id: int, offset: int, count: int) -> bytes:
        self.reads += 1
        return await self._client.read_table(table_id, offset, count)

    async def _header(self) -> LogHeader:
        return decode_bt74_header(await self._read(BT74, 0, BT74_HEADER))

    async def _run(self) -> AsyncIterator[list[HistoryEntry] | None]:
        if self.available is None:
            await self.dimensions_read()
            yield None
        if not self.available or self.dimensions is None:
            yield []
            return
        dims = self.dimensions
        header = await self._header()
        found: dict[int, HistoryEntry] = {}
        floor = self.after_sequence  # entries up to here are known (None: nothing yet)
        for _ in range(MAX_PASSES):
            if header.valid_entries == 0 or header.last_sequence == floor:
                floor = header.last_sequence if header.valid_entries or floor is None else floor
                break
            wanted = header.valid_entries
            if floor is not None:
                wanted = min(wanted, (header.last_sequence - floor) % SEQUENCE_MODULUS)
            raw: list[tuple[bytes, int]] = []
            per_read = max(1, self._client.max_read_size // dims.record_size)
            for first, count in ring_runs(header.last_element, wanted, dims.history_entries):
                for start in range(first, first + count, per_read):
                    n = min(per_read, first + count - start)
                    yield None
                    data = await self._read(BT74, BT74_HEADER + start * dims.record_size, n * dims.record_size)
                    raw.append((data, n))
            yield None
            after = await self._header()
            for data, n in raw:
                for k in range(n):
                    entry = decode_record(data, k * dims.record_size, dims, after.last_sequence)
                    if _within(entry.sequence, floor, after.last_sequence):
                        found[entry.sequence] = entry
            # Everything up to the header the records were located by has been read.
            floor = header.last_sequence
            if after.last_sequence == header.last_sequence:
                break
            _LOGGER.debug("event log moved during the read (%d -> %d)", header.last_sequence, after.last_sequence)
            header = after
        # Hand out what is certain (still moving after MAX_PASSES: the rest comes next pass).
        assert floor is not None  # set by the first pass when nothing had been seen
        certain = {seq: entry for seq, entry in found.items() if _within(seq, self.after_sequence, floor)}
        previous, self.after_sequence = self.after_sequence, floor
        start = previous if previous is not None else floor + 1
        yield [certain[seq] for seq in sorted(certain, key=lambda seq: (seq - start) % SEQUENCE_MODULUS)]


def _within(sequence: int, floor: int | None, newest: int) -> bool:
    """``floor < sequence <= newest`` on the 32-bit ring (no floor: up to newest, half a ring back)."""
    if floor is None:
        return (newest - sequence) % SEQUENCE_MODULUS < SEQUENCE_MODULUS // 2
    return 0 < (sequence - floor) % SEQUENCE_MODULUS <= (newest - floor) % SEQUENCE_MODULUS
