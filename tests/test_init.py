"""End to end: the integration polls the simulated meter over loopback TCP, both transports."""

from __future__ import annotations

from datetime import timedelta
import json
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.sensor import SensorDeviceClass, SensorStateClass
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import CONF_PORT, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.update_coordinator import UpdateFailed
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.nes_meter.compat import UPDATE_FAILED_RETRY_AFTER
from custom_components.nes_meter.const import (
    BACKOFF_MIN,
    CONF_KEY,
    CONF_TRANSPORT,
    DEFAULT_UPDATE_INTERVAL,
    DOMAIN,
)
from custom_components.nes_meter.coordinator import NesMeterCoordinator, ha_error
from custom_components.nes_meter.sensor import LAST_ERROR_OPTIONS, clock_offset
from nesmeter import AuthenticationError, FrameError, MeterError, MeterKey, NoResponseError, PortError
from nesmeter.sim.simulator import Faults, SimServer, SimulatedMeter

from .compat import get_device
from .conftest import KEY, KEY_TEXT, SERIAL, add_meter_entry, energy_dashboard_issues

ENERGY = "sensor.nes_83334_energy_import"
EXPORT = "sensor.nes_83334_energy_export"
POWER = "sensor.nes_83334_power_import"


def advance(freezer: FrozenDateTimeFactory, delta: timedelta) -> None:
    """Move the clock on from now; with ``tick=True``, ``freezer.tick`` counts from the start."""
    freezer.move_to(dt_util.utcnow() + delta)


async def setup_entry(hass: HomeAssistant, server: SimServer, transport: str) -> MockConfigEntry:
    entry = add_meter_entry(hass, server.url, transport)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def refresh(hass: HomeAssistant, entry: MockConfigEntry) -> NesMeterCoordinator:
    coordinator: NesMeterCoordinator = entry.runtime_data
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    return coordinator


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_setup_creates_device_and_sensors(hass: HomeAssistant, meter: SimulatedMeter, transport: str) -> None:
    server = await meter.serve_tcp(transport)
    try:
        entry = await setup_entry(hass, server, transport)
        assert entry.state is ConfigEntryState.LOADED

        device = get_device(hass, entry, (DOMAIN, SERIAL))
        assert device is not None
        assert (device.manufacturer, device.model, device.sw_version, device.serial_number) == (
            "NES/Echelon",
            "83334",
            "3.70.21",
            SERIAL,
        )

        energy = hass.states.get(ENERGY)
        assert energy is not None
        assert float(energy.state) >= 344.18
        assert energy.attributes["device_class"] == SensorDeviceClass.ENERGY
        assert energy.attributes["state_class"] == SensorStateClass.TOTAL_INCREASING
        assert energy.attributes["unit_of_measurement"] == "kWh"
        assert float(hass.states.get(EXPORT).state) == pytest.approx(7.583)
        power = hass.states.get(POWER)
        assert power.attributes["unit_of_measurement"] == "W"
        assert power.attributes["phase_sum_mismatch"] is False
        assert float(hass.states.get("sensor.nes_83334_voltage_phase_1").state) == pytest.approx(228.315)
        assert hass.states.get("sensor.nes_83334_net_power") is not None

        registry = er.async_get(hass)
        disabled = registry.async_get("sensor.nes_83334_voltage_phase_3")
        assert disabled is not None
        assert disabled.disabled_by is er.RegistryEntryDisabler.INTEGRATION
        clock = registry.async_get("sensor.nes_83334_clock_offset")
        assert clock is not None
        assert clock.entity_category == "diagnostic"
        assert clock.disabled_by is er.RegistryEntryDisabler.INTEGRATION  # keeps the recorder lean
        assert registry.async_get(ENERGY).unique_id == f"{SERIAL}_energy_import"

        before = float(energy.state)
        await refresh(hass, entry)
        assert float(hass.states.get(ENERGY).state) >= before

        client = entry.runtime_data.client
        assert client.is_open
        assert await hass.config_entries.async_unload(entry.entry_id)
        assert entry.state is ConfigEntryState.NOT_LOADED
        assert not client.is_open
    finally:
        await server.close()


