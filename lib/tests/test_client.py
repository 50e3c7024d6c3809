"""The real client reads the simulated meter over real bytes: loopback TCP and a pty."""

from __future__ import annotations

import asyncio
import struct
import sys

import pytest

from nesmeter import (
    AuthenticationError,
    FrameError,
    MeterClient,
    MeterKey,
    NoResponseError,
    PortError,
    WriteRefusedError,
    probe_transport,
)
from nesmeter.c1218 import framing as c1218
from nesmeter.c1218.session import C1218Timing
from nesmeter.mep import framing as mep
from nesmeter.mep.session import MepTiming
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import Faults, SimServer, SimulatedMeter
from nesmeter.tables import tables

from .conftest import KEY, KEY_TEXT, SERIAL

FAST_MEP = MepTiming(response_timeout=0.2, enable_settle=0, enable_reset_off=0)
FAST_IR = C1218Timing(ack_timeout=0.3)


def client_for(server: SimServer, transport: str, key: MeterKey = KEY, **kwargs: object) -> MeterClient:
    return MeterClient(server.url, transport, key, mep_timing=FAST_MEP, ir_timing=FAST_IR, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["mep", "ir"])
@pytest.mark.parametrize("listen", ["tcp", "pty"])
async def test_reads_identity_and_snapshot(transport: str, listen: str) -> None:
    # Frozen load model: BT28 comes in several reads, and total and per-phase power must
    # come from the same instant for the sum check below.
    meter = SimulatedMeter(KEY, image=MeterImage(speed=0))
    server = await (meter.serve_tcp(transport) if listen == "tcp" else meter.serve_pty(transport))
    try:
        async with client_for(server, transport) as client:
            identity = await client.identify()
            first = await client.read_snapshot(hold_for=10)
            await asyncio.sleep(0.2)
            second = await client.read_snapshot(hold_for=10)
    finally:
        await server.close()
    assert (identity.utility_serial, identity.model, identity.firmware_version) == (SERIAL, "83334", "3.70.21")
    assert identity.dimensions.present_values == 55
    assert {13, 14, 16, 17} <= set(identity.present_sources)  # L2/L3 current and voltage
    assert first.energy_import_wh is not None and second.energy_import_wh is not None
    assert second.energy_import_wh >= first.energy_import_wh >= 344180
    assert first.voltage_l1_v == pytest.approx(228.315)
    assert first.frequency_hz == pytest.approx(50.0)
    phases = [p for p in (first.power_import_l1_w, first.power_import_l2_w, first.power_import_l3_w) if p is not None]
    assert first.power_import_w == pytest.approx(sum(phases), abs=len(phases))  # each value rounded on its own
    assert first.meter_time is not None
    assert client.stats.errors.get("bad_frame", 0) == 0


async def test_mep_adopts_the_meters_sequence_number(mep_server: SimServer, meter: SimulatedMeter) -> None:
    async with client_for(mep_server, "mep") as client:
        await client.identify()
    assert client.stats.sequence_resyncs == 1
    assert meter.stats.sequence_errors == 1


async def test_mep_rc4_encryption(mep_server: SimServer, meter: SimulatedMeter) -> None:
    async with client_for(mep_server, "mep", encrypt=True) as client:
        snapshot = await client.read_snapshot()
    assert snapshot.energy_import_wh is not None
    tx = [bytes.fromhex(f["hex"]) for f in client.frames.as_list() if f["direction"] == "tx"]
    # No plaintext read (3F, table id high byte 00 or 08) on the wire; one ciphertext byte
    # alone would match the opcode in 1 of 256 frames.
    assert all(frame[2:4] not in (b"\x3f\x00", b"\x3f\x08") for frame in tx)


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_wrong_key_is_an_authentication_error(transport: str, meter: SimulatedMeter) -> None:
    server = await meter.serve_tcp(transport)
    try:
        with pytest.raises(AuthenticationError):
            async with client_for(server, transport, MeterKey.parse("wrongwrongwrongwrong")) as client:
                await client.identify()
    finally:
        await server.close()


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_silent_meter_is_no_response(transport: str) -> None:
    meter = SimulatedMeter(KEY, faults=Faults(silent=True))
    server = await meter.serve_tcp(transport)
    try:
        with pytest.raises(NoResponseError):
            async with client_for(server, transport) as client:
                await client.identify()
    finally:
        await server.close()


