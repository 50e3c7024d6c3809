"""Shared fixtures of the integration tests: config entries for the simulated meter on loopback TCP."""

from __future__ import annotations

from collections.abc import Iterator
import logging
from pathlib import Path
import re
from typing import Any
from unittest.mock import PropertyMock, patch

from homeassistant.const import CONF_PORT, MAJOR_VERSION, MINOR_VERSION
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity import Entity
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from syrupy.assertion import SnapshotAssertion
from syrupy.location import PyTestLocation

from custom_components.nes_meter.const import CONF_KEY, CONF_KEY_FORMAT, CONF_TRANSPORT, DOMAIN
from custom_components.nes_meter.coordinator import NesMeterCoordinator

# The simulated meter and its loopback servers, as the library's tests have them.
from lib.tests.conftest import ir_server, mep_server, meter  # noqa: F401
from nesmeter import MeterKey

KEY_TEXT = "a7941d85bce8a8fa2ab7"
KEY = MeterKey.parse(KEY_TEXT)
SERIAL = "5712345678"


def add_meter_entry(hass: HomeAssistant, url: str, transport: str = "ir", **options: Any) -> MockConfigEntry:
    """The config entry a user gets for the simulated meter at ``url`` (added, not set up)."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=SERIAL,
        title=f"NES 83334 ({transport.upper()})",
        data={CONF_PORT: url, CONF_TRANSPORT: transport, CONF_KEY: KEY_TEXT, CONF_KEY_FORMAT: "auto"},
        options=options,
    )
    entry.add_to_hass(hass)
    return entry


async def drain_rare_reads(coordinator: NesMeterCoordinator, *due: str) -> int:
    """Poll until the named rare reads (if any) and whatever else is due are done; the polls it took."""
    if due:
        coordinator.rare_reads.poll_soon(*due)
    polls = 0
    while polls == 0 or coordinator.rare_reads.pending:
        await coordinator.async_refresh()
        assert coordinator.last_update_success
        polls += 1
        assert polls < 50
    await coordinator.hass.async_block_till_done()
    return polls


async def energy_dashboard_issues(
    hass: HomeAssistant, stat_from: str, stat_to: str, cost: str | None = None, compensation: str | None = None
) -> list[Any]:
    """Set up a grid source of these statistics in the Energy dashboard; what its validation finds."""
    from homeassistant.components.energy import data as energy_data, validate

    def flow(key: str, stat: str, cost_key: str) -> dict[str, Any]:
        stat_cost = cost if cost_key == "stat_cost" else compensation
        return {key: stat, cost_key: stat_cost, "entity_energy_price": None, "number_energy_price": None}

    manager = await energy_data.async_get_manager(hass)
    await manager.async_update(
        {
            "energy_sources": [
                {
                    "type": "grid",
                    "flow_from": [flow("stat_energy_from", stat_from, "stat_cost")],
                    "flow_to": [flow("stat_energy_to", stat_to, "stat_compensation")],
                    "cost_adjustment_day": 0,
                }
            ]
        }
    )
    result = await validate.async_validate(hass)
    assert result.energy_sources  # the grid source was validated
    return [issue for group in result.energy_sources for issue in group.issues.values()]


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(request: pytest.FixtureRequest) -> None:
    """HA tests need custom integrations enabled; plain library tests do not use hass."""
    if "recorder_mock" in request.fixturenames:
        request.getfixturevalue("recorder_mock")  # the recorder must come up before hass
    if "hass" in request.fixturenames:
        request.getfixturevalue("enable_custom_integrations")


# What Home Assistant says when the integration uses something it deprecates: the frame
# helper's reports ("Detected that custom integration 'nes_meter' ... This will stop working
# in Home Assistant X" / "breaks in"), deprecated constants ("... was used from nes_meter, this
# is a deprecated constant ..."), the config-entries checks (update listeners and reloads).
DEPRECATION_REPORT = re.compile(r"deprecat|will stop working|breaks in|stop working in", re.IGNORECASE)


class _ReportCollector(logging.Handler):
    """Keeps every warning or error any logger emits during one test."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def no_deprecation_reports(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test when Home Assistant reports a deprecation about this integration, on any release.

    A test marked ``deprecation_report_expected`` (the guard's own test) must see one instead.
    """
    collector = _ReportCollector()
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        yield
    finally:
        root.removeHandler(collector)
    reports = [text for text in collector.messages if "nes_meter" in text and DEPRECATION_REPORT.search(text)]
    if request.node.get_closest_marker("deprecation_report_expected"):
        assert reports, "the deprecation guard saw no report"
    elif reports:
        pytest.fail("Home Assistant reported a deprecation about nes_meter:\n" + "\n".join(reports), pytrace=False)


@pytest.fixture(autouse=True)
def loopback_sockets(socket_enabled: None) -> None:
    """The simulator listens on 127.0.0.1; connections elsewhere stay blocked."""


def _release(folder: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in folder.name.split("."))


class VersionedSnapshotExtension(HomeAssistantSnapshotExtension):
    """Snapshots per Home Assistant release: registry entries gain fields from one release to the next.

    ``tests/snapshots/<release>/`` holds a release's snapshots where they differ from the
    release before; a release without a folder of its own uses the newest older one. Update one
    line at a time (``scripts/test --ha LINE tests/test_sensor.py --snapshot-update``): syrupy
    deletes the other folders' files as unused, ``git checkout`` them afterwards.
    """

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        """Return the snapshot folder of the Home Assistant release under test."""
        folders = Path(test_location.filepath).parent / "snapshots"
        running = (MAJOR_VERSION, MINOR_VERSION)
        older = [folder for folder in folders.iterdir() if folder.is_dir() and _release(folder) <= running]
        return str(max(older, key=_release) if older else folders / f"{MAJOR_VERSION}.{MINOR_VERSION}")


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Home Assistant's snapshot serializer, in this release's folder."""
    return snapshot.use_extension(VersionedSnapshotExtension)


@pytest.fixture
def entity_registry_enabled_by_default() -> Iterator[None]:
    """Create every entity enabled, including the ones users opt into."""
    with patch.object(Entity, "entity_registry_enabled_default", new_callable=PropertyMock, return_value=True):
        yield
