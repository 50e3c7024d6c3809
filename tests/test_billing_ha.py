"""Billing registers, power quality, the disconnect switch and alert flags in Home Assistant.

Each test loads a config entry against the simulated meter (over loopback TCP, the real
client) with the meter variant that has the feature, and one without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, timedelta
import json
from pathlib import Path

from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.nes_meter.const import DOMAIN
from custom_components.nes_meter.coordinator import NesMeterCoordinator
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import Faults, SimServer, SimulatedMeter
from nesmeter.tables import tables
from nesmeter.tables.billing import BT26

from .conftest import KEY, SERIAL, add_meter_entry, drain_rare_reads, energy_dashboard_issues

TIER = "sensor.nes_83334_tariff_tier"
DISCONNECT = "sensor.nes_83334_disconnect_switch"
LIVE_TABLES = frozenset({tables.BT23, tables.BT28, tables.BT52})
TRANSLATIONS = Path(__file__).parent.parent / "custom_components" / "nes_meter" / "translations" / "en.json"


class Meter:
    """A simulated meter with variants, served over loopback, and its Home Assistant entry."""

    def __init__(self, variants: str, transport: str = "ir", faults: Faults | None = None) -> None:
        self.sim = SimulatedMeter(KEY, image=MeterImage(speed=0), variants=variants, faults=faults)
        self.transport = transport
        self.server: SimServer | None = None

    async def setup(self, hass: HomeAssistant, **options: object) -> NesMeterCoordinator:
        self.server = await self.sim.serve_tcp(self.transport)
        entry = add_meter_entry(hass, self.server.url, self.transport, **options)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        coordinator: NesMeterCoordinator = entry.runtime_data
        await drain_rare_reads(coordinator)
        return coordinator

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


@pytest.fixture
async def meters() -> AsyncIterator[list[Meter]]:
    made: list[Meter] = []
    yield made
    for meter in made:
        await meter.close()


type MakeMeter = Callable[..., Meter]


@pytest.fixture
def make(meters: list[Meter]) -> MakeMeter:
    def make(variants: str = "", transport: str = "ir", faults: Faults | None = None) -> Meter:
        meter = Meter(variants, transport, faults)
        meters.append(meter)
        return meter

    return make


def state(hass: HomeAssistant, entity_id: str) -> str:
    current = hass.states.get(entity_id)
    assert current is not None, entity_id
    return current.state


def unique_ids(hass: HomeAssistant, entry: MockConfigEntry | None = None) -> set[str]:
    registry = er.async_get(hass)
    return {
        item.unique_id.removeprefix(f"{SERIAL}_")
        for item in registry.entities.values()
        if item.platform == DOMAIN and (entry is None or item.config_entry_id == entry.entry_id)
    }


def entries_with(hass: HomeAssistant, keys: Iterable[str]) -> dict[str, er.RegistryEntry]:
    registry = er.async_get(hass)
    return {
        key: entity
        for key in keys
        if (entity_id := registry.async_get_entity_id("sensor", DOMAIN, f"{SERIAL}_{key}"))
        and (entity := registry.async_get(entity_id))
    }


async def test_a_single_tariff_meter_gets_no_tier_demand_self_read_or_disconnect_entities(
    hass: HomeAssistant, make: MakeMeter
) -> None:
    """Nothing is created for what a meter lacks: the default meter counts everything in tier 1."""
    coordinator = await make().setup(hass)
    keys = unique_ids(hass)
    assert not {key for key in keys if "tier" in key or "demand" in key or "self_read" in key}
    assert "disconnect_switch" not in keys
    # ET09 is there: the power quality sensors and a phase-loss sensor per measured phase.
    assert {"short_power_failure_count", "last_power_failure_duration", "phase_loss_l1", "phase_loss_l3"} <= keys
    assert not {key for key in keys if key.startswith("alert_")}  # IR: no MEP alert flags
    assert coordinator.billing.reader.tiers == 4
    assert coordinator.billing.tiers_in_use == ()


async def test_tier_sensors_follow_a_tier_switch(hass: HomeAssistant, make: MakeMeter) -> None:
    meter = make("tou")
    billing = meter.sim.image.billing
    billing.switch_tier(1)
    coordinator = await meter.setup(hass)
    assert state(hass, TIER) == "tier_2"
    enabled = {key for key, entity in entries_with(hass, unique_ids(hass)).items() if not entity.disabled}
    assert {"energy_import_tier_1", "energy_import_tier_2"} <= enabled
    assert "energy_import_tier_4" not in enabled  # the calendar never uses it: created, disabled
    assert "energy_import_tier_4" in unique_ids(hass)
    truth = billing.tier_energies()
    assert float(state(hass, "sensor.nes_83334_energy_import_tier_1")) == pytest.approx(truth[0][0] / 1000)

    billing.switch_tier(2)
    await drain_rare_reads(coordinator, "tariff")  # the tier changed: its energies are read right after
    assert state(hass, TIER) == "tier_3"
    truth = billing.tier_energies()
    assert float(state(hass, "sensor.nes_83334_energy_import_tier_3")) == pytest.approx(truth[2][0] / 1000)
    tier_state = hass.states.get(TIER)
    assert tier_state is not None and tier_state.attributes["tier_drive"] in ("calendar", "manual", "manual_hold")


async def test_the_newest_self_read_is_read_when_the_meter_takes_one(hass: HomeAssistant, make: MakeMeter) -> None:
    meter = make("self-reads")
    coordinator = await meter.setup(hass)
    first = hass.states.get("sensor.nes_83334_last_self_read")
    assert first is not None and first.state not in ("unknown", "unavailable")
    taken = meter.sim.image.billing.self_read()
    reads_before = meter.sim.stats.table_reads[BT26]
    await drain_rare_reads(coordinator, "self_read")
    assert meter.sim.stats.table_reads[BT26] - reads_before == 2  # the header, then the entry
    imported = hass.states.get("sensor.nes_83334_self_read_energy_import")
    assert imported is not None
    assert float(imported.state) == pytest.approx(taken.energy_import_wh / 1000)
    assert imported.attributes["sequence"] == taken.sequence
    assert "state_class" not in imported.attributes  # a snapshot, not a second energy series
    # Nothing new: only the header is read.
    reads_before = meter.sim.stats.table_reads[BT26]
    await drain_rare_reads(coordinator, "self_read")
    assert meter.sim.stats.table_reads[BT26] - reads_before == 1


async def test_a_refused_self_read_entry_is_read_again_after_the_next_header(
    hass: HomeAssistant, make: MakeMeter
) -> None:
    """The header moved but the entry read was refused: the entry must not wait for the next self-read."""
    meter = make("self-reads")
    coordinator = await meter.setup(hass)
    taken = meter.sim.image.billing.self_read()
    coordinator.rare_reads.poll_soon("self_read")
    reads_before = meter.sim.stats.table_reads[BT26]
    while meter.sim.stats.table_reads[BT26] == reads_before:  # the header read: it moved
        await coordinator.async_refresh()
    meter.sim.image.refused[BT26] = 0x04  # the entry read is refused (operation not possible)
    await coordinator.async_refresh()
    del meter.sim.image.refused[BT26]
    imported = "sensor.nes_83334_self_read_energy_import"
    assert float(state(hass, imported)) != pytest.approx(taken.energy_import_wh / 1000)
    await drain_rare_reads(coordinator, "self_read")
    assert float(state(hass, imported)) == pytest.approx(taken.energy_import_wh / 1000)


async def test_maximum_demands_have_their_time(hass: HomeAssistant, make: MakeMeter) -> None:
    meter = make("demand")
    coordinator = await meter.setup(hass)
    demands = coordinator.billing.demands
    assert demands is not None and len(demands.values) == 8
    truth = meter.sim.image.billing.demands()
    first = hass.states.get("sensor.nes_83334_maximum_demand_1")
    assert first is not None
    assert float(first.state) == pytest.approx(truth[0].value)
    # The meter stamps local time; its BT55 clock runs an hour ahead of UTC (its own zone).
    assert coordinator.billing.utc_offset == timedelta(hours=1)
    assert truth[0].time is not None
    assert first.attributes["time"] == (truth[0].time - timedelta(hours=1)).replace(tzinfo=UTC).isoformat()
    assert first.attributes["unit_of_measurement"] == "W"
    assert "self_read_time" in unique_ids(hass)  # the demand meter also takes self-reads


async def test_disconnect_switch_state_follows_the_meter(hass: HomeAssistant, make: MakeMeter) -> None:
    meter = make("disconnect")
    coordinator = await meter.setup(hass)
    assert state(hass, DISCONNECT) == "closed"
    meter.sim.image.power_quality.set_disconnect("open")
    await drain_rare_reads(coordinator, "relay")
    assert state(hass, DISCONNECT) == "open"


async def test_phase_loss_and_power_quality_values(hass: HomeAssistant, make: MakeMeter) -> None:
    meter = make("phase-loss")
    coordinator = await meter.setup(hass)
    assert state(hass, "binary_sensor.nes_83334_phase_l3_lost") == STATE_ON
    assert state(hass, "binary_sensor.nes_83334_phase_l1_lost") == STATE_OFF
    quality = coordinator.quality.quality
    assert quality is not None
    lost = hass.states.get("binary_sensor.nes_83334_phase_l3_lost")
    assert lost is not None and quality.phase_loss_last[2] is not None
    assert lost.attributes["count"] == quality.phase_loss_counts[2] > 0
    assert lost.attributes["last"] == quality.phase_loss_last[2].isoformat()
    assert int(state(hass, "sensor.nes_83334_short_power_failures")) == quality.short_outages
    outage = hass.states.get("sensor.nes_83334_last_power_failure_duration")
    assert outage is not None and quality.last_outage is not None
    assert int(float(outage.state)) == quality.last_outage.duration_s
    assert outage.attributes["power_on"] == quality.last_outage.power_on.isoformat()  # type: ignore[union-attr]


async def test_a_meter_without_power_quality_gets_none_of_its_entities(hass: HomeAssistant, make: MakeMeter) -> None:
    await make("no-power-quality").setup(hass)
    keys = unique_ids(hass)
    assert not {key for key in keys if "power_failure" in key or key.startswith(("phase_loss_l", "voltage_sag"))}


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_mep_alert_flags_turn_on_with_the_meter_s_alert(hass: HomeAssistant, make: MakeMeter) -> None:
    meter = make("", transport="mep", faults=Faults(alerts=True))
    coordinator = await meter.setup(hass)
    entity = "binary_sensor.nes_83334_alert_scheduled_read"
    assert state(hass, entity) == STATE_OFF
    meter.sim.image.set_alert_flags(0x01)
    await asyncio.sleep(1.4)  # idle: the meter starts repeating its 00 00 alert marker
    await drain_rare_reads(coordinator)  # the poll sees the marker and reads the flags
    assert state(hass, entity) == STATE_ON
    meter.sim.image.set_alert_flags(0)
    await asyncio.sleep(1.4)
    await drain_rare_reads(coordinator)
    assert state(hass, entity) == STATE_OFF


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_one_extra_read_per_live_poll_at_most(hass: HomeAssistant, make: MakeMeter, transport: str) -> None:
    """With every rare part due at once, each poll reads its live tables plus one other table.

    On MEP every read is one request; on the optical port a read longer than one
    exchange carries (ET09, tier blocks) is one read in two or three requests.
    """
    meter = make("tou,self-reads,disconnect", transport=transport)
    coordinator = await meter.setup(hass)
    reads = meter.sim.stats.table_reads
    coordinator.rare_reads.poll_soon()
    extra_tables: list[set[int]] = []
    while coordinator.rare_reads.pending:
        before = dict(reads)
        await coordinator.async_refresh()
        assert coordinator.last_update_success
        moved = {table: reads[table] - before.get(table, 0) for table in reads if reads[table] != before.get(table, 0)}
        extra = {table: count for table, count in moved.items() if table not in LIVE_TABLES}
        extra_tables.append(set(extra))
        if transport == "mep":
            assert sum(extra.values()) <= 1, extra
    # status, events header, tariff, tiers, self-read header, power quality, relay
    assert len(extra_tables) >= 7
    assert all(len(tables_read) <= 1 for tables_read in extra_tables), extra_tables


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_a_demand_meter_on_the_optical_port_gets_every_tier_one_read_per_poll(
    hass: HomeAssistant, make: MakeMeter
) -> None:
    """196-byte tier blocks: two optical reads of two tiers each, never both after one poll.

    Every table read outside the live poll is recorded (a tier read is BT23 like the live
    totals, so table counts alone cannot tell them apart).
    """
    meter = make("tou,demand", transport="ir")
    coordinator = await meter.setup(hass)
    billing = meter.sim.image.billing
    tier_keys = {f"energy_{direction}_tier_{tier}" for tier in range(1, 5) for direction in ("import", "export")}
    assert tier_keys <= unique_ids(hass)
    assert sorted(coordinator.billing.tiers) == [0, 1, 2, 3]

    def assert_tiers_shown() -> None:
        unit = meter.sim.image.energy_unit
        for tier, energies in enumerate(billing.tier_energies()):
            for index, direction in enumerate(("import", "export")):
                shown = float(state(hass, f"sensor.nes_83334_energy_{direction}_tier_{tier + 1}"))
                assert shown == pytest.approx(int(energies[index]) // unit * unit / 1000), (tier, direction)

    assert_tiers_shown()

    client = coordinator.client
    extra: list[tuple[int, int, int]] = []
    live = False
    read_table, read_snapshot = client.read_table, client.read_snapshot

    async def recording_read_table(table_id: int, offset: int, count: int) -> bytes:
        if not live:
            extra.append((table_id, offset, count))
        return await read_table(table_id, offset, count)

    async def live_read_snapshot(**kwargs: float | None) -> object:
        nonlocal live
        live = True
        try:
            return await read_snapshot(**kwargs)
        finally:
            live = False

    client.read_table = recording_read_table  # type: ignore[method-assign]
    client.read_snapshot = live_read_snapshot  # type: ignore[method-assign,assignment]
    # The meter switches to tier 4 (the calendar never uses it) and counts 5 kWh there.
    billing.switch_tier(3)
    meter.sim.image.import_wh += 5000
    meter.sim.image.update()
    coordinator.rare_reads.poll_soon()
    tier_reads: list[tuple[int, int]] = []
    max_read = 2 * client.max_read_size
    while coordinator.rare_reads.pending:
        extra.clear()
        await coordinator.async_refresh()
        assert coordinator.last_update_success
        assert len(extra) <= 1, extra
        tier_reads += [(offset, count) for table, offset, count in extra if table == tables.BT23 and offset > 0]
    assert all(count <= max_read for _offset, count in tier_reads)  # two optical exchanges each
    await hass.async_block_till_done()
    # The tariff read saw the switch; every tier pass read both groups (tiers 1-2, then 3-4),
    # one per live poll, starting from the first.
    assert tier_reads
    assert tier_reads == [(197, 196 + 8), (197 + 2 * 196, 196 + 8)] * (len(tier_reads) // 2)
    assert state(hass, TIER) == "tier_4"
    assert billing.tier_energies()[3][0] == pytest.approx(5000, abs=1)
    assert_tiers_shown()


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_the_tier_groups_follow_the_read_size_of_each_session(
    hass: HomeAssistant, make: MakeMeter, caplog: pytest.LogCaptureFixture
) -> None:
    """An optical session may negotiate smaller packets than the one before: more groups, all read."""
    meter = make("tou,demand", transport="ir")
    coordinator = await meter.setup(hass)
    reader = coordinator.billing.reader
    assert len(reader.tier_spans()) == 2
    reader._exchanges = 1  # one exchange per read: one 196-byte tier block each
    assert len(reader.tier_spans()) == 4
    billing = meter.sim.image.billing
    billing.switch_tier(3)
    meter.sim.image.import_wh += 5000
    meter.sim.image.update()
    await drain_rare_reads(coordinator, "tiers")
    tier_4 = float(state(hass, "sensor.nes_83334_energy_import_tier_4"))
    assert tier_4 * 1000 == pytest.approx(billing.tier_energies()[3][0], abs=meter.sim.image.energy_unit)
    # Mid-pass the plan shrinks back to two groups: the pass starts again rather than fail.
    coordinator.rare_reads.poll_soon("tiers")
    await coordinator.async_refresh()  # group 1 of 4
    reader._exchanges = 2
    await drain_rare_reads(coordinator)
    assert "tiers read failed" not in caplog.text


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_every_entity_of_a_full_featured_meter_is_translated(hass: HomeAssistant, make: MakeMeter) -> None:
    """Each entity has a translated name, and every translated sensor name is used by some entity."""
    await make("tou,self-reads,demand,disconnect,mbus", transport="mep").setup(hass)
    english = json.loads(TRANSLATIONS.read_text())["entity"]
    registry = er.async_get(hass)
    used: dict[str, set[str]] = {}
    for item in registry.entities.values():
        if item.platform != DOMAIN:
            continue
        assert item.translation_key in english[item.domain], item.entity_id
        used.setdefault(item.domain, set()).add(item.translation_key)
        assert "{" not in (item.original_name or "")  # placeholders filled
    # Names only other meters or HA setups use (history: the recorder; retries etc.: always there).
    # (min_demand: a BT22 minimum demand register, which the simulated meter does not configure;
    # an outside temperature: an M-Bus heat meter with a sensor outdoors, which the simulated one lacks)
    unused = {"history_imported_until", "history_pending", "min_demand", "mbus_external_temperature"}
    assert set(english["sensor"]) - used["sensor"] <= unused


async def test_rare_reads_have_every_poll_while_history_reads_between(hass: HomeAssistant, make: MakeMeter) -> None:
    """Rare reads due on every poll (a relay read every 30 s) get each poll's extra read; history reads between."""
    meter = make("disconnect")
    coordinator = await meter.setup(hass)
    relay_reads = meter.sim.stats.table_reads[0x0817]  # ET23
    for _ in range(6):
        coordinator.rare_reads.poll_soon("relay")
        await coordinator.async_refresh()
        assert coordinator.last_update_success
    assert meter.sim.stats.table_reads[0x0817] - relay_reads == 6


