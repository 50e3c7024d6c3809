"""A plugged-in optical probe with its own USB id opens a prefilled flow; a configured port is left alone."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
import json
from pathlib import Path
from unittest.mock import patch

from homeassistant.config_entries import SOURCE_IGNORE, SOURCE_USB, ConfigEntryState
from homeassistant.const import CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.usb import UsbServiceInfo
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.nes_meter import config_flow
from custom_components.nes_meter.const import CONF_KEY, CONF_KEY_FORMAT, CONF_TRANSPORT, DOMAIN
from nesmeter.sim.simulator import SimServer, SimulatedMeter

from .conftest import KEY_TEXT, SERIAL

MANIFEST = json.loads((Path(config_flow.__file__).parent / "manifest.json").read_text())
BY_ID_NAME = "usb-Abacus_Electrics_Optical_Probe_AB12CD-if00-port0"


@pytest.fixture
async def probe(meter: SimulatedMeter) -> AsyncIterator[SimServer]:
    """The meter's optical port behind a pty, as a probe's /dev/ttyUSBx would be."""
    server = await meter.serve_pty("ir")
    yield server
    await server.close()


@pytest.fixture
def by_id(tmp_path: Path, probe: SimServer) -> Iterator[Path]:
    """A /dev/serial/by-id folder with the probe's stable name."""
    folder = tmp_path / "by-id"
    folder.mkdir()
    (folder / BY_ID_NAME).symlink_to(probe.url)
    with patch.object(config_flow, "BY_ID", folder):
        yield folder / BY_ID_NAME


def discovery(device: str) -> UsbServiceInfo:
    return UsbServiceInfo(
        device=device,
        vid="0403",
        pid="F458",
        serial_number="AB12CD",
        manufacturer="Abacus Electrics",
        description="Optical Probe",
    )


def test_manifest_matches_only_dedicated_probes() -> None:
    """Generic FTDI or CH340 ids would offer every USB serial adapter as a meter probe."""
    assert MANIFEST["usb"] == [{"vid": "0403", "pid": "F458"}, {"vid": "0403", "pid": "E700"}]


async def test_discovered_probe_is_offered_with_port_and_ir(hass: HomeAssistant, probe: SimServer, by_id: Path) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USB}, data=discovery(probe.url)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "usb_confirm"
    assert result["description_placeholders"] == {"name": "Optical Probe"}
    defaults = {str(marker): marker.default() for marker in result["data_schema"].schema if callable(marker.default)}
    assert defaults[CONF_PORT] == str(by_id)  # the stable name, not /dev/pts/N or /dev/ttyUSBx
    assert defaults[CONF_TRANSPORT] == "ir"
    assert CONF_KEY not in defaults

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PORT: str(by_id), CONF_TRANSPORT: "ir", CONF_KEY: KEY_TEXT, CONF_KEY_FORMAT: "auto"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == SERIAL
    assert result["data"][CONF_PORT] == str(by_id)
    await hass.async_block_till_done()
    assert result["result"].state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_probe_of_a_configured_meter_is_ignored(hass: HomeAssistant, probe: SimServer, by_id: Path) -> None:
    """The entry's port is the by-id name; the discovery reports the device node."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=SERIAL,
        data={CONF_PORT: str(by_id), CONF_TRANSPORT: "ir", CONF_KEY: KEY_TEXT, CONF_KEY_FORMAT: "auto"},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USB}, data=discovery(probe.url)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.runtime_data.client.is_open
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_ignored_probe_stays_ignored(hass: HomeAssistant, probe: SimServer, by_id: Path) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USB}, data=discovery(probe.url)
    )
    flow = next(flow for flow in hass.config_entries.flow.async_progress() if flow["flow_id"] == result["flow_id"])
    await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_IGNORE}, data={"unique_id": flow["context"]["unique_id"], "title": "Probe"}
    )
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USB}, data=discovery(probe.url)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_same_probe_twice_is_one_flow(hass: HomeAssistant, probe: SimServer, by_id: Path) -> None:
    first = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USB}, data=discovery(probe.url))
    assert first["type"] is FlowResultType.FORM
    second = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USB}, data=discovery(probe.url)
    )
    assert second["type"] is FlowResultType.ABORT
    assert second["reason"] == "already_in_progress"


async def test_probe_without_a_by_id_name_keeps_its_device_path(
    hass: HomeAssistant, probe: SimServer, tmp_path: Path
) -> None:
    with patch.object(config_flow, "BY_ID", tmp_path / "no-by-id"):
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USB}, data=discovery(probe.url)
        )
    defaults = {str(marker): marker.default() for marker in result["data_schema"].schema if callable(marker.default)}
    assert defaults[CONF_PORT] == probe.url
