"""The meter history's cost statistics, from a fixed price or a price entity's hourly mean."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from itertools import pairwise

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder.models import StatisticMeanType
from homeassistant.components.recorder.statistics import async_import_statistics, list_statistic_ids
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import async_wait_recording_done

from custom_components.nes_meter import history as history_module
from custom_components.nes_meter.compat import STATISTICS_UNIT_CLASS
from custom_components.nes_meter.const import DOMAIN
from custom_components.nes_meter.history_cost import per_kwh, prices
from nesmeter.sim.simulator import SimServer, SimulatedMeter

from .conftest import SERIAL, add_meter_entry, energy_dashboard_issues
from .test_history import EXPORT, IMPORT, coordinator_of, history_meter, import_all, poll, stored_ids

COST = f"{DOMAIN}:{SERIAL}_energy_import_cost"
COMPENSATION = f"{DOMAIN}:{SERIAL}_energy_export_compensation"
PRICE = "sensor.spot_price"

pytestmark = pytest.mark.usefixtures("recorder_mock")


@pytest.fixture(autouse=True)
def no_read_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Import at wire speed, as in test_history."""
    monkeypatch.setattr(history_module, "READ_RATE", None)


@pytest.fixture
async def lp_meter() -> SimulatedMeter:
    return history_meter()


@pytest.fixture
async def server(lp_meter: SimulatedMeter) -> AsyncIterator[SimServer]:
    server = await lp_meter.serve_tcp("mep")
    yield server
    await server.close()


def test_price_options() -> None:
    assert prices({}) == {}
    assert prices({"import_price": 2.5})["energy_import"].fixed == 2.5
    both = prices({"import_price": 2.5, "import_price_entity": PRICE, "export_price": 0})
    assert both["energy_import"].entity_id == PRICE  # the entity wins
    assert both["energy_export"].fixed == 0.0
    assert per_kwh(900.0, "DKK/MWh") == pytest.approx(0.9)
    assert per_kwh(0.9, "DKK/kWh") == 0.9
    assert per_kwh(0.0009, "EUR / Wh") == pytest.approx(0.9)


async def setup(hass: HomeAssistant, server: SimServer, **options: object) -> MockConfigEntry:
    entry = add_meter_entry(hass, server.url, "mep", **options)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await import_all(hass, entry)
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)
    return entry


def hourly(rows: list[tuple[datetime, float, float]]) -> dict[datetime, float]:
    """Hour start -> what the hour added to the sum."""
    return {b[0]: b[2] - a[2] for a, b in pairwise(rows)}


