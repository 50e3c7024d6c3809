"""Meter history: the simulated meter's load profile into external statistics, with the recorder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import contextlib
from datetime import UTC, datetime, timedelta
from itertools import pairwise
import logging
from typing import Any
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder.db_schema import StatisticsMeta
from homeassistant.components.recorder.statistics import list_statistic_ids, statistics_during_period
from homeassistant.const import CONF_PORT, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.components.recorder.common import async_wait_recording_done
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.nes_meter import history as history_module
from custom_components.nes_meter.const import CONF_KEY, CONF_TRANSPORT, DOMAIN
from custom_components.nes_meter.coordinator import NesMeterCoordinator
from custom_components.nes_meter.history import (
    ReadBudget,
    Track,
    statistic_id,
    statistic_metadata,
)
from custom_components.nes_meter.history_channels import history_channel
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import SimServer, SimulatedMeter
from nesmeter.tables import tables

from .conftest import KEY, KEY_TEXT, SERIAL, add_meter_entry, energy_dashboard_issues

IMPORT = f"{DOMAIN}:{SERIAL}_energy_import"
EXPORT = f"{DOMAIN}:{SERIAL}_energy_export"
LP_TABLES = frozenset({tables.BT61, tables.BT62, tables.BT63, tables.BT64, tables.ET21})
UNTIL = "sensor.nes_83334_meter_history_imported_until"
PENDING = "sensor.nes_83334_meter_history_pending"
Rows = dict[str, list[tuple[datetime, float, float]]]  # id -> (hour start, state, sum)

pytestmark = pytest.mark.usefixtures("recorder_mock")


@pytest.fixture(autouse=True)
def no_read_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated meter answers at once: no MEP read budget, so a test imports at wire speed.

    The budget itself is tested on its own (``test_read_budget``); its speed is the bench's.
    """
    monkeypatch.setattr(history_module, "READ_RATE", None)


def history_meter(variants: str = "", days: int = 2) -> SimulatedMeter:
    return SimulatedMeter(KEY, image=MeterImage(history_days=days), variants=variants)


@pytest.fixture
async def lp_meter() -> SimulatedMeter:
    return history_meter()


@pytest.fixture
async def server(lp_meter: SimulatedMeter) -> AsyncIterator[SimServer]:
    server = await lp_meter.serve_tcp("mep")
    yield server
    await server.close()


async def setup_entry(hass: HomeAssistant, server: SimServer, **options: Any) -> MockConfigEntry:
    entry = add_meter_entry(hass, server.url, "mep", **options)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def coordinator_of(entry: MockConfigEntry) -> NesMeterCoordinator:
    coordinator: NesMeterCoordinator = entry.runtime_data
    return coordinator


