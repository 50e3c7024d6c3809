"""Power quality (ET09): sags, swells, frequency extremes, phase loss, outages.

Layout (MEP guide "G", printed pages 67-77; every field little-endian):

* ``P = 18 * ET04.53`` (ET04.53 "Max Power Outages Recorded", 10 by default, G p.56-67).
* 0 UINT16 long-outage threshold s, 2 UINT8 sag/surge time threshold min, 3 sag %,
  4 surge %, 5 over-current % (configuration, not read here).
* ``6 + 18 i``: ``ARRAY[ET04.53]`` of outage records, newest first: +0 LTIME_DATE
  power-on (UTC), +6 UINT8 reset cause (3 power failure, 8 brown-out), +7 reserved,
  +8 LTIME_DATE power-off (UTC), +14 UINT32 power-off duration s. The guide prints the
  offsets of record 0 (6, 12, 13, 14, 20).
* ``P+6 + 8 k`` (k = L1, L2, L3): LTIME_DATE of the last sag, UINT16 count at +6;
  ``P+30 + 8 k``: the same for surges (swells).
* P+54 INT32 minimum frequency (mHz) and LTIME_DATE at P+58; P+64 / P+68 the maximum.
* P+74 / 78 / 82 UINT32 over-current counts L1-L3.
* P+86 BOOL(0..2): phase lost now, L1-L3.
* ``P+87 + 8 k``: LTIME_DATE of the last phase loss, UINT16 count at +6.
* P+111 / 115 / 119 NI_FMAT1 (INT32) lowest voltage (mV) of the last sag, L1-L3;
  P+123 / 127 / 131 the highest voltage of the last surge.
* P+135 UINT32 short outages (shorter than the long-outage threshold).
* P+139 UINT32 PQ configuration id (fw >= 2.12), then thresholds and THD records.

The reader takes ONE table read (one ``read_table`` call) per poll: from the newest
outage record (offset 6) to the end of the short-outage count (P+139), 313 bytes with the
default P = 180. That is one MEP request and reply (up to 465 bytes of data); on the
optical port, whose negotiated 2 x 64-byte packets carry 108 bytes a reply, the session
splits it into three request/reply pairs. The whole ET09 (~660 bytes) would be two MEP
replies and seven optical ones, most of it configuration and THD records nobody shows.
``PowerQualityReader(client, with_outage=False)`` reads only P+6..P+139 (133 bytes: one
MEP reply, two optical ones) for a caller that has no use for the last outage; a meter
with more outage records than one MEP reply can span (ET04.53 > 18) still takes one
``read_table`` call, which the session splits.

Counts are "since statistics were reset" and the meter updates them every 120 ms; a
zero date (never happened, or statistics reset) and a date the calendar does not know
decode as None rather than failing the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
import struct
from typing import Final

from nesmeter.errors import DecodeError
from nesmeter.tables import tables

ET04: Final = 0x0800 + 4
ET09: Final = 0x0800 + 9
ET04_OUTAGE_RECORDS: Final = 53  # ET04.53: how many outage records ET09 holds
DEFAULT_OUTAGE_RECORDS: Final = 10  # the guide's default, used when ET04 is refused
OUTAGE_RECORD: Final = 18
FREQUENCY_RANGE_MHZ: Final = (40_000, 70_000)  # any 50 or 60 Hz grid, however disturbed
OUTAGES_START: Final = 6  # ET09.6: the newest outage record
SPAN_END: Final = 139  # P+139: just after the short-outage count
# Errors that mean "this table is not there (for this key) or shorter than documented".


@dataclass(frozen=True, slots=True)
class PhaseEvents:
    """Sags or swells ("surges") on one phase, since the meter's statistics were reset."""

    count: int
    last: datetime | None  # UTC; None when never (all-zero date) or not a calendar date
    voltage_v: float | None  # lowest sag / highest swell voltage of the last event; None when 0


@dataclass(frozen=True, slots=True)
class Outage:
    """One ET09 power outage record (the meter's UTC times)."""

    power_off: datetime | None
    power_on: datetime | None
    duration_s: int
    reset_cause: int  # 3 power failure, 8 brown-out, ...


@dataclass(frozen=True, slots=True)
class PowerQuality:
    """What ET09 says about the supply; per-phase tuples are (L1, L2, L3)."""

    sags: tuple[PhaseEvents, PhaseEvents, PhaseEvents]
    swells: tuple[PhaseEvents, PhaseEvents, PhaseEvents]
    min_frequency_hz: float | None
    min_frequency_time: datetime | None
    max_frequency_hz: float | None
    max_frequency_time: datetime | None
    phase_loss: tuple[bool, bool, bool]  # P+86 bits 0-2: lost now
    phase_loss_counts: tuple[int, int, int]
    short_outages: int
    last_outage: Outage | None  # the newest record; None when none recorded (or not read)
    phase_loss_last: tuple[datetime | None, datetime | None, datetime | None] = (None, None, None)
    over_current_counts: tuple[int, int, int] = (0, 0, 0)


