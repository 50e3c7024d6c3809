"""Meters that differ from the guides' tidy picture: the real client against each variant.

Every variant is a way a real NES meter (or IR head) may behave where the guides and the
captures leave room. Values are checked against the simulated meter's own model (frozen
in time, so the truth is exact), not just "no exception".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import time

import pytest

from nesmeter import AuthenticationError, MeterClient, MeterKey, NoResponseError, ResponseError, probe_transport
from nesmeter.errors import UnsupportedMeterError
from nesmeter.link.transport import SerialLink
from nesmeter.mep.session import MepSession, MepTiming
from nesmeter.sim.sim_image import PHASE_SHARE, MeterImage
from nesmeter.sim.sim_variants import IR_ONLY, MEP_ONLY, VARIANTS
from nesmeter.sim.simulator import Faults, SimServer, SimulatedMeter
from nesmeter.tables import tables
from nesmeter.tables.snapshot import MeterSnapshot

from .conftest import KEY, SERIAL
from .test_client import FAST_IR, FAST_MEP, client_for

WRONG_KEY = MeterKey.parse("00000000000000000000")
# At speed 0 the load model stands still: 900 W import, registers fixed.
TRUE_IMPORT_W = sum(round(900 * share) for share in PHASE_SHARE)
SIMPLE = sorted(set(VARIANTS) - {"big-endian-bt00", "short-0b", "slow-reply"})


def frozen_meter(variants: str | tuple[str, ...] = (), **kwargs: object) -> SimulatedMeter:
    return SimulatedMeter(KEY, image=MeterImage(speed=0), variants=variants, **kwargs)  # type: ignore[arg-type]


def transports_for(variant: str) -> list[str]:
    if variant in IR_ONLY:
        return ["ir"]
    if variant in MEP_ONLY:
        return ["mep"]
    return ["mep", "ir"]


async def read_once(server: SimServer, transport: str, client: MeterClient | None = None) -> MeterSnapshot:
    async with client or client_for(server, transport) as opened:
        await opened.identify()
        return await opened.read_snapshot(hold_for=5)


def assert_true_values(snapshot: MeterSnapshot, meter: SimulatedMeter) -> None:
    """Energy and power as the meter's model has them, whatever the variant's layout."""
    unit = meter.image.energy_unit
    assert snapshot.energy_import_wh == int(meter.image.import_wh) // unit * unit
    assert snapshot.energy_export_wh == int(meter.image.export_wh) // unit * unit
    assert snapshot.power_import_w == TRUE_IMPORT_W
    assert snapshot.power_export_w == 0
    assert snapshot.power_outage_count == 14


@pytest.mark.parametrize(("variant", "transport"), [(v, t) for v in SIMPLE for t in transports_for(v)])
async def test_every_variant_reads_true_values(variant: str, transport: str) -> None:
    meter = frozen_meter(variant)
    async with await meter.serve_tcp(transport) as server:
        snapshot = await read_once(server, transport)
    assert_true_values(snapshot, meter)


@pytest.mark.parametrize("variant", ["fixed-toggle", "mirror-toggle", "echo", "leftover-session"])
async def test_ir_link_variants_over_a_pty(variant: str) -> None:
    meter = frozen_meter(variant)
    async with await meter.serve_pty("ir") as server:
        client = client_for(server, "ir")
        first = await read_once(server, "ir", client)
        second = await read_once(server, "ir", client_for(server, "ir"))  # a new session on the same line
    assert_true_values(first, meter)
    assert_true_values(second, meter)
    assert client.stats.errors.get("duplicate", 0) == 0
    assert client.stats.timeouts == 0  # no reply was lost to the toggle rule


async def test_retransmission_from_an_alternating_meter_is_dropped() -> None:
    meter = SimulatedMeter(KEY, image=MeterImage(speed=0), faults=Faults(repeat=0.3, seed=5))
    async with await meter.serve_tcp("ir") as server:
        client = client_for(server, "ir")
        for _ in range(3):
            snapshot = await read_once(server, "ir", client)
            assert_true_values(snapshot, meter)
    assert meter.stats.faults["repeat"] >= 3
    assert client.stats.errors["duplicate"] >= 3


async def test_byte_identical_replies_from_a_fixed_toggle_meter_are_both_taken() -> None:
    """Logon and Security are both answered 00: same bytes, same toggle, two replies."""
    meter = frozen_meter("fixed-toggle")
    async with await meter.serve_tcp("ir") as server:
        client = client_for(server, "ir")
        await read_once(server, "ir", client)
    assert client.stats.session_starts == 1
    assert client.stats.retries == 0


async def test_bare_negotiate_keeps_the_link_defaults() -> None:
    meter = frozen_meter("bare-negotiate")
    async with await meter.serve_tcp("ir") as server:
        snapshot = await read_once(server, "ir")
    assert_true_values(snapshot, meter)


async def test_leftover_session_is_terminated_not_waited_out() -> None:
    meter = frozen_meter("leftover-session")
    async with await meter.serve_tcp("ir") as server:
        client = client_for(server, "ir")
        await read_once(server, "ir", client)
    assert client.stats.errors["isss"] == 1  # one refused Identify, then Terminate and Identify
    assert client.stats.session_starts == 1


async def test_echoing_head_is_recognised_and_reported() -> None:
    meter = frozen_meter("echo")
    async with await meter.serve_tcp("ir") as server:
        client = client_for(server, "ir")
        snapshot = await read_once(server, "ir", client)
    assert_true_values(snapshot, meter)
    assert client.stats.echoes >= client.stats.frames_sent
    assert client.diagnostics()["stats"]["echoes"] == client.stats.echoes


async def test_firmware_2_reads_bt20() -> None:
    meter = frozen_meter("fw2")
    async with await meter.serve_tcp("ir") as server, client_for(server, "ir") as client:
        identity = await client.identify()
    assert identity.firmware_version == "2.10.00"
    assert identity.dimensions.present_values == 22
    assert meter.stats.table_reads[tables.BT20] >= 1


@pytest.mark.parametrize("variant", [(), "short-0b"])
async def test_mep_rejection_in_any_form_is_the_key(variant: str | tuple[str, ...]) -> None:
    meter = SimulatedMeter(KEY, variants=variant)
    async with await meter.serve_tcp("mep") as server:
        with pytest.raises(AuthenticationError):
            await read_once(server, "mep", client_for(server, "mep", WRONG_KEY))
        assert await probe_transport(server.url) == "mep"


@pytest.mark.parametrize("length", range(1, 10))
async def test_mep_0b_of_every_length_is_an_authentication_failure(length: int) -> None:
    """``LEN 0B [digest bytes]`` for LEN 1..9, as a meter might send it."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(2)
                await reader.readexactly(int.from_bytes(header, "big"))
                writer.write(length.to_bytes(2, "big") + b"\x0b" + bytes(length - 1))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = MeterClient(f"socket://127.0.0.1:{port}", "mep", KEY, mep_timing=FAST_MEP)
        with pytest.raises(AuthenticationError):
            async with client:
                await client.identify()
    finally:
        server.close()
        await server.wait_closed()