async def test_missing_port_is_a_port_error() -> None:
    with pytest.raises(PortError, match="no such port"):
        await MeterClient("/dev/does-not-exist-nes", "mep", KEY).open()
    with pytest.raises(PortError, match="connection refused"):
        await MeterClient("socket://127.0.0.1:9", "ir", KEY).open()
    with pytest.raises(PortError, match="only device paths"):
        MeterClient("http://127.0.0.1:1", "ir", KEY)


async def test_pty_is_exclusive(meter: SimulatedMeter) -> None:
    server = await meter.serve_pty("mep")
    try:
        async with client_for(server, "mep"):
            with pytest.raises(PortError, match="busy"):
                await client_for(server, "mep").open()
    finally:
        await server.close()


async def test_vanished_tcp_server_raises_port_error(meter: SimulatedMeter) -> None:
    server = await meter.serve_tcp("mep")
    client = client_for(server, "mep")
    await client.open()
    await client.identify()
    await server.close()
    await asyncio.sleep(0.05)
    with pytest.raises((PortError, NoResponseError)):
        await client.read_snapshot()
    await client.close()


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_recovers_from_faults(transport: str) -> None:
    """About 10% of replies damaged: polls still succeed and energy never goes backwards."""
    faults = Faults(drop=0.03, corrupt=0.03, garbage=0.02, split=0.02, seed=7)
    meter = SimulatedMeter(KEY, faults=faults)
    server = await meter.serve_tcp(transport)
    client = client_for(server, transport)
    ok = 0
    last = 0.0
    try:
        for _ in range(15):
            try:
                if not client.is_open:
                    await client.open()
                snapshot = await client.read_snapshot(hold_for=5)
            except (NoResponseError, FrameError):
                await client.close()
                continue
            ok += 1
            assert snapshot.energy_import_wh is not None and snapshot.energy_import_wh >= last
            last = snapshot.energy_import_wh
    finally:
        await client.close()
        await server.close()
    assert ok >= 12
    assert client.stats.retries > 0
    assert sum(meter.stats.faults.values()) > 0


async def test_alert_markers_are_stripped_and_flags_read() -> None:
    meter = SimulatedMeter(KEY, faults=Faults(alerts=True))
    meter.image.set_alert_flags(0b10001)
    server = await meter.serve_tcp("mep")
    try:
        async with client_for(server, "mep") as client:
            await client.identify()
            await asyncio.sleep(1.4)  # idle: the meter starts repeating 00 00
            snapshot = await client.read_snapshot()
    finally:
        await server.close()
    assert client.stats.alert_markers >= 1
    assert snapshot.alert_flags == ("scheduled_read_request", "delta_data_alert")


