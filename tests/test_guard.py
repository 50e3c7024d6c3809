"""The counter guard keeps wrong numbers out of the Energy dashboard."""

from __future__ import annotations

from custom_components.nes_meter.guard import CounterGuard
from custom_components.nes_meter.meter import MeterSnapshot


def reading(energy: float | None, **values: float) -> MeterSnapshot:
    return MeterSnapshot(energy_import_wh=energy, **values)


def test_decrease_zero_and_negative_are_dropped() -> None:
    guard = CounterGuard()
    assert guard.apply(reading(-5), 0).energy_import_wh is None
    assert guard.apply(reading(1000), 10).energy_import_wh == 1000
    assert guard.apply(reading(999), 20).energy_import_wh == 1000
    assert guard.apply(reading(0), 30).energy_import_wh == 1000
    assert guard.apply(reading(1002), 40).energy_import_wh == 1002
    assert guard.dropped == {"energy_import_wh:negative": 1, "energy_import_wh:decrease": 1, "energy_import_wh:zero": 1}


def test_implausible_jump_is_held_until_confirmed() -> None:
    guard = CounterGuard()
    guard.apply(reading(1000), 0)
    # 10 s cannot add 5 MWh; a one-off glitch is dropped ...
    assert guard.apply(reading(5_000_000), 10).energy_import_wh == 1000
    assert guard.apply(reading(1001), 20).energy_import_wh == 1001
    # ... but the same new level three polls in a row is real (e.g. a meter change).
    results = [guard.apply(reading(9_000_000 + i), 30 + 10 * i).energy_import_wh for i in range(3)]
    assert results == [1001, 1001, 9_000_002]
    assert guard.dropped["energy_import_wh:jump"] == 3


def test_large_gap_allows_proportional_growth() -> None:
    guard = CounterGuard()
    guard.apply(reading(1000), 0)
    assert guard.apply(reading(1000 + 20_000), 3600).energy_import_wh == 21_000  # 20 kW for an hour


def test_phase_sum_mismatch_is_flagged() -> None:
    guard = CounterGuard()
    good = reading(1, power_import_w=432, power_import_l1_w=321, power_import_l2_w=59, power_import_l3_w=52)
    guard.apply(good, 0)
    assert guard.phase_mismatch is False
    bad = reading(1, power_import_w=2000, power_import_l1_w=321, power_import_l2_w=59, power_import_l3_w=52)
    guard.apply(bad, 10)
    assert guard.phase_mismatch is True
    assert guard.phase_mismatches == 1
