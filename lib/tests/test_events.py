"""Event log and alarm bits: decoders against hand-built layouts, the reader, the simulator, the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
import json
import logging
from typing import Any

import pytest

from nesmeter.cli.cli import _parser
from nesmeter.cli.events_cli import events, parse_event
from nesmeter.client.events_reader import EventLogReader, StatusReader
from nesmeter.errors import TlsRequiredError
from nesmeter.mep.framing import MepResult
from nesmeter.sim.sim_events import TYPICAL_ARGUMENTS, LoggedEvent
from nesmeter.sim.simulator import SimulatedMeter
from nesmeter.tables.event_ids import decode_argument
from nesmeter.tables.events import (
    BT03,
    BT70,
    BT71,
    BT74,
    EVENTS,
    FAMILIES,
    decode_bt03,
    decode_bt71,
    decode_bt74_header,
    decode_record,
    event_types,
    full_sequence,
    ring_runs,
)

from .conftest import KEY, KEY_TEXT
from .test_client import client_for

EVENTS_LOGGER = EventLogReader.__module__

# BT71 (O p.50-51): flags 06 (date/time, sequence), 8 standard and 19 (0x13) manufacturer
# event bytes, 2-byte argument, 2-byte event data, 100 (0x64) history entries, 0 event entries.
BT71_BYTES = bytes.fromhex("06 08 13 02 02 6400 0000")
# BT74 header (G p.241-242): flags 06 (overflow, circular), 100 valid, last element 29 (0x1d),
# last sequence 0x00010009 = 65545, 3 unread.
BT74_HEADER_BYTES = bytes.fromhex("06 6400 1d00 09000100 0300")
# One record: 2026-11-21 14:45:07 UTC, sequence low 16 bits 0x0005, user 0xFFFD (a MEP
# client), event word 0xF02F (filler bits 12-15 set: event 47), argument 0x1234 LE.
RECORD_BYTES = bytes.fromhex("1a0b150e2d07 0500 fdff 2ff0 3412")


def test_bt71_bt74_header_and_record_by_hand() -> None:
    dims = decode_bt71(BT71_BYTES)
    assert (dims.standard_event_bytes, dims.manufacturer_event_bytes) == (8, 19)
    assert (dims.argument_length, dims.history_entries, dims.event_entries) == (2, 100, 0)
    assert dims.record_size == 14  # 12 + BT71.3
    assert dims.has_time and dims.has_sequence
    header = decode_bt74_header(BT74_HEADER_BYTES)
    assert (header.valid_entries, header.last_element, header.last_sequence, header.unread_entries) == (
        100,
        29,
        65545,
        3,
    )
    assert header.overflow and header.circular
    entry = decode_record(RECORD_BYTES, 0, dims, header.last_sequence)
    assert entry.time == datetime(2026, 11, 21, 14, 45, 7, tzinfo=UTC)
    assert entry.sequence == 65541  # 0x00010005: the high half from the header
    assert (entry.event_id, entry.name, entry.family) == (47, "cover_removed", "tamper")
    assert entry.argument == 0x1234
    assert entry.user == "mep"
    assert entry.as_dict() == {
        "sequence": 65541,
        "time": "2026-11-21T14:45:07Z",
        "event_id": 47,
        "name": "cover_removed",
        "argument": 0x1234,
        "details": {"tamper": ["pulse_input_2"]},  # bit 2 of 0x1234
        "other_meaning": None,
        "user": "mep",
    }


def test_sequence_rebuilt_across_the_16_bit_and_32_bit_wraps() -> None:
    assert full_sequence(0xFFFE, 0x00010001) == 0x0000FFFE
    assert full_sequence(0x0001, 0x00010001) == 0x00010001
    assert full_sequence(0xFFFF, 3) == 0xFFFFFFFF


def test_unknown_ids_are_shown_as_unknown() -> None:
    record = bytearray(RECORD_BYTES)
    record[10:12] = (200).to_bytes(2, "little")
    entry = decode_record(bytes(record), 0, decode_bt71(BT71_BYTES), 5)
    assert (entry.event_id, entry.name, entry.family, entry.known) == (200, "unknown", "other", False)
    assert 200 not in EVENTS
    assert "unknown" in event_types("other")
    assert set(FAMILIES) == {family for _name, family in EVENTS.values()}


def test_invalid_record_time_is_none() -> None:
    record = bytes(6) + RECORD_BYTES[6:]
    assert decode_record(record, 0, decode_bt71(BT71_BYTES), 5).time is None


def test_ring_runs_split_where_the_ring_wraps() -> None:
    assert ring_runs(29, 100, 100) == [(30, 70), (0, 30)]
    assert ring_runs(50, 10, 100) == [(41, 10)]
    assert ring_runs(5, 10, 100) == [(96, 4), (0, 6)]
    assert ring_runs(5, 0, 100) == []


def test_bt03_bits_by_hand() -> None:
    # O p.45-47: standard status LE16 at byte 1, bit 12 cover removed -> byte 2 bit 4;
    # byte 7 bit 1 magnetic tamper, bit 4 event log unread; 8 bytes = BT00.17 of 4.
    status = decode_bt03(bytes.fromhex("00 0010 00 00 00 00 12"))
    assert status.active == ("cover_removed", "magnetic_tamper")
    assert status.event_log_unread
    assert "unbalanced_voltage" not in status.reported  # byte 8: not on an 8-byte BT03
    assert "unbalanced_voltage" in decode_bt03(bytes(13)).reported


def truth(meter: SimulatedMeter, count: int = 100) -> list[tuple[int, int, int]]:
    return [(e.sequence, e.event_id, e.argument) for e in meter.image.events.logged[-count:]]


def seen(entries: list[Any]) -> list[tuple[int, int, int]]:
    return [(e.sequence, e.event_id, e.argument) for e in entries]


@pytest.mark.parametrize("transport", ["mep", "ir"])
@pytest.mark.parametrize("listen", ["tcp", "pty"])
async def test_client_reads_the_log_then_only_what_is_new(transport: str, listen: str) -> None:
    meter = SimulatedMeter(KEY)
    server = await (meter.serve_tcp(transport) if listen == "tcp" else meter.serve_pty(transport))
    try:
        async with client_for(server, transport) as client:
            reader = client.event_log_reader()
            first = await reader.read_new()
            assert seen(first) == truth(meter)  # the whole ring, oldest first, across the 16-bit wrap
            assert first[0].sequence < 65536 < first[-1].sequence
            logged: LoggedEvent = meter.image.events.logged[-1]
            assert first[-1].time == logged.time
            reads = reader.reads
            assert await reader.read_new() == []
            assert reader.reads == reads + 1  # nothing new: the header alone
            meter.image.events.inject("cover_removed")
            meter.image.events.inject("voltage_sag", 229 * 4 + 1)
            new = await reader.read_new()
            assert [e.name for e in new] == ["cover_removed", "voltage_sag"]
            assert seen(new) == truth(meter, 2)
            assert reader.reads == reads + 1 + 3  # header, one record read, header
            status = await StatusReader(client).read()
            assert status is not None
            assert "cover_removed" in status.active
            assert "power_quality_event" in status.active
    finally:
        await server.close()
    assert meter.stats.table_reads[BT74] >= 5
    assert meter.stats.table_reads[BT71] == 1
    assert meter.stats.table_reads[BT70] == 0  # the maximum dimensions (200 entries): not the ring's
    assert meter.stats.table_reads[BT03] == 1


@pytest.mark.parametrize("transport", ["mep", "ir"])
@pytest.mark.parametrize("listen", ["tcp", "pty"])
async def test_firmware_2_10_log_dimensions_come_from_bt70(transport: str, listen: str) -> None:
    """BT71 refused: the log is sized by BT70, as on firmware 2.01 and 2.10 (O p.49)."""
    meter = SimulatedMeter(KEY, variants="bt70-log")
    server = await (meter.serve_tcp(transport) if listen == "tcp" else meter.serve_pty(transport))
    try:
        async with client_for(server, transport) as client:
            reader = client.event_log_reader()
            assert await reader.dimensions_read() is True
            assert reader.dimensions is not None
            assert (reader.dimensions.history_entries, reader.dimensions.record_size) == (100, 14)
            assert reader.reads == 2  # BT71 refused, then BT70
            assert seen(await reader.read_new()) == truth(meter)
            meter.image.events.inject("cover_removed")
            meter.image.events.inject("power_down")
            new = await reader.read_new()
            assert [e.name for e in new] == ["cover_removed", "power_down"]
            assert seen(new) == truth(meter, 2)
    finally:
        await server.close()
    assert meter.stats.table_reads[BT70] == 1
    assert meter.stats.table_reads[BT71] == 0


@pytest.mark.parametrize("after_reads", [0, 1])
async def test_entries_written_during_the_read_are_neither_lost_nor_doubled(after_reads: int) -> None:
    """The ring is full: a new entry overwrites the oldest slot while the client reads it."""
    meter = SimulatedMeter(KEY)
    meter.image.events.inject_after_reads.append((after_reads, "magnetic_tamper", 0))
    async with await meter.serve_tcp("mep") as server, client_for(server, "mep") as client:
        before = truth(meter)
        entries = await client.event_log_reader().read_new()
    got = seen(entries)
    assert got[-1][1] == 89 and got[-1][0] == before[-1][0] + 1
    if after_reads == 0:
        # Overwritten before its slot was read: the oldest entry is gone from the meter too.
        assert got[:-1] == before[1:]
    else:
        assert got[:-1] == before  # its slot had been read already
    assert len({s for s, _, _ in got}) == len(got)


async def test_a_pass_after_a_known_sequence_and_gaps_from_the_alternate_log() -> None:
    meter = SimulatedMeter(KEY, variants="event-gaps")
    async with await meter.serve_tcp("ir") as server, client_for(server, "ir") as client:
        last = meter.image.events.logged[-5].sequence
        entries = await client.event_log_reader(last).read_new()
    assert seen(entries) == truth(meter, 4)
    assert all(b.sequence - a.sequence == 2 for a, b in pairwise(entries))


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_a_meter_without_an_event_log(transport: str, caplog: pytest.LogCaptureFixture) -> None:
    meter = SimulatedMeter(KEY, variants="no-event-log")
    async with await meter.serve_tcp(transport) as server, client_for(server, transport) as client:
        reader = EventLogReader(client)
        with caplog.at_level(logging.DEBUG, logger=EVENTS_LOGGER):
            assert await reader.dimensions_read() is False
        assert reader.reads == 2  # BT71 and BT70 both refused
        said = [r.getMessage() for r in caplog.records if r.name == EVENTS_LOGGER]
        assert len(said) == 1 and said[0].startswith("no event log (BT71 refused, BT70: ")
        assert await reader.read_new() == []
        assert await StatusReader(client).read() is None
        snapshot = await client.read_snapshot()  # the session is fine afterwards
    assert snapshot.energy_import_wh is not None


async def test_a_port_that_requires_tls_is_not_a_meter_without_a_log() -> None:
    """TLS required answers every table alike: it must reach the caller, not read as no log."""
    meter = SimulatedMeter(KEY)
    async with await meter.serve_tcp("mep") as server, client_for(server, "mep") as client:
        await client.identify()
        meter.image.refused[BT71] = MepResult.TLS_SESSION_REQUIRED
        reader = client.event_log_reader()
        with pytest.raises(TlsRequiredError):
            await reader.dimensions_read()
        assert reader.reads == 1  # BT70 not tried: it would be refused the same way
        assert reader.available is None


async def test_one_read_per_step() -> None:
    meter = SimulatedMeter(KEY)
    async with await meter.serve_tcp("mep") as server, client_for(server, "mep") as client:
        reader = client.event_log_reader()
        results = []
        while True:
            before = sum(meter.stats.table_reads.values())
            result = await reader.step()
            assert sum(meter.stats.table_reads.values()) - before == 1
            if result is not None:
                break
            results.append(result)
    assert len(result) == 100
    assert len(results) == 6  # BT71, header, 4 record reads; the 7th read (header) ends the pass


def test_model_time_logs_tier_switches() -> None:
    meter = SimulatedMeter(KEY)
    events = meter.image.events
    count = len(events.logged)
    meter.image.skip(2 * 3600 + 5)
    meter.image.update()
    assert [e.event_id for e in events.logged[count:]] == [27, 27]
    assert [e.argument for e in events.logged[count:]] == [1, 0]


def test_every_named_event_can_be_logged_with_an_argument_its_sources_decode() -> None:
    """The simulated meter logs any named id; the typical argument it picks is one the decoder names."""
    meter = SimulatedMeter(KEY)
    for event_id, (name, _family) in EVENTS.items():
        logged = meter.image.events.inject(name)
        assert (logged.event_id, meter.image.events.logged[-1]) == (event_id, logged)
        if name in TYPICAL_ARGUMENTS or name == "firmware_changed":
            assert decode_argument(event_id, logged.argument), name
    assert meter.image.events.inject("firmware_changed").argument == 0x38D5  # BT01's 3.70.21


def test_parse_event() -> None:
    assert parse_event("cover_removed") == (47, None, 0.0)  # the event's typical argument
    assert parse_event("voltage_sag=829@30") == (98, 829, 30.0)
    assert parse_event("200=0x10") == (200, 16, 0.0)
    with pytest.raises(ValueError, match="unknown event"):
        parse_event("no_such_event")


async def run_events_cli(meter: SimulatedMeter, transport: str, after: int, *, json_output: bool = False) -> None:
    """Run ``meter events --after-sequence AFTER`` against ``meter`` served on loopback TCP."""
    server = await meter.serve_tcp(transport)
    arguments = ["events", "--transport", transport, "--port", server.url, "--key", KEY_TEXT]
    arguments += ["--enable-line", "none", "--after-sequence", str(after), *(["--json"] if json_output else [])]
    try:
        assert await events(_parser().parse_args(arguments)) == 0
    finally:
        await server.close()


async def test_cli_events_json(capsys: pytest.CaptureFixture[str]) -> None:
    meter = SimulatedMeter(KEY)
    after = meter.image.events.logged[-3].sequence
    await run_events_cli(meter, "mep", after, json_output=True)
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert list(data) == ["events"]
    assert [e["sequence"] for e in data["events"]] == [after + 1, after + 2]
    first = data["events"][0]
    assert set(first) == {"sequence", "time", "event_id", "name", "argument", "details", "other_meaning", "user"}
    assert first["time"].endswith("Z")


# One id of each source, logged by the simulated meter and read back over real bytes:
# (event, argument, the details `meter events --json` gives).
SOURCED_EVENTS: list[tuple[str, int | None, dict[str, Any]]] = [
    ("voltage_sag", 829, {"phase": "L2", "voltage_v": 207}),  # U31, YUK, EICT
    ("power_up", None, {"reset_cause": "power_failure"}),  # U31, YUK, EICT
    ("firmware_changed", None, {"firmware": "3.70.21"}),  # the simulated BT01's firmware
    ("disconnect_changed", 0x0102, {"state": "open", "failed": False, "reason": "remote_command"}),  # EICT's 258
    ("mbus_alarm", None, {"device": "mbus_1", "alarm": "status_alarm"}),  # EICT, YUK, BT03
    ("nvm_failure", 0x8000 | 23, {"table": "BT23", "read_before_write": True, "read_after_write": False}),  # YUK
    ("load_side_voltage", None, {"status": "present", "phases": ["L1"]}),  # YUK, BT03
    ("list_pointers_reset", 255, {"list": "all"}),  # YUK, EICT, C1219
    ("test_mode_started", 0, {}),  # C12.19, YUK: 32
    ("mbus_sniffer_match", None, {"device": "mbus_1", "data_byte": 0x7A}),  # YUK: 107
]


async def test_cli_events_json_decodes_the_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    """`meter events --json` gives each entry's argument decoded as `details`, beside the raw one."""
    meter = SimulatedMeter(KEY)
    after = meter.image.events.logged[-1].sequence
    for name, argument, _details in SOURCED_EVENTS:
        meter.image.events.inject(name, argument)
    await run_events_cli(meter, "ir", after, json_output=True)
    entries = json.loads(capsys.readouterr().out)["events"]
    assert [(e["name"], e["details"]) for e in entries] == [(name, details) for name, _, details in SOURCED_EVENTS]
    assert entries[0]["argument"] == 829
    assert entries[0]["event_id"] == 98
    assert entries[8]["event_id"] == 32
    assert entries[9]["event_id"] == 107
    assert entries[9]["other_meaning"] == "load_side_voltage"  # U31's reading of 107
    assert entries[6]["event_id"] == 95
    assert entries[5]["argument"] == 0x8017


async def test_cli_events_text_shows_the_details(capsys: pytest.CaptureFixture[str]) -> None:
    meter = SimulatedMeter(KEY)
    after = meter.image.events.logged[-1].sequence
    meter.image.events.inject("voltage_sag", 829)
    meter.image.events.inject("reverse_energy", 0x05)
    await run_events_cli(meter, "mep", after)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("user=none phase=L2 voltage_v=207")
    assert lines[1].endswith("user=none phases=L1,L3")


def test_cli_simulate_takes_events() -> None:
    args = _parser().parse_args(["simulate", "--transport", "mep", "--key", KEY_TEXT, "--event", "cover_removed@5"])
    assert args.event == ["cover_removed@5"]
