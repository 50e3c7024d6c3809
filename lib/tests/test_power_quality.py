"""Power quality (ET09) and the disconnect contactor (ET29, ET23): decoders by hand, readers against the simulator."""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from datetime import UTC, datetime
import json
import random
from typing import Any

from hypothesis import given, settings, strategies as st
import pytest

from nesmeter.cli.cli import _parser
from nesmeter.cli.power_quality_cli import power_quality
from nesmeter.client.client import MeterClient
from nesmeter.client.power_quality_reader import PowerQualityReader
from nesmeter.client.relay_reader import RelayReader
from nesmeter.errors import DecodeError, NoResponseError, RefusedError, ShortReadError
from nesmeter.sim.simulator import SimServer, SimulatedMeter
from nesmeter.tables.power_quality import (
    ET04,
    ET09,
    Outage,
    PhaseEvents,
    decode_outage,
    decode_power_quality,
    read_range,
)
from nesmeter.tables.relay import ET23, ET29, RELAY_STATES, RelayHardware, decode_disconnect_state, decode_et29

from .conftest import KEY, KEY_TEXT
from .test_client import client_for

# ET09 by hand for ET04.53 = 10 (P = 180), table offsets as the guide prints them (G p.67-77).
# Offsets below 186 (P+6) are fixed; the rest move with P.
ET09_P180: dict[int, str] = {
    0: "3c00 00 0a 0a 14",  # long-outage threshold 60 s, 0 min, sag 10 %, surge 10 %, over-current 20 %
    # outage record 0 (newest): power-on 2026-11-20 14:45:07, cause 3, reserved,
    # power-off 2026-11-20 14:12:30, 1957 s (0x07A5)
    6: "1a0b140e2d07 03 00 1a0b140e0c1e a5070000",
    # outage record 1 (older): must not be taken for the newest
    24: "1a0b0a080000 08 00 1a0b0a070000 100e0000",
    186: "1a0b0f091e00 0300",  # P+6 L1 last sag 2026-11-15 09:30:00, P+12 count 3
    194: "000000000000 0000",  # P+14 L2: never
    202: "1a0d0f091e00 0100",  # P+22 L3: month 13 (no date), P+28 count 1
    210: "1a0b100c0000 0200",  # P+30 L1 last surge 2026-11-16 12:00:00, P+36 count 2
    234: "f8c20000 1a0b0c110000",  # P+54 min frequency 49912 mHz, P+58 2026-11-12 17:00:00
    244: "a7c30000 1a0b13030000",  # P+64 max frequency 50087 mHz, P+68 2026-11-19 03:00:00
    254: "00000000 01000000 00000000",  # P+74/78/82 over-current counts
    266: "05",  # P+86 phase loss now: L1 and L3
    267: "1a0b15080000 0200",  # P+87 L1 last phase loss 2026-11-21 08:00:00, P+93 count 2
    283: "1a0b15081500 0100",  # P+103 L3 2026-11-21 08:21:00, P+109 count 1
    291: "92290300 00000000 58090300",  # P+111/115/119 sag mV: 207250, 0, 199000
    303: "c5dc0300 00000000 00000000",  # P+123/127/131 surge mV: 253125, 0, 0
    315: "0c000000",  # P+135 short outages 12
    319: "03000000",  # P+139 PQ configuration id (not decoded)
}
P180_END = 319  # P+139


def et09(outage_records: int = 10) -> bytes:
    """The table above for another ET04.53: fields from P+6 on move by 18 per record."""
    shift = 18 * outage_records - 180
    table = bytearray(18 * outage_records + 143)
    for offset, text in ET09_P180.items():
        raw = bytes.fromhex(text)
        at = offset if offset < 186 else offset + shift
        if offset in (6, 24) and offset + 18 > 6 + 18 * outage_records:
            continue  # this ET09 has no room for that record
        table[at : at + len(raw)] = raw
    return bytes(table)


