"""Keeps wrong numbers out of the Energy dashboard.

The dashboard books any drop of a ``total_increasing`` sensor as a meter reset and any
glitch as consumption, so an energy counter is only ever written when it is plausible:
never 0 or negative, never lower than the last value, never a jump larger than the
meter's current could produce in the elapsed time. A jump that repeats is real (a
meter change); so is a lower level that persists (a register reset or a replaced
meter), after more readings, because accepting one books a whole reading again.

The last accepted values outlive a restart: each energy sensor hands the guard the value
it showed before (Home Assistant restores it) when it is added, right after the setup's
first reading; that reading, the only one not yet checked, is then checked against it
like any other.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
import logging
from typing import Final

from nesmeter import MeterSnapshot

_LOGGER = logging.getLogger(__name__)

GUARDED_COUNTERS: Final = (
    "energy_import_wh",
    "energy_export_wh",
    "reactive_energy_import_varh",
    "reactive_energy_export_varh",
)
MAX_POWER_W: Final = 250_000.0  # well above a 3 x 100 A CT installation
CONFIRMATIONS: Final = 3
# A lower level must be read this many times in a row (never falling) before it is the
# new truth; at the default 10 s interval that is under a minute of held values.
DECREASE_CONFIRMATIONS: Final = 5
PHASE_TOLERANCE_W: Final = 50.0
PHASE_TOLERANCE_RATIO: Final = 0.05


@dataclass(slots=True)
class CounterGuard:
    """Per-meter plausibility state for energy counters and per-phase power sums."""

    last: dict[str, float] = field(default_factory=dict)
    last_time: dict[str, float] = field(default_factory=dict)
    pending: dict[str, tuple[float, int]] = field(default_factory=dict)
    lower: dict[str, tuple[float, int]] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)
    resets: Counter[str] = field(default_factory=Counter)
    restored: set[str] = field(default_factory=set)
    # The first reading of a run, accepted without a baseline: (value, time) until a
    # baseline arrives or a second reading is checked against it.
    unchecked: dict[str, tuple[float, float]] = field(default_factory=dict)
    phase_mismatches: int = 0
    phase_mismatch: bool = False

    def apply(self, snapshot: MeterSnapshot, now: float) -> MeterSnapshot:
        """Replace implausible counter readings by the last good value, in place."""
        for name in GUARDED_COUNTERS:
            value = getattr(snapshot, name)
            if value is None:
                continue
            accepted = self.check(name, float(value), now)
            setattr(snapshot, name, accepted)
        self.phase_mismatch = self._phases_disagree(snapshot)
        if self.phase_mismatch:
            self.phase_mismatches += 1
        return snapshot

    def restore(self, name: str, value: float, at: float) -> float | None:
        """Take ``value``, accepted by a previous run at monotonic time ``at``, as the baseline.

        Returns the value to show now. The baseline comes when the energy sensor is added,
        after the setup's first reading: if that reading was the only one of this run, it is
        checked again against the baseline (a glitching 0 or lower value is held back); a
        reading already checked against another wins. Only a positive value is a baseline.
        """
        first = self.unchecked.pop(name, None)
        if not name.endswith(("_wh", "_varh")) or value <= 0 or (name in self.last and first is None):
            return self.last.get(name)
        self._accept(name, value, at)
        self.restored.add(name)
        return value if first is None else self.check(name, *first)

    def check(self, name: str, value: float, now: float) -> float | None:
        """Return the value to show for counter ``name`` (any energy register, in Wh)."""
        previous = self.last.get(name)
        if value <= 0:
            self.dropped[f"{name}:{'zero' if value == 0 else 'negative'}"] += 1
            return previous
        if previous is None:
            self.unchecked[name] = (value, now)
            return self._accept(name, value, now)
        self.unchecked.pop(name, None)
        if value < previous:
            return self._lower(name, value, previous, now)
        self.lower.pop(name, None)
        plausible_rise = self._plausible_rise(name, now)
        if value - previous > plausible_rise:
            seen_value, seen = self.pending.get(name, (value, 0))
            seen = seen + 1 if abs(seen_value - value) <= plausible_rise else 1
            self.pending[name] = (value, seen)
            if seen < CONFIRMATIONS:
                self.dropped[f"{name}:jump"] += 1
                return previous
        self.pending.pop(name, None)
        return self._accept(name, value, now)

    def _lower(self, name: str, value: float, previous: float, now: float) -> float:
        """Hold a lower reading, unless the lower level has persisted long enough."""
        level, seen = self.lower.get(name, (value, 0))
        seen = seen + 1 if level <= value <= level + self._plausible_rise(name, now) else 1
        self.lower[name] = (value, seen)
        if seen < DECREASE_CONFIRMATIONS:
            self.dropped[f"{name}:decrease"] += 1
            return previous
        del self.lower[name]
        self.resets[name] += 1
        _LOGGER.warning(
            "%s went down from %s to %s and stayed there for %d readings: taking it as a meter reset or "
            "replacement; the Energy dashboard starts a new cycle from here",
            name,
            previous,
            value,
            seen,
        )
        return self._accept(name, value, now)

    def _plausible_rise(self, name: str, now: float) -> float:
        hours = max(now - self.last_time[name], 1.0) / 3600
        return MAX_POWER_W * hours + 10

    def _accept(self, name: str, value: float, now: float) -> float:
        self.last[name] = value
        self.last_time[name] = now
        return value

    @staticmethod
    def _phases_disagree(snapshot: MeterSnapshot) -> bool:
        for total, parts in (
            (
                snapshot.power_import_w,
                (snapshot.power_import_l1_w, snapshot.power_import_l2_w, snapshot.power_import_l3_w),
            ),
            (
                snapshot.power_export_w,
                (snapshot.power_export_l1_w, snapshot.power_export_l2_w, snapshot.power_export_l3_w),
            ),
        ):
            known = [part for part in parts if part is not None]
            if total is None or not known:
                continue
            if abs(sum(known) - total) > max(PHASE_TOLERANCE_W, PHASE_TOLERANCE_RATIO * abs(total)):
                return True
        return False

    def as_dict(self) -> dict[str, object]:
        """Summarise what the guard held back, for the diagnostics."""
        return {
            "restored_counters": sorted(self.restored),
            "accepted_resets": dict(self.resets),
            "dropped_readings": dict(self.dropped),
            "phase_mismatches": self.phase_mismatches,
            "phase_mismatch": self.phase_mismatch,
        }
