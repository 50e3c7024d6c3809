"""Billing registers: the active tariff (BT55), tier energies and demands (BT23), self-reads (BT26).

Layouts (MEP guide "G", printed pages; ``protocol/MEP.md`` §14.4-14.7, §14.11):

* BT55 Local Clock State (G p.229-231), 9 bytes: 0 LTIME_DATE (local: time zone and DST
  applied), 6 day of week (bits 0-2) and DST in effect (bit 3), 7 LE16: bits 0-2 current
  tier (0-based), bits 6-7 tier drive, bits 8-11 special schedule, bits 12-15 season.
* BT23 (G p.207-211): ``A`` = 1 byte of demand resets when BT21.0 bit 2, then the total
  block and BT21.7 tier blocks of the same layout: summations (INT32 each, in BT22's
  order), then BT21.4 demand records, then coincident records. A demand record is
  ``[BT21.6 x STIME_DATE if BT21.0 bit 1] [INT32 cumulative if bit 4] [INT32 continuous
  cumulative if bit 5] BT21.6 x INT32 demand`` (the guide's offsets B, B+5*O, B+5*O+4,
  B+5*O+8). BT22 names each demand's source and whether it is a minimum or a maximum.
* BT26 Self-Read Data (G p.212-214): a 6-byte header (0 flags, 1 valid entries, 2 last
  entry element, 3 LE16 last sequence, 5 unread), then BT21.2 entries of ``[UINT16 BIDN
  if BT21.4 != 0] STIME_DATE season(1) <a BT23 image>``. The guide's own offsets (BIDN 6,
  time 8, season 13, data 14) confirm the BIDN only on meters with demands.

STIME_DATE is ``YY MM DD hh mm`` (year 2000 + YY), the meter's local time. A zero or
impossible date means "never happened" on a meter, so it decodes to ``None`` rather than
failing the whole table.

Why one read per call: a house meter allows about one table read per second on MEP and
the live poll needs most of them; billing values change at most every few minutes
(tier, demand) or daily (self-reads), so the caller spreads these reads out. Every read
is sized to fit one request/reply (``MeterClient.max_read_size``, or the exchanges the
caller allows). The tier blocks are read in groups that each fit (``tier_spans``): one
read on a house meter, several on a demand meter (196-byte blocks) or an 8-tier meter on
the optical port, so every tier is read. The demand records of a layout too long for
one read are cut to the ones that fit, never a failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
import struct
from typing import TYPE_CHECKING, Final

from nesmeter.tables import tables

if TYPE_CHECKING:
    from nesmeter.tables.identity import MeterIdentity


BT26: Final = 26
BT55_SIZE: Final = 9
BT26_HEADER: Final = 6
STIME_DATE_SIZE: Final = 5
BIDN_SIZE: Final = 2
TIER_DRIVES: Final = ("calendar", "manual", "manual_hold", "override")  # BT55.7 bits 6-7
IMPORT_SOURCE: Final = 0  # BT22 summation source: forward active Wh
EXPORT_SOURCE: Final = 1  # reverse active Wh
# A demand register a reset left at an INT32 limit (so the next demand replaces it) holds
# no demand: shown as none, never as 2.1 GW.
INT32_LIMITS: Final = frozenset({-(2**31), 2**31 - 1})
# BT22 demand source id -> (name, SI unit); G p.204-207.
DEMAND_SOURCES: Final[dict[int, tuple[str, str]]] = {
    8: ("power_import", "W"),
    9: ("power_export", "W"),
    10: ("reactive_power_import", "var"),
    11: ("reactive_power_export", "var"),
    81: ("power_import_post_ct", "W"),  # 81-84: the same after the CT/VT ratio (G p.204)
    82: ("power_export_post_ct", "W"),
    83: ("reactive_power_import_post_ct", "var"),
    84: ("reactive_power_export_post_ct", "var"),
    104: ("reactive_power_q1", "var"),
    105: ("reactive_power_q2", "var"),
    106: ("reactive_power_q3", "var"),
    107: ("reactive_power_q4", "var"),
}


# ---- dates -----------------------------------------------------------------------


def decode_stime_date(data: bytes, offset: int = 0) -> datetime | None:
    """STIME_DATE (YY MM DD hh mm, local): ``None`` when all zero or not a real date."""
    return tables.optional_time_date(data, offset, STIME_DATE_SIZE)


# ---- BT55 ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TariffState:
    """BT55: the meter's local clock and which tariff tier its energy goes to now."""

    local_time: datetime | None  # naive meter local time (LTIME_DATE), None when invalid/all zero
    tier: int  # 0-based current tier (the LCD shows tier + 1)
    tier_drive: str  # one of TIER_DRIVES
    special_schedule: int
    season: int
    dst: bool