def t(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


NEWEST = Outage(
    power_off=t(2026, 11, 20, 14, 12, 30), power_on=t(2026, 11, 20, 14, 45, 7), duration_s=1957, reset_cause=3
)


def check_hand_values(quality: Any) -> None:
    assert quality.sags == (
        PhaseEvents(3, t(2026, 11, 15, 9, 30, 0), 207.25),
        PhaseEvents(0, None, None),
        PhaseEvents(1, None, 199.0),  # month 13: no date, the rest still read
    )
    assert quality.swells == (
        PhaseEvents(2, t(2026, 11, 16, 12, 0, 0), 253.125),
        PhaseEvents(0, None, None),
        PhaseEvents(0, None, None),
    )
    assert (quality.min_frequency_hz, quality.min_frequency_time) == (49.912, t(2026, 11, 12, 17, 0, 0))
    assert (quality.max_frequency_hz, quality.max_frequency_time) == (50.087, t(2026, 11, 19, 3, 0, 0))
    assert quality.over_current_counts == (0, 1, 0)
    assert quality.phase_loss == (True, False, True)
    assert quality.phase_loss_counts == (2, 0, 1)
    assert quality.phase_loss_last == (t(2026, 11, 21, 8, 0, 0), None, t(2026, 11, 21, 8, 21, 0))
    assert quality.short_outages == 12


def test_et09_by_hand_default_outage_records() -> None:
    table = et09()
    assert len(table) == 180 + 143
    quality = decode_power_quality(table[:P180_END], 10)
    check_hand_values(quality)
    assert quality.last_outage == NEWEST
    # From the reader's start (the newest outage record, offset 6): the same.
    assert read_range(10) == (6, P180_END - 6)
    assert decode_power_quality(table[6:P180_END], 10, start=6) == quality
    # From P+6: everything but the outage.
    assert read_range(10, with_outage=False) == (186, 133)
    without = decode_power_quality(table[186:P180_END], 10, start=186)
    check_hand_values(without)
    assert without.last_outage is None


def test_et09_by_hand_other_outage_records() -> None:
    # ET04.53 = 3: P = 54, the sag block at P+6 = 60, short outages at P+135 = 189.
    table = et09(3)
    assert table[60:68] == bytes.fromhex("1a0b0f091e00 0300")
    assert table[189:193] == bytes.fromhex("0c000000")
    quality = decode_power_quality(table[6:193], 3, start=6)
    check_hand_values(quality)
    assert quality.last_outage == NEWEST
    assert read_range(3) == (6, 187)
    # ET04.53 = 1: the only record is the newest; the old one has no room.
    one = et09(1)
    assert decode_power_quality(one[:157], 1).last_outage == NEWEST
    # ET04.53 = 0: no outage array, the sag block at 6.
    none = decode_power_quality(et09(0)[:139], 0)
    check_hand_values(none)
    assert none.last_outage is None
    assert read_range(0) == (6, 133)


def test_zero_table_decodes_as_never() -> None:
    quality = decode_power_quality(bytes(P180_END), 10)
    assert quality.sags == quality.swells == (PhaseEvents(0, None, None),) * 3
    assert quality.min_frequency_hz is None and quality.min_frequency_time is None
    assert quality.max_frequency_hz is None and quality.max_frequency_time is None
    assert quality.phase_loss == (False, False, False)
    assert quality.phase_loss_counts == (0, 0, 0)
    assert quality.short_outages == 0
    assert quality.last_outage is None


def test_outage_record_with_bad_dates_keeps_its_duration() -> None:
    record = bytes.fromhex("000000000000 08 00 190d20000000 05000000")  # power-on zero, power-off month 13
    assert decode_outage(record) == Outage(power_off=None, power_on=None, duration_s=5, reset_cause=8)
    assert decode_outage(bytes(18)) is None
    with pytest.raises(DecodeError):
        decode_outage(bytes(17))


def test_short_or_impossible_input_is_a_decode_error() -> None:
    table = et09()
    with pytest.raises(DecodeError):
        decode_power_quality(table[: P180_END - 1], 10)
    with pytest.raises(DecodeError):
        decode_power_quality(table[6 : P180_END - 1], 10, start=6)
    with pytest.raises(DecodeError):
        decode_power_quality(b"", 10)
    with pytest.raises(DecodeError):
        decode_power_quality(table, 256)  # ET04.53 is a UINT8
    with pytest.raises(DecodeError):
        decode_power_quality(table, 10, start=187)  # past the start of the power quality fields


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400), records=st.integers(0, 12), start=st.sampled_from([0, 6]))
def test_garbage_never_raises_anything_but_decode_error(data: bytes, records: int, start: int) -> None:
    try:
        decode_power_quality(data, records, start=start)
    except DecodeError:
        assert len(data) < 18 * records + 139 - start


