"""Meter events and alarm bits in Home Assistant, against the simulated meter over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from unittest.mock import AsyncMock

from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.nes_meter.coordinator import NesMeterCoordinator
from custom_components.nes_meter.rare_reads import STALE_AFTER
from nesmeter.errors import DecodeError, NoResponseError
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import SimServer, SimulatedMeter
from nesmeter.tables.events import BT03, BT71, BT74

from .conftest import KEY, add_meter_entry, drain_rare_reads

TAMPER = "event.nes_83334_tamper_events"
POWER = "event.nes_83334_power_events"
QUALITY = "event.nes_83334_power_quality_events"
METER = "event.nes_83334_meter_events"
MAGNETIC = "binary_sensor.nes_83334_magnetic_tamper"
COVER = "binary_sensor.nes_83334_cover_removed"


@pytest.fixture
def sim() -> SimulatedMeter:
    return SimulatedMeter(KEY, image=MeterImage(speed=0))


@pytest.fixture
async def server(sim: SimulatedMeter) -> AsyncIterator[SimServer]:
    server = await sim.serve_tcp("ir")
    yield server
    await server.close()


@pytest.fixture
def entry(hass: HomeAssistant, server: SimServer) -> MockConfigEntry:
    return add_meter_entry(hass, server.url)


async def setup(hass: HomeAssistant, entry: MockConfigEntry) -> NesMeterCoordinator:
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    coordinator: NesMeterCoordinator = entry.runtime_data
    await drain(coordinator)
    return coordinator


async def drain(coordinator: NesMeterCoordinator, *, header_poll: bool = False) -> int:
    """Live polls until the due event log and alarm reads are done; how many polls it took."""
    return await drain_rare_reads(coordinator, *(("status", "events") if header_poll else ()))


def record(hass: HomeAssistant, entity_ids: list[str]) -> list[Event[EventStateChangedData]]:
    """The events fired: state changes of an event entity that existed (not its restore after a reload)."""
    changes: list[Event[EventStateChangedData]] = []

    @callback
    def changed(event: Event[EventStateChangedData]) -> None:
        old, new = event.data["old_state"], event.data["new_state"]
        if old is not None and old.state != STATE_UNAVAILABLE and new is not None and new.state != old.state:
            changes.append(event)

    async_track_state_change_event(hass, entity_ids, changed)
    return changes


async def test_old_entries_do_not_fire_and_a_new_one_fires_once(
    hass: HomeAssistant, entry: MockConfigEntry, sim: SimulatedMeter
) -> None:
    """First setup imports the 100 entries silently; a new meter event fires exactly one HA event."""
    changes = record(hass, [TAMPER, POWER])
    coordinator = await setup(hass, entry)
    assert coordinator.events.imported == 100
    assert changes == []
    assert hass.states.get(TAMPER).state == STATE_UNKNOWN  # type: ignore[union-attr]

    reads_before = sim.stats.table_reads[BT74]
    logged = sim.image.events.inject("magnetic_tamper")
    polls = await drain(coordinator, header_poll=True)
    # BT03, the BT74 header, one record read, the header again: one read per live poll.
    assert polls == 4
    assert sim.stats.table_reads[BT74] - reads_before == 3
    assert [change.data["entity_id"] for change in changes] == [TAMPER]
    state = hass.states.get(TAMPER)
    assert state is not None
    assert state.attributes["event_type"] == "magnetic_tamper"
    assert state.attributes["meter_time"] == logged.time.isoformat()
    assert state.attributes["sequence"] == logged.sequence
    assert state.attributes["event_id"] == 89
    assert state.attributes["argument"] == 0
    assert state.attributes["user"] == "none"

    # Nothing new: a header poll reads the header only and fires nothing.
    reads_before = sim.stats.table_reads[BT74]
    assert await drain(coordinator, header_poll=True) == 2  # BT03, header
    assert sim.stats.table_reads[BT74] - reads_before == 1
    assert len(changes) == 1
    assert await hass.config_entries.async_unload(entry.entry_id)


# One event of each source's ids, the argument the simulated meter logs (None: the event's typical
# one) and the attributes its decoded argument gives beside the raw `argument`.
SOURCED = [
    (QUALITY, "voltage_sag", 829, 98, {"phase": "L2", "voltage_v": 207}),  # U31, YUK, EICT
    (POWER, "disconnect_changed", 258, 66, {"state": "open", "failed": False, "reason": "remote_command"}),  # EICT
    (POWER, "power_up", None, 2, {"reset_cause": "power_failure"}),
    (
        METER,
        "mbus_alarm",
        None,
        81,
        {"device": "mbus_1", "alarm": "status_alarm", "other_meaning": "mep_alarm"},  # EICT, BT03; U31's MEP
    ),
    (METER, "firmware_changed", None, 36, {"firmware": "3.70.21"}),
    (METER, "test_mode_started", None, 32, {}),  # C12.19, YUK
    (METER, "nvm_failure", None, 41, {"table": "BT23", "read_before_write": False, "read_after_write": True}),
    (TAMPER, "pulse_input_1_tamper", None, 75, {}),  # YUK, EICT, BT03
    (QUALITY, "load_side_voltage", None, 95, {"status": "present", "phases": ["L1"]}),  # YUK, BT03
    (QUALITY, "dimmer_effect", None, 111, {"phases": ["L2"]}),  # YUK only
]


async def test_an_event_of_each_source_fires_with_its_decoded_argument(
    hass: HomeAssistant, entry: MockConfigEntry, sim: SimulatedMeter
) -> None:
    """The simulated meter logs them, the client reads the bytes, each entity fires its own."""
    coordinator = await setup(hass, entry)
    changes = record(hass, [TAMPER, POWER, QUALITY, METER])
    logged = [sim.image.events.inject(name, argument) for _entity, name, argument, _id, _details in SOURCED]
    await drain(coordinator, header_poll=True)
    assert [change.data["entity_id"] for change in changes] == [entity for entity, *_ in SOURCED]
    for change, (_entity, name, _argument, event_id, details), entry_logged in zip(
        changes, SOURCED, logged, strict=True
    ):
        new_state = change.data["new_state"]
        assert new_state is not None
        attributes = dict(new_state.attributes)
        assert attributes.pop("event_type") == name
        assert attributes.pop("event_id") == event_id
        assert attributes.pop("argument") == entry_logged.argument
        assert attributes.pop("sequence") == entry_logged.sequence
        assert attributes.pop("meter_time") == entry_logged.time.isoformat()
        assert attributes.pop("user") == "none"
        attributes = {key: value for key, value in attributes.items() if key not in ("event_types", "friendly_name")}
        assert attributes == details, name
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_restart_does_not_fire_old_entries(
    hass: HomeAssistant, entry: MockConfigEntry, sim: SimulatedMeter
) -> None:
    coordinator = await setup(hass, entry)
    sim.image.events.inject("power_down")
    sim.image.events.inject("power_up", 3)
    await drain(coordinator, header_poll=True)
    fired = hass.states.get(POWER)
    assert fired is not None
    assert fired.attributes["event_type"] == "power_up"
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()

    changes = record(hass, [TAMPER, POWER])
    coordinator = await setup(hass, entry)
    await drain(coordinator, header_poll=True)
    # Restored as it was, nothing fired again.
    assert changes == []
    restored = hass.states.get(POWER)
    assert restored is not None
    assert restored.state == fired.state
    assert restored.attributes["sequence"] == fired.attributes["sequence"]
    sim.image.events.inject("cover_removed")
    await drain(coordinator, header_poll=True)
    assert [c.data["entity_id"] for c in changes] == [TAMPER]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_several_entries_fire_oldest_first(
    hass: HomeAssistant, entry: MockConfigEntry, sim: SimulatedMeter
) -> None:
    coordinator = await setup(hass, entry)
    changes = record(hass, [POWER])
    first = sim.image.events.inject("power_down")
    sim.image.events.inject("power_up", 3)
    await drain(coordinator, header_poll=True)
    types = [c.data["new_state"].attributes["event_type"] for c in changes]  # type: ignore[union-attr]
    assert types == ["power_down", "power_up"]
    assert changes[0].data["new_state"].attributes["sequence"] == first.sequence  # type: ignore[union-attr]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_latched_alarm_turns_on_and_stays_on(
    hass: HomeAssistant, entry: MockConfigEntry, sim: SimulatedMeter, entity_registry: er.EntityRegistry
) -> None:
    coordinator = await setup(hass, entry)
    cover = hass.states.get(COVER)
    assert cover is not None
    assert cover.state == STATE_ON  # opened at installation, never cleared by the utility
    assert "latched_since" in cover.attributes
    assert hass.states.get(MAGNETIC).state == STATE_OFF  # type: ignore[union-attr]
    registry_entry = entity_registry.async_get(MAGNETIC)
    assert registry_entry is not None
    assert registry_entry.entity_category == "diagnostic"
    assert registry_entry.original_device_class == "tamper"

    sim.image.events.inject("magnetic_tamper")
    await drain(coordinator, header_poll=True)
    state = hass.states.get(MAGNETIC)
    assert state is not None
    assert state.state == STATE_ON
    since = state.attributes["latched_since"]
    for _ in range(3):
        await drain(coordinator, header_poll=True)
        state = hass.states.get(MAGNETIC)
        assert state is not None
        assert state.state == STATE_ON
        assert state.attributes["latched_since"] == since
    # Bits beyond the 8-byte BT03 this meter reports get no entity.
    assert hass.states.get("binary_sensor.nes_83334_unbalanced_voltage") is None
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_refused_alarm_read_costs_that_read_not_the_alarm_sensors(
    hass: HomeAssistant, entry: MockConfigEntry, sim: SimulatedMeter
) -> None:
    """One busy reply keeps the bits; the next read still follows the meter; a meter that keeps
    refusing leaves them unknown rather than on from a read long ago."""
    coordinator = await setup(hass, entry)
    assert hass.states.get(COVER).state == STATE_ON  # type: ignore[union-attr]
    sim.image.refused[BT03] = 0x06  # busy
    await drain(coordinator, header_poll=True)
    assert hass.states.get(COVER).state == STATE_ON  # type: ignore[union-attr]
    del sim.image.refused[BT03]
    sim.image.events.clear_alarms()  # the utility clears the latched bits
    await drain(coordinator, header_poll=True)
    assert hass.states.get(COVER).state == STATE_OFF  # type: ignore[union-attr]
    sim.image.refused[BT03] = 0x06
    for _ in range(STALE_AFTER):
        await drain(coordinator, header_poll=True)
    assert hass.states.get(COVER).state == STATE_UNKNOWN  # type: ignore[union-attr]
    del sim.image.refused[BT03]
    await drain(coordinator, header_poll=True)
    assert hass.states.get(COVER).state == STATE_OFF  # type: ignore[union-attr]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_reply_the_decoder_rejects_leaves_the_link_open(
    hass: HomeAssistant, entry: MockConfigEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a link fault closes the port after a rare read: a valid reply with odd content does not."""
    coordinator = await setup(hass, entry)
    assert coordinator.events.reader is not None
    sessions = coordinator.client.stats.session_starts

    async def odd_content() -> None:
        raise DecodeError("BT74 header names more entries than BT71 has")

    monkeypatch.setattr(coordinator.events.reader, "step", odd_content)
    await drain(coordinator, header_poll=True)
    await coordinator.async_refresh()  # the live poll after it
    assert coordinator.client.stats.session_starts == sessions
    monkeypatch.setattr(coordinator.events.reader, "step", AsyncMock(side_effect=NoResponseError("silent")))
    await drain(coordinator, header_poll=True)
    await coordinator.async_refresh()
    assert coordinator.client.stats.session_starts == sessions + 1  # closed, then a new session
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize("sim", [SimulatedMeter(KEY, image=MeterImage(speed=0), variants="no-event-log")])
async def test_nothing_is_created_for_a_meter_without_a_log(
    hass: HomeAssistant, entry: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    await setup(hass, entry)
    entities = er.async_entries_for_config_entry(entity_registry, entry.entry_id)
    assert entities
    assert not [e for e in entities if e.domain == "event" or e.unique_id.split("_", 1)[1].startswith("alarm_")]
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize("sim", [SimulatedMeter(KEY, image=MeterImage(speed=0), variants="bt70-log")])
async def test_firmware_2_10_log_sized_by_bt70_has_its_events(
    hass: HomeAssistant, entry: MockConfigEntry, sim: SimulatedMeter
) -> None:
    """BT71 refused, the dimensions in BT70 (O p.49): the event entities exist and fire."""
    changes = record(hass, [TAMPER, POWER])
    coordinator = await setup(hass, entry)
    assert coordinator.events.has_event_log
    assert coordinator.events.imported == 100
    assert hass.states.get(TAMPER).state == STATE_UNKNOWN  # type: ignore[union-attr]
    assert hass.states.get(POWER).state == STATE_UNKNOWN  # type: ignore[union-attr]
    assert changes == []

    logged = sim.image.events.inject("magnetic_tamper")
    sim.image.events.inject("power_down")
    await drain(coordinator, header_poll=True)
    assert [change.data["entity_id"] for change in changes] == [TAMPER, POWER]
    state = hass.states.get(TAMPER)
    assert state is not None
    assert state.attributes["event_type"] == "magnetic_tamper"
    assert state.attributes["sequence"] == logged.sequence
    assert sim.stats.table_reads[BT71] == 0
    assert await hass.config_entries.async_unload(entry.entry_id)
