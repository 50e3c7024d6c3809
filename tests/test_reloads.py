"""Options, reconfigure, reauth and the TLS repair reload the entry exactly once, and report nothing.

Home Assistant 2026.6+ reports an update listener next to ``async_update_reload_and_abort``
("will stop working in 2026.12"), and with one the entry was set up twice when a flow
changed it. The integration has none: the options flow reloads itself, the other flows
through ``async_update_reload_and_abort``, the repair schedules its reload.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
import logging
from pathlib import Path
from unittest.mock import patch

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import frame
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

import custom_components.nes_meter as integration
from custom_components.nes_meter.const import (
    CONF_ENABLE_LINE,
    CONF_KEY,
    CONF_KEY_FORMAT,
    CONF_MEP_SECURITY,
    CONF_TLS_KEY_ID,
    CONF_TRANSPORT,
    CONF_UPDATE_INTERVAL,
    DOMAIN,
)
from custom_components.nes_meter.coordinator import tls_issue_id
from nesmeter import MeterKey
from nesmeter.sim.simulator import SimulatedMeter

from .conftest import KEY_TEXT
from .test_config_flow_loaded import NEW_KEY, loaded, pty  # noqa: F401  (fixtures)

OPTIONS = {CONF_UPDATE_INTERVAL: 30, CONF_ENABLE_LINE: "rts", CONF_MEP_SECURITY: "plain", CONF_TLS_KEY_ID: "mbk"}


async def setups_during(hass: HomeAssistant, flow: Callable[[], Awaitable[None]]) -> int:
    """How many times the entry is set up while ``flow`` runs and its reload settles."""
    calls = 0
    real = integration.async_setup_entry

    async def counting(*args: object) -> bool:
        nonlocal calls
        calls += 1
        return await real(*args)  # type: ignore[arg-type]

    with patch.object(integration, "async_setup_entry", counting):
        await flow()
        await hass.async_block_till_done()
    return calls


async def change_options(hass: HomeAssistant, entry: MockConfigEntry, options: dict[str, object]) -> None:
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], options)
    assert result["type"] is FlowResultType.CREATE_ENTRY, result


async def test_changed_options_reload_once_and_unchanged_ones_not(
    hass: HomeAssistant,
    loaded: MockConfigEntry,  # noqa: F811
) -> None:
    assert await setups_during(hass, lambda: change_options(hass, loaded, OPTIONS)) == 1
    assert loaded.options[CONF_UPDATE_INTERVAL] == 30
    assert loaded.runtime_data.interval_seconds == 30  # the reload read the new options
    assert await setups_during(hass, lambda: change_options(hass, loaded, OPTIONS)) == 0
    assert loaded.state is ConfigEntryState.LOADED


@pytest.mark.parametrize("same_port", [True, False], ids=["unchanged", "another-path"])
async def test_reconfigure_reloads_once(
    hass: HomeAssistant,
    loaded: MockConfigEntry,  # noqa: F811
    tmp_path: Path,
    same_port: bool,
) -> None:
    port = loaded.data[CONF_PORT]
    if not same_port:
        (tmp_path / "usb-NES_probe-if00-port0").symlink_to(port)
        port = str(tmp_path / "usb-NES_probe-if00-port0")

    async def flow() -> None:
        result = await loaded.start_reconfigure_flow(hass)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_PORT: port, CONF_TRANSPORT: "mep", CONF_KEY_FORMAT: "auto"}
        )
        assert result["reason"] == "reconfigure_successful"

    assert await setups_during(hass, flow) == 1
    assert loaded.data[CONF_PORT] == port
    assert loaded.state is ConfigEntryState.LOADED


async def test_reauth_reloads_once(
    hass: HomeAssistant,
    meter: SimulatedMeter,
    loaded: MockConfigEntry,  # noqa: F811
) -> None:
    meter.change_key(MeterKey.parse(NEW_KEY))
    await loaded.runtime_data.async_refresh()
    await hass.async_block_till_done()
    flows = [f for f in hass.config_entries.flow.async_progress() if f["context"]["source"] == SOURCE_REAUTH]
    assert len(flows) == 1

    async def flow() -> None:
        result = await hass.config_entries.flow.async_configure(
            flows[0]["flow_id"], {CONF_KEY: NEW_KEY, CONF_KEY_FORMAT: "auto"}
        )
        assert result["reason"] == "reauth_successful"

    assert await setups_during(hass, flow) == 1
    assert loaded.data[CONF_KEY] == NEW_KEY
    assert loaded.state is ConfigEntryState.LOADED


async def test_tls_repair_reloads_once(
    hass: HomeAssistant,
    loaded: MockConfigEntry,  # noqa: F811
) -> None:
    """Confirming the 'TLS required' repair stores TLS mode and sets the entry up again, once."""
    from custom_components.nes_meter.repairs import async_create_fix_flow

    repair = await async_create_fix_flow(hass, tls_issue_id(loaded), {"entry_id": loaded.entry_id})
    repair.hass = hass
    repair.issue_id = tls_issue_id(loaded)

    async def flow() -> None:
        result = await repair.async_step_confirm({})
        assert result["type"] is FlowResultType.CREATE_ENTRY

    # The simulated meter is not in TLS mode: the reload's setup runs (and retries), once.
    assert await setups_during(hass, flow) == 1
    assert loaded.options[CONF_MEP_SECURITY] == "tls"


@pytest.mark.deprecation_report_expected
async def test_the_deprecation_guard_sees_a_report(
    hass: HomeAssistant,
    loaded: MockConfigEntry,  # noqa: F811
) -> None:
    """The suite's guard (tests/conftest.py) catches what Home Assistant's frame helper reports."""
    frame.report_usage("uses an API the guard test made up", breaks_in_ha_version="2099.1.0", integration_domain=DOMAIN)


async def test_a_whole_entry_life_cycle_logs_nothing_about_the_integration(
    hass: HomeAssistant,
    loaded: MockConfigEntry,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Setup, options, reconfigure, reauth, reload and unload: no warning or error names nes_meter."""
    caplog.set_level(logging.WARNING)
    await change_options(hass, loaded, OPTIONS)
    await hass.async_block_till_done()

    result = await loaded.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PORT: loaded.data[CONF_PORT], CONF_TRANSPORT: "mep", CONF_KEY_FORMAT: "auto"}
    )
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()

    result = await loaded.start_reauth_flow(hass)  # a user who re-enters the key unasked
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_KEY: KEY_TEXT, CONF_KEY_FORMAT: "auto"}
    )
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()

    assert await hass.config_entries.async_reload(loaded.entry_id)
    await hass.async_block_till_done()
    assert loaded.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(loaded.entry_id)
    await hass.async_block_till_done()
    assert loaded.state is ConfigEntryState.NOT_LOADED
    about_us = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "nes_meter" in (r.name + r.getMessage())
    ]
    assert about_us == []