async def test_mep_slow_meter_late_replies_are_accepted() -> None:
    meter = frozen_meter("slow-reply", reply_latency=0.35)  # past FAST_MEP's 0.2 s
    async with await meter.serve_tcp("mep") as server:
        client = client_for(server, "mep")
        async with client:
            await client.identify()
            first = await client.read_snapshot()
            timeouts = client.stats.timeouts
            second = await client.read_snapshot()
    assert_true_values(first, meter)
    assert_true_values(second, meter)
    assert timeouts >= 1
    assert client.stats.timeouts == timeouts  # the client learned the meter's latency


async def test_slow_reply_is_a_mep_variant_only() -> None:
    """slow-reply is documented as MEP-only: the optical port of the same meter answers at once."""
    meter = frozen_meter("slow-reply", reply_latency=0.35)
    async with await meter.serve_tcp("ir") as server:
        client = client_for(server, "ir")
        started = time.monotonic()
        async with client:
            await client.identify()
            snapshot = await client.read_snapshot()
        elapsed = time.monotonic() - started
    assert_true_values(snapshot, meter)
    assert client.stats.timeouts == 0
    # A dozen frames each way: at 0.35 s before every reply the read would take over 4 s.
    assert elapsed < 2.0, elapsed


async def test_mep_full_read_without_a_length_is_answered() -> None:
    """``30 TTTT`` (Table 2.7 without its length) works on real meters; the simulator too."""
    meter = SimulatedMeter(KEY)
    async with await meter.serve_tcp("mep") as server:
        link = SerialLink(server.url, enable_line="none")
        await link.open()
        try:
            session = MepSession(link, KEY, timing=FAST_MEP)
            short = await session.transact(b"\x30\x00\x01")
            long = await session.transact(b"\x30\x00\x01\x02\x00")
        finally:
            await link.close()
    assert short == long == bytes(meter.image.tables[tables.BT01])


