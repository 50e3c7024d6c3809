"""``scripts/reliability [matrix|soak|fuzz|all] [--json]``: the figures of the README's
"Reliability" section. Exits non-zero when a wrong value was written, energy went down,
memory grew by 1 MB or more, a task or descriptor leaked, or the fuzzer found anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from nesmeter.client.client import TRANSPORTS

from . import fuzz, matrix, soak


def _matrix_table(result: dict[str, Any]) -> list[str]:
    rows = ["fault matrix                attempted  ok     failed  absorbed  recovered  wrong  guard-dropped"]
    for transport in matrix.ROWS:
        for name, cell in result.get(transport, {}).items():
            extra = ""
            if "max_seconds_to_recover" in cell:
                extra = f"  recover <= {cell['max_seconds_to_recover']} s"
            if "seconds_to_give_up" in cell:
                extra = f"  gave up after {cell['seconds_to_give_up']} s"
            rows.append(
                f"  {transport:<7} {name:<24} {cell['attempted']:>5}  {cell['succeeded']:>5}  {cell['failed']:>6}  "
                f"{cell['absorbed']:>8}  {cell['recovered']:>9}  {cell['wrong_values'] + cell['decreases']:>5}  "
                f"{cell['guard_dropped']:>5}{extra}"
            )
    rows.append(
        f"  leaked: {result['leaked_fds']} descriptors, {result['leaked_tasks']} tasks; total {result['total']}"
    )
    return rows


def _failures(result: dict[str, Any]) -> list[str]:
    problems = []
    if "matrix" in result:
        total = result["matrix"]["total"]
        if total["wrong_values"] or total["decreases"]:
            problems.append("fault matrix: a wrong energy value was written")
        if result["matrix"]["leaked_fds"] > 0 or result["matrix"]["leaked_tasks"] > 0:
            problems.append("fault matrix: leaked descriptors or tasks")
    for transport, run in {**result.get("soak", {}), **result.get("soak_variants", {})}.items():
        if run["energy_decreases"] or run["wrong_values"]:
            problems.append(f"soak {transport}: a wrong energy value was written")
        if run["memory_growth_kib"] >= 1024:
            problems.append(f"soak {transport}: memory grew by {run['memory_growth_kib']} KiB")
        if run["leaked_fds"] > 0 or run["leaked_tasks"] > 0:
            problems.append(f"soak {transport}: leaked descriptors or tasks")
    if result.get("fuzz", {}).get("findings"):
        problems.append(f"fuzz: {sorted(result['fuzz']['findings'])}")
    return problems


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if args.what in ("matrix", "all"):
        result["matrix"] = await matrix.run(args.polls, tuple(args.rows.split(",")))
    if args.what in ("soak", "all"):
        result["soak"] = {transport: await soak.run(transport, args.soak_polls) for transport in TRANSPORTS}
        result["soak_variants"] = {
            # a slow meter spends 1.6 timeouts per read: a tenth of the polls takes as long
            f"{transport}:{variant}": await soak.run(
                transport, args.variant_soak_polls // (10 if variant == "slow-reply" else 1), variant
            )
            for transport in TRANSPORTS
            for variant in matrix.variants_for(transport)
        }
    if args.what in ("fuzz", "all"):
        result["fuzz"] = fuzz.run(args.fuzz_inputs)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/reliability", description=__doc__)
    parser.add_argument("what", nargs="?", choices=("matrix", "soak", "fuzz", "all"), default="all")
    parser.add_argument("--polls", type=int, default=500, help="polls per fault-matrix cell")
    parser.add_argument(
        "--rows", default=",".join(matrix.ROWS), help=f"fault-matrix rows, comma-separated: {','.join(matrix.ROWS)}"
    )
    parser.add_argument("--soak-polls", type=int, default=100_000, help="polls per transport")
    parser.add_argument("--variant-soak-polls", type=int, default=5_000, help="polls per meter variant and transport")
    parser.add_argument("--fuzz-inputs", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of all figures")
    args = parser.parse_args()
    result = asyncio.run(_run(args))
    if "matrix" in result:
        print("\n".join(_matrix_table(result["matrix"])))
    for transport, run in {**result.get("soak", {}), **result.get("soak_variants", {})}.items():
        print(f"soak {transport}: {json.dumps(run)}")
    if "fuzz" in result:
        print(f"fuzz: {json.dumps(result['fuzz'])}")
    problems = _failures(result)
    for problem in problems:
        print(f"FAILED: {problem}")
    if args.json:
        print(json.dumps(result))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
