"""The fault matrix: every fault the simulated meter can inject, at 1 % and 10 % of replies,
on both transports, plus the scenarios that are all or nothing (wrong key, silence, the
adapter vanishing and coming back). MEP TLS mode gets its own rows ("mep_tls"): the line
faults against a meter that requires TLS, where every damaged record costs the session.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
import os
from pathlib import Path
import tempfile
import time
from typing import Any

from nesmeter import MeterKey
from nesmeter.client.client import Transport
from nesmeter.sim.sim_variants import REFUSED, VARIANTS, applies
from nesmeter.sim.simulator import Faults

from .harness import TIMEOUT, Poller, meter_with, open_fds, other_tasks, serve

RATES = (0.01, 0.10)


def rate_faults(transport: Transport) -> dict[str, Faults]:
    """Each fault alone; delays both inside and past the reply timeout."""
    timeout = TIMEOUT[transport]
    faults = {
        "drop": Faults(drop=1),
        "corrupt": Faults(corrupt=1),
        "garbage": Faults(garbage=1),
        "split": Faults(split=1),
        "delay_within_timeout": Faults(delay=1, delay_seconds=timeout * 0.5),
        "delay_past_timeout": Faults(delay=1, delay_seconds=timeout * 1.5),
        "disconnect": Faults(disconnect=1),
    }
    if transport == "mep":
        faults["sequence_storm"] = Faults(sequence_storm=1)
        faults["alerts_and_drop"] = Faults(drop=1, alerts=True)
        faults["alert_inside_reply"] = Faults(alert_inside=1)
    else:
        faults["repeated_reply"] = Faults(repeat=1)
    return faults


TLS_FAULTS = ("drop", "corrupt", "garbage", "split")
ROWS = ("mep", "mep_tls", "ir")

RATED = ("drop", "corrupt", "garbage", "split", "delay", "sequence_storm", "disconnect", "alert_inside", "repeat")
LINE_FAULTS = Faults(drop=0.1, corrupt=0.1, garbage=0.1, split=0.1, seed=13)


def variants_for(transport: Transport) -> list[str]:
    """Every meter variant the client must read (not the ones it must refuse)."""
    return [name for name in VARIANTS if name not in REFUSED and applies(name, transport)]


def _at_rate(faults: Faults, rate: float, seed: int) -> Faults:
    """The same faults, each happening to ``rate`` of the replies."""
    scaled = replace(faults, seed=seed)
    for name in RATED:
        if getattr(faults, name):
            setattr(scaled, name, rate)
    return scaled


async def run_cell(
    transport: Transport, link: str, faults: Faults, polls: int, variant: str | None = None, *, tls: bool = False
) -> dict[str, Any]:
    meter = meter_with(faults, variant, tls=tls)
    server = await serve(meter, transport, link)
    poller = Poller(meter, server.url, transport, tls=tls)
    started = time.perf_counter()
    try:
        for _ in range(polls):
            await poller.poll()
    finally:
        await poller.close()
        await server.close()
    return {
        **poller.tally.as_dict(),
        "injected": dict(meter.stats.faults),
        "seconds": round(time.perf_counter() - started, 1),
    }


async def run_wrong_key(transport: Transport, variant: str | None = None) -> dict[str, Any]:
    meter = meter_with(Faults(), variant)
    server = await serve(meter, transport, "tcp")
    poller = Poller(meter, server.url, transport, key=MeterKey.parse("0000000000000000000X"))
    try:
        for _ in range(5):
            await poller.poll()
    finally:
        await poller.close()
        await server.close()
    return poller.tally.as_dict()


async def run_silence(transport: Transport) -> dict[str, Any]:
    meter = meter_with(Faults(silent=True))
    server = await serve(meter, transport, "tcp")
    poller = Poller(meter, server.url, transport)
    started = time.perf_counter()
    try:
        await poller.poll()
    finally:
        await poller.close()
        await server.close()
    return {**poller.tally.as_dict(), "seconds_to_give_up": round(time.perf_counter() - started, 2)}


async def run_vanish(transport: Transport, link: str, outages: int = 5) -> dict[str, Any]:
    """Pull the adapter (close the pty or stop the TCP server) and bring it back, repeatedly.

    A pty comes back under a new /dev/pts name, so the client opens a fixed symlink the
    way a USB adapter keeps its /dev/serial/by-id path.
    """
    meter = meter_with(Faults())
    folder = Path(tempfile.mkdtemp(prefix="nes-vanish-"))
    stable = folder / "ttyNES"
    server = await serve(meter, transport, link)
    port = 0 if link == "pty" else int(server.url.rsplit(":", 1)[1])
    if link == "pty":
        stable.symlink_to(server.url)
    poller = Poller(meter, str(stable) if link == "pty" else server.url, transport)
    recoveries: list[float] = []
    try:
        for _ in range(outages):
            for _ in range(3):
                await poller.poll()
            await server.close()
            if link == "pty":
                stable.unlink()
            for _ in range(3):
                await poller.poll()  # fails: the port is gone
            server = await serve(meter, transport, link, port=port)
            if link == "pty":
                stable.symlink_to(server.url)
            back = time.perf_counter()
            while not await poller.poll():  # noqa: ASYNC110 - polling is what is measured
                await asyncio.sleep(0.01)
            recoveries.append(time.perf_counter() - back)
    finally:
        await poller.close()
        await server.close()
        if stable.is_symlink():
            stable.unlink()
        os.rmdir(folder)
    return {**poller.tally.as_dict(), "outages": outages, "max_seconds_to_recover": round(max(recoveries), 3)}


async def run_tls(polls: int) -> dict[str, Any]:
    """Drops, corruption, garbage and split replies over MEP TLS mode, then all four on a pty."""
    faults = rate_faults("mep")
    cells: dict[str, Any] = {}
    for name in TLS_FAULTS:
        for rate in RATES:
            cells[f"{name}@{rate:.0%}"] = await run_cell(
                "mep", "tcp", _at_rate(faults[name], rate, seed=7), polls, tls=True
            )
    cells["mixed@10%_pty"] = await run_cell(
        "mep", "pty", Faults(drop=0.1, corrupt=0.1, garbage=0.1, split=0.1, seed=11), polls, tls=True
    )
    return cells


async def run(polls: int, rows: tuple[str, ...] = ROWS) -> dict[str, Any]:
    fds, tasks = open_fds(), other_tasks()
    results: dict[str, Any] = {}
    transport: Transport
    for transport in ("mep", "ir"):
        if transport not in rows:
            continue
        cells: dict[str, Any] = {}
        for name, faults in rate_faults(transport).items():
            for rate in RATES:
                cells[f"{name}@{rate:.0%}"] = await run_cell(transport, "tcp", _at_rate(faults, rate, seed=7), polls)
        cells["mixed@10%_pty"] = await run_cell(
            transport,
            "pty",
            Faults(drop=0.1, corrupt=0.1, garbage=0.1, split=0.1, seed=11, alerts=transport == "mep"),
            polls,
        )
        cells["wrong_key"] = await run_wrong_key(transport)
        if transport == "mep":
            cells["wrong_key_short_0b"] = await run_wrong_key(transport, "short-0b")
        for variant in variants_for(transport):
            cells[f"{variant}+mixed@10%"] = await run_cell(
                transport, "tcp", replace(LINE_FAULTS), polls, variant=variant
            )
        cells["silence"] = await run_silence(transport)
        cells["vanish_tcp"] = await run_vanish(transport, "tcp")
        cells["vanish_pty"] = await run_vanish(transport, "pty")
        results[transport] = cells
    if "mep_tls" in rows:
        results["mep_tls"] = await run_tls(polls)
    await asyncio.sleep(0.1)  # let closed transports finish
    results["leaked_fds"] = open_fds() - fds
    results["leaked_tasks"] = other_tasks() - tasks
    done = [cell for row in rows for cell in results[row].values()]
    results["total"] = {
        "attempted": sum(cell["attempted"] for cell in done),
        "succeeded": sum(cell["succeeded"] for cell in done),
        "wrong_values": sum(cell["wrong_values"] for cell in done),
        "decreases": sum(cell["decreases"] for cell in done),
    }
    return results