async def test_cli_simulated_alerts_set_the_alert_flags() -> None:
    """``simulate --faults alerts``: the markers come with the condition they announce in ET13."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "nesmeter.cli", "simulate", "--transport", "mep", "--listen", "tcp://127.0.0.1:0"),
        *("--key", KEY_TEXT, "--faults", "alerts"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert "meter at socket://" in line, line
        client = MeterClient(line.split()[-1], "mep", KEY, mep_timing=FAST_MEP, enable_line="none")
        async with client:
            await client.identify()
            await asyncio.sleep(1.4)  # idle: the meter starts repeating 00 00
            snapshot = await client.read_snapshot()
    finally:
        process.terminate()
        await process.wait()
    assert client.stats.alert_markers >= 1
    assert snapshot.alert_flags == ("scheduled_read_request",)


async def test_et11_has_the_guides_layout() -> None:
    """ET11 as the MEP guide lays it out (G p.77-80), read as other clients read it (DabblerDK's
    decoder goes up to ET11.30): fw 3.50+ has ET11.0-31, Gen 4 (firmware 4) also 32-37."""
    for variants, size in (("", 32), ("mep2", 38)):
        meter = SimulatedMeter(KEY, image=MeterImage(speed=0), variants=variants)
        async with await meter.serve_tcp("mep") as server, client_for(server, "mep") as client:
            et11 = await client.read_table(tables.ET11, 0, size)
        assert meter.image.size(tables.ET11) == size  # what a full read (30 080B) is answered with
        u16 = {at: struct.unpack_from("<H", et11, at)[0] for at in (5, 7, 9, 28, 30, 36) if at < size}
        assert et11[0] == (6 if variants else 5)  # devices: 4 M-Bus and 1 (Gen 4: 2) MEP clients
        assert (et11[1], et11[2], et11[3], et11[4]) == (66, 36, 5, 6)
        assert (u16[5], u16[7], u16[9]) == (517, 896, 1785)  # ET16 entry, transaction request/response
        assert (et11[11], et11[12], et11[13]) == (25, 16, 22)
        assert tuple(et11[18:28]) == (10, 10, 65, 120, 6, 10, 10, 16, 80, 10)
        assert (u16[28], u16[30]) == (261, 769)  # ET11.28 and ET11.30: RAM-only transaction lengths
        if variants:
            assert (et11[34], u16[36]) == (2, 1250)  # MEP channel count: two clients on Gen 4


async def test_sequence_storm_is_survived() -> None:
    meter = SimulatedMeter(KEY, faults=Faults(sequence_storm=0.3, seed=3))
    server = await meter.serve_tcp("mep")
    try:
        async with client_for(server, "mep") as client:
            snapshot = await client.read_snapshot()
    finally:
        await server.close()
    assert snapshot.energy_import_wh is not None
    assert client.stats.sequence_resyncs >= 1


async def test_ir_session_is_renewed_after_the_channel_times_out(ir_server: SimServer) -> None:
    timing = C1218Timing(ack_timeout=0.3, channel_timeout=0.6)
    async with MeterClient(ir_server.url, "ir", KEY, ir_timing=timing) as client:
        await client.read_snapshot()
        await asyncio.sleep(0.7)
        await client.read_snapshot()
    assert client.stats.session_starts == 2


async def test_ir_security_frames_are_masked_in_the_log(ir_server: SimServer) -> None:
    async with client_for(ir_server, "ir") as client:
        await client.identify()
    log = " ".join(frame["hex"] for frame in client.frames.as_list())
    for form in KEY.forms():
        assert form.encode().hex() not in log
        assert form not in log


def test_encoders_refuse_write_services() -> None:
    for code in (mep.MepCode.FULL_WRITE, mep.MepCode.PARTIAL_WRITE):
        with pytest.raises(WriteRefusedError):
            mep.check_read_only(bytes([code, 0, 7, 0, 6]))
    for service in (c1218.Service.FULL_WRITE, c1218.Service.PARTIAL_WRITE, 0x53, 0x71):
        with pytest.raises(WriteRefusedError):
            c1218.check_read_only(bytes([service]))
    mep.check_read_only(mep.read_apdu(tables.BT28, 0, 4))


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_probe_finds_the_transport(transport: str, meter: SimulatedMeter) -> None:
    server = await meter.serve_tcp(transport)
    try:
        assert await probe_transport(server.url) == transport
    finally:
        await server.close()


async def test_clock_is_read_once_a_minute(ir_server: SimServer, meter: SimulatedMeter) -> None:
    """Fast polls stay within the guide's average of one table read per second."""
    async with client_for(ir_server, "ir") as client:
        first = await client.read_snapshot()
        reads = meter.stats.table_reads.copy()
        second = await client.read_snapshot()
        new_reads = meter.stats.table_reads - reads
    assert set(new_reads) == {tables.BT23, tables.BT28}  # no BT52
    assert first.meter_time is not None
    assert second.meter_time is not None
    assert 0 <= (second.meter_time - first.meter_time).total_seconds() <= 1
