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

from nesmeter.client.client import Transport

from . import client_cpu, ha_backfill, ha_scale, load_profile, rare_reads, termineter_cycle, wire
from .common import DEFAULT_FIELDS, LIVE_SCHEDULE

TARGETS: dict[str, Any] = {
    "cycle_ratio": 1.05,  # full and default polls, both transports and links
    "vs_termineter": 0.3,
    "default_poll_bytes": {"mep": 120, "ir": 140},
    "ha_cpu_ms_per_update": 5.0,
    "ha_backfill_ratio": 1.3,  # first import in Home Assistant against the port's bound
}
LINKS = ("tcp", "pty")


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
        "load_average": [round(load, 2) for load in os.getloadavg()],
    }


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".strip()[:300]


async def _transport_figures(transport: Transport, cycles: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for link in LINKS:
        figures[link] = await wire.measure(transport, link, cycles)
    figures["cycle_ratio"] = max(figures[link]["cycle_ratio"] for link in LINKS)
    default = {link: await wire.measure(transport, link, cycles, wanted=DEFAULT_FIELDS) for link in LINKS}
    live = await wire.measure(transport, "tcp", cycles, wanted=DEFAULT_FIELDS, schedule=LIVE_SCHEDULE)
    figures["default"] = {**default, "live_only": live}
    figures["default_poll_bytes"] = default["tcp"]["bytes_per_poll"]
    figures["default_poll_s"] = default["tcp"]["median_s"]
    figures["default_cycle_ratio"] = max(default[link]["cycle_ratio"] for link in LINKS)
    figures["default_live_poll_bytes"] = live["bytes_per_poll"]
    figures["default_live_poll_s"] = live["median_s"]
    figures["client"] = await client_cpu.measure(transport, polls=cycles * 10)
    if transport == "mep":
        tls = {link: await wire.measure(transport, link, cycles, tls=True) for link in LINKS}
        figures["tls"] = {
            **tls,
            "cycle_ratio": max(run["cycle_ratio"] for run in tls.values()),
            "vs_plain": round(tls["tcp"]["median_s"] / figures["tcp"]["median_s"], 3),
        }
    return figures


def _termineter(result: dict[str, Any], cycles: int) -> None:
    """termineter's figures, or why there are none: a failing peer loses no other figure."""
    ir = result.setdefault("ir", {})
    try:
        termineter = termineter_cycle.measure(cycles)
    except Exception as err:
        ir.update({"termineter": None, "vs_termineter": None, "vs_termineter_reads_only": None})
        ir["termineter_error"] = _error(err)
        return
    ir["termineter"] = termineter
    ours = ir.get("tcp", {}).get("median_s")
    ir["vs_termineter"] = round(ours / termineter["median_s"], 3) if ours else None
    ir["vs_termineter_reads_only"] = round(ours / termineter["reads_only_median_s"], 3) if ours else None


def _failed_targets(result: dict[str, Any]) -> list[str]:
    """Our own targets that a measured figure misses (a peer's failure is not one of them)."""
    failed = []
    for transport in ("mep", "ir"):
        figures = result.get(transport, {})
        for key in ("cycle_ratio", "default_cycle_ratio"):
            if key in figures and figures[key] > TARGETS["cycle_ratio"]:
                failed.append(f"{transport} {key} {figures[key]} > {TARGETS['cycle_ratio']}")
        limit = TARGETS["default_poll_bytes"][transport]
        if figures.get("default_poll_bytes", 0) > limit:
            failed.append(f"{transport} default_poll_bytes {figures['default_poll_bytes']} > {limit}")
        if "error" in figures:
            failed.append(f"{transport}: {figures['error']}")
    vs = result.get("ir", {}).get("vs_termineter")
    if vs is not None and vs > TARGETS["vs_termineter"]:
        failed.append(f"vs_termineter {vs} > {TARGETS['vs_termineter']}")
    ha = result.get("ha", {})
    if "error" in ha:
        failed.append(f"ha: {ha['error']}")
    for count, cpu in ha.get("cpu_ms_per_update", {}).items():
        if cpu > TARGETS["ha_cpu_ms_per_update"]:
            failed.append(f"ha cpu_ms_per_update[{count}] {cpu} > {TARGETS['ha_cpu_ms_per_update']}")
    backfill = result.get("ha_backfill", {})
    if "error" in backfill:
        failed.append(f"ha_backfill: {backfill['error']}")
    for run in backfill.get("runs", []):
        name = f"ha_backfill {run['transport']} {run['days']} days"
        if run["ratio"] > TARGETS["ha_backfill_ratio"]:
            failed.append(f"{name} ratio {run['ratio']} > {TARGETS['ha_backfill_ratio']}")
        if run["poll_delay_max_s"] > run["one_read_s"]:
            failed.append(f"{name} poll delay {run['poll_delay_max_s']} s > one read {run['one_read_s']} s")
    return failed


def _table(result: dict[str, Any]) -> str:
    rows = ["poll (9600 baud)               median  p10-p90 s      ratio  p10-p90      bytes  client CPU/poll"]
    for transport in ("mep", "ir"):
        figures = result.get(transport, {})
        if "error" in figures:
            rows.append(f"  {transport:<3} failed: {figures['error']}")
            continue
        for title, runs in (("all fields", figures), ("default", figures["default"])):
            for link in (*LINKS, "live_only"):
                if link not in runs:
                    continue
                run = runs[link]
                label = (
                    f"{title}, energy per {LIVE_SCHEDULE.registers_interval:.0f} s" if link == "live_only" else title
                )
                cpu = f"{figures['client']['cpu_ms_per_poll']:.2f} ms" if runs is figures else ""
                rows.append(
                    f"  {transport:<3} {link if link != 'live_only' else 'tcp':<3} {label:<22} {run['median_s']:.3f} s "
                    f"{run['p10_s']:.3f}-{run['p90_s']:.3f}  {run['cycle_ratio']:.3f}  "
                    f"{run['ratio_p10']:.3f}-{run['ratio_p90']:.3f}  {run['bytes_per_poll']:>4}  {cpu}"
                )
    tls = result.get("mep", {}).get("tls")
    if tls:
        for link in LINKS:
            run = tls[link]
            rows.append(
                f"  mep {link:<3} TLS, all fields         {run['median_s']:.3f} s "
                f"{run['p10_s']:.3f}-{run['p90_s']:.3f}  {run['cycle_ratio']:.3f}  "
                f"{run['ratio_p10']:.3f}-{run['ratio_p90']:.3f}  {run['bytes_per_poll']:>4}  "
                f"(handshake {run['handshake_s']:.3f} s, {run['handshake_bytes']} bytes)"
            )
        rows.append(f"MEP TLS poll vs plain (tcp) {tls['vs_plain']:.3f}")
    ir = result.get("ir", {})
    if ir.get("termineter"):
        rows.append(
            f"termineter, session per poll {ir['termineter']['median_s']:.3f} s -> vs_termineter "
            f"{ir['vs_termineter']} (target <= {TARGETS['vs_termineter']})"
        )
        rows.append(
            f"termineter, reads in an open session {ir['termineter']['reads_only_median_s']:.3f} s -> "
            f"{ir['vs_termineter_reads_only']}"
        )
    elif "termineter_error" in ir:
        rows.append(f"termineter failed, vs_termineter not measured: {ir['termineter_error']}")
    history = result.get("load_profile", {})
    if "error" in history:
        rows.append(f"load profile failed: {history['error']}")
    for run in history.get("first_import", []):
        rows.append(
            f"load profile first import {run['transport']:<3} {run['days']:>2} days  {run['seconds']:.2f} s  "
            f"bound {run['bound_s']:.2f} s  ratio {run['ratio']:.3f}  {run['reads']} reads  {run['bytes']} bytes"
            + (f"  at 1 read/s {run['paced_s']:.0f} s" if run["paced_s"] is not None else "")
        )
    for run in history.get("live_poll", []):
        rows.append(
            f"live poll during the import {run['transport']:<3} {run['live_poll_during_import_s']:.3f} s "
            f"(alone {run['live_poll_s']:.3f} s), then one step {run['import_step_s']:.3f} s, "
            f"at most {run['max_extra_reads_per_poll']} extra read per poll"
        )
    rare = result.get("rare_reads", {})
    if "error" in rare:
        rows.append(f"rare reads failed: {rare['error']}")
    for run in rare.get("runs", []):
        parts = "  ".join(
            f"{name} {part['seconds']:.3f} s/{part['bytes']} B/{part['requests']}"
            for name, part in run["parts"].items()
        )
        rows.append(
            f"rare reads {run['transport']:<3} {run['variants']}: setup {run['setup']['seconds']:.2f} s "
            f"{run['setup']['bytes']} B; live poll {run['live_poll']['seconds']:.3f} s; {parts}"
        )
    if "added_reads_per_s" in rare:
        rows.append(f"rare reads add {rare['added_reads_per_s']} reads/s at their intervals, at most 1 per live poll")
    backfill = result.get("ha_backfill", {})
    if "error" in backfill:
        rows.append(f"Home Assistant first import failed: {backfill['error']}")
    for run in backfill.get("runs", []):
        rows.append(
            f"Home Assistant first import {run['transport']:<3} {run['days']:>2} days  {run['seconds']:.1f} s  "
            f"bound {run['bound_s']:.1f} s  ratio {run['ratio']:.3f}  {run['hours']} hours  "
            f"{run['history_reads']}/{run['requests']} reads  live poll waited at most {run['poll_delay_max_s']:.3f} s "
            f"(one read {run['one_read_s']:.3f} s)"
        )
    if "error" in result.get("ha", {}):
        rows.append(f"Home Assistant failed: {result['ha']['error']}")
    elif "ha" in result:
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
    cycles = 30 if args.quick else 60
    result: dict[str, Any] = {}
    try:
        for transport in ("mep", "ir"):
            try:
                result[transport] = asyncio.run(_transport_figures(transport, cycles))
            except Exception as err:
                result[transport] = {"error": _error(err)}
        _termineter(result, max(5, cycles // 3))
        try:
            result["load_profile"] = asyncio.run(load_profile.measure((7,) if args.quick else (7, 30)))
        except Exception as err:
            result["load_profile"] = {"error": _error(err)}
        try:
            result["rare_reads"] = asyncio.run(rare_reads.measure())
        except Exception as err:
            result["rare_reads"] = {"error": _error(err)}
        if not args.no_ha:
            counts = (1, 4, 16)
            try:
                ha = ha_scale.measure(counts, window=10 if args.quick else 30)
                result["ha"] = {
                    "counts": list(counts),
                    **ha,
                    "cpu_ms_per_update": {str(count): ha[str(count)]["cpu_ms_per_update"] for count in counts},
                }
            except Exception as err:
                result["ha"] = {"error": _error(err)}
            try:
                runs = ha_backfill.QUICK if args.quick else ha_backfill.FULL
                result["ha_backfill"] = asyncio.run(ha_backfill.measure(runs))
            except Exception as err:
                result["ha_backfill"] = {"error": _error(err)}
    finally:
        result["machine"] = _machine()
        result["targets"] = TARGETS
        failed = _failed_targets(result)
        result["failed"] = failed
        result["met"] = not failed
        try:
            print(_table(result))
        except Exception as err:
            print(f"(table not printed: {_error(err)})")
        for failure in failed:
            print(f"target missed: {failure}")
        if args.json:
            print(json.dumps(result), flush=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
