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
import statistics
import time
from typing import Any

from nesmeter import MeterClient
from nesmeter.client.client import TRANSPORTS, Transport
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import SimulatedMeter

from .common import DEFAULT_FIELDS
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


async def live_poll_during_import(transport: Transport, polls: int = 20) -> dict[str, Any]:
    """The live poll while a first import runs, as the integration interleaves them.

    Each cycle is one live poll (the default entities' values) and then one step of the
    import: the live poll itself is not delayed, the cycle grows by one read at most.
    """
    meter = SimulatedMeter(KEY, image=MeterImage(history_days=7), pace=True, turnaround=TURNAROUND)
    meter.image.load_profile.ensure()
    server = await meter.serve_tcp(transport)
    client = MeterClient(server.url, transport, KEY, enable_line="none")
    client.set_wanted(DEFAULT_FIELDS)
    alone: list[float] = []
    during: list[float] = []
    steps: list[float] = []
    reads_per_step: list[int] = []
    try:
        await client.open()
        await client.read_snapshot(hold_for=2)
        for _ in range(polls):
            started = time.perf_counter()
            await client.read_snapshot(hold_for=2)
            alone.append(time.perf_counter() - started)
        reader = client.load_profile_reader(None)
        for _ in range(polls):
            started = time.perf_counter()
            await client.read_snapshot(hold_for=2)
            during.append(time.perf_counter() - started)
            if reader.done:
                continue
            before = sum(meter.stats.table_reads.values())
            started = time.perf_counter()
            await reader.step()
            steps.append(time.perf_counter() - started)
            reads_per_step.append(sum(meter.stats.table_reads.values()) - before)
    finally:
        await client.close()
        await server.close()
    return {
        "transport": transport,
        "live_poll_s": round(statistics.median(alone), 4),
        "live_poll_during_import_s": round(statistics.median(during), 4),
        "import_step_s": round(statistics.median(steps), 4),
        "max_extra_reads_per_poll": max(reads_per_step),
    }


async def measure(days: tuple[int, ...] = (7, 30)) -> dict[str, Any]:
    """Every load-profile figure of scripts/bench."""
    return {
        "first_import": [await first_import(transport, count) for transport in TRANSPORTS for count in days],
        "live_poll": [await live_poll_during_import(transport) for transport in TRANSPORTS],
    }


async def main() -> None:
    print(json.dumps(await measure()), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
