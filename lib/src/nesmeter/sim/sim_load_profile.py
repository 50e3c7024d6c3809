"""The simulated meter's load profile: BT61-BT64 and ET21, consistent with its registers.

Built the first time a load-profile table is read: the past ``history_days`` days are
integrated backwards from the registers as they stand, with the image's own load model
(``MeterImage.power_w``) and a few outages, into one-day blocks (UTC midnight to
midnight) of a ring whose newest block does not sit at index 0, so reads wrap. After
that every interval end the model passes is snapshotted from the live registers
(interpolated between two model updates, exactly as the model integrates), new days take
the next ring slot and overwrite the oldest. The load profile's clock is the model's:
``speed`` makes intervals pass faster. Layouts: ``nesmeter.tables.load_profile``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import struct
from typing import TYPE_CHECKING, Final

from nesmeter.tables import tables
from nesmeter.tables.load_profile import BT63_SET, ET21_ELEMENT, NO_VALUE, DataSetConfig, channel_names, compute_layout

if TYPE_CHECKING:
    from nesmeter.sim.sim_host import ImageHost

TABLE_IDS: Final = frozenset({tables.BT61, tables.BT62, tables.BT63, tables.BT64, tables.ET21})
VARIANTS: Final[dict[str, str]] = {
    "lp-60min": "load profile: 60-minute intervals",
    "lp-reactive": "load profile: 4 channels (import, export, reactive import and export)",
    "lp-off": "load profile: data set not active (BT63), nothing recorded",
    "lp-opt-out": "load profile: yesterday 06:00-12:00 UTC opted out (channel status 12, values zeroed)",
    "lp-missing-day": "load profile: an outage across two midnights; the day between has no block",
    "lp-wrap": "load profile: the ring is full and a new day overwrites the oldest block during a read",
}
STEP: Final = 20.0  # model seconds per integration step of the history
OPT_OUT: Final = 12
POWER_FAIL: Final = 0x20
FIRST_SEQUENCE: Final = 4000
WRAP_AFTER_READS: Final = 2  # lp-wrap: BT64 reads served before the day jumps
Energies = tuple[float, float, float, float]  # import Wh, export Wh, reactive import/export varh


@dataclass(frozen=True, slots=True)
class TrueInterval:
    """What the simulator recorded for one interval (register counts, as stored)."""

    end: datetime
    values: tuple[int, ...]
    common: int
    codes: tuple[int, ...]


class SimLoadProfile:
    """One data set (BT64) of the simulated meter."""

    def __init__(self, image: ImageHost, *, history_days: int = 7) -> None:
        """Model a load profile of ``history_days`` days for ``image``; tables come on first read."""
        self.image = image
        self.history_days = history_days
        self.interval_minutes = 15
        self.sources: tuple[int, ...] = (0, 1)
        self.active = True
        self.spare_blocks = 3  # ring slots beyond the history (a real meter holds months)
        self.opt_out = False
        self.missing_day = False
        self.wrap_during_read = False
        self.built = False
        self._truth: dict[int, list[TrueInterval]] = {}  # by block sequence, as the ring holds them
        self._bt64_reads = 0
        self._anchor = datetime.now(UTC)  # set again by build()
        self._anchor_elapsed = 0.0
        self._today = self._anchor
        self._outage_list: list[tuple[datetime, datetime]] = []
        self._last_end = self._anchor

    def configure(self, variants: Iterable[str]) -> None:
        """Apply the load-profile variants (before the first read)."""
        chosen = set(variants)
        if "lp-60min" in chosen:
            self.interval_minutes = 60
        if "lp-reactive" in chosen:
            self.sources = (0, 1, 2, 3)
        if "lp-off" in chosen:
            self.active = False
        self.opt_out = "lp-opt-out" in chosen
        self.missing_day = "lp-missing-day" in chosen
        if "lp-wrap" in chosen:
            self.wrap_during_read = True
            self.spare_blocks = 0

    # ---- geometry ----

    @property
    def config(self) -> DataSetConfig:
        """The data set's configuration (BT61), from the interval and the history kept."""
        per_day = 1440 // self.interval_minutes
        return DataSetConfig(
            self.history_days + 1 + self.spare_blocks, per_day, len(self.sources), self.interval_minutes
        )

    @property
    def interval(self) -> timedelta:
        """One interval's length."""
        return timedelta(minutes=self.interval_minutes)

    def _now(self) -> tuple[float, datetime]:
        """(model seconds since the image started, the load profile's UTC time)."""
        elapsed = self.image.elapsed
        return elapsed, self._anchor + timedelta(seconds=elapsed - self._anchor_elapsed)

    def _elapsed(self, when: datetime) -> float:
        return self._anchor_elapsed + (when - self._anchor).total_seconds()

    # ---- the model ----

    def _outages(self) -> list[tuple[datetime, datetime]]:
        today = self._today
        out = []
        if self.history_days >= 2:
            day = today - timedelta(days=2)
            out.append((day + timedelta(hours=14, minutes=5), day + timedelta(hours=14, minutes=50)))
        if self.missing_day and self.history_days >= 4:
            day = today - timedelta(days=3)
            out.append((day - timedelta(minutes=50), day + timedelta(days=1, minutes=40)))
        return out

    def _power(self, when: datetime) -> tuple[float, float]:
        if any(start <= when < end for start, end in self._outage_list):
            return (0.0, 0.0)
        return self.image.power_w(self._elapsed(when))

    def _energy_between(self, start: datetime, end: datetime) -> Energies:
        """Integrate what the model adds between two times (midpoint rule, ``STEP`` seconds)."""
        seconds = (end - start).total_seconds()
        steps = max(1, round(seconds / STEP))
        h = seconds / steps
        p_imp = p_exp = 0.0
        for k in range(steps):
            imp, exp = self._power(start + timedelta(seconds=(k + 0.5) * h))
            p_imp += imp
            p_exp += exp
        e_imp, e_exp = p_imp * h / 3600, p_exp * h / 3600
        return (e_imp, e_exp, 0.0, 0.2 * e_imp)

    def _registers(self) -> Energies:
        image = self.image
        return (image.import_wh, image.export_wh, image.reactive_import_varh, image.reactive_export_varh)

    def _counts(self, energies: Energies) -> tuple[int, ...]:
        unit = self.image.energy_unit
        return tuple(int(energies[source]) // unit if source < 4 else 0 for source in self.sources)

    # ---- building ----

    def ensure(self) -> None:
        """Build the tables unless built: the history is made when a client first looks."""
        if not self.built:
            self.build()

    def build(self) -> None:
        """Create the tables and the history, from the registers as they stand now."""
        self.image.update()
        self.built = True
        self._anchor = datetime.now(UTC).replace(microsecond=0)
        self._anchor_elapsed = self.image.elapsed
        self._today = self._anchor.replace(hour=0, minute=0, second=0)
        self._outage_list = self._outages()
        config = self.config
        self._layout = compute_layout(config)
        image = self.image
        bt61 = bytearray(13)
        struct.pack_into("<IHB", bt61, 0, config.blocks * self._layout.block_size, 0x0C00, 0x20)
        struct.pack_into(
            "<HHBB", bt61, 7, config.blocks, config.intervals_per_block, config.channels, config.interval_code
        )
        bt62 = bytearray(b"".join(bytes([0, source, 0]) for source in self.sources) + bytes([32]))
        image.tables[tables.BT61] = bt61
        image.tables[tables.BT62] = bt62
        image.tables[tables.BT63] = bytearray(BT63_SET)
        image.tables[tables.BT64] = bytearray(config.blocks * self._layout.block_size)
        image.tables[tables.ET21] = bytearray(ET21_ELEMENT)
        self._sequence = FIRST_SEQUENCE - 1
        self._index = -self.history_days % config.blocks  # so that the history's newest block sits at index 1
        self._valid_blocks = 0
        self._day: datetime | None = None
        self._slots = 0
        if self.active:
            self._history()
        self._last_elapsed, self._last_time = self._now()
        self._last_registers = self._registers()
        self._write_status()

    def _history(self) -> None:
        """Integrate backwards from now to the start of the oldest day."""
        _elapsed, now = self._now()
        first = self._today - timedelta(days=self.history_days)
        ends: list[datetime] = []
        end = first + self.interval
        while end <= now:
            ends.append(end)
            end += self.interval
        later = now
        added: list[Energies] = []
        for end in reversed(ends):
            added.append(self._energy_between(end, later))
            later = end
        # Registers that could not have held the history (the captured export register is
        # small) are raised first, so no snapshot is negative.
        image = self.image
        image.import_wh += max(0.0, sum(a[0] for a in added) - image.import_wh)
        image.export_wh += max(0.0, sum(a[1] for a in added) - image.export_wh)
        image.reactive_export_varh += max(0.0, sum(a[3] for a in added) - image.reactive_export_varh)
        energies = self._registers()
        values: list[Energies] = []
        for step in added:
            energies = tuple(e - a for e, a in zip(energies, step, strict=True))  # type: ignore[assignment]
            values.append(energies)
        missing = self._missing_day()
        for end, energy in zip(ends, reversed(values), strict=True):
            if missing is not None and missing < end <= missing + timedelta(days=1):
                continue
            self._record(end, energy)

    def _missing_day(self) -> datetime | None:
        if self.missing_day and self.history_days >= 4:
            return self._today - timedelta(days=3)
        return None

    def _record(self, end: datetime, energies: Energies) -> None:
        """Store the interval ending at ``end`` (starting a block on a new day)."""
        config, layout = self.config, self._layout
        day = (end - self.interval).replace(hour=0, minute=0, second=0, microsecond=0)
        if day != self._day:
            self._day = day
            self._sequence += 1
            self._index = (self._index + 1) % config.blocks
            self._valid_blocks = min(self._valid_blocks + 1, config.blocks)
            start = self._index * layout.block_size
            table = self.image.tables[tables.BT64]
            table[start : start + layout.block_size] = bytes(layout.block_size)
            self._truth.pop(self._sequence - config.blocks, None)
            self._truth[self._sequence] = []
        slot = int((end - day) / self.interval) - 1
        common = POWER_FAIL if any(s < end and e > end - self.interval for s, e in self._outage_list) else 0
        counts = self._counts(energies)
        codes = tuple(0 for _ in self.sources)
        if self.opt_out and self._opted_out(end):
            codes = tuple(OPT_OUT for _ in self.sources)
            counts = tuple(0 for _ in self.sources)
        record = bytearray(layout.interval_size)
        nibbles = [common >> 4, *codes]
        nibbles += [0] * (2 * layout.channel_offset - len(nibbles))
        for k in range(layout.channel_offset):
            record[k] = nibbles[2 * k] << 4 | nibbles[2 * k + 1]
        struct.pack_into(f"<{len(counts)}i", record, layout.channel_offset, *counts)
        table = self.image.tables[tables.BT64]
        block = self._index * layout.block_size
        offset = layout.slot_offset(self._index, slot)
        table[offset : offset + layout.interval_size] = record
        table[block : block + 5] = tables.encode_time_date(end, 5)
        table[block + layout.simple_status_offset + slot // 8] |= 1 << (slot % 8)
        self._slots = slot + 1
        self._last_end = end
        self._truth[self._sequence].append(TrueInterval(end, counts, common, codes))

    def _opted_out(self, end: datetime) -> bool:
        day = self._today - timedelta(days=1)
        return day + timedelta(hours=6) < end <= day + timedelta(hours=12)

    def _write_status(self) -> None:
        """BT63 and ET21 as they stand."""
        config, layout = self.config, self._layout
        active = self.active
        bt63 = self.image.tables[tables.BT63]
        valid_blocks = self._valid_blocks if active else 0
        struct.pack_into(
            "<BHHIHH",
            bt63,
            0,
            0x04 | (0x20 if active else 0),
            valid_blocks,
            self._index % config.blocks,
            self._sequence if valid_blocks else 0,
            0,
            self._slots if valid_blocks else 0,
        )
        et21 = self.image.tables[tables.ET21]
        struct.pack_into("<IH", et21, 8, layout.block_size, layout.header_size)
        struct.pack_into(
            "<HHHH", et21, 14, valid_blocks, self._slots, self._index % config.blocks, max(self._slots - 1, 0)
        )
        et21[22:30] = bytes(
            [
                layout.simple_status_offset,
                layout.header_size - layout.simple_status_offset,
                layout.header_size,
                layout.interval_size,
                layout.channel_offset,
                0,
                config.channels,
                config.interval_code,
            ]
        )
        et21[30 : 30 + len(self.sources[:8])] = bytes(self.sources[:8])
        struct.pack_into("<I", et21, 78, 1)
        if valid_blocks:
            end = self._last_end
            et21[94:100] = tables.encode_time_date(end.replace(second=0))

    # ---- live ----

    def advance(self, elapsed: float) -> None:
        """Snapshot every interval end the model passed since the last call."""
        if not self.built or elapsed <= self._last_elapsed:
            return
        before, after = self._last_registers, self._registers()
        start = self._last_time
        now = start + timedelta(seconds=elapsed - self._last_elapsed)
        span = (now - start).total_seconds()
        step = 60 * self.interval_minutes
        end = datetime.fromtimestamp((start.timestamp() // step + 1) * step, UTC)
        while end <= now:
            if end > start and self.active:
                share = (end - start).total_seconds() / span
                energies = tuple(b + (a - b) * share for b, a in zip(before, after, strict=True))
                self._record(end, energies)  # type: ignore[arg-type]
            end += self.interval
        self._last_elapsed, self._last_time, self._last_registers = elapsed, now, after
        self._write_status()

    def before_read(self, table_id: int) -> None:
        """Build on first use; lp-wrap: a day passes after the first data reads."""
        self.ensure()
        if table_id == tables.BT64:
            self._bt64_reads += 1
            if self.wrap_during_read and self._bt64_reads == WRAP_AFTER_READS + 1:
                self.image.skip(86400)
                self.image.update()

    # ---- for tests ----

    @property
    def truth(self) -> list[TrueInterval]:
        """Every interval the ring holds, oldest first."""
        return [interval for sequence in sorted(self._truth) for interval in self._truth[sequence]]

    def expected(self, since: datetime | None = None) -> list[tuple[datetime, dict[str, float], int]]:
        """(end, values a client should report, common flags) for the intervals ending after ``since``."""
        names = channel_names(self.sources, self.image.energy_unit)
        out = []
        for interval in self.truth:
            if since is not None and interval.end <= since:
                continue
            values = {
                name: float(raw * scale)
                for (name, scale), raw, code in zip(names, interval.values, interval.codes, strict=True)
                if code not in NO_VALUE
            }
            out.append((interval.end, values, interval.common))
        return out