async def poll(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await coordinator_of(entry).async_refresh()
    await hass.async_block_till_done()


async def import_all(hass: HomeAssistant, entry: MockConfigEntry, *, limit: int = 20) -> int:
    """Until a history pass has finished (and none is running): the live polls it took.

    The pass that setup's first poll started counts as taking no further poll.
    """
    coordinator = coordinator_of(entry)
    history = coordinator.history
    passes = history.passes
    for count in range(limit + 1):
        if count:
            await poll(hass, entry)
        await coordinator.async_history_idle()
        if history.passes > passes and history.reader is None:
            await async_wait_recording_done(hass)
            return count
    raise AssertionError("the history import did not finish")


async def stored_ids(hass: HomeAssistant, ids: set[str]) -> Rows:
    """The hourly rows of the statistics ``ids``: (start, state, sum) each."""
    result = await get_instance(hass).async_add_executor_job(
        statistics_during_period,
        hass,
        datetime(2000, 1, 1, tzinfo=UTC),
        None,
        ids,
        "hour",
        None,
        {"state", "sum"},
    )
    return {
        stat_id: [(datetime.fromtimestamp(row["start"], UTC), row["state"], row["sum"]) for row in rows]
        for stat_id, rows in result.items()
    }


async def stored(hass: HomeAssistant) -> Rows:
    return await stored_ids(hass, {IMPORT, EXPORT})


@contextlib.contextmanager
def paused_mid_pass() -> Iterator[asyncio.Event]:
    """Stop the history worker after its first read that imported something, mid-pass, until it is cancelled.

    The event is set once the worker stands there.
    """
    paused, never = asyncio.Event(), asyncio.Event()
    original = history_module.HistoryImporter.async_step

    async def step(self: history_module.HistoryImporter) -> bool:
        used = await original(self)
        if self.imported_until is not None and self.reader is not None and not paused.is_set():
            paused.set()
            await never.wait()
        return used

    with patch.object(history_module.HistoryImporter, "async_step", step):
        yield paused


def truth(meter: SimulatedMeter) -> Rows:
    """The rows the simulator's own record implies: one per hour-end reading, sums from 0."""
    out: Rows = {}
    for channel, stat_id in (("energy_import_wh", IMPORT), ("energy_export_wh", EXPORT)):
        track = Track()
        rows = []
        for end, values, _flags in meter.image.load_profile.expected():
            if end.minute == 0 and channel in values and (row := track.row(end, values[channel])):
                rows.append((row["start"], row["state"], row["sum"]))
        out[stat_id] = rows
    return out


def assert_rows_match(rows: Rows, expected: Rows) -> None:
    for stat_id in (IMPORT, EXPORT):
        got, want = rows[stat_id], expected[stat_id]
        assert [start for start, _, _ in got] == [start for start, _, _ in want]
        for (start, state, total), (_, true_state, true_sum) in zip(got, want, strict=True):
            assert state == pytest.approx(true_state, abs=1e-9), start
            assert total == pytest.approx(true_sum, abs=1e-5), start


def assert_hourly(rows: Rows) -> None:
    """Every hour from the first row on has a row, and sums never go down."""
    for stat_id in (IMPORT, EXPORT):
        starts = [start for start, _, _ in rows[stat_id]]
        assert starts == [starts[0] + timedelta(hours=k) for k in range(len(starts))], stat_id
        sums = [total for _, _, total in rows[stat_id]]
        assert sums == sorted(sums)


def test_statistic_ids_and_metadata() -> None:
    assert statistic_id("5712345678", "energy_import") == "nes_meter:5712345678_energy_import"
    assert statistic_id("mfg-AB 12__x_", "energy_export") == "nes_meter:mfg_ab_12_x_energy_export"
    assert statistic_id("---", "energy_import") == "nes_meter:meter_energy_import"
    channel = history_channel("energy_import_wh")
    assert channel is not None
    metadata = statistic_metadata("MFG-7", channel, "NES 83334")
    assert metadata["statistic_id"] == "nes_meter:mfg_7_energy_import"
    assert metadata["source"] == DOMAIN
    assert metadata["has_sum"] is True
    assert metadata["unit_of_measurement"] == "kWh"
    assert "has_mean" not in metadata
    # unit_class only where the recorder's table has the column (2025.11+): 2025.10 wrote nothing.
    assert ("unit_class" in metadata) is hasattr(StatisticsMeta, "unit_class")


def test_sum_never_decreases_and_first_row_is_the_base() -> None:
    track = Track()
    hour = datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert track.row(hour, 1_000_000) == {"start": hour - timedelta(hours=1), "state": 1000.0, "sum": 0.0}
    assert track.row(hour, 1_000_000) is None  # already written
    second = track.row(hour + timedelta(hours=1), 1_000_500)
    assert second is not None
    assert second["sum"] == 0.5
    exchanged = track.row(hour + timedelta(hours=2), 20)  # a new meter starts near 0
    assert exchanged is not None
    assert exchanged["sum"] == 0.5
    assert track.decreases == 1
    later = track.row(hour + timedelta(hours=3), 1020)
    assert later is not None
    assert later["sum"] == 1.5


async def test_first_import_matches_the_meter(
    hass: HomeAssistant, lp_meter: SimulatedMeter, server: SimServer, hass_client: ClientSessionGenerator
) -> None:
    """Everything the meter holds is imported, hour by hour, equal to the simulator's record."""
    entry = await setup_entry(hass, server)
    assert await import_all(hass, entry) == 0  # read between polls: setup's poll started it, no other needed
    rows = await stored(hass)
    assert_rows_match(rows, truth(lp_meter))
    assert_hourly(rows)
    assert len(rows[IMPORT]) >= 48
    assert rows[IMPORT][0][2] == 0.0
    listed = await get_instance(hass).async_add_executor_job(list_statistic_ids, hass)
    ids = {item["statistic_id"]: item for item in listed}
    assert ids[IMPORT]["source"] == DOMAIN
    assert ids[IMPORT]["has_sum"] is True
    assert ids[IMPORT]["statistics_unit_of_measurement"] == "kWh"
    history = coordinator_of(entry).history
    assert history.imported_until == rows[IMPORT][-1][0] + timedelta(hours=1)
    assert hass.states.get(UNTIL).state == history.imported_until.isoformat()
    assert hass.states.get(PENDING).state == "0"
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["history"]["layout"]["interval_minutes"] == 15
    assert diagnostics["history"]["layout"]["channels"] == 2
    assert diagnostics["history"]["pending_hours"] == 0
    assert SERIAL not in str(diagnostics["history"])
    assert await hass.config_entries.async_unload(entry.entry_id)


def test_read_budget() -> None:
    """One table read per second on average, every request counted; None: no budget."""
    budget = ReadBudget(1.0)
    assert budget.delay(0, 100.0) == 0.0
    assert budget.delay(12, 100.5) == 12.0  # setup sent 12 requests: 12 s of budget used
    assert budget.delay(12, 106.5) == pytest.approx(6.0)
    assert budget.delay(14, 110.5) == pytest.approx(4.0)  # a live poll's 2 requests meanwhile
    assert budget.delay(14, 115.0) == 0.0
    assert budget.delay(15, 115.0) == 1.0  # one read: the next a second later
    assert budget.delay(15, 200.0) == 0.0  # idle time is not saved up
    assert budget.delay(16, 200.0) == 1.0
    assert ReadBudget(None).delay(1000, 0.0) == 0.0


def test_read_budget_counts_a_held_port_from_its_start() -> None:
    """Requests sent while the port was held count from when it was taken: the drain meanwhile is theirs."""
    budget = ReadBudget(1.0)
    budget.spent(0, 100.0, 10, 102.0)  # setup: 10 requests in 2 s
    assert budget.delay(10, 102.0) == pytest.approx(8.0)  # not 10: two of them were paid while it ran
    assert budget.delay(10, 110.0) == 0.0
    budget.spent(10, 110.0, 12, 110.4)  # a read of 2 requests
    assert budget.delay(12, 110.4) == pytest.approx(1.6)
    budget.spent(12, 111.0, 15, 111.5)  # a poll while the worker waits: counted from 111.0
    assert budget.delay(15, 111.5) == pytest.approx(1.6 - 0.6 + 3 - 0.5)
    budget.spent(15, 109.0, 16, 120.0)  # a start before the last look is taken as that look
    assert budget.delay(16, 120.0) == 0.0
    unbounded = ReadBudget(None)
    unbounded.spent(0, 0.0, 1000, 1.0)
    assert unbounded.delay(1000, 1.0) == 0.0


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_a_week_is_imported_between_polls(hass: HomeAssistant, transport: str) -> None:
    """The whole week the meter holds is read between live polls, not one read per poll.

    Live polls made while it runs each read the live values and wait for at most the one
    history read in progress.
    """
    meter = history_meter(days=7)
    server = await meter.serve_tcp(transport)
    try:
        entry = add_meter_entry(hass, server.url, transport)
        assert await hass.config_entries.async_setup(entry.entry_id)
        coordinator = coordinator_of(entry)
        history = coordinator.history
        assert history.budget.rate is None
        live = meter.stats.table_reads[tables.BT28]
        polls = 0
        while history.reader is not None and polls < 3:  # live polls while the import runs
            await coordinator.async_refresh()
            assert coordinator.last_update_success
            polls += 1
        assert meter.stats.table_reads[tables.BT28] == live + polls
        await coordinator.async_history_idle()
        await async_wait_recording_done(hass)
        assert history.passes == 1
        assert history.reads_done >= 20  # a week is more than 20 table reads: none of them waited for a poll
        assert history.poll_wait_max_reads <= 1
        rows = await stored(hass)
        assert_rows_match(rows, truth(meter))
        assert len(rows[IMPORT]) >= 7 * 24
        assert hass.states.get(PENDING).state == "0"
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()


async def test_the_mep_import_keeps_to_the_read_budget(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch, lp_meter: SimulatedMeter, server: SimServer
) -> None:
    """On MEP the import waits for the guide's budget, which setup's own requests have used up."""
    monkeypatch.setattr(history_module, "READ_RATE", 1.0)
    entry = await setup_entry(hass, server)
    history = coordinator_of(entry).history
    assert history.budget.rate == 1.0
    assert history.delay() > 0  # setup's requests came faster than one a second
    assert await hass.config_entries.async_unload(entry.entry_id)  # the waiting worker is stopped


async def test_one_log_line_when_the_backfill_is_done(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture, lp_meter: SimulatedMeter, server: SimServer
) -> None:
    with caplog.at_level(logging.INFO, logger="custom_components.nes_meter.history"):
        entry = await setup_entry(hass, server)
        await import_all(hass, entry)
        rows = await stored(hass)
        await poll(hass, entry)
        await coordinator_of(entry).async_history_idle()
    lines = [record for record in caplog.records if "meter history imported" in record.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.INFO
    assert f"{len(rows[IMPORT])} hours" in lines[0].getMessage()
    assert SERIAL not in lines[0].getMessage()
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.freeze_time(tick=True)
async def test_catch_up_after_an_outage_is_exact_per_hour(
    hass: HomeAssistant, lp_meter: SimulatedMeter, server: SimServer, freezer: FrozenDateTimeFactory
) -> None:
    """Six hours without the port: the hours are read back from the meter, not lumped into one."""
    entry = await setup_entry(hass, server)
    await import_all(hass, entry)
    before = await stored(hass)
    port = int(server.url.rsplit(":", 1)[1])
    await server.close()
    await poll(hass, entry)  # the port is gone
    freezer.move_to(dt_util.utcnow() + timedelta(hours=6))
    for _ in range(3):  # meanwhile the live poll fails
        await poll(hass, entry)
    again = await lp_meter.serve_tcp("mep", port=port)
    try:
        freezer.move_to(dt_util.utcnow() + timedelta(minutes=2))  # past any reconnect backoff
        await import_all(hass, entry)
        rows = await stored(hass)
        assert_rows_match(rows, truth(lp_meter))
        assert_hourly(rows)
        assert len(rows[IMPORT]) >= len(before[IMPORT]) + 6
        assert rows[IMPORT][: len(before[IMPORT])] == before[IMPORT]  # nothing earlier changed
        deltas = [b[2] - a[2] for a, b in pairwise(rows[IMPORT])]
        new = deltas[len(before[IMPORT]) - 1 :]
        assert max(new) < 0.5 * sum(new)  # spread over the hours, not one spike
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await again.close()


async def test_reimport_gives_identical_rows(hass: HomeAssistant, lp_meter: SimulatedMeter, server: SimServer) -> None:
    entry = await setup_entry(hass, server)
    await import_all(hass, entry)
    first = await stored(hass)
    history = coordinator_of(entry).history
    middle = first[IMPORT][len(first[IMPORT]) // 2][0]
    for since in (middle, first[IMPORT][0][0]):
        await history.async_reimport(since)
        await import_all(hass, entry)
        assert await stored(hass) == first
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_restart_in_the_middle_of_an_import(
    hass: HomeAssistant, lp_meter: SimulatedMeter, server: SimServer
) -> None:
    """Unload after some reads, set up again: the import continues with no gap and no duplicate."""
    entry = add_meter_entry(hass, server.url, "mep")
    with paused_mid_pass() as paused:
        assert await hass.config_entries.async_setup(entry.entry_id)
        await paused.wait()
        history = coordinator_of(entry).history
        assert history.reader is not None  # interrupted mid-pass
        await async_wait_recording_done(hass)
        partial = await stored(hass)
        assert partial[IMPORT]
        assert await hass.config_entries.async_unload(entry.entry_id)
    assert await stored(hass) == partial  # unloading keeps the statistics
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await import_all(hass, entry)
    rows = await stored(hass)
    assert_rows_match(rows, truth(lp_meter))
    assert_hourly(rows)
    assert rows[IMPORT][: len(partial[IMPORT])] == partial[IMPORT]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_cancelled_worker_does_not_hold_the_import_back(
    hass: HomeAssistant, lp_meter: SimulatedMeter, server: SimServer
) -> None:
    """A worker cancelled mid-pass while polling goes on: the next poll resumes the import at once.

    A cancellation is not a failed read: no minute's wait (RETRY_AFTER) before the next pass.
    Home Assistant cancels the tasks of an instance it stops for its recovery mode, and the
    optical import then took a minute longer than its reads.
    """
    entry = add_meter_entry(hass, server.url, "mep")
    with paused_mid_pass() as paused:
        assert await hass.config_entries.async_setup(entry.entry_id)
        await paused.wait()
        coordinator = coordinator_of(entry)
        task = coordinator._history_task
        assert task is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert coordinator.history.reader is None
        assert await import_all(hass, entry, limit=1) == 1  # the next poll's pass runs to the end
    rows = await stored(hass)
    assert_rows_match(rows, truth(lp_meter))
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_opted_out_hours_are_skipped_and_the_next_carries_them(hass: HomeAssistant) -> None:
    meter = history_meter("lp-opt-out")
    server = await meter.serve_tcp("mep")
    try:
        entry = await setup_entry(hass, server)
        await import_all(hass, entry)
        rows = await stored(hass)
        assert_rows_match(rows, truth(meter))
        starts = [start for start, _, _ in rows[IMPORT]]
        gaps = [b - a for a, b in pairwise(starts)]
        assert max(gaps) == timedelta(hours=7)  # readings 06:15-12:00 opted out: the hours ending 07-12 have no row
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()


async def test_hourly_profile(hass: HomeAssistant) -> None:
    meter = history_meter("lp-60min")
    server = await meter.serve_tcp("ir")
    try:
        entry = MockConfigEntry(
            domain=DOMAIN,
            unique_id=SERIAL,
            data={CONF_PORT: server.url, CONF_TRANSPORT: "ir", CONF_KEY: KEY_TEXT},
        )
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        await import_all(hass, entry)
        rows = await stored(hass)
        assert_rows_match(rows, truth(meter))
        assert_hourly(rows)
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()


@pytest.mark.freeze_time(tick=True)
async def test_meter_without_load_profile(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture, freezer: FrozenDateTimeFactory
) -> None:
    """No statistics, the history sensors unavailable, and one log line however often it is asked."""
    meter = history_meter("lp-off")
    server = await meter.serve_tcp("mep")
    try:
        entry = await setup_entry(hass, server)
        with caplog.at_level(logging.WARNING):
            await import_all(hass, entry)
            freezer.move_to(dt_util.utcnow() + timedelta(hours=7))  # the absent profile is asked again
            await import_all(hass, entry)
        assert coordinator_of(entry).history.passes == 2
        assert caplog.text.count("keeps no load profile") == 1
        assert await stored(hass) == {}
        assert hass.states.get(UNTIL).state == STATE_UNAVAILABLE
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()


async def test_statistics_removed_only_with_the_entry(
    hass: HomeAssistant, lp_meter: SimulatedMeter, server: SimServer
) -> None:
    entry = await setup_entry(hass, server)
    await import_all(hass, entry)
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)
    assert set(await stored(hass)) == {IMPORT, EXPORT}
    await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)
    assert await stored(hass) == {}


async def test_energy_dashboard_accepts_the_history_statistics(
    hass: HomeAssistant, lp_meter: SimulatedMeter, server: SimServer
) -> None:
    entry = await setup_entry(hass, server)
    await import_all(hass, entry)
    assert await energy_dashboard_issues(hass, IMPORT, EXPORT) == []
    assert await hass.config_entries.async_unload(entry.entry_id)


def test_setup_text_points_to_the_history_statistics() -> None:
    """The config flow tells the user to pick the nes_meter: statistics instead of the sensors."""
    import json
    from pathlib import Path

    translations = Path(__file__).resolve().parents[1] / "custom_components" / DOMAIN / "translations"
    for path in translations.glob("*.json"):
        description = json.loads(path.read_text())["config"]["step"]["user"]["description"]
        assert "nes_meter:" in description, path.name
