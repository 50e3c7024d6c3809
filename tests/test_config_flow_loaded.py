"""Flows against a LOADED entry on a pty: the running integration holds the port exclusively."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from homeassistant.config_entries import SOURCE_REAUTH, SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_PORT, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResult, FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.nes_meter.const import CONF_KEY, CONF_KEY_FORMAT, CONF_TRANSPORT, DOMAIN
from nesmeter import MeterClient, MeterKey
from nesmeter.sim.simulator import SimServer, SimulatedMeter

from .compat import form_as_sent
from .conftest import KEY_TEXT, SERIAL

ENERGY = "sensor.nes_83334_energy_import"
NEW_KEY = "newkeynewkeynewkey00"


@pytest.fixture
async def pty(meter: SimulatedMeter) -> AsyncIterator[SimServer]:
    """The simulated meter's MEP port on a pseudo-terminal: a real device path."""
    server = await meter.serve_pty("mep")
    yield server
    await server.close()


def entry_data(port: str, key: str = KEY_TEXT) -> dict[str, Any]:
    return {CONF_PORT: port, CONF_TRANSPORT: "mep", CONF_KEY: key, CONF_KEY_FORMAT: "auto"}


@pytest.fixture
async def loaded(hass: HomeAssistant, pty: SimServer) -> MockConfigEntry:
    """An entry set up for real on the pty: its coordinator holds the port."""
    entry = MockConfigEntry(domain=DOMAIN, unique_id=SERIAL, title="NES 83334 (MEP)", data=entry_data(pty.url))
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.client.is_open
    return entry


def serialized(result: FlowResult) -> str:
    """The form as the frontend receives it."""
    return form_as_sent(result["data_schema"])


async def test_adding_a_configured_port_again_aborts(
    hass: HomeAssistant, loaded: MockConfigEntry, pty: SimServer, tmp_path: Path
) -> None:
    """Same port, or another path to the same device: already configured, before any open."""
    alias = tmp_path / "usb-NES_probe-if00-port0"
    alias.symlink_to(pty.url)
    for port in (pty.url, str(alias)):
        result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
        result = await hass.config_entries.flow.async_configure(result["flow_id"], entry_data(port))
        assert result["type"] is FlowResultType.ABORT, port
        assert result["reason"] == "already_configured"
    assert loaded.state is ConfigEntryState.LOADED
    assert loaded.runtime_data.client.is_open  # the running entry was not disturbed


async def test_reconfigure_on_the_same_port_while_loaded(hass: HomeAssistant, loaded: MockConfigEntry) -> None:
    """The flow tests through the released port, then the entry reloads; an empty key keeps the stored one."""
    result = await loaded.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    assert KEY_TEXT not in serialized(result)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PORT: loaded.data[CONF_PORT], CONF_TRANSPORT: "mep", CONF_KEY_FORMAT: "auto"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert loaded.state is ConfigEntryState.LOADED
    assert loaded.data[CONF_KEY] == KEY_TEXT
    assert loaded.runtime_data.client.is_open
    state = hass.states.get(ENERGY)
    assert state is not None
    assert state.state != STATE_UNAVAILABLE


async def test_failed_reconfigure_gives_the_port_back(
    hass: HomeAssistant, loaded: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """A rejected key is a form error, the entry keeps its settings and its next poll reads again."""
    result = await loaded.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**entry_data(loaded.data[CONF_PORT], key="x" * 20)}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_key"}
    assert "x" * 20 not in serialized(result)  # not even the key just typed comes back
    assert KEY_TEXT not in serialized(result)
    assert loaded.data[CONF_KEY] == KEY_TEXT
    await loaded.runtime_data.async_refresh()
    await hass.async_block_till_done()
    assert loaded.runtime_data.last_update_success
    assert loaded.runtime_data.client.is_open


async def test_reconfigure_to_another_entrys_port_is_refused(
    hass: HomeAssistant, loaded: MockConfigEntry, pty: SimServer
) -> None:
    other = MockConfigEntry(domain=DOMAIN, unique_id="other", data=entry_data("/dev/nes-other"))
    other.add_to_hass(hass)
    result = await other.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], entry_data(pty.url))
    assert result["errors"] == {"base": "port_in_use"}
    assert loaded.runtime_data.client.is_open


async def test_reauth_while_loaded(hass: HomeAssistant, meter: SimulatedMeter, loaded: MockConfigEntry) -> None:
    """The utility changed the key: the running entry asks for it, tests it and reloads."""
    meter.change_key(MeterKey.parse(NEW_KEY))
    await loaded.runtime_data.async_refresh()
    await hass.async_block_till_done()
    flows = [flow for flow in hass.config_entries.flow.async_progress() if flow["context"]["source"] == SOURCE_REAUTH]
    assert len(flows) == 1
    assert loaded.state is ConfigEntryState.LOADED
    result = await hass.config_entries.flow.async_configure(flows[0]["flow_id"])
    assert KEY_TEXT not in serialized(result)
    result = await hass.config_entries.flow.async_configure(
        flows[0]["flow_id"], {CONF_KEY: NEW_KEY, CONF_KEY_FORMAT: "auto"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert loaded.state is ConfigEntryState.LOADED
    assert loaded.data[CONF_KEY] == NEW_KEY
    assert loaded.runtime_data.last_update_success


async def test_no_form_carries_a_key(hass: HomeAssistant, loaded: MockConfigEntry, pty: SimServer) -> None:
    """The user form shown again after an error does not send the typed key back either."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], entry_data("socket://127.0.0.1:9", key=NEW_KEY)
    )
    assert result["errors"] == {"base": "cannot_connect"}
    assert NEW_KEY not in serialized(result)
    assert KEY_TEXT not in serialized(result)


@pytest.mark.parametrize("key", ["wrongwrongwrongwrong", KEY_TEXT], ids=["rejected_key", "silent_meter"])
async def test_failed_setup_frees_the_port(
    hass: HomeAssistant, meter: SimulatedMeter, pty: SimServer, key: str
) -> None:
    """A rejected key, or a meter that stopped answering, leaves the port free for the next try."""
    if key == KEY_TEXT:
        meter.faults.silent = True
    entry = MockConfigEntry(domain=DOMAIN, unique_id=SERIAL, data=entry_data(pty.url, key=key))
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state in (ConfigEntryState.SETUP_ERROR, ConfigEntryState.SETUP_RETRY)
    async with MeterClient(pty.url, "mep", MeterKey.parse(KEY_TEXT), enable_line="none") as client:
        assert client.is_open  # nobody holds the port
