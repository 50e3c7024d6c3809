"""Read only what is shown: the client reads the wanted fields' bytes and no others.

Checked on the wire (the client's byte counter) and at the meter (its per-table read
counter), with values compared to the simulated meter's frozen model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
import json
import sys

import pytest

from benchmarks.common import DEFAULT_FIELDS  # what a new Home Assistant installation enables
from nesmeter import MeterClient
from nesmeter.client.read_plan import LinkModel, ReadSchedule, plan_ranges
from nesmeter.tables import tables
from nesmeter.tables.snapshot import MeterSnapshot, scaled

from .conftest import KEY_TEXT
from .test_client import client_for
from .test_variants import TRUE_IMPORT_W, frozen_meter

TARGET_BYTES = {"mep": 120, "ir": 140}
TRANSPORTS = ["mep", "ir"]


async def poll(client: MeterClient, hold_for: float | None = 5) -> tuple[MeterSnapshot, int]:
    before = client.bytes_exchanged
    snapshot = await client.read_snapshot(hold_for=hold_for)
    return snapshot, client.bytes_exchanged - before


def same_values(snapshot: MeterSnapshot, full: MeterSnapshot, names: Iterable[str]) -> None:
    for name in names:
        assert getattr(snapshot, name) == getattr(full, name), name


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("variant", ["", "ct", "demand"])
async def test_default_fields_cost_few_bytes_and_read_true_values(transport: str, variant: str) -> None:
    meter = frozen_meter(variant)
    async with await meter.serve_tcp(transport) as server, client_for(server, transport) as client:
        await client.identify()
        full, _ = await poll(client, hold_for=None)
        client.set_wanted(DEFAULT_FIELDS)
        await poll(client)  # the first poll also compares the CT twins
        snapshot, size = await poll(client)
    wanted = set(DEFAULT_FIELDS) - {"power_net_w"}
    assert snapshot.read_fields == wanted and snapshot.meter_time is None  # the clock was not asked for
    same_values(snapshot, full, wanted)
    assert snapshot.power_import_w == TRUE_IMPORT_W  # post-ratio on the CT meter, raw is 40 times lower
    assert snapshot.power_net_w == TRUE_IMPORT_W
    unit = meter.image.energy_unit
    assert snapshot.energy_import_wh == int(meter.image.import_wh) // unit * unit
    assert snapshot.reactive_power_import_var is None and snapshot.frequency_hz is None
    if variant != "ct":  # a CT meter keeps reading its post-ratio sources, further into BT28
        assert size <= TARGET_BYTES[transport]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_disabling_a_field_stops_its_bytes_and_enabling_brings_them_back(transport: str) -> None:
    meter = frozen_meter()
    async with await meter.serve_tcp(transport) as server, client_for(server, transport) as client:
        await client.identify()
        client.set_wanted(DEFAULT_FIELDS)
        await poll(client)
        _, base = await poll(client)

        client.set_wanted([*DEFAULT_FIELDS, "frequency_hz"])  # BT28 index 11, past the default range
        with_frequency, more = await poll(client)
        assert more > base and with_frequency.frequency_hz == pytest.approx(50.0)

        energy_reads = meter.stats.table_reads[tables.BT23]
        client.set_wanted(["power_import_w", "power_export_w", "voltage_l1_v", "current_l1_a"])
        no_energy, fewer = await poll(client)
        assert meter.stats.table_reads[tables.BT23] == energy_reads  # no BT23 read at all
        assert fewer < base and no_energy.energy_import_wh is None and no_energy.frequency_hz is None

        client.set_wanted(DEFAULT_FIELDS)
        back, again = await poll(client)
        assert meter.stats.table_reads[tables.BT23] == energy_reads + 1
        assert again == base and back.energy_import_wh is not None

        client.set_wanted(None)
        everything, full = await poll(client)
        assert full > more and everything.power_factor_l1 is not None and everything.frequency_hz is not None


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_energy_follows_the_schedule(transport: str) -> None:
    meter = frozen_meter()
    async with await meter.serve_tcp(transport) as server, client_for(server, transport) as client:
        await client.identify()
        client.set_wanted(DEFAULT_FIELDS)
        client.set_schedule(ReadSchedule(registers_interval=3600))
        first, _ = await poll(client, hold_for=2)
        reads = meter.stats.table_reads[tables.BT23]
        second, _ = await poll(client, hold_for=2)
        assert meter.stats.table_reads[tables.BT23] == reads
        client.set_schedule(ReadSchedule(registers_interval=0))
        third, _ = await poll(client, hold_for=2)
        assert meter.stats.table_reads[tables.BT23] == reads + 1
        available = client.available_fields
    assert first.energy_import_wh is not None and third.energy_import_wh == first.energy_import_wh
    assert second.energy_import_wh is None and "energy_import_wh" not in second.read_fields
    assert "energy_import_wh" in available  # "not read this poll", not "this meter lacks it"
    assert second.power_import_w == TRUE_IMPORT_W


async def test_mep_keeps_within_one_read_per_second() -> None:
    """Every field at a 2 s interval: BT28 in one read even where two would be shorter."""
    meter = frozen_meter()
    async with await meter.serve_tcp("mep") as server, client_for(server, "mep") as client:
        await client.identify()
        await poll(client, hold_for=2)
        reads = meter.stats.table_reads[tables.BT28]
        await poll(client, hold_for=2)
        assert meter.stats.table_reads[tables.BT28] == reads + 1


async def test_wanted_names_are_checked() -> None:
    client = MeterClient("socket://127.0.0.1:9", "mep", frozen_meter().key)
    with pytest.raises(ValueError, match="no_such_field"):
        client.set_wanted(["power_import_w", "no_such_field"])
    client.set_wanted(["power_net_w"])
    assert client.wanted == frozenset({"power_import_w", "power_export_w"})


def test_ranges_split_where_a_gap_costs_more_than_a_read() -> None:
    ir = LinkModel("ir", max_read=108, packet_size=64)
    mep = LinkModel("mep", max_read=465)
    assert plan_ranges([7, 18, 19, 38], ir) == [(7, 19), (38, 38)]
    assert plan_ranges([0, 1, 4, 7], ir) == [(0, 7)]
    assert plan_ranges([0, 1, 4, 7], mep) == [(0, 7)]
    assert plan_ranges([0, 60], mep) == [(0, 0), (60, 60)]
    assert plan_ranges([0, 60], mep, max_ranges=1) == [(0, 60)]
    assert plan_ranges([], mep) == []


async def test_ir_sends_wait_only_when_the_next_poll_would_come_too_late() -> None:
    """Every reply restarts the meter's 6 s channel timer: a poll every 2 s needs no Wait."""
    meter = frozen_meter()
    async with await meter.serve_tcp("ir") as server, client_for(server, "ir") as client:
        await client.identify()

        async def services(hold_for: float) -> set[str]:
            client.frames.clear()
            await client.read_snapshot(hold_for=hold_for)
            return {entry["hex"][12:14] for entry in client.frames.as_list() if entry["direction"] == "tx"}

        assert "70" not in await services(2)
        assert "70" in await services(10)
        assert client.stats.session_starts == 1


async def test_json_output_has_the_registers_resolution() -> None:
    """``nesmeter read --json`` shows 0.572 A for a 572 mA register, not 0.5720000000000001."""
    meter = frozen_meter()
    async with await meter.serve_tcp("ir") as server:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "nesmeter.cli", "read", "--transport", "ir", "--port", server.url),
            *("--key", KEY_TEXT, "--json"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    reading = json.loads(out)
    assert reading["current_l2_a"] == 0.572
    decimals = {name: len(repr(value).partition(".")[2]) for name, value in reading.items() if isinstance(value, float)}
    assert decimals and max(decimals.values()) <= 3, decimals  # milli-unit registers: three decimals at most
    assert all(len(repr(scaled(raw, 1e-3)).partition(".")[2]) <= 3 for raw in range(-20_000, 20_000))
