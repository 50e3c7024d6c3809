"""M-Bus devices behind the meter: ET14/ET16/ET36/ET45 decoders, telegrams, the reader, the simulator, the CLI."""

from __future__ import annotations

import contextlib
from datetime import datetime
import json
import struct
from typing import Any

from hypothesis import given, settings, strategies as st
import pytest

from nesmeter.cli.cli import _parser
from nesmeter.cli.mbus_cli import mbus
from nesmeter.client.mbus_reader import MbusReader
from nesmeter.errors import DecodeError, NoResponseError
from nesmeter.sim.sim_mbus import DEVICES, GAS, HEAT, WATER, type_f
from nesmeter.sim.simulator import SimulatedMeter
from nesmeter.tables import tables
from nesmeter.tables.mbus import (
    ET14,
    ET16,
    ET45,
    MbusDimensions,
    MbusRecord,
    decode_et14,
    decode_et45_dimensions,
    decode_et45_entry,
    decode_et45_header,
    decode_mbr,
    has_mbus_module,
)
from nesmeter.tables.mbus_telegram import decode_telegram, long_frame, manufacturer_code
from nesmeter.tables.relay import ET29

from .conftest import KEY, KEY_TEXT
from .test_client import client_for
from .test_power_quality import LISTENS, TRANSPORTS, counting, serve

VARIABLE = MbusRecord(read_at=None, msb_first=False, fixed=False, security_failed=False, telegrams=())
DIMS = MbusDimensions(devices=5, status_entry=36, data_entry=517)


# ---- telegrams: the captures the simulator sends, as their devices sent them ------


def test_captured_telegrams_decode_to_their_values() -> None:
    gas = decode_telegram(GAS + b"\x00", VARIABLE)
    assert (gas.serial, gas.manufacturer, gas.version, gas.medium, gas.access_number) == (
        "10020387",
        "ACW",
        20,
        "gas",
        154,
    )
    assert gas.values == {"device_time": "2011-10-25T15:43:00", "volume_m3": 0.26}
    water = decode_telegram(WATER + b"\x00", VARIABLE)
    assert (water.serial, water.medium, water.status) == ("12000071", "water", 0x30)
    assert water.values["volume_m3"] == 123.49
    heat = decode_telegram(HEAT, VARIABLE)  # no terminator: a meter that leaves it off
    assert (heat.serial, heat.manufacturer, heat.medium) == ("06855817", "KAM", "heat")
    assert heat.values == {
        "energy_kwh": 37351.0,
        "volume_m3": 561.08,
        "on_time_s": 3546000.0,
        "flow_temperature_c": 101.69,
        "return_temperature_c": 46.16,
        "temperature_difference_k": 55.53,
        "power_w": 34700.0,
        "flow_m3h": 0.543,
        "device_time": "2011-01-05T15:26:00",
    }


# More captures from libmbus's test set (application data after the CI field), with the values its
# normalised decode gives: heat energy in MWh (FB 00), a telegram whose last data byte is 0, a VIF
# pyMeterBus lacks (0C 7B) before the rest, a backward-flow energy (VIFE 3C) beside the forward one.
REAL_TELEGRAMS = {
    "engelmann_sensostar2c": (
        "10003810c51401041e0000000478ea629e00046d3214861604158100000004fb00080000008420fb00000000008430fb00"
        "00000000043d00000000042d00000000025b5f00025f2b0004618a1400000227fa0101fd1700049028a0860100426c7f1c"
        "44158100000044fb0008000000c420fb0000000000c430fb000000000082016c5f1c840115540000008401fb0005000000"
        "8421fb00000000008431fb0000000000",
        {"energy_kwh": 800.0, "volume_m3": 12.9, "flow_temperature_c": 95.0, "return_temperature_c": 43.0},
    ),
    "GWF-MTKcoder": ("07201800e61e35074c0000000c78072018000c1669020000", {"volume_m3": 269.0}),
    "sen_pollutherm": (
        "76000521184e3104510000000c07640800000c14929879000c7b020300000c2c585400000a5a55070a5e94050b6076600"
        "10c78760005210cfd10760005211f",
        {"energy_kwh": 8640.0, "volume_m3": 7998.92, "power_w": 54580.0, "temperature_difference_k": 16.076},
    ),
    "EDC": (
        "9508121183140204170000008400863b230000008400863cd10100008440863b000000008440863c0000000085005b2b4b"
        "ac4185005f20d7ac4185405b0000b84285405f0000b84285003b8400353f85403b0000000095003b95cfb24395403b0000"
        "000085002b0000000085402b0000000095002bd39f904695402b00000000046d190f8a1784007c0143f30d000084407c01"
        "439d01000084007c01630100000084407c0163010000000f",
        {"energy_kwh": 35.0, "flow_temperature_c": pytest.approx(21.536703)},
    ),
}


