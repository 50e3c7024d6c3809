"""Every energy channel of the load profile becomes a statistic; the others are only named."""

from __future__ import annotations

from datetime import datetime

from homeassistant.components.recorder.statistics import list_statistic_ids
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.nes_meter import history as history_module
from custom_components.nes_meter.compat import REACTIVE_ENERGY_UNIT_CLASS, STATISTICS_UNIT_CLASS
from custom_components.nes_meter.const import DOMAIN
from custom_components.nes_meter.history import Track, statistic_ids, statistic_metadata
from custom_components.nes_meter.history_channels import history_channel, history_channels, skipped_channels
from nesmeter.sim.simulator import SimServer, SimulatedMeter

from .conftest import SERIAL, add_meter_entry
from .test_history import history_meter, import_all, stored_ids

REACTIVE_IMPORT = f"{DOMAIN}:{SERIAL}_reactive_energy_import"
REACTIVE_EXPORT = f"{DOMAIN}:{SERIAL}_reactive_energy_export"


pytestmark = pytest.mark.usefixtures("recorder_mock")


@pytest.fixture(autouse=True)
def no_read_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Import at wire speed, as in test_history."""
    monkeypatch.setattr(history_module, "READ_RATE", None)


def test_channel_names() -> None:
    """Energy channels get statistics named for what they measure; the rest none."""
    reactive = history_channel("reactive_energy_import_varh")
    assert reactive is not None
    assert (reactive.suffix, reactive.unit) == ("reactive_energy_import", "kvarh")
    assert reactive.unit_class == REACTIVE_ENERGY_UNIT_CLASS
    again = history_channel("energy_import_wh_5")  # the import register recorded a second time
    assert again is not None
    assert (again.suffix, again.name, again.unit) == ("energy_import_channel_6", "energy import (channel 6)", "kWh")
    for other in ("voltage_l1_v", "power_outage_seconds", "power_import_w", "source_99", "voltage_l1_v_3"):
        assert history_channel(other) is None
    assert [known.suffix for known in history_channels(None)] == ["energy_import", "energy_export"]
    assert skipped_channels(("energy_import_wh", "voltage_l1_v", "power_outage_count")) == [
        "voltage_l1_v",
        "power_outage_count",
    ]
    metadata = statistic_metadata("5700", reactive, "NES")
    assert metadata["unit_of_measurement"] == "kvarh"
    assert metadata["name"] == "NES reactive energy import (meter history)"
    assert ("unit_class" in metadata) is STATISTICS_UNIT_CLASS
    assert metadata.get("unit_class") == (REACTIVE_ENERGY_UNIT_CLASS if STATISTICS_UNIT_CLASS else None)
    ids = statistic_ids("5700", ("energy_import_wh", "energy_import_wh_2"))
    assert f"{DOMAIN}:5700_reactive_energy_export" in ids  # cleared with the entry even if not seen yet
    assert f"{DOMAIN}:5700_energy_import_channel_3" in ids


def channel_truth(meter: SimulatedMeter, channel: str) -> list[tuple[datetime, float, float]]:
    track = Track()
    rows = []
    for end, values, _flags in meter.image.load_profile.expected():
        if end.minute == 0 and channel in values and (row := track.row(end, values[channel])):
            rows.append((row["start"], row["state"], row["sum"]))
    return rows


def assert_channel(rows: list[tuple[datetime, float, float]], want: list[tuple[datetime, float, float]]) -> None:
    assert [start for start, _, _ in rows] == [start for start, _, _ in want]
    for (start, state, total), (_, true_state, true_sum) in zip(rows, want, strict=True):
        assert state == pytest.approx(true_state, abs=1e-9), start
        assert total == pytest.approx(true_sum, abs=1e-5), start


async def setup_and_import(hass: HomeAssistant, meter: SimulatedMeter) -> tuple[MockConfigEntry, SimServer]:
    server = await meter.serve_tcp("mep")
    entry = add_meter_entry(hass, server.url, "mep")
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await import_all(hass, entry)
    return entry, server


async def test_reactive_energy_is_imported_in_kvarh(hass: HomeAssistant, hass_client: ClientSessionGenerator) -> None:
    meter = history_meter("lp-reactive")
    entry, server = await setup_and_import(hass, meter)
    try:
        rows = await stored_ids(hass, {REACTIVE_IMPORT, REACTIVE_EXPORT})
        assert_channel(rows[REACTIVE_IMPORT], channel_truth(meter, "reactive_energy_import_varh"))
        assert_channel(rows[REACTIVE_EXPORT], channel_truth(meter, "reactive_energy_export_varh"))
        assert len(rows[REACTIVE_IMPORT]) >= 48
        assert rows[REACTIVE_EXPORT][-1][2] > 0  # the simulated load draws reactive energy (export register)
        assert rows[REACTIVE_IMPORT][-1][1] == pytest.approx(12.0)  # 12 000 varh, as the register stands
        listed = await get_instance(hass).async_add_executor_job(list_statistic_ids, hass)
        units = {item["statistic_id"]: item["statistics_unit_of_measurement"] for item in listed}
        assert units[REACTIVE_IMPORT] == units[REACTIVE_EXPORT] == "kvarh"
        diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
        assert diagnostics["history"]["channels_imported"] == [
            "energy_import_wh",
            "energy_export_wh",
            "reactive_energy_import_varh",
            "reactive_energy_export_varh",
        ]
        assert diagnostics["history"]["channels_not_imported"] == []
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()


async def test_channels_that_are_no_energy_are_named_not_imported(
    hass: HomeAssistant, hass_client: ClientSessionGenerator
) -> None:
    """Outage seconds and a voltage are not imported; the import register recorded twice is, on its own."""
    meter = history_meter()
    meter.image.load_profile.sources = (0, 1, 4, 15, 0)
    entry, server = await setup_and_import(hass, meter)
    try:
        again = f"{DOMAIN}:{SERIAL}_energy_import_channel_5"
        rows = await stored_ids(hass, {f"{DOMAIN}:{SERIAL}_energy_import", again})
        assert_channel(rows[again], channel_truth(meter, "energy_import_wh_4"))
        assert [row[1] for row in rows[again]] == [row[1] for row in rows[f"{DOMAIN}:{SERIAL}_energy_import"]]
        listed = await get_instance(hass).async_add_executor_job(list_statistic_ids, hass)
        ours = sorted(item["statistic_id"] for item in listed if item["source"] == DOMAIN)
        assert ours == sorted([f"{DOMAIN}:{SERIAL}_energy_import", f"{DOMAIN}:{SERIAL}_energy_export", again])
        diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
        assert diagnostics["history"]["channels_not_imported"] == ["power_outage_seconds", "voltage_l1_v"]
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.close()
