"""The simulated meter's billing tables: BT55 (tariff state), BT23 tier blocks and demand records, BT26.

Local time is the model's UTC time plus one hour, no DST (a fixed zone keeps tests
deterministic; the guide's BT55 is DST- and zone-adjusted, p.229). Model time starts at
the wall clock when the image is made and runs at the image's ``speed``.

* Default meter: tier 0 carries all energy (a single-tariff meter), BT55 says tier 0,
  season 0, calendar drive; the tier blocks are byte for byte what ``MeterImage`` wrote
  before this module existed (tier 0 is "total minus the other tiers", all zero).
* ``tou``: the tier follows a daily calendar (``CALENDAR``) by model local time; energy
  accrues into the active tier's block, tier 0 holding the rest, so the tiers always sum
  to the total. ``switch_tier`` changes the tier at run time (tests) and logs a
  ``tier_switch`` event like the meter's history log would.
* ``8-tiers``: firmware 3.70 or later with 8 tiers (BT20.7 = BT21.7 = 8, BT23 sized to
  it) whose tiers 1-7 have each counted a different share already, so a tier read from
  the wrong block shows. Combines with the others (``demand``: 9 blocks of 196 bytes).
* ``self-reads`` (BT21.2 = 12) and ``demand`` (whose guide BT21 says 12 self-reads):
  BT26 holds ``HISTORY_DAYS`` daily midnight self-reads, so the
  12-slot ring has wrapped; ``self_read`` takes one now. Each entry is what the meter
  copies: ``[BIDN]`` STIME_DATE season and the whole BT23 image.
* Layouts with demands: the demand records of every block hold plausible maxima with
  their times (the reset counter byte and summations stay ``MeterImage``'s); BT22's
  demand selection names real sources (fwd/rev W, import/export var, Q1-Q4 var), all
  maxima. Coincident records keep ``MeterImage``'s 0xA5 filler.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import struct
from typing import TYPE_CHECKING, Final

from nesmeter.sim.sim_host import ENERGY_SUMMATIONS
from nesmeter.tables import tables
from nesmeter.tables.billing import BIDN_SIZE, BT26, BT26_HEADER, STIME_DATE_SIZE

if TYPE_CHECKING:
    from nesmeter.sim.sim_host import ImageHost

TABLE_IDS: Final = frozenset({tables.BT55, BT26})
VARIANTS: Final[dict[str, str]] = {
    "tou": "time-of-use: the tier follows a daily calendar (0 until 07, 1 until 17, 2 until 21, then 0)",
    "self-reads": "12 self-read slots (BT21.2) with 14 daily self-reads in BT26, the ring wrapped",
    "8-tiers": "firmware 3.70+ with 8 tiers (BT21.7 = 8), each of tiers 1-7 holding a share of the energy",
}
LOCAL_OFFSET: Final = timedelta(hours=1)
CALENDAR: Final = ((0, 0), (7, 1), (17, 2), (21, 0))  # (from local hour, tier)
SELF_READ_SLOTS: Final = 12
HISTORY_DAYS: Final = 14
FIRST_SEQUENCE: Final = 87  # the 14 history self-reads end at sequence 100
BIDN: Final = 0x0107
# Per day of history: import, export, reactive import, reactive export (Wh / varh).
DAILY: Final = (9_800.0, 3_100.0, 150.0, 1_900.0)
SIM_DEMAND_SOURCES: Final = (8, 9, 10, 11, 104, 105, 106, 107)
# Maxima the meter starts with: source -> (value W/var, days before the start, local hour, minute).
INITIAL_DEMANDS: Final[dict[int, tuple[int, int, int, int]]] = {
    8: (2_650, 1, 18, 15),
    9: (1_820, 3, 12, 45),
    10: (420, 2, 7, 30),
    11: (610, 1, 18, 15),
    104: (380, 2, 7, 30),
    105: (45, 5, 3, 0),
    106: (25, 6, 22, 15),
    107: (590, 1, 18, 15),
}
EVENT_TIER_SWITCH: Final = "tier_switch"
EVENT_SELF_READ: Final = "self_read"

TOU_HISTORY_SHARES: Final = {1: 0.35, 2: 0.2}  # of the registers so far, counted in tiers 1 and 2
EIGHT_TIERS: Final = 8  # BT21.7's largest value (firmware 3.70 and later)
EIGHT_TIER_HISTORY_SHARES: Final = {tier: 0.02 * tier for tier in range(1, EIGHT_TIERS)}  # 2 % .. 14 %
Energies = list[float]  # import Wh, export Wh, reactive import varh, reactive export varh


@dataclass(frozen=True, slots=True)
class SimSelfRead:
    """One self-read as the simulator took it (registers as the client reads them, in Wh)."""

    sequence: int
    element: int
    time: datetime
    season: int
    energy_import_wh: float
    energy_export_wh: float


@dataclass(frozen=True, slots=True)
class SimDemand:
    """A demand register's model value (the total block's)."""

    source: int
    value: int
    time: datetime | None


def calendar_tier(hour: int) -> int:
    """Return the tier the ``tou`` calendar gives ``hour`` (local time)."""
    tier = 0
    for start, scheduled in CALENDAR:
        if hour >= start:
            tier = scheduled
    return tier


class SimBilling:
    """BT55, BT26 and the billing parts of BT23 for one ``MeterImage``."""

    def __init__(self, image: ImageHost) -> None:
        """Add BT55 (and later BT26) to ``image``; variants come with :meth:`configure`."""
        self.image = image
        self.calendar = False
        self.tier = 0
        self.drive = 0
        self.season = 0
        self.special_schedule = 0
        self.elapsed = 0.0
        self._start_local = datetime.now(UTC).replace(tzinfo=None, microsecond=0) + LOCAL_OFFSET
        # Energy accrued in tiers 1..7 (tier 0 is the total minus these).
        self._accrued: list[Energies] = [[0.0] * 4 for _ in range(8)]
        self._last_totals: Energies | None = None
        self._calendar_tier: int | None = None
        self.self_reads: list[SimSelfRead] = []
        self.sequence = FIRST_SEQUENCE - 1
        # (block, demand index) -> (value, local time); block 0 is the total, t + 1 tier t.
        self.maxima: dict[tuple[int, int], tuple[int, datetime | None]] = {}
        image.tables[tables.BT55] = bytearray(9)

    # ---- configuration -----------------------------------------------------------

    def configure(self, variants: Iterable[str]) -> None:
        """Apply the chosen variants; only those touch tables (a replayed trace keeps its own)."""
        chosen = set(variants)
        if "8-tiers" in chosen and tables.BT21 in self.image.tables:
            self._eight_tiers()
        bt21 = self.image.tables.get(tables.BT21)
        if "self-reads" in chosen and bt21 is not None:
            bt21[2] = SELF_READ_SLOTS
        if "tou" in chosen:
            self.calendar = True
            # A time-of-use meter has counted in its day and peak tiers for years already.
            totals = self._totals()
            for tier, share in TOU_HISTORY_SHARES.items():
                self._accrued[tier] = [value * share for value in totals]
            self._calendar_tier = None  # the next advance applies the calendar
        if "8-tiers" in chosen:
            totals = self._totals()
            for tier, share in EIGHT_TIER_HISTORY_SHARES.items():
                self._accrued[tier] = [value * share for value in totals]
        if "demand" in chosen and bt21 is not None:
            dims = self.image.dimensions
            selection = bytes(SIM_DEMAND_SOURCES[d % len(SIM_DEMAND_SOURCES)] for d in range(dims.demands))
            flags = bytes([0xFF] * ((dims.demands + 7) // 8))  # every demand a maximum
            self.image.tables[tables.BT22] = bytearray(
                bytes(self.image.tables[tables.BT22][: dims.summations]) + selection + flags
            )
            self._initial_maxima(dims.demands)
        self.image.update()
        if chosen & {"self-reads", "demand"} and bt21 is not None and bt21[2] > 0:
            self._history(bt21[2])

    def _eight_tiers(self) -> None:
        """BT20/BT21 with 8 tiers, the register tables sized to it (the present values kept)."""
        image = self.image
        dims = image.dimensions
        bt21 = bytearray(image.tables[tables.BT21])
        bt21[7] = EIGHT_TIERS
        image.tables[tables.BT20][7] = max(image.tables[tables.BT20][7], EIGHT_TIERS)
        present = bytes(image.tables[tables.BT27])
        image.set_layout(
            bytes(bt21),
            value_sources=tuple(present[dims.present_demands :]),
            demand_sources=tuple(present[: dims.present_demands]),
        )
        image.write_energy_unit()  # its ET55 offset follows BT20.7

    def _initial_maxima(self, demands: int) -> None:
        self.maxima.clear()
        sources = self.demand_sources()
        for index in range(demands):
            value, days, hour, minute = INITIAL_DEMANDS.get(sources[index], (1000 + 100 * index, 1, 12, 0))
            when = (self._start_local - timedelta(days=days)).replace(hour=hour, minute=minute, second=0)
            self.maxima[(0, index)] = (value, when)
            self.maxima[(1, index)] = (value, when)  # reached in tier 0

    def demand_sources(self) -> tuple[int, ...]:
        """Return the demand sources BT22 selects (what the demand records hold)."""
        dims = self.image.dimensions
        selection = bytes(self.image.tables.get(tables.BT22, b""))[dims.summations : dims.summations + dims.demands]
        return tuple(selection.ljust(dims.demands, bytes([88])))  # BT22 short: "present demand 1"

    # ---- model -------------------------------------------------------------------

    def local_time(self) -> datetime:
        """Return the meter's local time in the model."""
        return self._start_local + timedelta(seconds=int(self.elapsed))

    def _totals(self) -> Energies:
        image = self.image
        return [image.import_wh, image.export_wh, image.reactive_import_varh, image.reactive_export_varh]

    def advance(self, elapsed: float) -> None:
        """Bring BT55, the tier blocks and the demand records to model time ``elapsed``."""
        self.elapsed = elapsed
        totals = self._totals()
        if self._last_totals is not None and self.tier:
            accrued = self._accrued[self.tier]
            for index, (now, before) in enumerate(zip(totals, self._last_totals, strict=True)):
                accrued[index] += now - before
        self._last_totals = totals
        local = self.local_time()
        if self.calendar:
            self.season = 0 if local.month in (10, 11, 12, 1, 2, 3) else 1
            scheduled = calendar_tier(local.hour)
            if scheduled != self._calendar_tier:
                first = self._calendar_tier is None
                self._calendar_tier = scheduled
                if self.drive != 2:  # a manual hold outlives the calendar's switches
                    self._set_tier(scheduled, 0, log=not first)
        self._track_demands(elapsed, local)
        self._write()

    def _set_tier(self, tier: int, drive: int, *, log: bool = True) -> None:
        changed = tier != self.tier
        self.tier, self.drive = tier, drive
        if changed and log:
            self.image.events.inject(EVENT_TIER_SWITCH, tier)

    def switch_tier(self, tier: int, *, hold: bool = False) -> None:
        """Switch now, as a manual tier change does (until the next calendar switch, or held)."""
        self.image.update()  # what came so far belongs to the old tier
        self._set_tier(tier, 2 if hold else 1)
        self._write()

    def tier_energies(self) -> list[Energies]:
        """Per tier (0..BT21.7-1): the energies the tier blocks carry (before the register unit)."""
        totals = self._totals()
        tiers = max(1, self.image.dimensions.tiers)
        others = [sum(self._accrued[t][i] for t in range(1, tiers)) for i in range(4)]
        return [[total - other for total, other in zip(totals, others, strict=True)]] + [
            list(self._accrued[t]) for t in range(1, tiers)
        ]

    def _track_demands(self, elapsed: float, local: datetime) -> None:
        if not self.maxima:
            return
        p_import, p_export = self.image.power_w(elapsed)
        live = {8: round(p_import), 9: round(p_export)}
        for index, source in enumerate(self.demand_sources()):
            value = live.get(source)
            if value is None:
                continue
            for block in (0, self.tier + 1):
                if value > self.maxima.get((block, index), (0, None))[0]:
                    self.maxima[(block, index)] = (value, local.replace(second=0))

    def demands(self) -> list[SimDemand]:
        """Return the total block's demand registers (what the client should read)."""
        return [
            SimDemand(source, *self.maxima.get((0, index), (0, None)))
            for index, source in enumerate(self.demand_sources())
        ]

    # ---- tables ------------------------------------------------------------------

    def _write(self) -> None:
        self._write_bt55()
        table = self.image.tables.get(tables.BT23)
        if table is not None:
            self._write_registers(table, self.tier_energies())

    def _write_bt55(self) -> None:
        table = self.image.tables.get(tables.BT55)
        if table is None:  # a test took it away
            return
        local = self.local_time()
        weekday = (local.weekday() + 1) % 7  # 0 = Sunday
        status = self.tier | self.drive << 6 | self.special_schedule << 8 | self.season << 12
        table[:] = (
            tables.encode_time_date(local)
            + bytes([weekday | 0x20 | 0x40])  # time zone and DST adjustment applied (G p.230), DST off
            + struct.pack("<H", status)
        )

    def _write_registers(self, table: bytearray, tiers: list[Energies]) -> None:
        """Tier blocks' energy summations and every block's demand records."""
        dims = self.image.dimensions
        start, block = dims.summations_offset, dims.register_block_size
        sources = bytes(self.image.tables.get(tables.BT22, range(dims.summations)))[: dims.summations]
        unit = self.image.energy_unit
        for tier in range(dims.tiers):
            energies = tiers[tier] if tier < len(tiers) else [0.0] * 4
            values = [_summation(source, energies) // unit if _is_energy(source) else 0 for source in sources]
            struct.pack_into(f"<{len(values)}i", table, start + block * (tier + 1), *values)
        if dims.demands and self.maxima:
            for index_block in range(dims.tiers + 1):
                at = start + block * index_block + 4 * dims.summations
                for index in range(dims.demands):
                    record = self._demand_record(dims, *self.maxima.get((index_block, index), (0, None)))
                    size = dims.demand_record_size
                    table[at + index * size : at + (index + 1) * size] = record

    def _demand_record(self, dims: tables.RegisterDimensions, value: int, when: datetime | None) -> bytes:
        occurrences = dims.occurrences
        out = b""
        if dims.flags1 & 0x02:
            out += tables.encode_time_date(when, STIME_DATE_SIZE) + bytes(STIME_DATE_SIZE * (occurrences - 1))
        cumulative = value * 3  # the maxima of the three resets so far, roughly
        if dims.flags1 & 0x10:
            out += struct.pack("<i", cumulative)
        if dims.flags1 & 0x20:
            out += struct.pack("<i", cumulative + value)
        out += struct.pack("<i", value) + bytes(4 * (occurrences - 1))
        return out

    # ---- self-reads (BT26) -------------------------------------------------------

    def _entry_size(self) -> int:
        dims = self.image.dimensions
        return (BIDN_SIZE if dims.demands else 0) + STIME_DATE_SIZE + 1 + dims.bt23_size

    def _history(self, slots: int) -> None:
        """``HISTORY_DAYS`` midnight self-reads, the registers rolled back a day's use each."""
        self.image.tables[BT26] = bytearray(BT26_HEADER + slots * self._entry_size())
        self.self_reads.clear()
        self.sequence = FIRST_SEQUENCE - 1
        midnight = self.local_time().replace(hour=0, minute=0, second=0)
        totals = self._totals()
        tiers = self.tier_energies()
        for days in range(HISTORY_DAYS, 0, -1):
            past = [max(0.0, total - days * daily) for total, daily in zip(totals, DAILY, strict=True)]
            # Each tier keeps its share of the total, so the past tiers sum to the past total.
            shares = [[tier[i] / totals[i] * past[i] if totals[i] else 0.0 for i in range(4)] for tier in tiers]
            registers = bytearray(self.image.tables[tables.BT23])
            self._write_totals(registers, past)
            self._write_registers(registers, shares)
            self._store(midnight - timedelta(days=days - 1), 0, registers, past)

    def self_read(self) -> SimSelfRead:
        """Take a self-read now (the meter's scheduled one, or a test's)."""
        self.image.update()
        if BT26 not in self.image.tables:
            raise RuntimeError("this meter has no self-read slots (BT21.2 = 0)")
        entry = self._store(
            self.local_time().replace(second=0), self.season, bytearray(self.image.tables[tables.BT23]), self._totals()
        )
        self.image.events.inject(EVENT_SELF_READ, 0)
        return entry

    def _write_totals(self, registers: bytearray, energies: Energies) -> None:
        dims = self.image.dimensions
        sources = bytes(self.image.tables.get(tables.BT22, range(dims.summations)))[: dims.summations]
        for index, source in enumerate(sources):
            if _is_energy(source):
                value = _summation(source, energies) // self.image.energy_unit
                struct.pack_into("<i", registers, dims.summations_offset + 4 * index, value)

    def _store(self, when: datetime, season: int, registers: bytearray, energies: Energies) -> SimSelfRead:
        table = self.image.tables[BT26]
        dims = self.image.dimensions
        slots = dims.self_reads
        flags, valid, last, _sequence, unread = struct.unpack_from("<BBBHB", table)
        element = (last + 1) % slots if valid else 0
        self.sequence = (self.sequence + 1) & 0xFFFF
        entry = struct.pack("<H", BIDN) if dims.demands else b""
        entry += tables.encode_time_date(when, STIME_DATE_SIZE) + bytes([season]) + bytes(registers)
        size = self._entry_size()
        table[BT26_HEADER + element * size : BT26_HEADER + (element + 1) * size] = entry
        overflow = 0x02 if valid == slots else 0
        struct.pack_into(
            "<BBBHB", table, 0, 0x04 | overflow | flags & 0x02, min(valid + 1, slots), element, self.sequence,
            min(unread + 1, slots),
        )  # fmt: skip
        unit = self.image.energy_unit
        record = SimSelfRead(
            self.sequence,
            element,
            when,
            season,
            float(int(energies[0]) // unit * unit),
            float(int(energies[1]) // unit * unit),
        )
        self.self_reads.append(record)
        return record


def _is_energy(source: int) -> bool:
    return source in ENERGY_SUMMATIONS


def _summation(source: int, energies: Energies) -> int:
    """Return a summation's register count before the unit, as ``MeterImage._summation`` computes it."""
    import_wh, export_wh = energies[0], energies[1]
    values = {
        0: import_wh,
        1: export_wh,
        2: energies[2],
        3: energies[3],
        6: import_wh + export_wh,
        7: max(0.0, import_wh - export_wh),
    }
    return int(values.get(source, 0.0))