def test_random_full_length_tables_always_decode() -> None:
    rng = random.Random(9)
    for _ in range(200):
        decode_power_quality(rng.randbytes(P180_END), 10)


def test_et29_bits_by_hand() -> None:
    # 0x000421: bit 0 S0 output, bit 5 disconnect & buzzer, bit 10 MEP1 port enabled.
    assert decode_et29(bytes.fromhex("210400")) == RelayHardware(True, False, False, 0x000421)
    # 0x0000C0: control relays 1 and 2, no disconnect.
    assert decode_et29(bytes.fromhex("c00000")) == RelayHardware(False, True, True, 0xC0)
    # 0x800601: the default sim meter plus bit 23 (MEP2 port): no switching hardware.
    hardware = decode_et29(bytes.fromhex("010680") + bytes(51))
    assert (hardware.disconnect, hardware.control_relay_1, hardware.control_relay_2) == (False, False, False)
    with pytest.raises(DecodeError):
        decode_et29(b"\x20\x00")


def test_et23_disconnect_state_by_hand() -> None:
    assert [decode_disconnect_state(bytes([value])) for value in range(4)] == ["closed", "closing", "open", "opening"]
    assert RELAY_STATES == ("closed", "closing", "open", "opening")
    assert decode_disconnect_state(b"\x07") is None
    assert decode_disconnect_state(b"\xff") is None
    with pytest.raises(DecodeError):
        decode_disconnect_state(b"")


# ---- the real client against the simulator ----------------------------------------


@contextlib.contextmanager
def counting(client: MeterClient) -> Iterator[list[tuple[int, int, int]]]:
    """Every ``read_table`` call the readers make (the session may split one on the wire)."""
    calls: list[tuple[int, int, int]] = []
    read = client.read_table

    async def wrapped(table_id: int, offset: int, count: int) -> bytes:
        calls.append((table_id, offset, count))
        return await read(table_id, offset, count)

    client.read_table = wrapped  # type: ignore[method-assign]
    yield calls


async def serve(meter: SimulatedMeter, transport: str, listen: str) -> SimServer:
    return await (meter.serve_tcp(transport) if listen == "tcp" else meter.serve_pty(transport))


TRANSPORTS = pytest.mark.parametrize("transport", ["mep", "ir"])
LISTENS = pytest.mark.parametrize("listen", ["tcp", "pty"])


@TRANSPORTS
@LISTENS
async def test_default_meter(transport: str, listen: str) -> None:
    meter = SimulatedMeter(KEY)
    sim = meter.image.power_quality
    server = await serve(meter, transport, listen)
    try:
        async with client_for(server, transport) as client:
            reader = PowerQualityReader(client)
            relay = RelayReader(client)
            with counting(client) as calls:
                await reader.setup()
                assert calls == [(ET04, 53, 1), (ET09, 6, 313)]
                assert reader.available is True
                assert reader.latest == sim.expected()
                first = await reader.read()
                assert first == sim.expected()
                assert len(calls) == 3  # one read_table call per read()
                meter.image.events.inject("voltage_sag", 231 * 4 + 0)  # 231 V on L1
                meter.image.events.inject("voltage_swell", 251 * 4 + 1)  # 251 V on L2
                second = await reader.read()
                assert len(calls) == 4
                await relay.setup()
                assert await relay.read() is None
                assert calls[4:] == [(ET29, 0, 3)]  # no contactor: ET23 is never read
    finally:
        await server.close()
    assert first is not None and second is not None
    assert second == sim.expected()
    assert second.sags[0].count == first.sags[0].count + 1
    assert second.sags[0].voltage_v == 231.0
    assert second.swells[1] == PhaseEvents(1, meter.image.events.logged[-1].time, 251.0)
    assert second.sags[1:] == first.sags[1:]
    # The event log's outages, newest first, and its sags and swells.
    assert second.last_outage is not None and second.last_outage.reset_cause == 3
    power_down, power_up = (
        next(e for e in reversed(meter.image.events.logged) if e.event_id == event_id) for event_id in (1, 2)
    )
    assert second.last_outage.power_off == power_down.time
    assert second.last_outage.power_on == power_up.time
    assert second.last_outage.duration_s == (power_up.time - power_down.time).total_seconds()
    assert second.min_frequency_hz == 49.912
    assert second.phase_loss == (False, False, False)
    assert relay.hardware is not None and not relay.has_disconnect
    assert relay.state is None