def decode_bt55(data: bytes) -> TariffState:
    """BT55 (9 bytes). A blank clock (a meter never set) still gives the tier."""
    tables._need(data, BT55_SIZE, "BT55")
    (status,) = struct.unpack_from("<H", data, 7)
    return TariffState(
        local_time=tables.optional_time_date(data, 0, 6),
        tier=status & 0x07,
        tier_drive=TIER_DRIVES[(status >> 6) & 0x03],
        special_schedule=(status >> 8) & 0x0F,
        season=(status >> 12) & 0x0F,
        dst=bool(data[6] & 0x08),
    )


# ---- BT23 tier blocks ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierEnergy:
    """Active energy registered while one tier was active (Wh, energy register unit applied)."""

    tier: int  # 0-based
    energy_import_wh: float | None  # None when BT22 maps no import summation
    energy_export_wh: float | None


def energy_indices(sources: tuple[int, ...]) -> tuple[int | None, int | None]:
    """Return the BT23 summation index of import and export energy (BT22 order), None if absent."""
    return (
        sources.index(IMPORT_SOURCE) if IMPORT_SOURCE in sources else None,
        sources.index(EXPORT_SOURCE) if EXPORT_SOURCE in sources else None,
    )


@dataclass(frozen=True, slots=True)
class TierSpan:
    """One partial BT23 read: the import/export summations of ``tiers`` blocks from ``first_tier``.

    It runs from the lowest of the two summations in block ``first_tier`` to the highest
    in the group's last block (the other registers in between come along: one read is
    cheaper than one per block).
    """

    offset: int
    count: int
    tiers: int
    first_index: int  # the lowest summation index read in each block
    first_tier: int = 0  # 0-based tier of the group's first block


