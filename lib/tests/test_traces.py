"""Traces: a recorded session becomes a meter to test against, and never shows the key.

Every trace in lib/tests/traces/ (users' meters, real captures, seeds from the simulator) is
served by the replay simulator and read by the real client over loopback TCP; the values
must be the ones recorded in the trace. To add a user's trace, copy it there.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
import struct
import sys
from typing import Any

import pytest

from nesmeter import MeterClient, MeterKey
from nesmeter.c1218 import framing as c1218
from nesmeter.cli import cli
from nesmeter.client.recording import reading, record_reading
from nesmeter.errors import RefusedError, ShortReadError
from nesmeter.link import trace
from nesmeter.link.transport import BYTE_TIME
from nesmeter.mep import framing as mep
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.sim_replay import Replay, ReplayedMeter, analyse, replayed_meter
from nesmeter.sim.simulator import SimulatedMeter, _IrState
from nesmeter.stats import FrameLog
from nesmeter.tables import tables

from .conftest import KEY
from .test_security import WRONG_KEY, secret_forms

TRACES = Path(__file__).resolve().parent / "traces"
TRACE_FILES = sorted(TRACES.glob("*.json"))


def client_for_trace(url: str, doc: dict[str, Any], key: MeterKey = KEY) -> MeterClient:
    return MeterClient(url, doc["transport"], key, encrypt=doc["link"].get("encrypt", False))


async def read_replay(doc: dict[str, Any]) -> dict[str, Any]:
    """Serve the trace's meter and trace one reading of it with the real client."""
    meter = replayed_meter(doc, KEY)
    async with await meter.serve_tcp(doc["transport"]) as server:
        return await record_reading(client_for_trace(server.url, doc))