@pytest.mark.parametrize("name", REAL_TELEGRAMS)
@pytest.mark.parametrize("terminator", [b"", b"\x00"])
def test_real_telegrams_give_the_normalised_values(name: str, terminator: bytes) -> None:
    data, expected = REAL_TELEGRAMS[name]
    values = decode_telegram(bytes.fromhex(data) + terminator, VARIABLE).values
    assert {key: values.get(key) for key in expected} == expected


def test_msb_first_telegram_header() -> None:
    gas = bytearray(GAS)
    gas[0:4] = gas[0:4][::-1]
    gas[4:6] = gas[4:6][::-1]
    telegram = decode_telegram(bytes(gas[:12]), MbusRecord(None, True, False, False, ()))  # mode 2, header only
    assert (telegram.serial, telegram.manufacturer, telegram.medium) == ("10020387", "ACW", "gas")


def test_telegram_odd_cases() -> None:
    assert manufacturer_code(0x2C2D) == "KAM"
    assert manufacturer_code(0) == "0x0000"
    frame = long_frame(b"\x01\x02", 0x72)
    assert frame == bytes.fromhex("6805056808007201027d16")
    with pytest.raises(DecodeError, match="not decodable"):
        decode_telegram(GAS[:20], VARIABLE)  # cut inside a record
    with pytest.raises(DecodeError, match="need 12"):
        decode_telegram(GAS[:8], VARIABLE)
    fixed = decode_telegram(
        bytes.fromhex("785634120a00e97e01000000350100"), MbusRecord(None, False, True, False, ())
    )  # libmbus's manual_frame2: fixed data, CI 0x73
    assert (fixed.serial, fixed.access_number, fixed.medium, fixed.values) == ("12345678", 10, "fixed data", {})


def test_type_f_clock_round_trips_through_the_decoder() -> None:
    data = bytearray(GAS)
    data[42:46] = type_f(datetime(2026, 12, 6, 23, 59))
    assert decode_telegram(bytes(data), VARIABLE).values["device_time"] == "2026-12-06T23:59:00"


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=300),
    flips=st.lists(st.tuples(st.integers(0, len(HEAT) - 1), st.integers(0, 255)), max_size=6),
    msb_first=st.booleans(),
    fixed=st.booleans(),
)
def test_garbage_telegrams_raise_only_decode_error(
    data: bytes, flips: list[tuple[int, int]], msb_first: bool, fixed: bool
) -> None:
    """Random bytes, and a real telegram with bytes changed: values or DecodeError, never another exception."""
    record = MbusRecord(None, msb_first, fixed, False, ())
    mangled = bytearray(HEAT)
    for at, value in flips:
        mangled[at] = value
    for telegram in (data, bytes(mangled)):
        try:
            decoded = decode_telegram(telegram, record)
        except DecodeError:
            continue
        assert all(isinstance(value, float | str) for value in decoded.values.values())


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600))
def test_garbage_tables_raise_only_decode_error(data: bytes) -> None:
    for decode in (
        lambda: decode_et14(data, DIMS),
        lambda: decode_mbr(data),
        lambda: decode_et45_dimensions(data),
        lambda: decode_et45_header(data),
        lambda: decode_et45_entry(data),
    ):
        with contextlib.suppress(DecodeError):
            decode()


# ---- the guide's table layouts, by hand --------------------------------------------


def et14_entry(handle: int, status: int, length: int, answers: int, address: int) -> bytes:
    return struct.pack("<HBBHIIHB", handle, status, 4, length, answers + 1, answers, 0, address).ljust(36, b"\x00")


def test_et14_by_hand() -> None:
    et14 = bytes([0, 0, 0, 0, 0, 0b0000_0101]) + et14_entry(7, 1, 120, 9, 1) + et14_entry(0, 0, 0, 0, 0)
    et14 += et14_entry(12, 2, 0, 0, 0) + et14_entry(99, 1, 1, 1, 1) * 2  # slot 4 not occupied; MEP entry
    slots = decode_et14(et14, DIMS)
    assert [(s.slot, s.handle, s.status, s.billing_read_length, s.read_answers, s.primary_address) for s in slots] == [
        (1, 7, "up", 120, 9, 1),
        (3, 12, "down", 0, 0, None),
    ]
    with pytest.raises(DecodeError):
        decode_et14(et14[:100], DIMS)


