"""Load profile: decoders against hand-computed layouts, the reader, the simulator, the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
import json
import struct
from typing import Any

import pytest

from nesmeter import MeterClient
from nesmeter.cli.cli import _parser
from nesmeter.cli.load_profile_cli import history
from nesmeter.client.load_profile_reader import LoadProfileReader
from nesmeter.errors import RefusedError, TlsRequiredError
from nesmeter.sim.simulator import SimulatedMeter
from nesmeter.tables import tables
from nesmeter.tables.load_profile import (
    DataSetConfig,
    compute_layout,
    decode_bt61,
    decode_bt62,
    decode_bt63,
    decode_et21,
    decode_interval,
)

from .conftest import KEY, KEY_TEXT
from .test_client import client_for

# A small data set: 3 one-hour blocks of 4 x 15-minute intervals, 2 channels (import, export).
# By hand (G p.233-241, no end readings): interval = 2 div 2 + 1 = 2 status bytes + 2 x 4 = 10;
# header = 5 (STIME_DATE) + ceil(4 / 8) = 1 simple-status byte = 6; block = 6 + 4 x 10 = 46.
BT61 = bytes.fromhex("8a000000000c2003000400020f")
BT62 = bytes.fromhex("00000000010020")
CONFIG = DataSetConfig(blocks=3, intervals_per_block=4, channels=2, interval_code=15)


def stime(when: datetime) -> bytes:
    return bytes([when.year - 2000, when.month, when.day, when.hour, when.minute])


def interval(status: bytes, imp: int, exp: int) -> bytes:
    return status + struct.pack("<ii", imp, exp)


def test_bt61_bt62_and_the_layout_by_hand() -> None:
    end_readings, config = decode_bt61(BT61)
    assert not end_readings
    assert config == CONFIG
    assert config.interval_minutes == 15
    assert decode_bt62(BT62, (2,)) == (0, 1)
    layout = compute_layout(config)
    assert (layout.header_size, layout.simple_status_offset, layout.interval_size, layout.block_size) == (6, 5, 10, 46)
    assert layout.channel_offset == 2
    assert layout.slot_offset(2, 3) == 2 * 46 + 6 + 3 * 10
    # Had BT61.4.4 said end readings: 4 bytes per channel before the simple status.
    assert compute_layout(config, end_readings=True).header_size == 14
    # A day of 15-minute intervals, 2 channels: 5 + 12 = 17-byte header, 977-byte block (§1.5).
    assert compute_layout(DataSetConfig(30, 96, 2, 15)).block_size == 977


def test_et21_confirms_or_refuses_the_layout() -> None:
    et21 = bytearray(131)
    struct.pack_into("<IH", et21, 8, 46, 6)
    et21[22:30] = bytes([5, 1, 6, 10, 2, 0, 2, 15])
    layout = decode_et21(bytes(et21), CONFIG)
    assert layout.from_et21
    assert (layout.header_size, layout.interval_size, layout.block_size) == (6, 10, 46)
    et21[25] = 11  # an interval size the block size does not add up to
    with pytest.raises(Exception, match="inconsistent"):
        decode_et21(bytes(et21), CONFIG)


def test_bt63_and_extended_status_by_hand() -> None:
    status = decode_bt63(bytes.fromhex("2403000100e803000000000200"))
    assert (status.active, status.circular, status.overflow) == (True, True, False)
    assert (status.valid_blocks, status.last_block, status.valid_intervals) == (3, 1, 2)
    assert status.last_block_sequence == 1000
    assert not decode_bt63(bytes(13)).active
    # byte 0: high nibble 2 = power fail, low nibble 4 = channel 0 skipped; byte 1 high nibble
    # 12 = channel 1 opted out (G p.240-241).
    record = decode_interval(interval(b"\x24\xc0", 0, 0), 0, 2, compute_layout(CONFIG))
    assert record.codes == (4, 12)
    assert record.status == ("power_fail", "skipped", "opt_out")


def build_ring() -> tuple[bytes, datetime]:
    """Three blocks; the ring has wrapped: the newest at index 0, then 2, then 1 (oldest).

    Oldest (index 1, 10:00-11:00): complete. Index 2 (11:00-12:00): not the newest, slot 1
    skipped (simple status bit clear) and slot 2 with a power failure. Newest (index 0,
    12:00-): two intervals so far.
    """
    base = datetime(2024, 3, 5, 10, 0, tzinfo=UTC)
    q = timedelta(minutes=15)
    ok = b"\x00\x00"
    oldest = stime(base + 4 * q) + b"\x0f" + b"".join(interval(ok, 1000 + 10 * k, 50 + k) for k in range(4))
    middle = stime(base + 8 * q) + bytes([0b1101])
    middle += interval(ok, 1040, 54) + interval(ok, 9999, 9999) + interval(b"\x20\x00", 1050, 55)
    middle += interval(ok, 1060, 56)
    newest = stime(base + 10 * q) + b"\x03" + interval(ok, 1070, 57) + interval(ok, 1080, 58) + bytes(20)
    return newest + oldest + middle, base


class FakeClient:
    """Answers table reads from bytes, counts them."""

    def __init__(self, ring: bytes, bt63: bytes, *, max_read: int = 465) -> None:
        self.tables: dict[int, bytes] = {tables.BT61: BT61, tables.BT62: BT62, tables.BT63: bt63, tables.BT64: ring}
        self.reads: list[tuple[int, int, int]] = []
        self.identity = None
        self.max_read_size = max_read
        self.load_profile_layout = None
        self.load_profile_said: set[str] = set()

    async def read_table(self, table_id: int, offset: int, count: int) -> bytes:
        self.reads.append((table_id, offset, count))
        if table_id not in self.tables:
            raise RefusedError(3, "isc", "refused")
        return self.tables[table_id][offset : offset + count].ljust(count, b"\x00")


BT63_RING = bytes.fromhex("2403000000e803000000000200")  # last block 0, sequence 1000


async def test_reader_walks_a_wrapped_ring_and_skips_what_is_not_a_value() -> None:
    ring, base = build_ring()
    client = FakeClient(ring, BT63_RING)
    profile = await LoadProfileReader(client, None).run()  # type: ignore[arg-type]
    ends = [(i.end - base) / timedelta(minutes=15) for i in profile.intervals]
    assert ends == [1, 2, 3, 4, 5, 7, 8, 9, 10]  # slot 1 of the middle block (end 6) is not processed
    assert profile.intervals[0].values == {"energy_import_wh": 1000.0, "energy_export_wh": 50.0}
    assert profile.intervals[5].status == ("power_fail",)
    assert profile.intervals[-1].values["energy_import_wh"] == 1080.0
    assert profile.available
    assert not profile.ring_wrapped
    assert profile.channels == ("energy_import_wh", "energy_export_wh")


async def test_reader_since_reads_only_the_blocks_it_needs() -> None:
    ring, base = build_ring()
    client = FakeClient(ring, BT63_RING, max_read=30)
    since = base + timedelta(minutes=15 * 7)  # inside the middle block
    profile = await LoadProfileReader(client, since).run()  # type: ignore[arg-type]
    assert [i.end for i in profile.intervals] == [base + timedelta(minutes=15 * k) for k in (8, 9, 10)]
    assert profile.previous is not None
    assert profile.previous.end == since
    data_reads = [(offset, count) for table, offset, count in client.reads if table == tables.BT64]
    assert all(offset < 46 or offset >= 92 for offset, _ in data_reads)  # the oldest block (index 1) is not read
    assert all(count <= 30 for _, count in data_reads)
    assert all((offset % 46 - 6) % 10 == 0 or count == 6 for offset, count in data_reads)  # whole intervals


async def test_reader_says_once_when_there_is_no_load_profile(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeClient(b"", bytes(13))
    caplog.set_level("DEBUG")
    for _ in range(2):
        profile = await LoadProfileReader(client, None).run()  # type: ignore[arg-type]
        assert not profile.available
        assert profile.intervals == []
    assert caplog.text.count("no load profile") == 1
    del client.tables[tables.BT61]
    client.load_profile_layout = None
    assert not (await LoadProfileReader(client, None).run()).available  # type: ignore[arg-type]


async def test_a_port_that_requires_tls_is_not_a_meter_without_a_load_profile() -> None:
    """TLS required refuses every table on the port: it must reach the caller, not read as "no load profile"."""
    ring, _base = build_ring()
    client = FakeClient(ring, BT63_RING)

    async def tls_only(table_id: int, offset: int, count: int) -> bytes:
        raise TlsRequiredError(0x0A, "TLS_SESSION_REQUIRED", "the meter requires TLS on this port")

    client.read_table = tls_only  # type: ignore[method-assign]
    reader = LoadProfileReader(client, None)  # type: ignore[arg-type]
    with pytest.raises(TlsRequiredError):
        await reader.run()
    assert reader.result.available is not False
    assert client.load_profile_said == set()


def expected(meter: SimulatedMeter, since: datetime | None) -> list[tuple[datetime, dict[str, float]]]:
    return [(end, values) for end, values, _common in meter.image.load_profile.expected(since)]


@pytest.mark.parametrize("transport", ["mep", "ir"])
@pytest.mark.parametrize("listen", ["tcp", "pty"])
async def test_client_reads_the_simulators_truth(transport: str, listen: str) -> None:
    meter = SimulatedMeter(KEY)
    server = await (meter.serve_tcp(transport) if listen == "tcp" else meter.serve_pty(transport))
    since = datetime.now(UTC) - timedelta(days=3, hours=5)
    try:
        async with client_for(server, transport) as client:
            await client.identify()
            profile = await client.read_load_profile(since)
            everything = await client.read_load_profile()
    finally:
        await server.close()
    assert [(i.end, dict(i.values)) for i in profile.intervals] == expected(meter, since)
    assert [(i.end, dict(i.values)) for i in everything.intervals] == expected(meter, None)
    assert len(everything.intervals) > 7 * 96
    assert any("power_fail" in i.status for i in everything.intervals)  # the model's outage
    assert profile.previous is not None
    assert profile.previous.end <= since < profile.intervals[0].end
    assert everything.layout is not None
    assert everything.layout.layout.from_et21 == (transport == "mep")  # ET21 refused to the optical key


async def test_incremental_reads_one_table_per_step() -> None:
    meter = SimulatedMeter(KEY, variants="lp-reactive")
    server = await meter.serve_tcp("mep")
    progress: list[tuple[int, int]] = []
    try:
        async with client_for(server, "mep") as client:
            await client.identify()
            reader = client.load_profile_reader(
                datetime.now(UTC) - timedelta(days=2), progress=lambda d, t: progress.append((d, t))
            )
            chunks = []
            while not reader.done:
                before = meter.stats.table_reads.total()
                chunks.append(await reader.step())
                assert meter.stats.table_reads.total() - before <= 1
    finally:
        await server.close()
    flat = [i for chunk in chunks for i in chunk]
    assert flat == reader.result.intervals
    assert [i.end for i in flat] == sorted(i.end for i in flat)
    assert len(reader.result.channels) == 4
    assert progress[-1][0] == progress[-1][1] == reader.result.reads


@pytest.mark.parametrize(
    ("variant", "check"),
    [
        ("lp-60min", "hourly"),
        ("lp-off", "off"),
        ("lp-opt-out", "opt_out"),
        ("lp-missing-day", "missing"),
        ("lp-wrap", "wrap"),
    ],
)
async def test_variants(variant: str, check: str) -> None:
    meter = SimulatedMeter(KEY, variants=variant)
    server = await meter.serve_tcp("mep")
    try:
        async with client_for(server, "mep") as client:
            await client.identify()
            profile = await client.read_load_profile()
    finally:
        await server.close()
    truth = dict(expected(meter, None))
    got = [(i.end, dict(i.values)) for i in profile.intervals]
    assert all(truth[end] == values for end, values in got)
    if check != "wrap":
        assert got == list(truth.items())
    if check == "hourly":
        assert profile.interval_minutes == 60
        assert all(i.end.minute == 0 for i in profile.intervals)
    elif check == "off":
        assert not profile.available
        assert got == []
    elif check == "opt_out":
        opted = [i for i in profile.intervals if "opt_out" in i.status]
        assert len(opted) == 24
        assert all(not i.values for i in opted)
    elif check == "missing":
        days = {i.end.date() for i in profile.intervals if i.end.time() != datetime.min.time()}
        today = datetime.now(UTC).date()
        assert today - timedelta(days=3) not in days
        assert today - timedelta(days=4) in days
        assert sum("power_fail" in i.status for i in profile.intervals) >= 7
    else:
        assert profile.ring_wrapped
        assert profile.lost_blocks == 1
        oldest = min(truth)
        assert all(i.end >= oldest for i in profile.intervals)


async def test_cli_history_json(capsys: pytest.CaptureFixture[str]) -> None:
    meter = SimulatedMeter(KEY)
    server = await meter.serve_tcp("mep")
    since = (datetime.now(UTC) - timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%S")
    args = _parser().parse_args(
        [
            *("history", "--transport", "mep", "--port", server.url, "--key", KEY_TEXT),
            *("--enable-line", "none", "--since", since, "--json"),
        ]
    )
    try:
        assert await history(args) == 0
    finally:
        await server.close()
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert set(data) == {"interval_minutes", "channels", "intervals"}
    assert data["interval_minutes"] == 15
    assert data["channels"] == ["energy_import_wh", "energy_export_wh"]
    assert 20 <= len(data["intervals"]) <= 25
    first = data["intervals"][0]
    assert set(first) == {"end", "energy_import_wh", "energy_export_wh", "status"}
    assert first["end"].endswith("Z")
    ends = [datetime.fromisoformat(i["end"].replace("Z", "+00:00")) for i in data["intervals"]]
    assert ends == sorted(ends)
    assert ends[0] > datetime.fromisoformat(since).replace(tzinfo=UTC)


def test_client_method_exists() -> None:
    assert callable(MeterClient.read_load_profile)
