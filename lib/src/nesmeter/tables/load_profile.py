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

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
import struct
from typing import Any, Final

from nesmeter.errors import DecodeError
from nesmeter.tables import tables
from nesmeter.tables.snapshot import PRESENT_SOURCES, SUMMATION_SOURCES

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
        """The interval length in minutes (code 84 is a day)."""
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
        """Return the byte offset of ``slot`` of ``block`` in the data table."""
        return block * self.block_size + self.header_size + slot * self.interval_size


def compute_layout(config: DataSetConfig, *, end_readings: bool = False) -> BlockLayout:
    """Compute the layout from BT61 alone (G p.239; end readings only if BT61.4.4)."""
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
    """Decode data set ``data_set``'s status in BT63."""
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
        """The newest slot that holds an interval, None in an empty block."""
        for slot in range(len(self.processed) - 1, -1, -1):
            if self.processed[slot]:
                return slot
        return None

    def slot_end(self, slot: int, minutes: int) -> datetime:
        """When slot ``slot`` ends: counted back from the block's newest recorded slot."""
        last = self.last_slot
        return self.end_time - timedelta(minutes=minutes * ((last if last is not None else -1) - slot))


def decode_block_header(data: bytes, config: DataSetConfig, layout: BlockLayout) -> BlockHeader:
    """Decode a block header; simple status: a bit per slot, slot ``j`` = byte ``j // 8`` bit ``j % 8``."""
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
        """The interval's status names: the common flags, then each channel's code."""
        names = [name for bit, name in COMMON_FLAGS if self.common & bit]
        for code in self.codes:
            name = CHANNEL_STATUS.get(code, f"status_{code}") if code else None
            if name and name not in names:
                names.append(name)
        return tuple(names)


def decode_interval(data: bytes, offset: int, channels: int, layout: BlockLayout) -> IntervalRecord:
    """Decode the extended status: byte 0 high nibble common, then channel k in nibble k + 1 (G p.240)."""
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
        """Return the interval as plain JSON types, a value per channel (None when absent)."""
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
        """The interval length in minutes."""
        return self.config.interval_minutes

    @property
    def block_duration(self) -> timedelta:
        """The time one block covers."""
        return timedelta(minutes=self.config.interval_minutes * self.config.intervals_per_block)

    def as_dict(self) -> dict[str, Any]:
        """Return the layout as plain JSON types (diagnostics)."""
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
        """Return the ``nesmeter history --json`` shape."""
        return {
            "interval_minutes": self.interval_minutes,
            "channels": list(self.channels),
            "intervals": [interval.as_dict(self.channels) for interval in self.intervals],
        }


# ---- the reader ------------------------------------------------------------------
