"""Writes the seed traces of lib/tests/traces/: ``.venv/bin/python -m lib.tests.traces.make_seed_traces``.

* ``sim-*.json``: the real client reading the project's simulator (one variant each), as
  ``scripts/meter read --trace`` records a user's meter. The simulator is frozen in time.
* ``capture-*.json``: real meter replies published in DabblerDK/MEP-SW-ESP32 issues (see
  lib/tests/vectors/mep_vectors.json, ``response_examples``), made into traces by hand: the
  frames as captured (digests masked), ``fill`` for the tables a session needs that the
  capture lacks, taken from the simulator's defaults, and ``result`` from the real client
  reading the replayed meter (lib/tests/test_traces.py checks the values independently).

A user's trace is added simply by copying it here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from nesmeter import MeterClient
from nesmeter.client.recording import reading, record_reading
from nesmeter.link import trace
from nesmeter.sim.sim_image import BT01_IMAGE, BT21_IMAGE, MeterImage
from nesmeter.sim.sim_replay import replayed_meter
from nesmeter.sim.simulator import SimulatedMeter
from nesmeter.tables import tables

from ..conftest import KEY, load_vectors

HERE = Path(__file__).resolve().parent
SIMULATED: dict[str, tuple[str, str, bool]] = {  # file -> (transport, variants, RC4)
    "sim-mep": ("mep", "", False),
    "sim-mep-rc4": ("mep", "", True),
    "sim-mep-ct": ("mep", "ct", False),
    "sim-ir": ("ir", "", False),
    "sim-ir-fixed-toggle": ("ir", "fixed-toggle", False),
    "sim-ir-bare-negotiate": ("ir", "bare-negotiate", False),
    "sim-ir-fw2": ("ir", "fw2", False),
    "sim-ir-echo": ("ir", "echo", False),
}
MASKED_DIGEST = "ff" * 8


async def _record(transport: str, variants: str, encrypt: bool) -> dict[str, Any]:
    meter = SimulatedMeter(KEY, image=MeterImage(speed=0), variants=variants)
    async with await meter.serve_tcp(transport) as server:
        client = MeterClient(server.url, transport, KEY, encrypt=encrypt)  # type: ignore[arg-type]
        what = f"variant {variants}" if variants else "no variant"
        return await record_reading(
            client, notes=[f"recorded from the project's simulator ({what}{', RC4' if encrypt else ''})"]
        )


def _masked(frame_hex: str) -> str:
    return frame_hex[: -len(MASKED_DIGEST)] + MASKED_DIGEST


def _capture_doc(frames: list[dict[str, Any]], fill: dict[int, bytes], notes: list[str]) -> dict[str, Any]:
    return {
        "format": trace.FORMAT,
        "version": trace.VERSION,
        "recorded": None,
        "library": None,
        "transport": "mep",
        "port": "serial",
        "link": {"encrypt": False},
        "masked": trace.MASKED,
        "frames": frames,
        "frames_dropped": 0,
        "fill": {str(table_id): data.hex() for table_id, data in fill.items()},
        "notes": notes,
    }


def _captures() -> dict[str, dict[str, Any]]:
    bt28, bt23, sequence = load_vectors("mep_vectors.json")["response_examples"]
    frozen = MeterImage(speed=0)
    issue2 = _capture_doc(
        [
            {"t": None, "dir": "tx", "hex": _masked(bt23["request_hex"]), "masked": "digest"},
            {"t": None, "dir": "rx", "hex": bt23["response_prefix_hex"], "truncated": True},
            {"t": None, "dir": "tx", "hex": _masked(bt28["request_hex"]), "masked": "digest"},
            {"t": None, "dir": "rx", "hex": _masked(bt28["response_hex"]), "masked": "digest"},
        ],
        {tables.BT01: BT01_IMAGE, tables.BT21: BT21_IMAGE},
        [
            "A real three-phase meter's full reads of BT23 and BT28 over MEP, from the public dump in GitHub "
            "issue DabblerDK/MEP-SW-ESP32#2 (indices 8 and 16 of that dump; one session, sequence 8e2c000a "
            "and 8e2c0012). Times were not published. Only the first 32 data bytes of the BT23 reply were "
            "(truncated).",
            "fill: BT01 and BT21 are the simulator's defaults (a 3.70 meter with 11 summations, 4 tiers, "
            "55 present values, no demand-reset byte, as the dump shows); the capture has neither, and a "
            "session needs both. Nothing else is filled: BT00, BT22, BT27, BT52, ET03 and ET55 are absent, "
            "so the client falls back to the documented defaults (and to BT01's serial).",
        ],
    )
    issue10 = _capture_doc(
        [
            {"t": None, "dir": "tx", "hex": _masked(sequence["request_hex"]), "masked": "digest"},
            {"t": None, "dir": "rx", "hex": _masked(sequence["response_hex"]), "masked": "digest"},
        ],
        {table_id: bytes(frozen.tables[table_id]) for table_id in (tables.BT01, tables.BT21, tables.BT23, tables.BT28)},
        [
            "A real meter's 0C (invalid sequence) reply over MEP, from GitHub issue DabblerDK/MEP-SW-ESP32#10: "
            "it refused the replayed sequence number ceace9e1 and named ceace9e2. The replayed meter starts "
            "from that sequence number, so the client must adopt the meter's number.",
            "fill: BT01, BT21, BT23 and BT28 are the simulator's defaults (frozen); the capture has no table data.",
        ],
    )
    return {"capture-dabblerdk-issue2-bt23-bt28": issue2, "capture-dabblerdk-issue10-0c": issue10}


async def _capture_result(doc: dict[str, Any]) -> dict[str, Any]:
    meter = replayed_meter(doc, KEY)
    async with await meter.serve_tcp("mep") as server:
        client = MeterClient(server.url, "mep", KEY)
        async with client:
            identity = await client.identify()
            snapshot = await client.read_snapshot()
    return reading(identity, snapshot)


async def main() -> None:
    for name, (transport, variants, encrypt) in SIMULATED.items():
        doc = await _record(transport, variants, encrypt)
        assert "error" not in doc, doc.get("error")
        trace.save(HERE / f"{name}.json", doc)
    for name, doc in _captures().items():
        doc["result"] = await _capture_result(doc)
        trace.save(HERE / f"{name}.json", doc)


if __name__ == "__main__":
    asyncio.run(main())