def outage_span(outage_records: int) -> int:
    """``P``: the bytes ET09's outage array takes (18 per record)."""
    if not 0 <= outage_records <= 0xFF:
        raise DecodeError(f"ET04.53 outage records {outage_records} is not a UINT8")
    return OUTAGE_RECORD * outage_records


def read_range(outage_records: int, *, with_outage: bool = True) -> tuple[int, int]:
    """(offset, count) of the one ET09 read: from the newest outage record, or from P+6."""
    p = outage_span(outage_records)
    if with_outage and outage_records:
        return OUTAGES_START, p + SPAN_END - OUTAGES_START
    return p + 6, SPAN_END - 6


def _date(data: bytes, offset: int) -> datetime | None:
    """LTIME_DATE (UTC) at ``offset``; None for all zeros or a date the calendar lacks."""
    when = tables.optional_time_date(data, offset, 6)
    return when.replace(tzinfo=UTC) if when else None


def _phase_events(data: bytes, at: int, voltage_at: int) -> PhaseEvents:
    (count,) = struct.unpack_from("<H", data, at + 6)
    (millivolts,) = struct.unpack_from("<i", data, voltage_at)
    return PhaseEvents(count, _date(data, at), millivolts / 1000 if millivolts > 0 else None)


def _frequency(data: bytes, at: int) -> tuple[float | None, datetime | None]:
    """Decode a recorded frequency extreme; a value no grid has (a reset statistic's INT32 limits, 0) is none."""
    (millihertz,) = struct.unpack_from("<i", data, at)
    if not FREQUENCY_RANGE_MHZ[0] <= millihertz <= FREQUENCY_RANGE_MHZ[1]:
        return None, None
    return millihertz / 1000, _date(data, at + 4)


def decode_outage(data: bytes, offset: int = 0) -> Outage | None:
    """One 18-byte outage record; None when it is all zeros (no outage recorded there)."""
    if len(data) < offset + OUTAGE_RECORD:
        raise DecodeError(f"ET09 outage record: {len(data) - offset} bytes, need {OUTAGE_RECORD}")
    record = data[offset : offset + OUTAGE_RECORD]
    if not any(record) or all(byte == 0xFF for byte in record):
        return None  # never written, or erased
    (duration,) = struct.unpack_from("<I", record, 14)
    if duration == 0xFFFFFFFF:
        return None
    return Outage(power_off=_date(record, 8), power_on=_date(record, 0), duration_s=duration, reset_cause=record[6])


def decode_power_quality(data: bytes, outage_records: int, *, start: int = 0) -> PowerQuality:
    """ET09 from table offset ``start`` (0 by default) up to P+139.

    The reader passes what :func:`read_range` chose: ``start`` 6 (the newest outage record
    first) or P+6 (no outage record: ``last_outage`` is None).
    """
    p = outage_span(outage_records)
    if not 0 <= start <= p + 6:
        raise DecodeError(f"ET09 data from offset {start}: the power quality fields start at {p + 6}")
    if len(data) < p + SPAN_END - start:
        raise DecodeError(f"ET09: {len(data)} bytes from offset {start}, need {p + SPAN_END - start}")
    base = p - start  # ET09 offset P+n is data[base + n]
    last_outage = decode_outage(data, OUTAGES_START - start) if outage_records and start <= OUTAGES_START else None
    sags = tuple(_phase_events(data, base + 6 + 8 * k, base + 111 + 4 * k) for k in range(3))
    swells = tuple(_phase_events(data, base + 30 + 8 * k, base + 123 + 4 * k) for k in range(3))
    min_hz, min_time = _frequency(data, base + 54)
    max_hz, max_time = _frequency(data, base + 64)
    over_current = struct.unpack_from("<3I", data, base + 74)
    lost = data[base + 86]
    loss_counts = tuple(struct.unpack_from("<H", data, base + 93 + 8 * k)[0] for k in range(3))
    loss_last = tuple(_date(data, base + 87 + 8 * k) for k in range(3))
    (short_outages,) = struct.unpack_from("<I", data, base + 135)
    return PowerQuality(
        sags=(sags[0], sags[1], sags[2]),
        swells=(swells[0], swells[1], swells[2]),
        min_frequency_hz=min_hz,
        min_frequency_time=min_time,
        max_frequency_hz=max_hz,
        max_frequency_time=max_time,
        phase_loss=(bool(lost & 1), bool(lost & 2), bool(lost & 4)),
        phase_loss_counts=(loss_counts[0], loss_counts[1], loss_counts[2]),
        short_outages=short_outages,
        last_outage=last_outage,
        phase_loss_last=(loss_last[0], loss_last[1], loss_last[2]),
        over_current_counts=(over_current[0], over_current[1], over_current[2]),
    )