def tier_spans(dims: tables.RegisterDimensions, sources: tuple[int, ...], max_read: int) -> tuple[TierSpan, ...]:
    """Plan the reads that together cover every tier block, each at most ``max_read`` bytes.

    Consecutive blocks are grouped, as many to a read as fit, so a meter whose tiers fit
    one reply (a house meter on either port) still costs one read; a demand meter's
    196-byte blocks or an 8-tier meter on the optical port take two or more. Empty when
    there is nothing to read: no tiers, neither import nor export in BT22, or not even
    one block's two registers fit ``max_read``.
    """
    indices = [index for index in energy_indices(sources) if index is not None]
    if not dims.tiers or not indices:
        return ()
    low, high = min(indices), max(indices)
    block = dims.register_block_size
    width = 4 * (high - low + 1)
    if width > max_read:
        return ()
    per_read = min(dims.tiers, (max_read - width) // block + 1)
    spans = []
    for first in range(0, dims.tiers, per_read):
        tiers = min(per_read, dims.tiers - first)
        offset = dims.summations_offset + block * (first + 1) + 4 * low
        spans.append(TierSpan(offset, block * (tiers - 1) + width, tiers, low, first))
    return tuple(spans)


def decode_tiers(
    data: bytes, dims: tables.RegisterDimensions, identity: MeterIdentity, span: TierSpan
) -> tuple[TierEnergy, ...]:
    """Decode the tier energies from the bytes ``span`` describes (tiers numbered from ``span.first_tier``).

    Pure: it takes the bytes, so it is tested against hand-worked layouts and fuzzed
    without a meter.
    """
    tables._need(data, span.count, "BT23 tier blocks")
    import_index, export_index = energy_indices(identity.summation_sources)
    block = dims.register_block_size
    unit = float(identity.energy_unit)

    def energy(position: int, index: int | None) -> float | None:
        if index is None:
            return None
        raw: int = struct.unpack_from("<i", data, position * block + 4 * (index - span.first_index))[0]
        return raw * unit

    return tuple(
        TierEnergy(span.first_tier + position, energy(position, import_index), energy(position, export_index))
        for position in range(span.tiers)
    )


# ---- BT23 demand records ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemandValue:
    """One demand register of BT23's total block (occurrence 0)."""

    index: int  # demand number in the BT23 block, 0-based
    source: int  # its BT22 demand source id (-1 when BT22 could not be read)
    name: str
    unit: str  # "W", "var", or "" for sources without a known unit
    value: float | None  # SI: the maximum (or minimum) of occurrence 0; None: reset, none yet
    time: datetime | None  # naive local time of occurrence 0, when the layout has times
    maximum: bool = True  # BT22's min/max flag (True: a maximum demand)
    cumulative: float | None = None  # cumulative demand (BT21.0 bit 4), SI


@dataclass(frozen=True, slots=True)
class Demands:
    """BT23's demand-reset counter and the total block's demand registers."""

    resets: int | None  # BT23 byte 0 when BT21.0 bit 2
    values: tuple[DemandValue, ...]


@dataclass(frozen=True, slots=True)
class DemandSelection:
    """BT22's demand part: the source of each demand and whether it is a maximum."""

    sources: tuple[int, ...]
    maximum: tuple[bool, ...]


def bt22_demand_span(dims: tables.RegisterDimensions) -> tuple[int, int]:
    """(offset, count) of BT22's demand sources and min/max flags."""
    return dims.summations, dims.demands + (dims.demands + 7) // 8


def decode_bt22_demands(data: bytes, dims: tables.RegisterDimensions) -> DemandSelection:
    """Decode the bytes ``bt22_demand_span`` reads (flags: bit d of the set = demand d, 1 = maximum)."""
    _offset, count = bt22_demand_span(dims)
    tables._need(data, count, "BT22 demand selection")
    flags = data[dims.demands : count]
    return DemandSelection(
        sources=tuple(data[: dims.demands]),
        maximum=tuple(bool(flags[d // 8] >> (d % 8) & 1) for d in range(dims.demands)),
    )


def demand_name(source: int) -> tuple[str, str]:
    """(name, unit) of a demand source id."""
    return DEMAND_SOURCES.get(source, (f"source_{source}", ""))


@dataclass(frozen=True, slots=True)
class DemandSpan:
    """One partial BT23 read from the reset counter (or the first record) over ``demands`` records."""

    offset: int
    count: int
    demands: int


def demand_span(dims: tables.RegisterDimensions, max_read: int) -> DemandSpan | None:
    """Plan the read for as many of the total block's demand records as one reply carries."""
    if not dims.demands or not dims.occurrences:
        return None
    records = dims.summations_offset + 4 * dims.summations
    start = 0 if dims.has_demand_reset_counter else records
    demands = dims.demands
    while demands > 0 and records - start + demands * dims.demand_record_size > max_read:
        demands -= 1
    if demands == 0:
        return None
    return DemandSpan(start, records - start + demands * dims.demand_record_size, demands)


def _demand(data: bytes, at: int) -> float | None:
    (raw,) = struct.unpack_from("<i", data, at)
    return None if raw in INT32_LIMITS else float(raw)


def decode_demands(
    data: bytes, dims: tables.RegisterDimensions, span: DemandSpan, selection: DemandSelection | None
) -> Demands:
    """Decode the demand records from the bytes ``span`` describes (``selection``: BT22, if read)."""
    tables._need(data, span.count, "BT23 demand records")
    first = dims.summations_offset + 4 * dims.summations - span.offset
    occurrences = dims.occurrences
    values = []
    for index in range(span.demands):
        at = first + index * dims.demand_record_size
        when: datetime | None = None
        if dims.flags1 & 0x02:
            when = decode_stime_date(data, at)
            at += STIME_DATE_SIZE * occurrences
        cumulative: float | None = None
        if dims.flags1 & 0x10:
            cumulative = _demand(data, at)
            at += 4
        if dims.flags1 & 0x20:
            at += 4  # continuous cumulative demand: cumulative plus the present maximum
        value = _demand(data, at)
        if value is None:
            when = None  # the stamp of a reset register is the reset's, not a demand's
        if selection is not None and index < len(selection.sources):
            source, maximum = selection.sources[index], selection.maximum[index]
            name, unit = demand_name(source)
        else:
            source, maximum, name, unit = -1, True, f"demand_{index}", ""
        values.append(DemandValue(index, source, name, unit, value, when, maximum, cumulative))
    resets = data[0] if dims.has_demand_reset_counter and span.offset == 0 else None
    return Demands(resets, tuple(values))


# ---- BT26 ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelfReadHeader:
    """BT26's header: how many self-reads are valid and where the newest is."""

    valid: int
    last_element: int
    last_sequence: int


def decode_bt26_header(data: bytes) -> SelfReadHeader:
    """Decode BT26's header: valid entries, the last entry and its sequence."""
    tables._need(data, BT26_HEADER, "BT26 header")
    _flags, valid, last, sequence, _unread = struct.unpack_from("<BBBHB", data)
    return SelfReadHeader(valid, last, sequence)


def self_read_entry_size(dims: tables.RegisterDimensions) -> int:
    """``(2 if BT21.4 else 0) + 6 + size(BT23)``."""
    return (BIDN_SIZE if dims.demands else 0) + STIME_DATE_SIZE + 1 + dims.bt23_size


@dataclass(frozen=True, slots=True)
class SelfRead:
    """The newest self-read: when, which season, and the total block's active energies."""

    sequence: int
    time: datetime | None  # naive local time
    season: int
    energy_import_wh: float | None  # total block, energy unit applied
    energy_export_wh: float | None
    bidn: int | None = None  # Billing Interface Definition Number (meters with demands)


def self_read_span(
    header: SelfReadHeader, dims: tables.RegisterDimensions, sources: tuple[int, ...]
) -> tuple[int, int]:
    """(offset, count) of the newest entry's head and total import/export summations."""
    indices = [index for index in energy_indices(sources) if index is not None]
    head = (BIDN_SIZE if dims.demands else 0) + STIME_DATE_SIZE + 1
    count = head + (dims.summations_offset + 4 * (max(indices) + 1) if indices else 0)
    return BT26_HEADER + header.last_element * self_read_entry_size(dims), count


def decode_self_read(data: bytes, header: SelfReadHeader, identity: MeterIdentity) -> SelfRead:
    """Decode the bytes ``self_read_span`` reads (the start of one BT26 entry)."""
    dims = identity.dimensions
    _offset, count = self_read_span(header, dims, identity.summation_sources)
    tables._need(data, count, "BT26 entry")
    at, bidn = 0, None
    if dims.demands:
        (bidn,) = struct.unpack_from("<H", data, 0)
        at = BIDN_SIZE
    when = decode_stime_date(data, at)
    season = data[at + STIME_DATE_SIZE]
    registers = at + STIME_DATE_SIZE + 1 + dims.summations_offset
    import_index, export_index = energy_indices(identity.summation_sources)
    unit = float(identity.energy_unit)

    def energy(index: int | None) -> float | None:
        if index is None:
            return None
        raw: int = struct.unpack_from("<i", data, registers + 4 * index)[0]
        return raw * unit

    return SelfRead(header.last_sequence, when, season, energy(import_index), energy(export_index), bidn)


# ---- reading ---------------------------------------------------------------------
