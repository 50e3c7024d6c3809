"""Simulated meters in a process of their own, so that CPU measured elsewhere is the client's.

Run as ``python -m benchmarks.simhost mep:4 ir:1 ir-pty:1 [--pace]``; prints one JSON line
with the meters' URLs (by group name) and serves until its standard input closes. A group
``TRANSPORT-pty`` serves on pseudo-terminals instead of loopback TCP; ``mep-tls`` (and
``mep-tls-pty``) meters require MEP TLS mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from typing import Any

from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import SimServer, SimulatedMeter
from nesmeter.sim.tls_server import TlsSimulatedMeter

from .common import KEY, TURNAROUND


async def _serve(groups: list[str], pace: bool) -> None:
    servers: list[SimServer] = []
    urls: dict[str, list[str]] = {}
    serial = 5700000000
    for group in groups:
        name, _, count = group.partition(":")
        transport, *kinds = name.split("-")
        meter_type = TlsSimulatedMeter if "tls" in kinds else SimulatedMeter
        for _ in range(int(count or 1)):
            serial += 1
            meter = meter_type(
                KEY, image=MeterImage(utility_serial=str(serial)), pace=pace, turnaround=TURNAROUND if pace else 0
            )
            servers.append(await (meter.serve_pty(transport) if "pty" in kinds else meter.serve_tcp(transport)))
            urls.setdefault(name, []).append(servers[-1].url)
    print(json.dumps(urls), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for server in servers:
        await server.close()


class SimHost:
    """The simhost process; ``urls`` maps a group name (``mep``, ``ir-pty``) to its meters' URLs."""

    def __init__(self, *groups: str, pace: bool) -> None:
        command = [sys.executable, "-m", "benchmarks.simhost", *groups] + (["--pace"] if pace else [])
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            raise RuntimeError(f"the simulated meters did not start (exit status {self._process.returncode})")
        self.urls: dict[str, list[str]] = json.loads(line)

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> SimHost:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("groups", nargs="+", help="transport:count, e.g. mep:4")
    parser.add_argument("--pace", action="store_true")
    args = parser.parse_args()
    asyncio.run(_serve(args.groups, args.pace))