@pytest.mark.parametrize("transport", ["mep", "ir"])
@pytest.mark.parametrize("table_id", [tables.BT52, tables.BT27, tables.BT22, tables.ET11, tables.ET13, tables.BT00])
async def test_optional_tables_may_be_refused(transport: str, table_id: int) -> None:
    meter = frozen_meter(faults=Faults(alerts=True))
    meter.image.refused[table_id] = 0x03
    meter.image.set_alert_flags(0b1)
    async with await meter.serve_tcp(transport) as server:
        client = client_for(server, transport)
        snapshot = await read_once(server, transport, client)
        client._session.alert_pending = True  # as after a 00 00 marker
        async with client:
            await client.identify()
            with_alert = await client.read_snapshot()
    assert_true_values(snapshot, meter)
    assert (snapshot.meter_time is None) == (table_id == tables.BT52)
    assert with_alert.alert_flags == (() if table_id in (tables.ET11, tables.ET13) else ("scheduled_read_request",))


@pytest.mark.parametrize("table_id", [tables.BT01, tables.BT23, tables.BT28])
async def test_required_tables_refused_fail_the_poll(table_id: int) -> None:
    meter = frozen_meter()
    meter.image.refused[table_id] = 0x03
    async with await meter.serve_tcp("mep") as server:
        with pytest.raises(ResponseError):
            await read_once(server, "mep")


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_blank_utility_serial_falls_back_to_the_manufacturer_serial(transport: str) -> None:
    meter = frozen_meter("blank-et03")
    async with await meter.serve_tcp(transport) as server, client_for(server, transport) as client:
        identity = await client.identify()
    assert identity.utility_serial == "mfg-0000001234567890"
    assert identity.utility_serial != SERIAL


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_ct_meter_uses_post_ratio_sources_and_the_energy_unit(transport: str) -> None:
    meter = frozen_meter("ct")
    async with await meter.serve_tcp(transport) as server:
        client = client_for(server, transport)
        snapshot = await read_once(server, transport, client)
    assert client.identity is not None
    assert client.identity.energy_unit == 10
    assert_true_values(snapshot, meter)
    raw_l1 = round(round(900 * PHASE_SHARE[0]) / 40)
    assert snapshot.power_import_l1_w == round(900 * PHASE_SHARE[0]) != raw_l1
    assert snapshot.current_l1_a is not None and snapshot.current_l1_a > 1.0  # not the CT secondary


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_big_endian_meter_is_refused_clearly(transport: str) -> None:
    meter = frozen_meter("big-endian-bt00")
    async with await meter.serve_tcp(transport) as server:
        with pytest.raises(UnsupportedMeterError, match="big-endian"):
            await read_once(server, transport)


async def test_summations_are_mapped_by_bt22_source_id() -> None:
    meter = frozen_meter()
    meter.image.tables[tables.BT22][0:2] = bytes([1, 0])  # export first, then import
    meter.image.update()
    async with await meter.serve_tcp("mep") as server:
        snapshot = await read_once(server, "mep")
    assert_true_values(snapshot, meter)


