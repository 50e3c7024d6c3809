"""Keeps wrong numbers out of the Energy dashboard.

The dashboard books any drop of a ``total_increasing`` sensor as a meter reset and any
glitch as consumption, so an energy counter is only ever written when it is plausible:
never lower than the last value, never 0 after a non-zero value, never a jump larger
than the meter's current could produce in the elapsed time (unless it repeats, which
means it is real).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from .meter import MeterSnapshot

GUARDED_COUNTERS: Final = (
    "energy_import_wh",
    "energy_export_wh",
    "reactive_energy_import_varh",
    "reactive_energy_export_varh",
)
MAX_POWER_W: Final = 250_000.0  # well above a 3 x 100 A CT installation
CONFIRMATIONS: Final = 3
PHASE_TOLERANCE_W: Final = 50.0
PHASE_TOLERANCE_RATIO: Final = 0.05


@dataclass(slots=True)
class CounterGuard:
    """Per-meter plausibility state for energy counters and per-phase power sums."""

    last: dict[str, float] = field(default_factory=dict)
    last_time: dict[str, float] = field(default_factory=dict)
    pending: dict[str, tuple[float, int]] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)
    phase_mismatches: int = 0
    phase_mismatch: bool = False

    def apply(self, snapshot: MeterSnapshot, now: float) -> MeterSnapshot:
        """Replace implausible counter readings by the last good value, in place."""
        for name in GUARDED_COUNTERS:
            value = getattr(snapshot, name)
            if value is None:
                continue
            accepted = self._check(name, float(value), now)
            setattr(snapshot, name, accepted)
        self.phase_mismatch = self._phases_disagree(snapshot)
        if self.phase_mismatch:
            self.phase_mismatches += 1
        return snapshot

    def _check(self, name: str, value: float, now: float) -> float | None:
        previous = self.last.get(name)
        if previous is None:
            if value < 0:
                self.dropped[f"{name}:negative"] += 1
                return None
            return self._accept(name, value, now)
        if value == 0 and previous > 0:
            self.dropped[f"{name}:zero"] += 1
            return previous
        if value < previous:
            self.dropped[f"{name}:decrease"] += 1
            return previous
        hours = max(now - self.last_time[name], 1.0) / 3600
        plausible_rise = MAX_POWER_W * hours + 10
        if value - previous > plausible_rise:
            seen_value, seen = self.pending.get(name, (value, 0))
            seen = seen + 1 if abs(seen_value - value) <= plausible_rise else 1
            self.pending[name] = (value, seen)
            if seen < CONFIRMATIONS:
                self.dropped[f"{name}:jump"] += 1
                return previous
        self.pending.pop(name, None)
        return self._accept(name, value, now)

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
        return {
            "dropped_readings": dict(self.dropped),
            "phase_mismatches": self.phase_mismatches,
            "phase_mismatch": self.phase_mismatch,
        }