def test_mbr_keeps_complete_telegrams_only() -> None:
    stamp = tables.encode_time_date(datetime(2026, 12, 1, 6, 0))
    two = bytes([3]) + b"abc" + bytes([2]) + b"de"
    record = decode_mbr(stamp + bytes([0x03]) + two + bytes([9]) + b"cut")
    assert record.read_at == datetime(2026, 12, 1, 6, 0)
    assert (record.msb_first, record.fixed, record.security_failed) == (True, True, False)
    assert record.telegrams == (b"abc", b"de")
    assert decode_mbr(bytes(7) + bytes([0, 5])).telegrams == ()  # never read: no time, a zero length ends it
    assert decode_mbr(bytes(7)).read_at is None
    with pytest.raises(DecodeError):
        decode_mbr(stamp)


def test_et36_and_et45_by_hand() -> None:
    rows = [
        struct.pack("<HHHHB", 0x800 | table, 10, 20, current, 1).ljust(17, b"\x00")
        for table, current in ((31, 2), (45, 8))
    ]
    log = decode_et45_dimensions(bytes([2]) + b"".join(rows))
    assert log is not None and (log.entry_size, log.current_entries, log.length_included) == (10, 8, True)
    assert decode_et45_dimensions(bytes([1]) + rows[0]) is None
    header = decode_et45_header(bytes([0x04, 8, 3]) + struct.pack("<HB", 517, 8))
    assert (header.valid, header.last_element, header.last_sequence) == (8, 3, 517)
    stamp = tables.encode_time_date(datetime(2026, 12, 1, 7, 0))
    mbr = stamp + bytes([0, 3]) + b"xyz"
    entry = decode_et45_entry(struct.pack("<HHHBB", 6 + len(mbr), 0, 7, 2, 4) + mbr)
    assert entry is not None and (entry.handle, entry.backfill, entry.record.telegrams) == (7, True, (b"xyz",))
    assert decode_et45_entry(struct.pack("<HHHBB", 6 + len(mbr), 0, 7, 0, 3) + mbr) is None  # failed read
    assert decode_et45_entry(bytes(16)) is None  # an empty entry
    assert has_mbus_module(1 << 8) and not has_mbus_module(0x0601)


# ---- the real client against the simulator -----------------------------------------


def truth(meter: SimulatedMeter) -> dict[int, dict[str, float]]:
    """The simulator's counters at its newest hourly read, by slot."""
    sim = meter.image.mbus
    latest = sim.local_now().replace(minute=0, second=0)
    keys = {GAS: ("volume_m3",), WATER: ("volume_m3",), HEAT: ("energy_kwh", "volume_m3")}
    return {
        device.slot: {
            key: round(sim.value(counter, latest) / counter.unit) * counter.unit
            for key, counter in zip(keys[device.telegram], device.counters, strict=True)
        }
        for device in DEVICES
    }


@TRANSPORTS
@LISTENS
@pytest.mark.parametrize("variant", ["mbus", "mbus-log"])
async def test_reader_finds_three_devices_and_their_newest_reads(transport: str, listen: str, variant: str) -> None:
    meter = SimulatedMeter(KEY, variants=variant)
    server = await serve(meter, transport, listen)
    try:
        async with client_for(server, transport) as client:
            reader = MbusReader(client)
            devices = await reader.read_all()
            with counting(client) as again:
                more = await reader.step()  # ET14, then (with a log) ET45's header
                while more:
                    more = await reader.step()
    finally:
        await server.close()
    assert reader.available
    expected = truth(meter)
    latest = meter.image.mbus.local_now().replace(minute=0, second=0)
    assert [(d.slot, d.handle, d.status, d.telegram and d.telegram.medium) for d in devices.values()] == [
        (1, 1, "up", "gas"),
        (2, 2, "up", "water"),
        (3, 3, "up", "heat"),
    ]
    for device in devices.values():
        assert device.telegram is not None and device.error is None
        assert device.read_at == latest
        assert device.source == ("ET45" if variant == "mbus-log" else "ET16")
        for key, value in expected[device.slot].items():
            assert device.telegram.values[key] == pytest.approx(value, abs=1e-6)
        assert device.telegram.values["device_time"] == latest.isoformat()
    # nothing new: a pass is ET14 (and ET45's header), no device data again
    assert [table for table, _offset, _count in again] == [ET14, *([ET45] if variant == "mbus-log" else [])]


async def test_the_log_is_preferred_to_the_month_old_first_read() -> None:
    meter = SimulatedMeter(KEY, variants="mbus-log")
    server = await meter.serve_tcp("mep")
    try:
        async with client_for(server, "mep") as client:
            reader = MbusReader(client)
            with counting(client) as calls:
                devices = await reader.read_all()
    finally:
        await server.close()
    tables_read = [table for table, _offset, _count in calls]
    assert tables_read.count(ET16) == 3  # the first reads, older than the log's
    log_reads = [count for table, _offset, count in calls if table == ET45]
    # the header, then per device the newest entry's head (whose, how long) and that entry
    assert log_reads[0] == 6 and log_reads[1::2] == [8, 8, 8] and len(log_reads) == 7
    assert {device.source for device in devices.values()} == {"ET45"}


