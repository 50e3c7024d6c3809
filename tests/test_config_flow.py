"""Config, reauth, reconfigure and options flows, against the simulated meter on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant import config_entries
from homeassistant.config_entries import ConfigFlowResult
from homeassistant.const import CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
import serialx

from custom_components.nes_meter import compat, config_flow
from custom_components.nes_meter.const import (
    CONF_ENABLE_LINE,
    CONF_ENCRYPT,
    CONF_KEY,
    CONF_KEY_FORMAT,
    CONF_MEP_SECURITY,
    CONF_TLS_KEY_ID,
    CONF_TRANSPORT,
    CONF_UPDATE_INTERVAL,
    DOMAIN,
)
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import Faults, SimServer, SimulatedMeter

from .conftest import KEY, KEY_TEXT, SERIAL


@pytest.fixture(autouse=True)
def no_setup() -> Iterator[None]:
    """Flow tests stop at the entry; setting it up is test_init's job."""
    with patch("custom_components.nes_meter.async_setup_entry", return_value=True):
        yield


def user_input(
    server: SimServer, transport: str = "ir", key: str = KEY_TEXT, key_format: str = "auto"
) -> dict[str, Any]:
    return {CONF_PORT: server.url, CONF_TRANSPORT: transport, CONF_KEY: key, CONF_KEY_FORMAT: key_format}


async def _start(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}
    return result["flow_id"]


async def _add_meter(hass: HomeAssistant, meter: SimulatedMeter, transport: str) -> ConfigFlowResult:
    """The user flow filled in for ``meter`` served on loopback, as a user would submit it."""
    server = await meter.serve_tcp(transport)
    try:
        flow_id = await _start(hass)
        return await hass.config_entries.flow.async_configure(flow_id, user_input(server, transport))
    finally:
        await server.close()


@pytest.mark.parametrize(("transport", "title"), [("mep", "NES 83334 (MEP)"), ("ir", "NES 83334 (IR)")])
async def test_user_flow_creates_entry(hass: HomeAssistant, meter: SimulatedMeter, transport: str, title: str) -> None:
    result = await _add_meter(hass, meter, transport)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == title
    assert result["result"].unique_id == SERIAL
    port = result["data"][CONF_PORT]
    assert port.startswith("socket://127.0.0.1:")
    assert result["data"] == {CONF_PORT: port, CONF_TRANSPORT: transport, CONF_KEY: KEY_TEXT, CONF_KEY_FORMAT: "auto"}
    assert KEY_TEXT not in result["title"]


async def test_entry_set_up_by_a_patched_setup_unloads_cleanly(
    hass: HomeAssistant, ir_server: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Unloading must not need ``runtime_data``: the harness unloads every entry at teardown."""
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, user_input(ir_server))
    entry = result["result"]
    assert entry.state is config_entries.ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is config_entries.ConfigEntryState.NOT_LOADED
    assert "runtime_data" not in caplog.text


async def test_second_entry_for_same_meter_aborts(hass: HomeAssistant, ir_server: SimServer) -> None:
    MockConfigEntry(domain=DOMAIN, unique_id=SERIAL, data=user_input(ir_server)).add_to_hass(hass)
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, user_input(ir_server))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_errors_then_recovery(hass: HomeAssistant, ir_server: SimServer) -> None:
    """Each mistake gets its own error, and fixing the field then succeeds."""
    flow_id = await _start(hass)
    cases = [
        ({CONF_KEY: "123", CONF_KEY_FORMAT: "hex"}, "invalid_key_format"),
        ({CONF_PORT: "http://127.0.0.1:1"}, "invalid_port"),
        ({CONF_PORT: "socket://127.0.0.1:9"}, "cannot_connect"),
        ({CONF_PORT: "/dev/no-such-nes-adapter"}, "cannot_connect"),
        ({CONF_KEY: "wrongwrongwrongwrong"}, "invalid_key"),
    ]
    for change, error in cases:
        result = await hass.config_entries.flow.async_configure(flow_id, {**user_input(ir_server), **change})
        assert result["type"] is FlowResultType.FORM, error
        assert result["errors"] == {"base": error}
    result = await hass.config_entries.flow.async_configure(flow_id, user_input(ir_server))
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_silent_meter_is_no_response(hass: HomeAssistant) -> None:
    meter = SimulatedMeter(KEY, faults=Faults(silent=True))
    result = await _add_meter(hass, meter, "mep")
    assert result["errors"] == {"base": "no_response"}


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_big_endian_meter_is_unsupported(hass: HomeAssistant, transport: str) -> None:
    """A meter whose tables the decoders would misread is named as such, not read wrongly."""
    meter = SimulatedMeter(KEY, variants="big-endian-bt00")
    result = await _add_meter(hass, meter, transport)
    assert result["errors"] == {"base": "unsupported_meter"}


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_blank_utility_serial_still_sets_up(hass: HomeAssistant, transport: str) -> None:
    """ET03 is the utility's to fill: a meter without it is identified by its BT01 serial."""
    meter = SimulatedMeter(KEY, variants="blank-et03")
    result = await _add_meter(hass, meter, transport)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == "mfg-0000001234567890"


async def test_legacy_rc4_switch_shows_as_rc4(hass: HomeAssistant) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=SERIAL,
        data={CONF_PORT: "/dev/ttyUSB0", CONF_TRANSPORT: "mep", CONF_KEY: KEY_TEXT},
        options={CONF_ENCRYPT: True},
    )
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    defaults = {str(marker): marker.default() for marker in result["data_schema"].schema if callable(marker.default)}
    assert defaults[CONF_MEP_SECURITY] == "rc4"


