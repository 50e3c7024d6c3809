"""Poll-cycle latency against the 9600-baud lower bound, per transport and link.

The simulated meter paces every byte at 9600 baud (10 bits each), pauses 25 ms after
each 117-byte MEP segment, serves at most one MEP request per 100 ms (MEP guide p.21)
and waits ``TURNAROUND`` before each reply. The lower bound of a poll is what those
rules alone cost for the frames the client actually exchanged, so a ratio of 1.00
means the client adds nothing: no sleeps, no extra reads, no retries. MEP TLS mode
(``tls=True``) is held to the same bound for its own frames; its handshake, once per
connection, is reported apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
import statistics
import time
from typing import Any

from custom_components.nes_meter.meter import MeterClient, MeterKey
from custom_components.nes_meter.meter.client import Transport
from custom_components.nes_meter.meter.simulator import (
    MEP_MIN_SPACING,
    MEP_SEGMENT,
    MEP_SEGMENT_GAP,
    SimulatedMeter,
)
from custom_components.nes_meter.meter.tls_server import TlsSimulatedMeter
from custom_components.nes_meter.meter.transport import BYTE_TIME

KEY_TEXT = "a7941d85bce8a8fa2ab7"
KEY = MeterKey.parse(KEY_TEXT)
TURNAROUND = 0.020  # the meter's reply delay; C12.18 adapters wait 20 ms (IR.md)
POLL_INTERVAL = 2.0  # what the coordinator passes as hold_for at the fastest setting
IDLE_BETWEEN_POLLS = 0.15  # keeps MEP's 100 ms throttle from reaching across polls


@dataclass(frozen=True, slots=True)
class Frame:
    direction: str  # "tx" from the client, "rx" from the meter
    size: int


def mep_lower_bound(frames: Sequence[Frame]) -> float:
    """Request + turnaround + reply (+ segment gaps) per exchange, 100 ms apart at least."""
    exchanges = [
        (tx.size + rx.size) * BYTE_TIME + TURNAROUND + (rx.size - 1) // MEP_SEGMENT * MEP_SEGMENT_GAP
        for tx, rx in zip(frames[::2], frames[1::2], strict=True)
    ]
    return sum(max(duration, MEP_MIN_SPACING) for duration in exchanges[:-1]) + exchanges[-1]


def ir_lower_bound(frames: Sequence[Frame]) -> float:
    """Every packet plus its one-byte ACK, and the meter's turnaround before each reply packet."""
    wire_bytes = sum(frame.size + 1 for frame in frames)
    replies = sum(frame.direction == "rx" for frame in frames)
    return wire_bytes * BYTE_TIME + replies * TURNAROUND


async def measure(transport: Transport, link: str, cycles: int, *, tls: bool = False) -> dict[str, Any]:
    """Median poll time, median lower bound and their ratio over ``cycles`` polls."""
    meter_type = TlsSimulatedMeter if tls else SimulatedMeter
    meter = meter_type(KEY, pace=True, turnaround=TURNAROUND)
    server = await (meter.serve_pty(transport) if link == "pty" else meter.serve_tcp(transport))
    client = MeterClient(server.url, transport, KEY, tls=tls, enable_line="none")
    durations: list[float] = []
    bounds: list[float] = []
    poll_bytes: list[int] = []
    try:
        opened = time.perf_counter()
        await client.open()
        open_s = time.perf_counter() - opened
        open_bytes = client.bytes_exchanged
        await client.read_snapshot(hold_for=POLL_INTERVAL)  # identify and first clock read
        for _ in range(cycles):
            await asyncio.sleep(IDLE_BETWEEN_POLLS)
            client.frames.clear()
            before = client.bytes_exchanged
            started = time.perf_counter()
            await client.read_snapshot(hold_for=POLL_INTERVAL)
            durations.append(time.perf_counter() - started)
            frames = [Frame(entry["direction"], len(entry["hex"]) // 2) for entry in client.frames.as_list()]
            bounds.append(mep_lower_bound(frames) if transport == "mep" else ir_lower_bound(frames))
            poll_bytes.append(client.bytes_exchanged - before)
    finally:
        await client.close()
        await server.close()
    median, bound = statistics.median(durations), statistics.median(bounds)
    handshake = {"handshake_s": round(open_s, 4), "handshake_bytes": open_bytes} if tls else {}
    return {
        "median_s": round(median, 4),
        "p95_s": round(sorted(durations)[int(0.95 * (len(durations) - 1))], 4),
        "lower_bound_s": round(bound, 4),
        "cycle_ratio": round(median / bound, 3),
        "bytes_per_poll": int(statistics.median(poll_bytes)),
        "retries": client.stats.retries,
        "cycles": cycles,
        **handshake,
    }
