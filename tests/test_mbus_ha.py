"""The gas, water and heat meters behind the meter in Home Assistant, against the simulated meter (variant mbus)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.nes_meter.const import DOMAIN
from custom_components.nes_meter.coordinator import NesMeterCoordinator
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import SimServer, SimulatedMeter
from nesmeter.tables.mbus import ET14, ET16

from .conftest import KEY, SERIAL, add_meter_entry, drain_rare_reads

pytestmark = pytest.mark.usefixtures("recorder_mock")

GAS = "sensor.gas_meter_10020387_volume"
WATER = "sensor.water_meter_12000071_volume"
HEAT_ENERGY = "sensor.heat_meter_06855817_energy"
HEAT_FLOW_TEMPERATURE = "sensor.heat_meter_06855817_flow_temperature"
GAS_READ_AT = "sensor.gas_meter_10020387_last_reading"


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> SimulatedMeter:
    return SimulatedMeter(KEY, image=MeterImage(speed=0), variants=getattr(request, "param", "mbus"))


@pytest.fixture
async def server(sim: SimulatedMeter) -> AsyncIterator[SimServer]:
    server = await sim.serve_tcp("mep")
    yield server
    await server.close()


async def setup(hass: HomeAssistant, server: SimServer) -> MockConfigEntry:
    entry = add_meter_entry(hass, server.url, "mep", enable_line="none")
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def newest(sim: SimulatedMeter, slot: int, counter: int = 0) -> float:
    """The simulator's counter at its newest hourly read, as the telegram carries it."""
    mbus = sim.image.mbus
    device = next(device for device in mbus.devices if device.slot == slot)
    value = device.counters[counter]
    return round(mbus.value(value, mbus.local_now().replace(minute=0, second=0)) / value.unit) * value.unit


