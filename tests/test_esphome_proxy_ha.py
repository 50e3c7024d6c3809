"""The integration reads the simulated meter through an ESPHome serial proxy: the test device, real serialx.

Skipped where aioesphomeapi is not installed (Home Assistant 2025.4 and 2025.10 pin cryptography
and zeroconf below what serialx's ESPHome backend needs).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

from homeassistant import config_entries
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_PORT, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er, issue_registry as ir
import pytest

pytest.importorskip("aioesphomeapi")

from custom_components.nes_meter.const import CONF_ENABLE_LINE, CONF_KEY, CONF_KEY_FORMAT, CONF_TRANSPORT, DOMAIN
from custom_components.nes_meter.coordinator import NesMeterCoordinator, proxy_issue_id
from nesmeter.sim.esphome_proxy import DTR, RTS, EsphomeProxyDevice, ProxyPort
from nesmeter.sim.simulator import SimulatedMeter

from .conftest import KEY, KEY_TEXT, SERIAL, add_meter_entry

PSK = bytes(range(1, 33))
NOISE_KEY = base64.b64encode(PSK).decode()


@pytest.fixture
async def device() -> AsyncIterator[EsphomeProxyDevice]:
    """An encrypting ESPHome device: "mep" wired to a meter's MEP port, "ir" to another's optical head."""
    ports = [ProxyPort("mep", SimulatedMeter(KEY), "mep"), ProxyPort("ir", SimulatedMeter(KEY), "ir")]
    async with EsphomeProxyDevice(ports, noise_psk=PSK) as proxy:
        yield proxy


def _energy_state(hass: HomeAssistant) -> str:
    entity_id = er.async_get(hass).async_get_entity_id("sensor", DOMAIN, f"{SERIAL}_energy_import")
    assert entity_id is not None
    state = hass.states.get(entity_id)
    assert state is not None
    return state.state


@pytest.mark.parametrize(("transport", "line", "bit"), [("mep", "rts", RTS), ("mep", "dtr", DTR), ("ir", "none", 0)])
async def test_the_meter_reads_through_the_proxy(
    hass: HomeAssistant, device: EsphomeProxyDevice, transport: str, line: str, bit: int
) -> None:
    options = {CONF_ENABLE_LINE: line} if transport == "mep" else {}
    entry = add_meter_entry(hass, device.url(transport, key=NOISE_KEY), transport, **options)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert float(_energy_state(hass)) > 0
    port = device.ports[0 if transport == "mep" else 1]
    assert port.pins_at_first_write == bit  # MEP: ENABLE up through the proxy before the first request
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_proxy_offline_at_setup_retries_with_a_repair_that_clears(
    hass: HomeAssistant, device: EsphomeProxyDevice
) -> None:
    url = device.url("mep", key=NOISE_KEY)
    port = device.port
    await device.stop_listening()
    entry = add_meter_entry(hass, url, "mep")
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY
    issue = ir.async_get(hass).async_get_issue(DOMAIN, proxy_issue_id(entry))
    assert issue is not None and issue.translation_key == "proxy_missing"
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["device"] == "127.0.0.1"
    assert NOISE_KEY not in str(issue.translation_placeholders)

    await device.start(port=port)  # the ESP32 is back
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert ir.async_get(hass).async_get_issue(DOMAIN, proxy_issue_id(entry)) is None
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_proxy_lost_mid_poll_makes_the_sensors_unavailable_until_it_reconnects(
    hass: HomeAssistant, device: EsphomeProxyDevice
) -> None:
    entry = add_meter_entry(hass, device.url("mep", key=NOISE_KEY), "mep")
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    coordinator: NesMeterCoordinator = entry.runtime_data
    shown = _energy_state(hass)
    port = device.port

    await device.stop_listening()  # the ESP32 drops off the network mid-session and stays away
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert not coordinator.last_update_success
    assert _energy_state(hass) == STATE_UNAVAILABLE
    assert coordinator._retry_at > 0  # the next attempt waits out the backoff

    await device.start(port=port)  # back
    coordinator._retry_at = 0  # the backoff has passed
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert coordinator.last_update_success
    assert float(_energy_state(hass)) >= float(shown)
    assert device.connections == 2  # a new API connection, not the old one
    assert await hass.config_entries.async_unload(entry.entry_id)


async def _flow(hass: HomeAssistant, port: str) -> dict[str, Any]:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    data = {CONF_PORT: port, CONF_TRANSPORT: "mep", CONF_KEY: KEY_TEXT, CONF_KEY_FORMAT: "auto"}
    return dict(await hass.config_entries.flow.async_configure(result["flow_id"], data))


async def test_the_flow_tells_proxy_problems_apart_then_adds_the_meter(
    hass: HomeAssistant, device: EsphomeProxyDevice
) -> None:
    wrong = base64.b64encode(bytes(32)).decode()
    for port, error in (
        (device.url("mep", key=wrong), "proxy_invalid_key"),
        (device.url("mep"), "proxy_invalid_key"),
        (device.url("uart2", key=NOISE_KEY), "proxy_unknown_port"),
        ("esphome://127.0.0.1:9?port_name=mep", "proxy_offline"),
        ("esphome://127.0.0.1:6053", "invalid_port"),
    ):
        result = await _flow(hass, port)
        assert result["errors"] == {"base": error}, port
    result = await _flow(hass, device.url("mep", key=NOISE_KEY))
    assert result["type"] == "create_entry"
    assert NOISE_KEY not in result["title"]
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)