def recorded_part(result: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """The fields a trace recorded: one made by an older library lacks fields added since."""
    return {section: {name: result[section].get(name) for name in fields} for section, fields in recorded.items()}


def test_there_are_traces() -> None:
    names = {path.stem for path in TRACE_FILES}
    assert {"capture-dabblerdk-issue2-bt23-bt28", "capture-dabblerdk-issue10-0c", "sim-mep", "sim-ir"} <= names


@pytest.mark.parametrize("path", TRACE_FILES, ids=[path.stem for path in TRACE_FILES])
async def test_a_trace_replays_to_its_recorded_values(path: Path) -> None:
    doc = trace.load(path)
    replayed = await read_replay(doc)
    assert "error" not in replayed, replayed.get("error")
    assert recorded_part(replayed["result"], doc["result"]) == doc["result"]


async def test_a_real_bt28_and_bt23_capture_decode_as_published() -> None:
    """DabblerDK/MEP-SW-ESP32#2: the values the reference firmware printed for this meter."""
    replayed = await read_replay(trace.load(TRACES / "capture-dabblerdk-issue2-bt23-bt28.json"))
    values = replayed["result"]["snapshot"]
    assert values["energy_import_wh"] == 65845342
    assert values["energy_export_wh"] == 179
    assert values["power_import_w"] == 431
    assert values["power_export_w"] == 0
    assert [values[f"voltage_l{n}_v"] for n in (1, 2, 3)] == pytest.approx([228.315, 226.537, 228.358])
    # BT27 is not in the capture: the documented order puts the post-CT currents (197-199:
    # 1980/771/851 mA) next to the raw ones (12-14: 1982/782/852 mA); the client prefers them.
    assert [values[f"current_l{n}_a"] for n in (1, 2, 3)] == pytest.approx([1.980, 0.771, 0.851])
    assert values["frequency_hz"] == pytest.approx(50.0)
    assert [values[f"power_factor_l{n}"] for n in (1, 2, 3)] == pytest.approx([0.709, 0.334, 0.268])
    assert [values[f"power_import_l{n}_w"] for n in (1, 2, 3)] == [321, 59, 52]
    assert values["meter_time"] is None  # BT52 was not captured: the replayed meter refuses it


async def test_a_real_0c_capture_makes_the_client_adopt_the_meters_number() -> None:
    replayed = await read_replay(trace.load(TRACES / "capture-dabblerdk-issue10-0c.json"))
    assert replayed["stats"]["sequence_resyncs"] == 1
    requests = [bytes.fromhex(frame["hex"]) for frame in replayed["frames"] if frame["dir"] == "tx"]
    sequences = [struct.unpack(">I", frame[-mep.DIGEST_SIZE - 4 : -mep.DIGEST_SIZE])[0] for frame in requests]
    assert sequences[1] == 0xCEACE9E2  # the number the real meter named


def test_the_replay_keeps_what_the_capture_lacks_absent() -> None:
    replay = analyse(trace.load(TRACES / "capture-dabblerdk-issue2-bt23-bt28.json"))
    assert set(replay.tables) == {tables.BT01, tables.BT21, tables.BT23, tables.BT28}
    assert replay.filled == [tables.BT01, tables.BT21]
    assert len(replay.tables[tables.BT28]) == 220  # a full read: the table's size
    assert len(replay.tables[tables.BT23]) == 32  # the published prefix only


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_a_partly_read_table_is_served_only_as_far_as_the_trace_holds_it(transport: str) -> None:
    """A real meter never answers with zeros it does not hold: past the recorded bytes the replay
    answers short, outside them it refuses, and a full read of a table known only in part is refused."""
    replay = Replay(transport)
    for table_id, data in MeterImage(speed=0).tables.items():
        if table_id != tables.BT23:
            replay.put(table_id, 0, bytes(data), full=True)
    head = bytes(range(1, 17))
    replay.put(tables.BT23, 0, head)  # the trace read BT23's first 16 bytes only
    meter = ReplayedMeter(replay, KEY)
    async with await meter.serve_tcp(transport) as server:
        client = MeterClient(server.url, transport, KEY)
        async with client:
            assert await client.read_table(tables.BT23, 0, 16) == head
            assert await client.read_table(tables.BT23, 4, 8) == head[4:12]
            with pytest.raises(ShortReadError):
                await client.read_table(tables.BT23, 8, 16)  # 8 recorded bytes, not 8 and 8 zeros
            with pytest.raises(RefusedError):
                await client.read_table(tables.BT23, 16, 8)  # nothing recorded there
    # A full read (no client of ours sends one; other clients do): the trace does not know the size.
    full = struct.pack(">BH", 0x30, tables.BT23)
    assert (meter._mep_service(full) if transport == "mep" else meter._ir_read(_IrState(), full)) == b"\x04"
    assert meter.unrecorded_reads == 3


@pytest.mark.parametrize(
    ("name", "variants"),
    [
        ("sim-ir", set()),
        ("sim-ir-fixed-toggle", {"fixed-toggle"}),
        ("sim-ir-echo", {"echo"}),
        ("sim-mep", set()),
    ],
)
def test_link_behaviour_is_inferred(name: str, variants: set[str]) -> None:
    assert analyse(trace.load(TRACES / f"{name}.json")).variants == variants


def test_negotiate_and_refusals_are_replayed() -> None:
    bare = analyse(trace.load(TRACES / "sim-ir-bare-negotiate.json"))
    assert bare.negotiate_reply == b"\x00"
    fw2 = analyse(trace.load(TRACES / "sim-ir-fw2.json"))
    # inappropriate action: BT21 as firmware 2.x answers it, BT22/BT27 as the simulator's fw2 meter lacks them
    assert fw2.refused == {tables.BT21: 0x05, tables.BT22: 0x05, tables.BT27: 0x05}
    assert tables.BT20 in fw2.tables


@pytest.mark.parametrize("variant", ["mirror-toggle", "leftover-session"])
async def test_ir_link_variants_survive_a_round_trip(variant: str) -> None:
    meter = SimulatedMeter(KEY, image=MeterImage(speed=0), variants=variant)
    async with await meter.serve_tcp("ir") as server:
        doc = await record_reading(MeterClient(server.url, "ir", KEY))
    replay = analyse(doc)
    if variant == "leftover-session":
        assert "leftover-session" in replay.variants
    replayed = await read_replay(doc)
    assert replayed["result"] == doc["result"]


async def test_response_latency_is_inferred_and_replayed() -> None:
    meter = SimulatedMeter(KEY, image=MeterImage(speed=0), reply_latency=0.08)
    async with await meter.serve_tcp("mep") as server:
        doc = await record_reading(MeterClient(server.url, "mep", KEY))
    replay = analyse(doc)
    assert replay.latency == pytest.approx(0.08, abs=0.03)
    replayed = await read_replay(doc)
    assert analyse(replayed).latency == pytest.approx(0.08, abs=0.03)


async def test_a_failed_reading_still_gives_a_trace() -> None:
    meter = SimulatedMeter(KEY)
    async with await meter.serve_tcp("ir") as server:
        doc = await record_reading(MeterClient(server.url, "ir", WRONG_KEY))
    assert doc["error"].startswith("AuthenticationError")
    assert "result" not in doc
    assert any(frame.get("masked") == "password" for frame in doc["frames"])


async def test_cli_records_and_replays(tmp_path: Path) -> None:
    """``read --trace`` writes a trace; ``simulate --replay`` serves it to ``read`` again."""
    path = tmp_path / "meter-trace.json"
    meter = SimulatedMeter(KEY, image=MeterImage(speed=0))
    async with await meter.serve_tcp("mep") as server:
        args = ["read", "--transport", "mep", "--port", server.url, "--key", KEY.forms()[0], "--trace", str(path)]
        assert await asyncio.to_thread(cli.main, args) == 0
    doc = trace.load(path)
    assert doc["result"]["identity"]["utility_serial"] == "5712345678"
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "nesmeter.cli", "simulate", "--replay", str(path)),
        *("--key", KEY.forms()[0], "--listen", "tcp://127.0.0.1:0"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        summary = await asyncio.wait_for(process.stdout.readline(), 30)
        assert summary.startswith(b"replaying ")
        url = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().split(" at ")[1].strip()
        async with client_for_trace(url, doc) as client:
            identity = await client.identify()
            snapshot = await client.read_snapshot()
        assert reading(identity, snapshot) == doc["result"]
    finally:
        process.terminate()
        await process.wait()


# ---- the key stays out of traces ----------------------------------------------------------


def wire_secrets(client: MeterClient, *, encrypt: bool) -> set[str]:
    """What the key made on the MEP line, from the client's own frame log: digests, ciphertext."""
    found = set()
    for frame in client.frames.as_list():
        data = bytes.fromhex(frame["hex"])
        if len(data) > 2 + mep.DIGEST_SIZE and data[2] != mep.MepResult.AUTHENTICATION_FAILURE:  # 0B: in clear
            found.add(data[-mep.DIGEST_SIZE :].hex())
            if encrypt:
                found.add(data[2 : -mep.DIGEST_SIZE].hex())
    return found


@pytest.mark.parametrize(
    ("transport", "encrypt", "key"),
    [
        ("mep", False, KEY),
        ("mep", True, KEY),
        ("mep", False, WRONG_KEY),
        ("mep", True, WRONG_KEY),
        ("ir", False, KEY),
        ("ir", False, WRONG_KEY),
    ],
)
async def test_a_trace_holds_no_form_of_the_key(transport: str, encrypt: bool, key: MeterKey) -> None:
    """Searched as test_security searches everything a user can show, plus the wire's digests and ciphertext."""
    meter = SimulatedMeter(KEY)
    async with await meter.serve_tcp(transport) as server:
        client = MeterClient(server.url, transport, key, encrypt=encrypt)  # type: ignore[arg-type]
        client.frames = client._session.frames = FrameLog(size=10_000)  # every wire frame, to search for
        doc = await record_reading(client)
    text = trace.dumps(doc)
    assert ("error" in doc) == (key is WRONG_KEY)
    for form in secret_forms(KEY) | secret_forms(WRONG_KEY):
        assert form not in text
    frames = [bytes.fromhex(frame["hex"]) for frame in doc["frames"]]
    if transport == "mep":
        secrets = wire_secrets(client, encrypt=encrypt)
        assert len(secrets) >= 2
        for secret in secrets:
            assert secret not in text
        assert all(frame[-mep.DIGEST_SIZE :] == b"\xff" * mep.DIGEST_SIZE for frame in frames if len(frame) > 10)
        if encrypt and key is KEY:
            assert all(entry.get("plaintext") for entry in doc["frames"])
            assert all(frame[2] == mep.MepCode.PARTIAL_READ for frame in frames[::2])  # requests in clear
    else:
        logged = [bytes.fromhex(frame["hex"]) for frame in client.frames.as_list() if frame["direction"] == "tx"]
        security = [frame for frame in frames + logged if frame[c1218.HEADER_SIZE] == c1218.Service.SECURITY]
        assert security
        for frame in security:
            assert set(frame[c1218.HEADER_SIZE + 1 :]) == {0xFF}  # the password and the CRC over it (diagnostics too)


def test_latency_on_a_9600_baud_line_excludes_the_wire_time() -> None:
    doc = trace.load(TRACES / "sim-mep.json")
    clock, sent = 0.0, 0
    for frame in doc["frames"]:  # as over a real line: each reply 30 ms after both frames' wire time
        size = len(frame["hex"]) // 2
        if frame["dir"] == "tx":
            clock, sent = clock + 1.0, size
        else:
            clock += (sent + size) * BYTE_TIME + 0.03
        frame["t"] = clock
    assert analyse(doc).latency == pytest.approx(0.03, abs=0.002)


async def test_a_tls_session_traces_its_reads_as_plaintext_and_replays() -> None:
    """MEP TLS mode: the records are under keys derived from the meter key, so the trace
    keeps the reads they carry (digests masked) and no handshake; it replays as a meter."""
    from nesmeter.sim.tls_server import TlsSimulatedMeter

    meter = TlsSimulatedMeter(KEY, image=MeterImage(speed=0))
    async with await meter.serve_tcp("mep") as server:
        doc = await record_reading(MeterClient(server.url, "mep", KEY, tls=True))
    assert "error" not in doc, doc.get("error")
    assert doc["link"]["tls"] is True
    assert all(frame.get("tls") and frame["masked"] == "digest" for frame in doc["frames"])
    plain = {key: value for key, value in doc.items() if key != "link"} | {"link": {"encrypt": False}}
    replayed = await read_replay(plain)
    assert replayed["result"] == doc["result"]