@pytest.mark.parametrize("sim", ["mbus", "mbus-log"], indirect=True)
async def test_three_devices_linked_to_the_meter(
    hass: HomeAssistant,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
    sim: SimulatedMeter,
    server: SimServer,
) -> None:
    entry = await setup(hass, server)
    devices = dr.async_entries_for_config_entry(device_registry, entry.entry_id)
    (meter,) = [device for device in devices if (DOMAIN, SERIAL) in device.identifiers]
    behind = [device for device in devices if device.via_device_id]
    assert sorted((device.name, device.manufacturer, device.serial_number) for device in behind) == [
        ("Gas meter 10020387", "ACW", "10020387"),
        ("Heat meter 06855817", "KAM", "06855817"),
        ("Water meter 12000071", "ACW", "12000071"),
    ]
    assert {device.via_device_id for device in behind} == {meter.id}
    gas, water, energy = (hass.states.get(entity_id) for entity_id in (GAS, WATER, HEAT_ENERGY))
    assert gas is not None and water is not None and energy is not None
    assert float(gas.state) == pytest.approx(newest(sim, 1))
    assert (gas.attributes["device_class"], gas.attributes["unit_of_measurement"]) == ("gas", "m³")
    assert gas.attributes["state_class"] == "total_increasing"
    assert float(water.state) == pytest.approx(newest(sim, 2))
    assert water.attributes["device_class"] == "water"
    assert float(energy.state) == pytest.approx(newest(sim, 3))
    assert (energy.attributes["device_class"], energy.attributes["unit_of_measurement"]) == ("energy", "kWh")
    temperature = hass.states.get(HEAT_FLOW_TEMPERATURE)
    assert temperature is not None and float(temperature.state) == 101.69
    assert temperature.attributes["state_class"] == "measurement"
    read_at = hass.states.get(GAS_READ_AT)
    assert read_at is not None
    local_read = sim.image.mbus.local_now().replace(minute=0, second=0)
    meter_offset = entry.runtime_data.billing.utc_offset
    assert meter_offset is not None
    assert dt_util.parse_datetime(read_at.state) == (local_read - meter_offset).replace(tzinfo=dt_util.UTC)
    assert read_at.attributes["device_time"] == local_read.isoformat()
    unique = entity_registry.async_get(GAS)
    assert unique is not None and unique.unique_id == f"{SERIAL}_mbus_acw10020387_volume_m3"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_energy_dashboard_takes_gas_water_and_heat(hass: HomeAssistant, server: SimServer) -> None:
    from homeassistant.components.energy import data as energy_data, validate

    entry = await setup(hass, server)
    await async_wait_recording_done(hass)
    now = dt_util.utcnow()
    do_adhoc_statistics(hass, start=now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0))
    await async_wait_recording_done(hass)

    def source(kind: str, stat: str) -> dict[str, Any]:
        return {
            "type": kind,
            "stat_energy_from": stat,
            "stat_cost": None,
            "entity_energy_price": None,
            "number_energy_price": None,
        }

    manager = await energy_data.async_get_manager(hass)
    # district heat in kWh goes into the gas section, which takes energy units too
    await manager.async_update(
        {"energy_sources": [source("gas", GAS), source("water", WATER), source("gas", HEAT_ENERGY)]}
    )  # type: ignore[typeddict-item]
    result = await validate.async_validate(hass)
    assert len(result.energy_sources) == 3
    assert [issue for group in result.energy_sources for issue in group.issues.values()] == []
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_pass_reads_only_what_changed(hass: HomeAssistant, sim: SimulatedMeter, server: SimServer) -> None:
    entry = await setup(hass, server)
    coordinator: NesMeterCoordinator = entry.runtime_data
    assert "mbus" in coordinator.rare_reads.names
    reads: list[int] = []
    original = coordinator.client.read_table

    async def counted(table_id: int, offset: int, count: int) -> bytes:
        reads.append(table_id)
        return await original(table_id, offset, count)

    coordinator.client.read_table = counted  # type: ignore[method-assign]
    await drain_rare_reads(coordinator, "mbus")
    assert reads.count(ET14) == 1 and ET16 not in reads  # no new read by the meter: no device data
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_diagnostics_list_the_devices(
    hass: HomeAssistant, server: SimServer, hass_client: ClientSessionGenerator
) -> None:
    entry = await setup(hass, server)
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    mbus = diagnostics["mbus"]
    assert mbus["module"] is True
    assert [(device["slot"], device["medium"], device["serial"]) for device in mbus["devices"]] == [
        (1, "gas", "10020387"),
        (2, "water", "12000071"),
        (3, "heat", "06855817"),
    ]
    assert "TEST CYBLE" not in str(diagnostics)  # the water meter's customer id is never decoded
    datetime.fromisoformat(mbus["devices"][0]["read_at"])
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize("sim", [""], indirect=True)
async def test_a_meter_without_m_bus_has_no_devices_behind_it(
    hass: HomeAssistant, device_registry: dr.DeviceRegistry, server: SimServer
) -> None:
    entry = await setup(hass, server)
    devices = dr.async_entries_for_config_entry(device_registry, entry.entry_id)
    assert [device.via_device_id for device in devices] == [None]
    assert "mbus" not in entry.runtime_data.rare_reads.names
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_new_read_updates_and_a_lower_one_is_held(
    hass: HomeAssistant, sim: SimulatedMeter, server: SimServer
) -> None:
    entry = await setup(hass, server)
    coordinator: NesMeterCoordinator = entry.runtime_data
    first = float(hass.states.get(GAS).state)  # type: ignore[union-attr]
    sim.image.mbus.skip(3)  # the meter reads its devices three times more
    await drain_rare_reads(coordinator, "mbus")
    later = float(hass.states.get(GAS).state)  # type: ignore[union-attr]
    assert later == pytest.approx(newest(sim, 1)) and later > first
    sim.image.mbus.value = lambda counter, when: 1.0  # type: ignore[method-assign]  # a device that glitches low
    sim.image.mbus.skip(1)
    await drain_rare_reads(coordinator, "mbus")
    assert float(hass.states.get(GAS).state) == later  # type: ignore[union-attr]
    assert float(hass.states.get(HEAT_ENERGY).state) > 1.0  # type: ignore[union-attr]
    assert coordinator.mbus.guard.as_dict()["dropped_readings"]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_the_totals_outlive_a_restart_as_the_guards_baseline(
    hass: HomeAssistant, sim: SimulatedMeter, server: SimServer
) -> None:
    """A glitching first read after a reload must not reach the Energy dashboard."""
    entry = await setup(hass, server)
    shown = float(hass.states.get(GAS).state)  # type: ignore[union-attr]
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    sim.image.mbus.value = lambda counter, when: 0.5  # type: ignore[method-assign]
    sim.image.mbus.skip(1)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert float(hass.states.get(GAS).state) == shown  # type: ignore[union-attr]
    assert await hass.config_entries.async_unload(entry.entry_id)
