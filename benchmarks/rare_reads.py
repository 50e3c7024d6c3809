"""What each rare read costs on the wire, next to a live poll, and the read rate they add.

A paced simulated meter with every rarely read part (tiers in use, self-reads, a
disconnect, ET09; the ``demand`` variant for demand records) is read part by part the way
the integration's trackers read it: the setup reads once, then each part's single read.
Tier blocks that do not fit one read (the ``demand`` variant's) are a pass of
``tier_groups`` reads: ``tiers`` is the first group's, ``tiers_group_N`` the others'.
``added_reads_per_s`` is what the parts add at their intervals (the integration's
constants), to hold against the guide's average of one read per second on MEP.
Run: ``.venv/bin/python -m benchmarks.rare_reads``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
import json
import statistics
import time
from typing import Any

from custom_components.nes_meter.billing_tracker import (
    DEMANDS_INTERVAL,
    READ_EXCHANGES,
    SELF_READ_INTERVAL,
    TARIFF_INTERVAL,
    TIERS_INTERVAL,
)
from custom_components.nes_meter.events_coordinator import HEADER_INTERVAL
from custom_components.nes_meter.quality_tracker import POWER_QUALITY_INTERVAL, RELAY_INTERVAL
from nesmeter import MeterClient
from nesmeter.client.billing_reader import BillingReader
from nesmeter.client.client import TRANSPORTS, Transport
from nesmeter.client.power_quality_reader import PowerQualityReader
from nesmeter.client.relay_reader import RelayReader
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import SimulatedMeter

from .common import DEFAULT_FIELDS, IDLE_BETWEEN_POLLS
from .wire import KEY, TURNAROUND

REPEATS = 5
INTERVALS = {
    "status": HEADER_INTERVAL,
    "events_header": HEADER_INTERVAL,
    "tariff": TARIFF_INTERVAL,
    "tiers": TIERS_INTERVAL,
    "demands": DEMANDS_INTERVAL,
    "self_read_header": SELF_READ_INTERVAL,
    "power_quality": POWER_QUALITY_INTERVAL,
    "relay": RELAY_INTERVAL,
}


async def _timed(
    client: MeterClient, meter: SimulatedMeter, read: Callable[[], Awaitable[object]]
) -> dict[str, float | int]:
    seconds, sizes, requests = [], [], []
    for _ in range(REPEATS):
        await asyncio.sleep(IDLE_BETWEEN_POLLS)
        bytes_before, reads_before = client.bytes_exchanged, sum(meter.stats.table_reads.values())
        started = time.perf_counter()
        await read()
        seconds.append(time.perf_counter() - started)
        sizes.append(client.bytes_exchanged - bytes_before)
        requests.append(sum(meter.stats.table_reads.values()) - reads_before)
    return {"seconds": round(statistics.median(seconds), 4), "bytes": max(sizes), "requests": max(requests)}


async def parts(transport: Transport, variants: str) -> dict[str, Any]:
    """Setup and each part's read on one simulated meter."""
    meter = SimulatedMeter(KEY, image=MeterImage(), variants=variants, pace=True, turnaround=TURNAROUND)
    server = await meter.serve_tcp(transport)
    client = MeterClient(server.url, transport, KEY, enable_line="none")
    client.set_wanted(DEFAULT_FIELDS)
    result: dict[str, Any] = {"transport": transport, "variants": variants}
    try:
        await client.open()
        await client.identify()
        billing = BillingReader(client, exchanges=READ_EXCHANGES[transport])
        quality, relay = PowerQualityReader(client), RelayReader(client)
        before, started = client.bytes_exchanged, time.perf_counter()
        await billing.setup()
        await quality.setup()
        await relay.setup()
        result["setup"] = {"seconds": round(time.perf_counter() - started, 3), "bytes": client.bytes_exchanged - before}
        result["live_poll"] = await _timed(client, meter, lambda: client.read_snapshot(hold_for=2))
        reads: dict[str, Callable[[], Awaitable[object]]] = {
            "tariff": billing.read_tariff,
            "tiers": billing.read_tiers,
            "self_read_header": billing.read_self_read_header,
            "self_read_entry": billing.read_newest_self_read,
            "power_quality": quality.read,
            "relay": relay.read,
        }
        if billing.has_demands:
            reads = {"demands": billing.read_demands, "self_read_header": billing.read_self_read_header}
            # 196-byte tier blocks: more than one read covers them (a pass, one read per live poll).
            reads["tiers"] = billing.read_tiers
        groups = len(billing.tier_spans())
        for group in range(1, groups):
            reads[f"tiers_group_{group + 1}"] = partial(billing.read_tiers, group)
        result["tier_groups"] = groups
        result["parts"] = {name: await _timed(client, meter, read) for name, read in reads.items()}
    finally:
        await client.close()
        await server.close()
    return result


async def measure() -> dict[str, Any]:
    """Every rare-read figure of scripts/bench."""
    runs = [
        await parts(transport, variants)
        for transport in TRANSPORTS
        for variants in ("tou,self-reads,disconnect", "demand")
    ]
    return {
        "runs": runs,
        "added_reads_per_s": round(sum(1 / interval for interval in INTERVALS.values()), 4),
        "extra_reads_per_poll": 1,
    }


async def main() -> None:
    print(json.dumps(await measure()), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