@TRANSPORTS
@LISTENS
async def test_disconnect_state_changes_at_run_time(transport: str, listen: str) -> None:
    meter = SimulatedMeter(KEY, variants="disconnect")
    sim = meter.image.power_quality
    server = await serve(meter, transport, listen)
    try:
        async with client_for(server, transport) as client:
            relay = RelayReader(client)
            await relay.setup()
            states = []
            with counting(client) as calls:
                for state in ("closed", "opening", "open", "closing", 7, "closed"):
                    sim.set_disconnect(state)
                    states.append(await relay.read())
            assert calls == [(ET23, 94, 1)] * 6
    finally:
        await server.close()
    assert relay.has_disconnect
    assert relay.hardware is not None and relay.hardware.disconnect
    assert not relay.hardware.control_relay_1
    assert states == ["closed", "opening", "open", "closing", None, "closed"]
    assert relay.state == "closed"


@TRANSPORTS
@LISTENS
async def test_phase_loss(transport: str, listen: str) -> None:
    meter = SimulatedMeter(KEY, variants="phase-loss")
    server = await serve(meter, transport, listen)
    try:
        async with client_for(server, transport) as client:
            reader = PowerQualityReader(client)
            await reader.setup()
            quality = await reader.read()
            meter.image.power_quality.set_phase_loss(0, True)
            later = await reader.read()
    finally:
        await server.close()
    assert quality is not None and later is not None
    assert quality.phase_loss == (False, False, True)
    assert quality.phase_loss_counts == (0, 0, 2)
    assert quality.phase_loss_last[2] == meter.image.power_quality.phase_losses[2].last
    assert later.phase_loss == (True, False, True)
    assert later.phase_loss_counts == (1, 0, 2)
    assert later == meter.image.power_quality.expected()


@TRANSPORTS
@LISTENS
async def test_no_power_quality(transport: str, listen: str) -> None:
    meter = SimulatedMeter(KEY, variants="no-power-quality")
    server = await serve(meter, transport, listen)
    try:
        async with client_for(server, transport) as client:
            reader = PowerQualityReader(client)
            with counting(client) as calls:
                await reader.setup()
                assert await reader.read() is None
                assert await reader.read() is None
            assert calls == [(ET04, 53, 1), (ET09, 6, 313)]  # refused once: never asked again
            snapshot = await client.read_snapshot()  # the session is fine afterwards
    finally:
        await server.close()
    assert reader.available is False
    assert reader.latest is None
    assert snapshot.energy_import_wh is not None


@TRANSPORTS
async def test_other_outage_record_count_over_the_wire(transport: str) -> None:
    """ET04.53 = 20: P = 360, a 493-byte span: still one read_table call (split by the session)."""
    meter = SimulatedMeter(KEY)
    meter.image.power_quality.set_outage_records(20)
    async with await meter.serve_tcp(transport) as server, client_for(server, transport) as client:
        reader = PowerQualityReader(client)
        with counting(client) as calls:
            await reader.setup()
        assert calls == [(ET04, 53, 1), (ET09, 6, 360 + 133)]
    assert reader.outage_records == 20
    assert reader.latest == meter.image.power_quality.expected()


