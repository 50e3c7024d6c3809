"""The first import of the meter history in a real Home Assistant, against the port's bound.

A real ``hass`` process on a fresh configuration (recorder on SQLite) gets one config entry
for a paced simulated meter (7 or 30 days of 15-minute load profile, MEP or optical, the
default 10 s poll interval). The simulated meter runs in this process, so the bench sees
every request and byte on its line; the bench reads the recorder's database to see rows.

* ``seconds``: from the meter's first request (the entry's setup opening the port) to the
  moment the newest hour the meter holds an import reading for is in the statistics table.
* ``bound_s``: the least time the port's rule allows for everything on the line in that time
  (setup, live polls, rare reads and the import). MEP: one table read per second on average
  (G p.51), so the requests served, in seconds. Optical port: the wire time at 9600 baud
  (every byte both ways and the meter's turnaround before each reply packet).
  ``ratio`` = seconds / bound_s; ``history_reads`` of the ``requests`` were the import's.
* ``poll_delay_max_s``: the longest a live poll waited for the port while the import ran
  (the coordinator's own figure, from its debug log), against ``one_read_s``, the longest
  import read; ``poll_waited_reads_max`` history reads completed while a poll waited.

The test requirements have no ``hass_frontend``, and Home Assistant stops an instance whose
frontend did not load and starts another in recovery mode: the first instance's tasks were
cancelled (the import's worker mid-read) and its recorder stopped, so its rows never reached
the database while its polls went on. The configuration gets a stub ``frontend``
integration instead, so the one instance measured is an ordinary one.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
import json
import os
from pathlib import Path
import re
import signal
import sqlite3
import sys
import tempfile
import time
from typing import Any
import uuid

from nesmeter.link.transport import BYTE_TIME
from nesmeter.sim import simulator
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import SimulatedMeter

from .common import HA_CORE_CONFIGURATION, KEY, KEY_TEXT, TURNAROUND

REPO = Path(__file__).resolve().parents[1]
SERIAL = "5700000042"
INTERVAL = 10  # the default update interval
CONFIGURATION = (
    HA_CORE_CONFIGURATION
    + """\
recorder:
  commit_interval: 1
logger:
  default: warning
  logs:
    custom_components.nes_meter.coordinator: debug
    custom_components.nes_meter.history: debug
"""
)
WAITED = re.compile(r"live poll waited ([0-9.]+) s for the port \((\d+) meter history reads?\)")
PASS = re.compile(r"meter history pass done: (\d+) reads, the longest ([0-9.]+) s")
IMPORTED = re.compile(r"meter history imported: (\d+) hours .* in ([0-9.]+) s \((\d+) load-profile reads\)")
FRONTEND_STUB: dict[str, str] = {  # stands in for the frontend the test venv lacks
    "manifest.json": json.dumps({"domain": "frontend", "name": "Frontend (bench stub)", "version": "0.0.0"}),
    "__init__.py": (
        '"""Bench stub: Home Assistant counts an instance without a frontend as broken."""\n\n\n'
        "async def async_setup(hass, config):\n    return True\n"
    ),
}
FETCH = re.compile(r"Finished fetching nes_meter .+? data in ([0-9.]+) seconds \(success: True\)")


class LineCount:
    """Every byte and reply packet on the simulated meter's lines (the optical port's wire bound)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.replies = 0
        self._saved: tuple[Any, Any] | None = None

    def __enter__(self) -> LineCount:
        wire = simulator._Wire
        read, send = wire.read, wire.send
        self._saved = (read, send)
        count = self

        async def counted_read(self: Any, size: int, timeout: float | None = None) -> bytes:
            data: bytes = await read(self, size, timeout)
            count.bytes += len(data)
            return data

        async def counted_send(self: Any, data: bytes, **kwargs: Any) -> None:
            count.bytes += len(data)
            count.replies += len(data) > 1  # a reply packet, not an ACK
            await send(self, data, **kwargs)

        wire.read, wire.send = counted_read, counted_send  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._saved is not None
        simulator._Wire.read, simulator._Wire.send = self._saved  # type: ignore[method-assign]

    def wire_s(self) -> float:
        return self.bytes * BYTE_TIME + self.replies * TURNAROUND


def _configuration(config: Path, url: str, transport: str) -> None:
    """A fresh configuration directory: this repository's integration, the frontend stub, one entry."""
    (config / "configuration.yaml").write_text(CONFIGURATION)
    components = config / "custom_components"
    components.mkdir()
    (components / "nes_meter").symlink_to(REPO / "custom_components" / "nes_meter")
    (components / "frontend").mkdir()
    for name, text in FRONTEND_STUB.items():
        (components / "frontend" / name).write_text(text)
    (config / ".storage").mkdir()
    (config / ".storage" / "core.config_entries").write_text(json.dumps(_entries(url, transport)))


def newest_hour_end(meter: SimulatedMeter) -> datetime:
    """The end of the newest hour the meter holds an import reading for (what the last row covers).

    An hour whose end reading is missing (an outage, an opted-out interval) gets no row.
    """
    return max(
        end
        for end, values, _flags in meter.image.load_profile.expected()
        if end.minute == 0 and "energy_import_wh" in values
    )