async def test_a_lower_tier_register_is_held_back(hass: HomeAssistant, make: MakeMeter) -> None:
    """Tier registers pass the counter guard like the totals: a glitch never reaches the Energy dashboard."""
    meter = make("tou")
    meter.sim.image.billing.switch_tier(1)
    coordinator = await meter.setup(hass)
    entity = "sensor.nes_83334_energy_import_tier_2"
    shown = float(state(hass, entity))
    assert shown > 0
    registers = coordinator.billing.tiers[1]
    glitch = type(registers)(tier=1, energy_import_wh=1.0, energy_export_wh=registers.energy_export_wh)
    coordinator.billing._set_tiers((glitch,))
    coordinator.async_update_listeners()
    await hass.async_block_till_done()
    assert float(state(hass, entity)) == shown
    assert coordinator.guard.as_dict()["dropped_readings"] == {"energy_import_tier_2_wh:decrease": 1}


async def test_removing_the_entry_deletes_its_event_log_state(
    hass: HomeAssistant, make: MakeMeter, hass_storage: dict[str, object]
) -> None:
    meter = make()
    coordinator = await meter.setup(hass)
    key = f"{DOMAIN}.events.{coordinator.config_entry.entry_id}"
    await hass.async_block_till_done()
    assert key in hass_storage  # the newest sequence, kept across restarts
    assert await hass.config_entries.async_remove(coordinator.config_entry.entry_id)
    await hass.async_block_till_done()
    assert key not in hass_storage


async def test_energy_dashboard_accepts_the_tier_sensors(
    hass: HomeAssistant, recorder_mock: object, make: MakeMeter
) -> None:
    from pytest_homeassistant_custom_component.components.recorder.common import (
        async_wait_recording_done,
        do_adhoc_statistics,
    )

    meter = make("tou")
    meter.sim.image.billing.switch_tier(1)
    await meter.setup(hass)
    await async_wait_recording_done(hass)
    start = dt_util.utcnow().replace(second=0, microsecond=0)
    do_adhoc_statistics(hass, start=start - timedelta(minutes=start.minute % 5))
    await async_wait_recording_done(hass)
    issues = await energy_dashboard_issues(
        hass, "sensor.nes_83334_energy_import_tier_2", "sensor.nes_83334_energy_export_tier_2"
    )
    assert issues == []