async def test_demand_meter_with_a_981_byte_bt23() -> None:
    meter = frozen_meter("demand")
    assert meter.image.size(tables.BT23) == 981
    async with await meter.serve_tcp("mep") as server:
        client = client_for(server, "mep")
        snapshot = await read_once(server, "mep", client)
    assert client.identity is not None
    assert client.identity.dimensions.present_demands == 8
    assert_true_values(snapshot, meter)
    assert snapshot.voltage_l1_v == pytest.approx(228.315)


async def test_single_phase_meter_has_no_l2_l3_values() -> None:
    meter = frozen_meter("single-phase")
    async with await meter.serve_tcp("ir") as server:
        snapshot = await read_once(server, "ir")
    assert_true_values(snapshot, meter)
    assert snapshot.voltage_l2_v is None
    assert snapshot.current_l3_a is None
    assert snapshot.voltage_l1_v == pytest.approx(228.315)


async def test_alert_flags_at_the_mep2_offset_and_et11_read_once() -> None:
    meter = frozen_meter("mep2", faults=Faults(alerts=True))
    meter.image.set_alert_flags(0b10000)
    async with await meter.serve_tcp("mep") as server, client_for(server, "mep") as client:
        identity = await client.identify()
        flags = []
        for _ in range(3):
            client._session.alert_pending = True  # as after a 00 00 marker
            flags.append((await client.read_snapshot()).alert_flags)
    assert identity.mep_client == 2
    assert flags == [("delta_data_alert",)] * 3
    assert meter.stats.table_reads[tables.ET11] == 1
    assert meter.stats.table_reads[tables.ET13] == 3


def test_variant_names_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown meter variant"):
        SimulatedMeter(KEY, variants="no-such-meter")
    assert FAST_IR.packet_size == 64
    assert MepTiming().response_timeout == 0.5


async def test_energy_unit_is_read_only_from_firmware_3_70() -> None:
    """3.56 packs as 0x3700: ET55 has no energy register unit there, whatever its byte says."""
    meter = frozen_meter()
    meter.image.tables[tables.BT01][14:16] = bytes([0x37, 0x00])  # 3.56.00
    offset = tables.energy_register_unit_offset(4, 3)
    meter.image.tables[tables.ET55][offset] = 10  # another field on this firmware
    async with await meter.serve_tcp("mep") as server:
        client = client_for(server, "mep")
        snapshot = await read_once(server, "mep", client)
    assert client.identity is not None
    assert client.identity.firmware_version == "3.56.00"
    assert client.identity.energy_unit == 1
    assert_true_values(snapshot, meter)


@contextlib.asynccontextmanager
async def flooding_server(pattern: bytes) -> AsyncIterator[str]:
    """A line that answers every request with an endless stream of ``pattern``."""
    floods: set[asyncio.Task[None]] = set()

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        floods.add(task)
        try:
            await reader.read(1)
            while True:
                writer.write(pattern * 8)
                await writer.drain()
                await asyncio.sleep(0.005)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(flood, "127.0.0.1", 0)
    try:
        yield f"socket://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in floods:
            task.cancel()
        await asyncio.gather(*floods, return_exceptions=True)
        await server.wait_closed()


@pytest.mark.parametrize(("transport", "pattern"), [("mep", b"\x00\x00"), ("ir", b"\x55"), ("ir", b"\xee")])
async def test_a_line_full_of_noise_ends_in_no_response_not_a_hang(transport: str, pattern: bytes) -> None:
    """Alert markers or stray bytes without end: every wait has one deadline."""
    async with flooding_server(pattern) as url:
        client = MeterClient(url, transport, KEY, mep_timing=FAST_MEP, ir_timing=FAST_IR)  # type: ignore[arg-type]

        async def identify() -> None:
            async with asyncio.timeout(30), client:  # a hang would end in TimeoutError instead
                await client.identify()

        with pytest.raises(NoResponseError):
            await identify()
