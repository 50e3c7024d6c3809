"""Poll-cycle latency against the 9600-baud lower bound, per transport and link.

The simulated meter runs in a process of its own (``simhost``), so its scheduling does
not compete with the client's event loop. It paces every byte at 9600 baud (10 bits
each), pauses 25 ms after each 117-byte MEP segment, serves at most one MEP request per
100 ms (MEP guide p.21) and waits ``TURNAROUND`` before each reply. The lower bound of a
poll is what those rules alone cost for the frames the client actually exchanged, so a
ratio of 1.00 means the client adds nothing: no sleeps, no extra reads, no retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
import statistics
import time
from typing import Any

from nesmeter import MeterClient
from nesmeter.client.client import Transport
from nesmeter.client.read_plan import ReadSchedule
from nesmeter.link.transport import BYTE_TIME
from nesmeter.sim.simulator import MEP_MIN_SPACING, MEP_SEGMENT, MEP_SEGMENT_GAP

from .common import DEFAULT_FIELDS, IDLE_BETWEEN_POLLS, KEY, KEY_TEXT, POLL_INTERVAL, TURNAROUND
from .simhost import SimHost

__all__ = ["DEFAULT_FIELDS", "IDLE_BETWEEN_POLLS", "KEY", "KEY_TEXT", "POLL_INTERVAL", "TURNAROUND", "measure"]


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


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


async def measure(
    transport: Transport,
    link: str,
    cycles: int,
    *,
    wanted: Sequence[str] | None = None,
    schedule: ReadSchedule | None = None,
    tls: bool = False,
) -> dict[str, Any]:
    """Median poll time and median ratio to its lower bound over ``cycles`` polls, with spread.

    ``wanted``: the fields asked for (``None``: all); ``schedule``: how often BT23 is read
    (default: every poll); ``tls``: a meter that requires MEP TLS mode, held to the same
    bound for its own frames (its handshake, once per connection, is reported apart).
    """
    group = transport + ("-tls" if tls else "") + ("-pty" if link == "pty" else "")
    durations: list[float] = []
    ratios: list[float] = []
    poll_bytes: list[int] = []
    with SimHost(f"{group}:1", pace=True) as host:
        client = MeterClient(host.urls[group][0], transport, KEY, tls=tls, enable_line="none")
        client.set_wanted(wanted)
        if schedule is not None:
            client.set_schedule(schedule)
        try:
            opened = time.perf_counter()
            await client.open()
            handshake = {
                "handshake_s": round(time.perf_counter() - opened, 4),
                "handshake_bytes": client.bytes_exchanged,
            }
            await client.read_snapshot(hold_for=POLL_INTERVAL)  # identify, CT twins, first clock read
            for _ in range(cycles):
                await asyncio.sleep(IDLE_BETWEEN_POLLS)
                client.frames.clear()
                before = client.bytes_exchanged
                started = time.perf_counter()
                await client.read_snapshot(hold_for=POLL_INTERVAL)
                duration = time.perf_counter() - started
                frames = [Frame(entry["direction"], len(entry["hex"]) // 2) for entry in client.frames.as_list()]
                bound = mep_lower_bound(frames) if transport == "mep" else ir_lower_bound(frames)
                durations.append(duration)
                ratios.append(duration / bound)
                poll_bytes.append(client.bytes_exchanged - before)
        finally:
            await client.close()
    return {
        "median_s": round(statistics.median(durations), 4),
        "p10_s": round(_quantile(durations, 0.1), 4),
        "p90_s": round(_quantile(durations, 0.9), 4),
        "cycle_ratio": round(statistics.median(ratios), 3),
        "ratio_p10": round(_quantile(ratios, 0.1), 3),
        "ratio_p90": round(_quantile(ratios, 0.9), 3),
        "bytes_per_poll": int(statistics.median(poll_bytes)),
        "mean_bytes_per_poll": round(statistics.fmean(poll_bytes), 1),
        "retries": client.stats.retries,
        "cycles": cycles,
        **(handshake if tls else {}),
    }