async def test_a_new_read_of_the_meter_is_read_once() -> None:
    meter = SimulatedMeter(KEY, variants="mbus")
    server = await meter.serve_tcp("mep")
    try:
        async with client_for(server, "mep") as client:
            reader = MbusReader(client)
            before = {slot: device.telegram.values["volume_m3"] for slot, device in (await reader.read_all()).items()}
            meter.image.mbus.skip(2)  # the meter reads its devices twice more
            with counting(client) as calls:
                after = await reader.read_all()
                assert await reader.step() is False  # nothing new since: ET14 only
    finally:
        await server.close()
    assert [table for table, _offset, _count in calls] == [ET14, ET16, ET16, ET16, ET14]
    expected = truth(meter)
    for slot, device in after.items():
        assert device.telegram is not None
        assert device.telegram.values["volume_m3"] == pytest.approx(expected[slot]["volume_m3"])
        assert device.telegram.values["volume_m3"] > before[slot]


async def test_a_log_walk_cut_short_is_walked_again() -> None:
    meter = SimulatedMeter(KEY, variants="mbus-log")
    server = await meter.serve_tcp("mep")
    try:
        async with client_for(server, "mep") as client:
            reader = MbusReader(client)
            await reader.read_all()
            meter.image.mbus.skip(1)
            read = client.read_table
            failed: list[int] = []

            async def flaky(table_id: int, offset: int, count: int) -> bytes:
                if table_id == ET45 and count > 8 and not failed:
                    failed.append(offset)
                    raise NoResponseError("the line dropped")
                return await read(table_id, offset, count)

            client.read_table = flaky  # type: ignore[method-assign]
            with pytest.raises(NoResponseError):
                await reader.read_all()
            devices = await reader.read_all()
    finally:
        await server.close()
    assert failed
    latest = meter.image.mbus.local_now().replace(minute=0, second=0)
    assert {device.read_at for device in devices.values()} == {latest}  # the newest, though the walk broke once


@TRANSPORTS
async def test_a_meter_without_the_module_costs_one_read(transport: str) -> None:
    meter = SimulatedMeter(KEY)
    server = await meter.serve_tcp(transport)
    try:
        async with client_for(server, transport) as client:
            reader = MbusReader(client)
            with counting(client) as calls:
                assert await reader.read_all() == {}
                assert await reader.step() is False
    finally:
        await server.close()
    assert reader.available is False
    assert calls == [(ET29, 0, 3)]


async def test_a_telegram_the_decoder_rejects_costs_that_device_only(caplog: pytest.LogCaptureFixture) -> None:
    meter = SimulatedMeter(KEY, variants="mbus")
    server = await meter.serve_tcp("mep")
    original = meter.image.mbus.telegram

    def broken(device: Any, when: datetime) -> bytes:
        data = original(device, when)
        return data[:20] + b"\x00" if device.slot == 2 else data  # a record cut short

    meter.image.mbus.telegram = broken  # type: ignore[method-assign]
    try:
        async with client_for(server, "mep") as client:
            devices = await MbusReader(client).read_all()
    finally:
        await server.close()
    assert devices[2].telegram is None and devices[2].error is not None
    assert devices[1].telegram is not None and devices[3].telegram is not None
    assert sum("slot 2" in record.getMessage() for record in caplog.records) <= 1


async def test_cli_mbus_json(capsys: pytest.CaptureFixture[str]) -> None:
    meter = SimulatedMeter(KEY, variants="mbus")
    server = await meter.serve_tcp("mep")
    arguments = ["mbus", "--transport", "mep", "--port", server.url, "--key", KEY_TEXT, "--enable-line", "none"]
    try:
        assert await mbus(_parser().parse_args([*arguments, "--json"])) == 0
        data: dict[str, Any] = json.loads(capsys.readouterr().out)
        assert await mbus(_parser().parse_args(arguments)) == 0
        text = capsys.readouterr().out
    finally:
        await server.close()
    assert data["module"] is True
    gas, water, heat = data["devices"]
    assert (gas["slot"], gas["medium"], gas["manufacturer"], gas["serial"]) == (1, "gas", "ACW", "10020387")
    assert gas["values"]["volume_m3"] == pytest.approx(truth(meter)[1]["volume_m3"])
    assert water["medium"] == "water" and "volume_m3" in water["values"]
    assert (
        heat["medium"] == "heat"
        and {"energy_kwh", "flow_temperature_c", "return_temperature_c"} <= heat["values"].keys()
    )
    assert datetime.fromisoformat(gas["read_at"]) == meter.image.mbus.local_now().replace(minute=0, second=0)
    assert "customer" not in json.dumps(data).lower()
    assert text.count("slot ") == 3 and "KAM 06855817" in text