async def test_a_meter_that_requires_tls_is_added_in_tls_mode(hass: HomeAssistant) -> None:
    """The user need not know the mode: a meter refusing all but TLS is read in TLS mode."""
    from nesmeter.sim.tls_server import TlsSimulatedMeter

    meter = TlsSimulatedMeter(KEY)
    result = await _add_meter(hass, meter, "mep")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].options == {CONF_MEP_SECURITY: "tls"}


async def test_unexpected_error_is_unknown(hass: HomeAssistant, ir_server: SimServer) -> None:
    flow_id = await _start(hass)
    with patch.object(config_flow, "validate_meter", side_effect=RuntimeError("boom")):
        result = await hass.config_entries.flow.async_configure(flow_id, user_input(ir_server))
    assert result["errors"] == {"base": "unknown"}


async def test_protocol_error_is_unknown(hass: HomeAssistant, ir_server: SimServer, meter: SimulatedMeter) -> None:
    meter.image.refused.update({21: 0x05, 20: 0x05})  # no register layout at all: "iar"
    flow_id = await _start(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, user_input(ir_server))
    assert result["errors"] == {"base": "unknown"}


@pytest.mark.skipif(compat.SERIAL_PORT_SELECTOR, reason="the standard serial port selector lists the ports")
async def test_port_list_uses_stable_by_id_paths(hass: HomeAssistant, tmp_path: Path) -> None:
    device = tmp_path / "ttyUSB0"
    device.touch()
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-FTDI_FT232R_A1B2-if00-port0").symlink_to(device)
    ports = [
        serialx.SerialPortInfo(str(device), str(device), 0x0403, 0x6001, "A1B2", "FTDI", "FT232R", None, None, None),
        serialx.SerialPortInfo("/dev/ttyS0", "/dev/ttyS0", None, None, None, None, None, None, None, None),
    ]
    with patch.object(config_flow, "BY_ID", by_id), patch.object(serialx, "list_serial_ports", return_value=ports):
        result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    options = result["data_schema"].schema[CONF_PORT].config["options"]
    assert options == [
        {
            "value": str(by_id / "usb-FTDI_FT232R_A1B2-if00-port0"),
            "label": f"{by_id / 'usb-FTDI_FT232R_A1B2-if00-port0'} (FTDI - FT232R - A1B2)",
        },
        {"value": "/dev/ttyS0", "label": "/dev/ttyS0"},
    ]


async def test_the_port_field_is_the_standard_serial_port_selector_where_there_is_one(hass: HomeAssistant) -> None:
    """2026.5+: Home Assistant's own picker (USB adapters and ESPHome serial proxies); before: our list."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    field = result["data_schema"].schema[CONF_PORT]
    if compat.SERIAL_PORT_SELECTOR:
        assert field.selector_type == "serial_port"
    else:
        assert field.selector_type == "select" and field.config["custom_value"] is True


async def test_reauth(hass: HomeAssistant, ir_server: SimServer) -> None:
    entry = MockConfigEntry(domain=DOMAIN, unique_id=SERIAL, data=user_input(ir_server, key="oldoldoldoldoldoldol"))
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_KEY: "stillwrongstillwrong", CONF_KEY_FORMAT: "auto"}
    )
    assert result["errors"] == {"base": "invalid_key"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_KEY: KEY_TEXT, CONF_KEY_FORMAT: "auto"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_KEY] == KEY_TEXT


async def test_reauth_on_a_different_meter_aborts(hass: HomeAssistant) -> None:
    other = SimulatedMeter(KEY, image=MeterImage(utility_serial="9999999999"))
    server = await other.serve_tcp("ir")
    try:
        entry = MockConfigEntry(domain=DOMAIN, unique_id=SERIAL, data=user_input(server))
        entry.add_to_hass(hass)
        result = await entry.start_reauth_flow(hass)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_KEY: KEY_TEXT, CONF_KEY_FORMAT: "auto"}
        )
    finally:
        await server.close()
    assert result["reason"] == "wrong_meter"


async def test_reconfigure(hass: HomeAssistant, ir_server: SimServer, mep_server: SimServer) -> None:
    entry = MockConfigEntry(domain=DOMAIN, unique_id=SERIAL, data=user_input(ir_server))
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**user_input(mep_server, "mep"), CONF_PORT: "http://127.0.0.1:1"}
    )
    assert result["errors"] == {"base": "invalid_port"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(mep_server, "mep", key="x" * 20)
    )
    assert result["errors"] == {"base": "invalid_key"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], user_input(mep_server, "mep"))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_TRANSPORT] == "mep"
    assert entry.data[CONF_PORT] == mep_server.url


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_options(hass: HomeAssistant, transport: str) -> None:
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id=SERIAL, data={CONF_PORT: "/dev/ttyUSB0", CONF_TRANSPORT: transport, CONF_KEY: KEY_TEXT}
    )
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    fields = set(result["data_schema"].schema)
    assert (CONF_ENABLE_LINE in fields) is (transport == "mep")
    options: dict[str, Any] = {CONF_UPDATE_INTERVAL: 5}
    if transport == "mep":
        options |= {CONF_ENABLE_LINE: "dtr", CONF_MEP_SECURITY: "rc4", CONF_TLS_KEY_ID: "mbk"}
    result = await hass.config_entries.options.async_configure(result["flow_id"], options)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == options
