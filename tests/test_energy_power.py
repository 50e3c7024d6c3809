"""power_net is the grid power the Energy dashboard takes (stat_rate: W, measurement, + = import)."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
)

from custom_components.nes_meter.const import DOMAIN
from nesmeter.sim.simulator import SimulatedMeter

from .conftest import KEY, SERIAL, add_meter_entry

pytestmark = pytest.mark.usefixtures("recorder_mock")

IMPORT = f"{DOMAIN}:{SERIAL}_energy_import"
EXPORT = f"{DOMAIN}:{SERIAL}_energy_export"


def grid_with_power(power: str) -> dict[str, Any] | None:
    """A grid source with power_net as its power, in this release's format; None: no grid power here.

    2026.3+: one grid source per connection with ``stat_rate``; 2025.12-2026.2: the legacy
    source's ``power`` list; older releases have no grid power (the test is skipped there).
    """
    from homeassistant.components.energy import data as energy_data

    if "stat_rate" in energy_data.GridSourceType.__annotations__:
        return {
            "type": "grid",
            "stat_energy_from": IMPORT,
            "stat_energy_to": EXPORT,
            "stat_cost": None,
            "entity_energy_price": None,
            "number_energy_price": None,
            "stat_compensation": None,
            "entity_energy_price_export": None,
            "number_energy_price_export": None,
            "stat_rate": power,
            "cost_adjustment_day": 0,
        }
    if hasattr(energy_data, "GridPowerSourceType"):
        flow = {"entity_energy_price": None, "number_energy_price": None}
        return {
            "type": "grid",
            "flow_from": [{"stat_energy_from": IMPORT, "stat_cost": None, **flow}],
            "flow_to": [{"stat_energy_to": EXPORT, "stat_compensation": None, **flow}],
            "power": [{"stat_rate": power}],
            "cost_adjustment_day": 0,
        }
    return None


async def test_power_net_passes_the_energy_dashboards_power_check(hass: HomeAssistant) -> None:
    from homeassistant.components.energy import data as energy_data, validate

    if grid_with_power("sensor.any") is None:
        pytest.skip("this Home Assistant has no grid power in the Energy dashboard (2025.12+)")
    meter = SimulatedMeter(KEY)
    server = await meter.serve_tcp("mep")
    try:
        entry = add_meter_entry(hass, server.url, "mep")
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        registry = er.async_get(hass)
        power_net = registry.async_get_entity_id("sensor", DOMAIN, f"{SERIAL}_power_net")
        voltage = registry.async_get_entity_id("sensor", DOMAIN, f"{SERIAL}_voltage_l1")
        assert power_net is not None
        assert voltage is not None
        state = hass.states.get(power_net)
        assert state is not None
        snapshot = entry.runtime_data.data
        assert float(state.state) == pytest.approx(snapshot.power_import_w - snapshot.power_export_w, abs=0.5)
        assert state.attributes["unit_of_measurement"] == "W"
        await async_wait_recording_done(hass)
        now = dt_util.utcnow()
        do_adhoc_statistics(hass, start=now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0))
        await async_wait_recording_done(hass)
        manager = await energy_data.async_get_manager(hass)
        await manager.async_update({"energy_sources": [grid_with_power(power_net)]})  # type: ignore[typeddict-item]
        result = await validate.async_validate(hass)
        issues = [issue for group in result.energy_sources for issue in group.issues.values()]
        assert [issue for issue in issues if power_net in str(issue.affected_entities)] == []
        # The check is real: a sensor that is no power is refused in the same place.
        await manager.async_update({"energy_sources": [grid_with_power(voltage)]})  # type: ignore[typeddict-item]
        result = await validate.async_validate(hass)
        issues = [issue for group in result.energy_sources for issue in group.issues.values()]
        assert any(voltage in str(issue.affected_entities) for issue in issues)
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()