async def test_fixed_prices_cost_every_imported_hour(hass: HomeAssistant, server: SimServer) -> None:
    entry = await setup(hass, server, import_price=2.5, export_price=0.4)
    rows = await stored_ids(hass, {IMPORT, EXPORT, COST, COMPENSATION})
    assert [start for start, _, _ in rows[COST]] == [start for start, _, _ in rows[IMPORT]]  # every hour
    assert [start for start, _, _ in rows[COMPENSATION]] == [start for start, _, _ in rows[EXPORT]]
    assert len(rows[COST]) >= 48
    energy, cost = hourly(rows[IMPORT]), hourly(rows[COST])
    assert cost == pytest.approx({hour: 2.5 * kwh for hour, kwh in energy.items()}, abs=1e-5)
    assert rows[COST][-1][2] == pytest.approx(2.5 * rows[IMPORT][-1][2], abs=1e-5)
    assert rows[COMPENSATION][-1][2] == pytest.approx(0.4 * rows[EXPORT][-1][2], abs=1e-5)
    assert rows[COST][-1][2] > 0
    listed = await get_instance(hass).async_add_executor_job(list_statistic_ids, hass)
    units = {item["statistic_id"]: item["statistics_unit_of_measurement"] for item in listed}
    assert units[COST] == units[COMPENSATION] == hass.config.currency
    assert await energy_dashboard_issues(hass, IMPORT, EXPORT, COST, COMPENSATION) == []
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_no_price_no_cost(hass: HomeAssistant, server: SimServer) -> None:
    entry = await setup(hass, server)
    rows = await stored_ids(hass, {IMPORT, COST, COMPENSATION})
    assert rows[IMPORT]
    assert COST not in rows
    assert COMPENSATION not in rows
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_price_entity_prices_each_hour_at_its_hourly_mean(hass: HomeAssistant, server: SimServer) -> None:
    """Each hour at the entity's mean (DKK/MWh); hours the recorder has not compiled yet wait for it."""
    hass.states.async_set(PRICE, "1000", {"unit_of_measurement": "DKK/MWh", "state_class": "measurement"})
    now = dt_util.utcnow().replace(minute=0, second=0, microsecond=0)
    first = now - timedelta(days=4)
    hours = [first + timedelta(hours=index) for index in range(int((now - first) / timedelta(hours=1)))]
    compiled = hours[:-3]  # the newest three hours not compiled yet

    def mean(hour: datetime) -> float:
        return 100.0 + hour.hour * 10  # DKK/MWh, a price per hour of the day

    def add_means(hours_: list[datetime]) -> None:
        metadata = {
            "has_sum": False,
            "mean_type": StatisticMeanType.ARITHMETIC,
            "name": None,
            "source": "recorder",
            "statistic_id": PRICE,
            "unit_of_measurement": "DKK/MWh",
        }
        if STATISTICS_UNIT_CLASS:
            metadata["unit_class"] = None  # a price has no unit class
        stats = [{"start": hour, "mean": mean(hour), "min": mean(hour), "max": mean(hour)} for hour in hours_]
        async_import_statistics(hass, metadata, stats)  # type: ignore[arg-type]

    add_means(compiled)
    await async_wait_recording_done(hass)
    entry = await setup(hass, server, import_price_entity=PRICE)
    rows = await stored_ids(hass, {IMPORT, COST})
    cost_hours = [start for start, _, _ in rows[COST]]
    assert cost_hours == [start for start, _, _ in rows[IMPORT] if start <= compiled[-1]]
    energy, cost = hourly(rows[IMPORT]), hourly(rows[COST])
    assert cost == pytest.approx({hour: energy[hour] * mean(hour) / 1000 for hour in cost}, abs=1e-6)
    assert rows[IMPORT][0][0] > compiled[0]  # the meter's 2 days lie inside the 4 days of prices
    waiting = coordinator_of(entry).history.cost.as_dict()["energy_import"]
    assert waiting["hours_waiting"] == len(rows[IMPORT]) - len(rows[COST])
    assert waiting["hours_waiting"] >= 2

    add_means(hours[-3:])  # the recorder compiles the newest hours
    await async_wait_recording_done(hass)
    coordinator = coordinator_of(entry)
    await coordinator.history.async_price()  # nothing new to read: the prices alone
    await async_wait_recording_done(hass)
    rows = await stored_ids(hass, {IMPORT, COST})
    assert [start for start, _, _ in rows[COST]] == [start for start, _, _ in rows[IMPORT]]
    cost = hourly(rows[COST])
    assert cost == pytest.approx({hour: energy[hour] * mean(hour) / 1000 for hour in cost}, abs=1e-6)
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.freeze_time(tick=True)
async def test_priced_hours_keep_their_price_and_later_hours_get_the_new_one(
    hass: HomeAssistant, lp_meter: SimulatedMeter, server: SimServer, freezer: FrozenDateTimeFactory
) -> None:
    """A price set after the first import prices it all; a new price leaves those hours and prices the later ones."""
    entry = await setup(hass, server)
    before = await stored_ids(hass, {IMPORT})
    assert hass.config_entries.async_update_entry(entry, options={"import_price": 1.0})
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await import_all(hass, entry)
    await async_wait_recording_done(hass)
    first = await stored_ids(hass, {IMPORT, COST})
    assert [start for start, _, _ in first[COST]] == [start for start, _, _ in before[IMPORT]]  # every hour
    assert first[COST][-1][2] == pytest.approx(first[IMPORT][-1][2], abs=1e-5)

    assert hass.config_entries.async_update_entry(entry, options={"import_price": 3.0})
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    history = coordinator_of(entry).history
    await history.async_reimport(first[IMPORT][len(first[IMPORT]) // 2][0])  # the same hours read again
    await import_all(hass, entry)
    freezer.move_to(dt_util.utcnow() + timedelta(hours=3))  # three more hours on the meter
    await poll(hass, entry)
    await import_all(hass, entry)
    await async_wait_recording_done(hass)
    rows = await stored_ids(hass, {IMPORT, COST})
    assert rows[COST][: len(first[COST])] == first[COST]  # priced hours keep their price
    later = hourly(rows[COST])
    energy = hourly(rows[IMPORT])
    new_hours = [start for start, _, _ in rows[COST][len(first[COST]) :]]
    assert len(new_hours) >= 2
    assert {hour: later[hour] for hour in new_hours} == pytest.approx(
        {hour: 3.0 * energy[hour] for hour in new_hours}, abs=1e-5
    )
    assert [start for start, _, _ in rows[COST]] == [start for start, _, _ in rows[IMPORT]]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_the_options_flow_sets_the_prices(hass: HomeAssistant, server: SimServer) -> None:
    entry = await setup(hass, server)
    flow = await hass.config_entries.options.async_init(entry.entry_id)
    fields = {str(key): key for key in flow["data_schema"].schema}
    for name in ("import_price", "import_price_entity", "export_price", "export_price_entity"):
        assert name in fields
    result = await hass.config_entries.options.async_configure(
        flow["flow_id"],
        {
            "update_interval": 10,
            "enable_line": "rts",
            "mep_security": "plain",
            "tls_key_id": "mbk",
            "import_price": 2.0,
        },
    )
    assert result["type"] == "create_entry"
    await hass.async_block_till_done()
    assert entry.options["import_price"] == 2.0
    await import_all(hass, entry)
    await async_wait_recording_done(hass)
    rows = await stored_ids(hass, {IMPORT, COST})
    assert len(rows[COST]) == len(rows[IMPORT])
    assert await hass.config_entries.async_unload(entry.entry_id)
