"""The counter guard's memory outlives reloads and restarts: no 0 kWh, no booked-again lifetime."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, mock_restore_cache_with_extra_data
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.nes_meter.const import DOMAIN
from custom_components.nes_meter.guard import DECREASE_CONFIRMATIONS
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import SimServer, SimulatedMeter

from .conftest import KEY, SERIAL, add_meter_entry

ENERGY = "sensor.nes_83334_energy_import"
RESTORED_KWH = 500.0  # above the simulated meter's 344.18 kWh


@pytest.fixture
def meter() -> SimulatedMeter:
    """A meter whose counters stand still, so a held value is easy to tell from a new one."""
    return SimulatedMeter(KEY, image=MeterImage(speed=0))


def make_entry(hass: HomeAssistant, server: SimServer) -> MockConfigEntry:
    return add_meter_entry(hass, server.url)


def energy(hass: HomeAssistant) -> str:
    state = hass.states.get(ENERGY)
    assert state is not None
    return state.state


async def poll(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await entry.runtime_data.async_refresh()
    await hass.async_block_till_done()


async def test_zero_after_a_reload_is_not_written(
    hass: HomeAssistant, meter: SimulatedMeter, ir_server: SimServer
) -> None:
    """The reload after an options change used to forget the guard, and a glitching 0 went through."""
    entry = make_entry(hass, ir_server)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    before = energy(hass)
    assert float(before) == pytest.approx(344.18)

    meter.image.import_wh = 0.0  # the meter glitches just as the entry reloads
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert energy(hass) == before
    await poll(hass, entry)
    assert energy(hass) == before
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_restart_restores_the_baseline_and_accepts_a_lasting_decrease(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    entity_registry: er.EntityRegistry,
    ir_server: SimServer,
) -> None:
    """The value shown before the restart is the baseline; a lower reading that stays is a new meter."""
    entry = make_entry(hass, ir_server)
    entity_registry.async_get_or_create(
        "sensor", DOMAIN, f"{SERIAL}_energy_import", config_entry=entry, suggested_object_id="nes_83334_energy_import"
    )
    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State(ENERGY, str(RESTORED_KWH)),
                {"native_value": RESTORED_KWH, "native_unit_of_measurement": "kWh"},
            )
        ],
    )
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert float(energy(hass)) == RESTORED_KWH  # the meter's lower 344.18 kWh is held

    for _ in range(DECREASE_CONFIRMATIONS - 2):
        await poll(hass, entry)
        assert float(energy(hass)) == RESTORED_KWH
    await poll(hass, entry)
    assert float(energy(hass)) == pytest.approx(344.18)  # the fifth lower reading in a row

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["guard"]["restored_counters"] == ["energy_import_wh"]
    assert diagnostics["guard"]["accepted_resets"] == {"energy_import_wh": 1}
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_restart_restores_a_tier_counter(hass: HomeAssistant, entity_registry: er.EntityRegistry) -> None:
    """Tier energies are guarded like the totals: a lower first reading after a restart is held."""
    server = await SimulatedMeter(KEY, image=MeterImage(speed=0), variants="tou").serve_tcp("ir")
    tier_1 = "sensor.nes_83334_energy_import_tier_1"
    entry = make_entry(hass, server)
    entity_registry.async_get_or_create(
        "sensor", DOMAIN, f"{SERIAL}_energy_import_tier_1", config_entry=entry, suggested_object_id=tier_1[7:]
    )
    mock_restore_cache_with_extra_data(
        hass, [(State(tier_1, "9999.0"), {"native_value": 9999.0, "native_unit_of_measurement": "kWh"})]
    )
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    state = hass.states.get(tier_1)
    assert state is not None
    assert float(state.state) == 9999.0
    assert "energy_import_tier_1_wh" in entry.runtime_data.guard.restored
    assert await hass.config_entries.async_unload(entry.entry_id)
    await server.close()


@pytest.mark.parametrize(
    "extra_data",
    [
        {"native_value": 500000, "native_unit_of_measurement": "Wh"},  # not the sensor's native unit
        {"native_value": "500", "native_unit_of_measurement": "kWh"},  # not a number
    ],
)
async def test_unusable_restored_state_is_ignored(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, ir_server: SimServer, extra_data: dict[str, Any]
) -> None:
    entry = make_entry(hass, ir_server)
    entity_registry.async_get_or_create(
        "sensor", DOMAIN, f"{SERIAL}_energy_import", config_entry=entry, suggested_object_id="nes_83334_energy_import"
    )
    mock_restore_cache_with_extra_data(hass, [(State(ENERGY, "500"), extra_data)])
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert float(energy(hass)) == pytest.approx(344.18)
    assert await hass.config_entries.async_unload(entry.entry_id)
