"""The key stays secret and the client stays read-only, whatever happens (in Home Assistant).

One test drives every flow and error path at DEBUG level, on both transports, with the
right key and with a wrong one, and then searches everything a user or a bug report could
show (the log, error messages, diagnostics, entity states and attributes, entry titles,
CLI output) for either key in every form the integration accepts or derives. The library's
own checks are in lib/tests/test_security.py.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from homeassistant import config_entries
from homeassistant.const import CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.nes_meter.const import CONF_KEY, CONF_KEY_FORMAT, CONF_TRANSPORT, DOMAIN
from custom_components.nes_meter.coordinator import NesMeterCoordinator
from lib.tests.test_security import WRONG_KEY, WRONG_KEY_TEXT, assert_secret_absent, run_cli
from nesmeter.sim.simulator import Faults, SimulatedMeter

from .conftest import KEY, KEY_TEXT


async def _flow(hass: HomeAssistant, data: dict[str, Any]) -> dict[str, Any]:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    return dict(await hass.config_entries.flow.async_configure(result["flow_id"], data))


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_the_key_appears_nowhere(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    caplog: pytest.LogCaptureFixture,
    transport: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    meter = SimulatedMeter(KEY)
    server = await meter.serve_tcp(transport)
    silent = await SimulatedMeter(KEY, faults=Faults(silent=True)).serve_tcp(transport)
    shown: list[str] = []

    def entry_input(port: str, key: str) -> dict[str, Any]:
        return {CONF_PORT: port, CONF_TRANSPORT: transport, CONF_KEY: key, CONF_KEY_FORMAT: "auto"}

    try:
        # Config flow: every error, then success; the created entry's data holds the key by design.
        for port, key in (
            (server.url, WRONG_KEY_TEXT),
            (silent.url, KEY_TEXT),
            ("socket://127.0.0.1:9", KEY_TEXT),
            ("http://127.0.0.1:1", KEY_TEXT),
            (server.url, KEY_TEXT[:-1] + "\x01"),
        ):
            shown.append(json.dumps(await _flow(hass, entry_input(port, key)), default=str))
        created = await _flow(hass, entry_input(server.url, KEY_TEXT))
        assert created["type"] is FlowResultType.CREATE_ENTRY
        entry = created["result"]
        await hass.async_block_till_done()
        coordinator: NesMeterCoordinator = entry.runtime_data
        meter.faults = Faults(corrupt=0.2, garbage=0.2, alerts=True)
        for _ in range(5):  # polls through injected faults: retries, bad frames, alert markers
            await coordinator.async_refresh()
        shown.append(json.dumps(await get_diagnostics_for_config_entry(hass, hass_client, entry), default=str))
        shown.append(json.dumps([state.as_dict() for state in hass.states.async_all()], default=str))
        shown.append(entry.title)

        # The utility re-keys the meter: reauth with a wrong key first, then the right one.
        meter.faults = Faults()
        meter.change_key(WRONG_KEY)
        coordinator._retry_at = 0  # past any backoff a faulty poll started
        async with coordinator.port_released():  # an optical session already logged on would carry on
            pass  # closed under the port lock: a meter history read in progress ends first, the worker stops
        await coordinator.async_refresh()
        await hass.async_block_till_done()
        flows = [
            flow
            for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
            if flow["context"]["source"] == config_entries.SOURCE_REAUTH
        ]
        assert flows
        result = await hass.config_entries.flow.async_configure(
            flows[0]["flow_id"], {CONF_KEY: KEY_TEXT, CONF_KEY_FORMAT: "auto"}
        )
        shown.append(json.dumps(result, default=str))
        result = await hass.config_entries.flow.async_configure(
            flows[0]["flow_id"], {CONF_KEY: WRONG_KEY_TEXT, CONF_KEY_FORMAT: "auto"}
        )
        assert result["reason"] == "reauth_successful"
        await hass.async_block_till_done()
        shown.append(json.dumps([state.as_dict() for state in hass.states.async_all()], default=str))

        # The command line at -v, with the right key and a wrong one.
        shown.append(await run_cli("read", "--transport", transport, "--port", server.url, "--key", WRONG_KEY_TEXT))
        shown.append(await run_cli("read", "--transport", transport, "--port", server.url, "--key", KEY_TEXT))
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()
        await silent.close()

    # HA 2026.x's coordinator adds a DEBUG "Full error:" traceback to a failed update; no other record has one.
    ours = "\n".join(caplog.handler.format(r) for r in caplog.records if r.msg != "Full error:")
    assert "DEBUG" in caplog.text and "Traceback" not in ours
    assert_secret_absent(caplog.text, "the log")
    for index, text in enumerate(shown):
        assert_secret_absent(text, f"output {index}")
    for record in caplog.records:
        if record.exc_info and record.exc_info[1]:
            assert_secret_absent(repr(record.exc_info[1]), "an exception")