async def test_single_phase_meter_has_no_l2_l3_entities(hass: HomeAssistant) -> None:
    meter = SimulatedMeter(KEY)
    meter.image.tables[21][9] = 12  # BT21: only the first 12 present values (no L2/L3 PF, per-phase power)
    meter.image.tables[27][:] = bytes([8, 9, 10, 11, 12, 255, 255, 15, 255, 255, 18, 19])
    meter.image.tables[21][3] = 2  # two summations: no reactive energy
    server = await meter.serve_tcp("ir")
    try:
        entry = await setup_entry(hass, server, "ir")
        registry = er.async_get(hass)
        keys = {
            e.unique_id.removeprefix(f"{SERIAL}_") for e in er.async_entries_for_config_entry(registry, entry.entry_id)
        }
        assert {"energy_import", "energy_export", "voltage_l1", "current_l1", "frequency"} <= keys
        assert not keys & {
            "voltage_l2",
            "voltage_l3",
            "current_l3",
            "power_import_l1",
            "reactive_energy_import",
            "power_factor_l2",
        }
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()


async def test_energy_dashboard_accepts_the_sensors(
    hass: HomeAssistant, recorder_mock: object, ir_server: SimServer
) -> None:
    from pytest_homeassistant_custom_component.components.recorder.common import (
        async_wait_recording_done,
        do_adhoc_statistics,
    )

    entry = await setup_entry(hass, ir_server, "ir")
    await async_wait_recording_done(hass)
    start = dt_util.utcnow().replace(second=0, microsecond=0)
    do_adhoc_statistics(hass, start=start - timedelta(minutes=start.minute % 5))
    await async_wait_recording_done(hass)
    assert await energy_dashboard_issues(hass, ENERGY, EXPORT) == []
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.freeze_time(tick=True)
async def test_unavailable_on_disconnect_and_recovery(
    hass: HomeAssistant, meter: SimulatedMeter, caplog: pytest.LogCaptureFixture, freezer: FrozenDateTimeFactory
) -> None:
    server = await meter.serve_tcp("ir")
    port = int(server.url.rsplit(":", 1)[1])
    entry = await setup_entry(hass, server, "ir")
    good = float(hass.states.get(ENERGY).state)
    await server.close()

    await refresh(hass, entry)
    assert hass.states.get(ENERGY).state == STATE_UNAVAILABLE
    await refresh(hass, entry)  # during backoff: no reconnect attempt, still unavailable
    assert hass.states.get(ENERGY).state == STATE_UNAVAILABLE
    assert caplog.text.count("Error fetching") == 1

    server = await meter.serve_tcp("ir", port=port)
    try:
        advance(freezer, timedelta(seconds=BACKOFF_MIN + 1))  # the backoff has run out
        await refresh(hass, entry)
        assert float(hass.states.get(ENERGY).state) >= good
        assert "recovered" in caplog.text
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()


