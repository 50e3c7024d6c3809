"""First import of the load profile (7 and 30 days) against the 9600-baud bound for the same bytes.

The simulator paces every byte (``benchmarks/wire.py``); the bound counts only what the
wire rules cost for the frames the client exchanged, so ``ratio`` is the client's own
overhead. ``paced_s`` adds the guide's MEP average of one table read per second (G p.51).
Run: ``.venv/bin/python -m benchmarks.load_profile``.
"""

from __future__ import annotations

import asyncio
from collections import deque
import json
import time
from typing import Any

from custom_components.nes_meter.meter import MeterClient
from custom_components.nes_meter.meter.client import Transport
from custom_components.nes_meter.meter.sim_image import MeterImage
from custom_components.nes_meter.meter.simulator import SimulatedMeter

from .wire import KEY, TURNAROUND, Frame, ir_lower_bound, mep_lower_bound


async def first_import(transport: Transport, days: int) -> dict[str, Any]:
    meter = SimulatedMeter(KEY, image=MeterImage(history_days=days), pace=True, turnaround=TURNAROUND)
    meter.image.load_profile.ensure()  # build the history before the clock starts
    server = await meter.serve_tcp(transport)
    client = MeterClient(server.url, transport, KEY, enable_line="none")
    client.frames._frames = deque(maxlen=1_000_000)  # the session holds this log: keep every frame
    try:
        await client.open()
        await client.identify()
        client.frames.clear()
        before = client.bytes_exchanged
        started = time.perf_counter()
        profile = await client.read_load_profile()
        elapsed = time.perf_counter() - started
        frames = [Frame(entry["direction"], len(entry["hex"]) // 2) for entry in client.frames.as_list()]
    finally:
        await client.close()
        await server.close()
    bound = mep_lower_bound(frames) if transport == "mep" else ir_lower_bound(frames)
    return {
        "transport": transport,
        "days": days,
        "intervals": len(profile.intervals),
        "reads": profile.reads,
        "bytes": client.bytes_exchanged - before,
        "seconds": round(elapsed, 2),
        "bound_s": round(bound, 2),
        "ratio": round(elapsed / bound, 3),
        "paced_s": round(max(elapsed, profile.reads * 1.0), 1) if transport == "mep" else None,
    }


async def main() -> None:
    for transport in ("mep", "ir"):
        for days in (7, 30):
            print(json.dumps(await first_import(transport, days)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
