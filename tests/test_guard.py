"""The counter guard keeps wrong numbers out of the Energy dashboard."""

from __future__ import annotations

import pytest

from custom_components.nes_meter.guard import DECREASE_CONFIRMATIONS, CounterGuard
from nesmeter import MeterSnapshot


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


def test_first_reading_of_zero_is_not_accepted() -> None:
    """With nothing to compare to, 0 is a glitch, not a reading: it stays unknown."""
    guard = CounterGuard()
    assert guard.apply(reading(0), 0).energy_import_wh is None
    assert guard.apply(reading(1000), 10).energy_import_wh == 1000
    assert guard.dropped == {"energy_import_wh:zero": 1}


def test_restored_baseline_checks_the_first_reading() -> None:
    """After a restart the first reading is held against the value shown before it."""
    guard = CounterGuard()
    guard.restore("energy_import_wh", 1000, at=-60)
    guard.restore("energy_import_wh", 5, at=0)  # the first restore wins
    guard.restore("power_import_w", 5, at=0)  # not a counter
    assert guard.apply(reading(0), 0).energy_import_wh == 1000
    assert guard.apply(reading(900), 10).energy_import_wh == 1000
    assert guard.apply(reading(1001), 20).energy_import_wh == 1001
    assert guard.as_dict()["restored_counters"] == ["energy_import_wh"]


def test_a_baseline_after_the_first_reading_checks_that_reading() -> None:
    """The energy sensors hand their restored value over once added, after the setup's first reading."""
    lower = CounterGuard()
    lower.apply(reading(900), 0)  # lower than before the restart: a glitch until it lasts
    assert lower.restore("energy_import_wh", 1000, at=-60) == 1000
    assert lower.dropped == {"energy_import_wh:decrease": 1}
    assert lower.apply(reading(1001), 10).energy_import_wh == 1001

    zero = CounterGuard()
    assert zero.apply(reading(0), 0).energy_import_wh is None
    assert zero.restore("energy_import_wh", 1000, at=-60) == 1000

    higher = CounterGuard()
    higher.apply(reading(1001), 0)  # a plausible rise since the restart stands
    assert higher.restore("energy_import_wh", 1000, at=-60) == 1001
    assert higher.as_dict()["restored_counters"] == ["energy_import_wh"]


def test_a_baseline_after_two_readings_is_too_late() -> None:
    """A reading already checked against another one of this run wins over a late baseline."""
    guard = CounterGuard()
    guard.apply(reading(900), 0)
    guard.apply(reading(901), 10)
    assert guard.restore("energy_import_wh", 1000, at=-60) == 901
    assert guard.as_dict()["restored_counters"] == []


def test_restored_zero_is_no_baseline() -> None:
    guard = CounterGuard()
    guard.restore("energy_import_wh", 0, at=0)
    assert guard.apply(reading(0), 0).energy_import_wh is None
    assert guard.as_dict()["restored_counters"] == []


def test_persistent_decrease_is_accepted_once(caplog: pytest.LogCaptureFixture) -> None:
    """A replaced meter (or a reset register) reads lower for good: accepted after N readings, logged once."""
    guard = CounterGuard()
    guard.apply(reading(1000), 0)
    shown = [guard.apply(reading(900 + i), 10 + 10 * i).energy_import_wh for i in range(DECREASE_CONFIRMATIONS + 2)]
    assert shown == [1000] * (DECREASE_CONFIRMATIONS - 1) + [904, 905, 906]
    assert guard.resets == {"energy_import_wh": 1}
    assert guard.as_dict()["accepted_resets"] == {"energy_import_wh": 1}
    assert caplog.text.count("meter reset or replacement") == 1


def test_unsteady_lower_readings_never_count_as_a_reset() -> None:
    """Lower readings that keep falling, or come between good ones, are glitches."""
    guard = CounterGuard()
    guard.apply(reading(1000), 0)
    falling = [guard.apply(reading(900 - i), 10 + 10 * i).energy_import_wh for i in range(2 * DECREASE_CONFIRMATIONS)]
    assert falling == [1000] * (2 * DECREASE_CONFIRMATIONS)
    for i in range(2 * DECREASE_CONFIRMATIONS):
        value = 500 if i % 2 else 1000
        assert guard.apply(reading(value), 200 + 10 * i).energy_import_wh == 1000
    assert not guard.resets