@pytest.mark.freeze_time(tick=True)
async def test_backoff_grows_to_a_minute(
    hass: HomeAssistant, meter: SimulatedMeter, freezer: FrozenDateTimeFactory
) -> None:
    """Each failed reconnect doubles the wait, up to a minute; a poll during the wait does not touch the port."""
    server = await meter.serve_tcp("ir")
    entry = await setup_entry(hass, server, "ir")
    await server.close()
    delays = []
    for _ in range(8):
        coordinator = await refresh(hass, entry)  # a reconnect attempt fails and sets the next wait
        failed = coordinator.last_exception
        coordinator = await refresh(hass, entry)  # too early: the backoff answers
        error = coordinator.last_exception
        assert isinstance(error, UpdateFailed)
        assert error.translation_key == "backoff"
        assert error.translation_placeholders is not None
        delays.append(int(error.translation_placeholders["seconds"]))
        if UPDATE_FAILED_RETRY_AFTER:  # the coordinator polls again when the wait ends (2025.12+)
            assert getattr(failed, "retry_after", None) == delays[-1]
            assert 0 < getattr(error, "retry_after", 0) <= delays[-1]
        advance(freezer, timedelta(seconds=delays[-1]))
    assert delays[:3] == [1, 2, 4]
    assert delays[-1] == 60
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_key_change_starts_reauth(hass: HomeAssistant, meter: SimulatedMeter, mep_server: SimServer) -> None:
    entry = await setup_entry(hass, mep_server, "mep")
    meter.change_key(MeterKey.parse("newkeynewkeynewkey00"))
    await refresh(hass, entry)
    flows = [flow for flow in hass.config_entries.flow.async_progress() if flow["context"]["source"] == SOURCE_REAUTH]
    assert len(flows) == 1
    assert flows[0]["context"]["entry_id"] == entry.entry_id
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_unreachable_meter_retries_setup(hass: HomeAssistant) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=SERIAL,
        data={CONF_PORT: "socket://127.0.0.1:9", CONF_TRANSPORT: "ir", CONF_KEY: KEY_TEXT},
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_wrong_key_at_setup_starts_reauth(hass: HomeAssistant, ir_server: SimServer) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=SERIAL,
        data={CONF_PORT: ir_server.url, CONF_TRANSPORT: "ir", CONF_KEY: "wrongwrongwrongwrong"},
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert any(flow["context"]["source"] == SOURCE_REAUTH for flow in hass.config_entries.flow.async_progress())


async def test_polls_on_schedule(hass: HomeAssistant, meter: SimulatedMeter, ir_server: SimServer) -> None:
    entry = await setup_entry(hass, ir_server, "ir")
    requests = meter.stats.requests
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=11))
    await hass.async_block_till_done(wait_background_tasks=True)
    assert meter.stats.requests > requests
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_diagnostics_never_contain_the_key(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, meter: SimulatedMeter, transport: str
) -> None:
    server = await meter.serve_tcp(transport)
    try:
        entry = await setup_entry(hass, server, transport)
        diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
        text = json.dumps(diagnostics)
        for form in (*KEY.forms(), *(f.encode().hex() for f in KEY.forms())):
            assert form not in text
        assert SERIAL not in text
        assert SERIAL.encode().hex() not in text
        assert diagnostics["entry"][CONF_KEY] == "**REDACTED**"
        assert diagnostics["snapshot"]["energy_import_wh"] >= 344180
        assert diagnostics["client"]["identity"]["dimensions"]["present_values"] == 55
        assert diagnostics["client"]["last_frames"]
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()


async def test_options_change_reloads(hass: HomeAssistant, ir_server: SimServer) -> None:
    """The options flow reloads the entry with the new options (tests/test_reloads.py counts the reloads)."""
    entry = await setup_entry(hass, ir_server, "ir")
    result = await hass.config_entries.options.async_init(entry.entry_id)
    await hass.config_entries.options.async_configure(result["flow_id"], {"update_interval": 30})
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.update_interval == timedelta(seconds=30)
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.freeze_time(tick=True)
async def test_every_update_is_written(
    hass: HomeAssistant, meter: SimulatedMeter, mep_server: SimServer, freezer: FrozenDateTimeFactory
) -> None:
    """An unchanged value is still reported: Derivative, Integration and "last seen" rely on it."""
    entry = await setup_entry(hass, mep_server, "mep")
    export_before = hass.states.get(EXPORT)
    assert export_before is not None
    reported, changed = export_before.last_reported, export_before.last_changed

    for _ in range(2):
        advance(freezer, timedelta(seconds=DEFAULT_UPDATE_INTERVAL))
        await refresh(hass, entry)
        export_after = hass.states.get(EXPORT)
        assert export_after is not None
        assert export_after.state == export_before.state  # the simulated meter exports nothing
        assert export_after.last_changed == changed
        assert export_after.last_reported > reported  # written anyway
        reported = export_after.last_reported
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.freeze_time(tick=True)
async def test_recovers_by_itself_within_the_backoff(
    hass: HomeAssistant, meter: SimulatedMeter, freezer: FrozenDateTimeFactory
) -> None:
    """No forced retry: the next scheduled poll after the backoff reconnects."""
    server = await meter.serve_tcp("mep")
    port = int(server.url.rsplit(":", 1)[1])
    entry = await setup_entry(hass, server, "mep")
    await server.close()
    await refresh(hass, entry)
    assert hass.states.get(ENERGY).state == STATE_UNAVAILABLE

    server = await meter.serve_tcp("mep", port=port)
    try:
        await refresh(hass, entry)  # still inside the backoff: no reconnect yet
        assert hass.states.get(ENERGY).state == STATE_UNAVAILABLE
        advance(freezer, timedelta(seconds=DEFAULT_UPDATE_INTERVAL + 1))
        async_fire_time_changed(hass)
        await hass.async_block_till_done(wait_background_tasks=True)
        assert hass.states.get(ENERGY).state != STATE_UNAVAILABLE
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()