def _entries(url: str, transport: str) -> dict[str, Any]:
    entry = {
        "entry_id": uuid.uuid4().hex,
        "version": 1,
        "minor_version": 1,
        "domain": "nes_meter",
        "title": f"bench {transport}",
        "source": "user",
        "unique_id": SERIAL,
        "data": {"port": url, "transport": transport, "key": KEY_TEXT, "key_format": "auto"},
        "options": {"update_interval": INTERVAL},
    }
    return {"version": 1, "minor_version": 1, "key": "core.config_entries", "data": {"entries": [entry]}}


def _newest_start(database: Path, statistic_id: str) -> float | None:
    if not database.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)) as connection:
            row = connection.execute(
                "SELECT max(s.start_ts) FROM statistics s JOIN statistics_meta m ON s.metadata_id = m.id "
                "WHERE m.statistic_id = ?",
                (statistic_id,),
            ).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


async def run(transport: str, days: int, timeout: float = 600.0) -> dict[str, Any]:
    """One first import in a fresh Home Assistant; the figures of the module docstring."""
    meter = SimulatedMeter(
        KEY, image=MeterImage(utility_serial=SERIAL, history_days=days), pace=True, turnaround=TURNAROUND
    )
    meter.image.load_profile.ensure()
    last_start = (newest_hour_end(meter) - timedelta(hours=1)).timestamp()
    statistic_id = f"nes_meter:{SERIAL}_energy_import"
    with LineCount() as line, tempfile.TemporaryDirectory(prefix="nes-backfill-") as folder:
        server = await meter.serve_tcp(transport)
        config = Path(folder)
        _configuration(config, server.url, transport)
        log = config / "hass.log"
        with log.open("w") as output:
            process = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("hass")),
                "-c",
                folder,
                "--skip-pip",
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "TZ": "UTC"},
            )
        try:
            deadline = time.monotonic() + timeout
            while meter.stats.requests == 0:  # setup opens the port
                if process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Home Assistant did not set the meter up:\n{log.read_text()[-2000:]}")
                await asyncio.sleep(0.005)
            started = time.monotonic()
            database = config / "home-assistant_v2.db"
            while True:
                newest = await asyncio.to_thread(_newest_start, database, statistic_id)
                if newest is not None and newest >= last_start:
                    break
                if process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the import did not finish:\n{log.read_text()[-3000:]}")
                await asyncio.sleep(0.05)
            seconds = time.monotonic() - started
            requests, wire_s = meter.stats.requests, line.wire_s()
            while not IMPORTED.search(text := log.read_text(errors="replace")):  # the pass's last lines
                if process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the import did not say it was done:\n{text[-3000:]}")
                await asyncio.sleep(0.1)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            await server.close()
            if keep := os.environ.get("NES_BENCH_KEEP_LOG"):
                Path(keep).write_text(log.read_text(errors="replace"))
    history_reads = sum(meter.stats.table_reads[table] for table in (0x3D, 0x3E, 0x3F, 0x40, 0x815))
    bound = requests * 1.0 if transport == "mep" else wire_s
    waits = [(float(s), int(n)) for s, n in WAITED.findall(text)]
    passes = [(int(n), float(s)) for n, s in PASS.findall(text)]
    imported = IMPORTED.search(text)
    latencies = [float(s) for s in FETCH.findall(text)]
    return {
        "transport": transport,
        "days": days,
        "interval_s": INTERVAL,
        "seconds": round(seconds, 2),
        "bound_s": round(bound, 2),
        "ratio": round(seconds / bound, 3),
        "requests": requests,
        "history_reads": history_reads,
        "wire_s": round(wire_s, 2),
        "hours": int(imported.group(1)) if imported else None,
        "logged_s": float(imported.group(2)) if imported else None,
        "live_polls": len(latencies),
        "poll_latency_max_s": round(max(latencies), 3) if latencies else None,
        "poll_delay_max_s": round(max((s for s, _ in waits), default=0.0), 3),
        "poll_waited_reads_max": max((n for _, n in waits), default=0),
        "one_read_s": round(max((s for _, s in passes), default=0.0), 3),
    }


FULL: tuple[tuple[str, int], ...] = (("mep", 7), ("mep", 30), ("ir", 7), ("ir", 30))
# --quick: the optical week only (a quarter of a minute); MEP's week takes a minute by design
# (the guide's one read per second), its month four.
QUICK: tuple[tuple[str, int], ...] = (("ir", 7),)


async def measure(runs: tuple[tuple[str, int], ...] = FULL) -> dict[str, Any]:
    """Every backfill figure of scripts/bench: one fresh Home Assistant per (transport, days)."""
    results = [await run(transport, days) for transport, days in runs]
    return {
        "runs": results,
        "ratio_max": max(result["ratio"] for result in results),
        "poll_delay_over_one_read": [
            f"{result['transport']} {result['days']} days"
            for result in results
            if result["poll_delay_max_s"] > result["one_read_s"]
        ],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure())), flush=True)
