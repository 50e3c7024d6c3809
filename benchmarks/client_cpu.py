"""CPU time the client spends per poll (framing, digests, CRCs, decoding and its I/O calls).

The simulated meter runs unpaced in another process, so this process's CPU time is the
client's alone. The MEP request spacing is set to zero: it is a wait, not work.
"""

from __future__ import annotations

import time
from typing import Any

from nesmeter import MeterClient
from nesmeter.client.client import Transport
from nesmeter.mep.session import MepTiming

from .common import KEY, POLL_INTERVAL
from .simhost import SimHost


async def measure(transport: Transport, polls: int) -> dict[str, Any]:
    with SimHost(f"{transport}:1", pace=False) as host:
        client = MeterClient(
            host.urls[transport][0], transport, KEY, enable_line="none", mep_timing=MepTiming(min_spacing=0)
        )
        try:
            await client.open()
            await client.read_snapshot(hold_for=POLL_INTERVAL)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(polls):
                await client.read_snapshot(hold_for=POLL_INTERVAL)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        finally:
            await client.close()
    return {"cpu_ms_per_poll": round(cpu / polls * 1000, 3), "wall_ms_per_poll": round(wall / polls * 1000, 3)}
