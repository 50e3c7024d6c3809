"""``scripts/bench [--json] [--quick]``: every figure of BENCHMARKS.md in one run.

Prints a table; with ``--json`` the last line is one JSON object with all figures and a
description of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
from typing import Any
import warnings

from . import client_cpu, ha_scale, termineter_cycle, wire

TARGETS = {"cycle_ratio": 1.10, "vs_termineter": 0.5}


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


async def _wire_figures(cycles: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for transport in ("mep", "ir"):
        links = {link: await wire.measure(transport, link, cycles) for link in ("tcp", "pty")}
        figures[transport] = {
            "cycle_ratio": max(result["cycle_ratio"] for result in links.values()),
            **links,
            "client": await client_cpu.measure(transport, polls=cycles * 20),
        }
    tls = {link: await wire.measure("mep", link, cycles, tls=True) for link in ("tcp", "pty")}
    figures["mep"]["tls"] = {
        **tls,
        "cycle_ratio": max(result["cycle_ratio"] for result in tls.values()),
        "vs_plain": round(tls["tcp"]["median_s"] / figures["mep"]["tcp"]["median_s"], 3),
    }
    termineter = await termineter_cycle.measure(max(5, cycles // 3))
    ours = figures["ir"]["tcp"]["median_s"]
    figures["ir"]["termineter"] = termineter
    figures["ir"]["vs_termineter"] = round(ours / termineter["median_s"], 3)
    figures["ir"]["vs_termineter_reads_only"] = round(ours / termineter["reads_only_median_s"], 3)
    return figures


def _table(result: dict[str, Any]) -> str:
    rows = ["poll cycle (9600 baud)     median   bound    ratio   bytes  client CPU/poll"]
    for transport in ("mep", "ir"):
        for link in ("tcp", "pty"):
            run = result[transport][link]
            rows.append(
                f"  {transport:<3} over {link:<3}            {run['median_s']:.3f} s  {run['lower_bound_s']:.3f} s  "
                f"{run['cycle_ratio']:.3f}   {run['bytes_per_poll']:>4}   "
                f"{result[transport]['client']['cpu_ms_per_poll']:.2f} ms"
            )
    tls = result["mep"]["tls"]
    for link in ("tcp", "pty"):
        run = tls[link]
        rows.append(
            f"  mep TLS over {link:<3}        {run['median_s']:.3f} s  {run['lower_bound_s']:.3f} s  "
            f"{run['cycle_ratio']:.3f}   {run['bytes_per_poll']:>4}   (handshake {run['handshake_s']:.3f} s, "
            f"{run['handshake_bytes']} bytes)"
        )
    rows.append(f"MEP TLS poll vs plain (tcp) {tls['vs_plain']:.3f}")
    ir = result["ir"]
    rows.append(
        f"termineter, session per poll {ir['termineter']['median_s']:.3f} s -> vs_termineter "
        f"{ir['vs_termineter']:.3f} (target <= {TARGETS['vs_termineter']})"
    )
    rows.append(
        f"termineter, reads in an open session {ir['termineter']['reads_only_median_s']:.3f} s -> "
        f"{ir['vs_termineter_reads_only']:.3f}"
    )
    if "ha" in result:
        ha = result["ha"]
        rows.append(f"Home Assistant, MEP meters at 2 s (baseline RSS {ha['baseline_rss_mb']} MB)")
        rows.append("  meters  updates  CPU/update  latency median  max      RSS added/meter")
        for count in ha["counts"]:
            run = ha[str(count)]
            rows.append(
                f"  {count:>6}  {run['updates']:>7}  {run['cpu_ms_per_update']:>7.2f} ms  "
                f"{run['latency_median_s']:>11.3f} s  {run['latency_max_s']:.3f} s  {run['rss_mb_per_meter']:>6.2f} MB"
            )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of all figures")
    parser.add_argument("--quick", action="store_true", help="fewer cycles and a shorter HA window")
    parser.add_argument("--no-ha", action="store_true", help="skip the Home Assistant runs")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # termineter's dependencies
    cycles = 10 if args.quick else 30
    result: dict[str, Any] = asyncio.run(_wire_figures(cycles))
    if not args.no_ha:
        counts = (1, 4, 16)
        result["ha"] = {"counts": list(counts), **ha_scale.measure(counts, window=10 if args.quick else 30)}
    result["machine"] = _machine()
    result["targets"] = TARGETS
    result["met"] = (
        max(result["mep"]["cycle_ratio"], result["ir"]["cycle_ratio"]) <= TARGETS["cycle_ratio"]
        and result["ir"]["vs_termineter"] <= TARGETS["vs_termineter"]
    )
    print(_table(result))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