async def test_et04_refused_means_ten_records() -> None:
    meter = SimulatedMeter(KEY)
    meter.image.refused[ET04] = 0x05
    async with await meter.serve_tcp("mep") as server, client_for(server, "mep") as client:
        reader = PowerQualityReader(client)
        await reader.setup()
    assert reader.outage_records == 10
    assert reader.latest == meter.image.power_quality.expected()


async def test_read_before_setup_sets_up_and_et29_refused_means_no_disconnect() -> None:
    meter = SimulatedMeter(KEY, variants="disconnect")
    meter.image.refused[ET29] = 0x03
    async with await meter.serve_tcp("ir") as server, client_for(server, "ir") as client:
        reader = PowerQualityReader(client)
        assert await reader.read() == meter.image.power_quality.expected()
        relay = RelayReader(client)
        assert await relay.read() is None
    assert relay.hardware is None and not relay.has_disconnect


@pytest.mark.parametrize("variant", ["disconnect", "no-power-quality"])
async def test_cli_power_quality_json(capsys: pytest.CaptureFixture[str], variant: str) -> None:
    meter = SimulatedMeter(KEY, variants=variant)
    server = await meter.serve_tcp("mep")
    args = _parser().parse_args(
        [*("power-quality", "--transport", "mep", "--port", server.url, "--key", KEY_TEXT), "--enable-line", "none"]
    )
    try:
        assert await power_quality(args) == 0
        text = capsys.readouterr().out
        args.json = True
        assert await power_quality(args) == 0
    finally:
        await server.close()
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert list(data) == ["power_quality", "relay"]
    if variant == "disconnect":
        assert "disconnect  closed" in text
        assert "short outages  7" in text
        assert data["relay"]["disconnect_state"] == "closed"
        assert data["relay"]["hardware"]["disconnect"] is True
        pq = data["power_quality"]
        assert pq["short_outages"] == 7
        assert pq["sags"][1]["count"] == 4
        assert pq["last_outage"]["power_on"].endswith("Z")
    else:
        assert "no power quality data" in text
        assert "no disconnect" in text
        assert data["power_quality"] is None
        assert data["relay"]["disconnect_state"] is None


class FlakyClient:
    """A stand-in client: table bytes from a dict; the listed calls fail with the given error."""

    max_read_size = 465

    def __init__(self, tables: dict[int, bytes], failures: dict[int, Exception]) -> None:
        self.tables = tables
        self.failures = failures  # call number -> error
        self.calls = 0

    async def read_table(self, table_id: int, offset: int, count: int) -> bytes:
        self.calls += 1
        if self.calls in self.failures:
            raise self.failures[self.calls]
        return self.tables[table_id][offset : offset + count]


def flaky(failures: dict[int, Exception]) -> Any:
    et04 = bytearray(140)
    et04[53] = 10
    et23 = bytearray(186)
    et23[94] = 2
    return FlakyClient({ET04: bytes(et04), ET09: et09(), ET23: bytes(et23), ET29: bytes.fromhex("210400")}, failures)


async def test_a_link_error_during_setup_is_raised_and_setup_is_done_again() -> None:
    client = flaky({2: NoResponseError("no answer")})
    reader = PowerQualityReader(client)
    with pytest.raises(NoResponseError):
        await reader.setup()
    assert reader.available is None
    quality = await reader.read()  # sets up again
    assert quality is not None and quality.last_outage == NEWEST
    assert reader.available is True
    assert client.calls == 4
    relay_client = flaky({1: NoResponseError("no answer")})
    relay = RelayReader(relay_client)
    with pytest.raises(NoResponseError):
        await relay.read()
    assert await relay.read() == "open"
    assert relay.has_disconnect


async def test_a_refusal_after_setup_is_none_this_time_and_keeps_the_last_values() -> None:
    client = flaky({3: RefusedError(0x05, "iar", "refused"), 5: ShortReadError("short")})
    reader = PowerQualityReader(client)
    await reader.setup()
    first = reader.latest
    assert await reader.read() is None
    assert reader.available is True
    assert reader.latest == first
    assert await reader.read() == first
    assert await reader.read() is None  # short
    assert await reader.read() == first
