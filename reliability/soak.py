"""The accelerated soak: many polls back to back against an unpaced simulated meter.

Checks what a long-running installation needs: the energy written never decreases,
memory does not grow, and no task or file descriptor is left behind.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from typing import Any

from benchmarks.ha_scale import rss_kib
from nesmeter.client.client import Transport
from nesmeter.sim.simulator import Faults

from .harness import Poller, meter_with, open_fds, other_tasks, serve

WARMUP = 2000  # polls before the memory baseline: caches, the frame ring, counters


async def run(transport: Transport, polls: int, variant: str | None = None) -> dict[str, Any]:
    fds, tasks = open_fds(), other_tasks()
    meter = meter_with(Faults(), variant)
    server = await serve(meter, transport, "tcp")
    poller = Poller(meter, server.url, transport)
    started = time.perf_counter()
    try:
        for index in range(polls):
            if index == min(WARMUP, polls // 2):
                gc.collect()
                baseline = rss_kib(os.getpid())
            await poller.poll()
    finally:
        await poller.close()
        await server.close()
    elapsed = time.perf_counter() - started
    gc.collect()
    await asyncio.sleep(0.1)
    return {
        "polls": polls,
        "succeeded": poller.tally.succeeded,
        "errors": poller.tally.errors,
        "client_retries": poller.client.stats.retries,
        "client_errors": dict(poller.client.stats.errors),
        "seconds": round(elapsed, 1),
        "polls_per_second": round(polls / elapsed),
        "memory_growth_kib": rss_kib(os.getpid()) - baseline,
        "energy_decreases": poller.tally.decreases,
        "wrong_values": poller.tally.wrong_values,
        "energy_rise_wh": (poller.written or 0.0) - (poller.first_written or 0.0),
        "leaked_fds": open_fds() - fds,
        "leaked_tasks": other_tasks() - tasks,
    }
