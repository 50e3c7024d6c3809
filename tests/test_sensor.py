"""Every entity of a three-phase meter, and the diagnostics, against snapshots."""

from __future__ import annotations

from collections.abc import AsyncIterator

from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion
from syrupy.filters import props

from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import SimServer, SimulatedMeter

from .conftest import KEY, SERIAL, add_meter_entry

CLOCK_OFFSET = "sensor.nes_83334_clock_offset"


@pytest.fixture
async def loaded(hass: HomeAssistant) -> AsyncIterator[MockConfigEntry]:
    """A meter whose values stand still (speed 0), set up over loopback on the optical port."""
    meter = SimulatedMeter(KEY, image=MeterImage(speed=0))
    server: SimServer = await meter.serve_tcp("ir")
    entry = add_meter_entry(hass, server.url)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    yield entry
    assert await hass.config_entries.async_unload(entry.entry_id)
    await server.close()


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_all_entities(
    hass: HomeAssistant,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
    snapshot: SnapshotAssertion,
    loaded: MockConfigEntry,
) -> None:
    """States, attributes and registry entries of every entity, the opt-in ones enabled."""
    devices = dr.async_entries_for_config_entry(device_registry, loaded.entry_id)
    assert devices == snapshot(name="device")
    entries = er.async_entries_for_config_entry(entity_registry, loaded.entry_id)
    # 33 sensors, 16 power quality sensors, 19 alarm bits of an 8-byte BT03, 3 phase-loss sensors,
    # 6 event families
    assert len(entries) == 77
    for entry in sorted(entries, key=lambda entry: entry.entity_id):
        assert entry == snapshot(name=f"{entry.entity_id}-entry")
        assert entry.disabled_by is None
        state = hass.states.get(entry.entity_id)
        assert state is not None
        if entry.entity_id == CLOCK_OFFSET:
            # The simulated meter runs on the host clock, read to the whole second.
            assert abs(int(state.state)) <= 1
            assert dict(state.attributes) == snapshot(name=f"{entry.entity_id}-attributes")
        else:
            # An alarm's latched_since is when this test first read the bit.
            # The simulated meter's outages, sags and swells are relative to now.
            times = props("latched_since", "last", "power_off", "power_on", "time")
            assert state == snapshot(name=f"{entry.entity_id}-state", exclude=times)


async def test_default_entities(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, loaded: MockConfigEntry, snapshot: SnapshotAssertion
) -> None:
    """Which entities a new user gets enabled: the ones that change on every poll stay opt-in."""
    entries = er.async_entries_for_config_entry(entity_registry, loaded.entry_id)
    enabled = sorted(entry.entity_id for entry in entries if entry.disabled_by is None)
    assert enabled == snapshot


async def test_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    loaded: MockConfigEntry,
    snapshot: SnapshotAssertion,
) -> None:
    """The diagnostics a user pastes into an issue; clock and raw frames change with time."""
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, loaded)
    assert diagnostics["client"]["last_frames"]
    assert abs(diagnostics["clock"]["offset_seconds"]) <= 1
    trace = diagnostics["trace"]  # a fresh session's transcript, replayable as a test meter
    assert trace["format"] == "nes-meter-trace"
    assert "error" not in trace
    assert trace["result"]["snapshot"]["energy_import_wh"] == diagnostics["snapshot"]["energy_import_wh"]
    assert trace["result"]["identity"]["utility_serial"] == "**REDACTED**"
    assert not any(SERIAL.encode().hex() in frame["hex"] for frame in trace["frames"])
    assert len(trace["frames"]) > 10
    assert "PowerQuality(" in diagnostics["power_quality"]["quality"]
    # Times relative to now (the simulated meter's outages, clocks) are left out.
    assert diagnostics == snapshot(
        exclude=props("last_frames", "meter_time", "offset_seconds", "port", "trace", "quality", "tariff", "self_read")
    )