async def test_clock_offset_and_meter_time_in_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    entity_registry: er.EntityRegistry,
    ir_server: SimServer,
) -> None:
    """The meter clock is a diagnostic offset (opt-in); the raw meter time is in the diagnostics."""
    entity_registry.async_get_or_create(
        "sensor", DOMAIN, f"{SERIAL}_clock_offset", suggested_object_id="nes_83334_clock_offset", disabled_by=None
    )
    entry = await setup_entry(hass, ir_server, "ir")
    state = hass.states.get("sensor.nes_83334_clock_offset")
    assert state is not None
    assert state.attributes["unit_of_measurement"] == "s"
    assert state.attributes["device_class"] == SensorDeviceClass.DURATION
    assert abs(int(state.state)) <= 1  # the simulated meter runs on the host's clock
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    meter_time = dt_util.parse_datetime(diagnostics["clock"]["meter_time"])
    assert meter_time is not None
    assert abs((meter_time - dt_util.utcnow()).total_seconds()) < 5
    assert abs(diagnostics["clock"]["offset_seconds"]) <= 1
    assert await hass.config_entries.async_unload(entry.entry_id)


def test_clock_offset_rounds_the_meter_second() -> None:
    now = dt_util.utcnow().replace(microsecond=200_000)
    with patch("custom_components.nes_meter.sensor.dt_util.utcnow", return_value=now):
        assert clock_offset(now.replace(microsecond=0)) == 0
        assert clock_offset(now.replace(microsecond=0) + timedelta(seconds=90)) == 90
        assert clock_offset(now.replace(microsecond=0) - timedelta(seconds=3)) == -3
        assert clock_offset(None) is None


async def test_last_error_is_a_translated_enum(hass: HomeAssistant, entity_registry: er.EntityRegistry) -> None:
    """A NAK from the meter shows as the "nak" state; the options are the sensor's fixed list."""
    entity_registry.async_get_or_create(
        "sensor", DOMAIN, f"{SERIAL}_last_error", suggested_object_id="nes_83334_last_error", disabled_by=None
    )
    meter = SimulatedMeter(KEY, faults=Faults(nak_first=True))
    server = await meter.serve_tcp("ir")
    try:
        entry = await setup_entry(hass, server, "ir")
        state = hass.states.get("sensor.nes_83334_last_error")
        assert state is not None
        assert state.state == "nak"
        assert state.attributes["device_class"] == SensorDeviceClass.ENUM
        assert state.attributes["options"] == LAST_ERROR_OPTIONS
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("error", "key"),
    [
        (PortError("gone"), "cannot_connect"),
        (NoResponseError("silent"), "no_response"),
        (FrameError("garbled"), "communication_error"),
    ],
)
def test_library_errors_become_translated_update_failures(error: MeterError, key: str) -> None:
    failure = ha_error(error)
    assert isinstance(failure, UpdateFailed)
    assert failure.translation_key == key
    assert failure.translation_domain == DOMAIN


async def test_unsupported_meter_is_a_setup_error_not_a_retry(hass: HomeAssistant) -> None:
    meter = SimulatedMeter(KEY, variants="big-endian-bt00")
    async with await meter.serve_tcp("mep") as server:
        entry = MockConfigEntry(
            domain=DOMAIN,
            unique_id=SERIAL,
            data={CONF_PORT: server.url, CONF_TRANSPORT: "mep", CONF_KEY: KEY_TEXT},
        )
        entry.add_to_hass(hass)
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.SETUP_ERROR
        assert entry.reason is not None and "big-endian" in entry.reason
        await hass.config_entries.async_unload(entry.entry_id)


async def test_a_meter_that_starts_requiring_tls_raises_a_fixable_repair(hass: HomeAssistant) -> None:
    """The utility switched the meter to TLS-only: one repair, and accepting it reads the meter again."""
    from homeassistant.helpers import issue_registry as ir

    from custom_components.nes_meter import repairs
    from custom_components.nes_meter.const import CONF_MEP_SECURITY
    from nesmeter.sim.tls_server import TlsSimulatedMeter

    meter = TlsSimulatedMeter(KEY)
    async with await meter.serve_tcp("mep") as server:
        entry = MockConfigEntry(
            domain=DOMAIN, unique_id=SERIAL, data={CONF_PORT: server.url, CONF_TRANSPORT: "mep", CONF_KEY: KEY_TEXT}
        )
        entry.add_to_hass(hass)
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.SETUP_RETRY
        issue_id = f"tls_required_{entry.entry_id}"
        issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
        assert issue is not None
        assert issue.is_fixable
        assert issue.translation_key == "tls_required"

        flow = await repairs.async_create_fix_flow(hass, issue_id, issue.data)
        flow.hass = hass
        flow.issue_id = issue_id
        form = await flow.async_step_init()
        assert form["description_placeholders"] == {"title": entry.title}
        await flow.async_step_confirm({})
        await hass.async_block_till_done()
        assert entry.options[CONF_MEP_SECURITY] == "tls"
        assert entry.state is ConfigEntryState.LOADED
        assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
        assert float(hass.states.get(ENERGY).state) > 0
        await hass.config_entries.async_unload(entry.entry_id)


def test_rejected_key_starts_reauth() -> None:
    assert isinstance(ha_error(AuthenticationError("no")), ConfigEntryAuthFailed)


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_only_what_enabled_entities_show_is_read(
    hass: HomeAssistant, meter: SimulatedMeter, transport: str, entity_registry: er.EntityRegistry
) -> None:
    """Disabling an entity stops its bytes being read; enabling it brings them back."""
    server = await meter.serve_tcp(transport)
    try:
        entry = await setup_entry(hass, server, transport)
        coordinator = await refresh(hass, entry)
        default = {"energy_import_wh", "energy_export_wh", "power_import_w", "power_export_w", "voltage_l1_v"}
        assert coordinator.client.wanted is not None
        assert default <= coordinator.client.wanted
        assert "voltage_l2_v" not in coordinator.client.wanted
        assert coordinator.data.voltage_l2_v is None
        before = coordinator.client.bytes_exchanged
        await refresh(hass, entry)
        lean = coordinator.client.bytes_exchanged - before

        entity_id = entity_registry.async_get_entity_id("sensor", DOMAIN, f"{SERIAL}_voltage_l2")
        assert entity_id is not None
        entity_registry.async_update_entity(entity_id, disabled_by=None)
        await hass.config_entries.async_reload(entry.entry_id)
        await hass.async_block_till_done()
        coordinator = await refresh(hass, entry)
        assert coordinator.client.wanted is not None
        assert "voltage_l2_v" in coordinator.client.wanted
        assert coordinator.data.voltage_l2_v == pytest.approx(226.537)
        before = coordinator.client.bytes_exchanged
        await refresh(hass, entry)
        assert coordinator.client.bytes_exchanged - before > lean
        await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()
