"""A real Home Assistant process with 0, 1, 4 and 16 simulated meters at a 2 s interval.

Each run starts ``hass`` on a fresh configuration directory whose config entries point at
paced simulated meters served by another process, waits until every meter has been
polled, then measures for a fixed window: the process's CPU time (all threads, from
/proc), the coordinator updates completed (from the coordinator's own debug line, which
also gives each update's latency) and the resident memory. The run with no meter is the
baseline that the others are measured against.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any
import uuid

from .common import HA_CORE_CONFIGURATION, KEY_TEXT
from .simhost import SimHost

REPO = Path(__file__).resolve().parents[1]
INTERVAL = 2
FETCH = re.compile(r"Finished fetching nes_meter (\S+) data in ([0-9.]+) seconds \(success: True\)")
CONFIGURATION = (
    HA_CORE_CONFIGURATION
    + """\
logger:
  default: warning
  logs:
    homeassistant.bootstrap: info
    custom_components.nes_meter.coordinator: debug
"""
)


def _entries(urls: list[str]) -> dict[str, Any]:
    entries = [
        {
            "entry_id": uuid.uuid4().hex,
            "version": 1,
            "minor_version": 1,
            "domain": "nes_meter",
            "title": f"m{index}",
            "source": "user",
            "unique_id": f"bench{index}",
            "data": {"port": url, "transport": "mep", "key": KEY_TEXT, "key_format": "auto"},
            "options": {"update_interval": INTERVAL},
        }
        for index, url in enumerate(urls)
    ]
    return {"version": 1, "minor_version": 1, "key": "core.config_entries", "data": {"entries": entries}}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _fetches(log: Path, start: int = 0) -> list[tuple[str, float]]:
    text = log.read_text(errors="replace")[start:]
    return [(name, float(seconds)) for name, seconds in FETCH.findall(text)]


def _run(urls: list[str], window: float, timeout: float = 180.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nes-bench-") as folder:
        config = Path(folder)
        (config / "configuration.yaml").write_text(CONFIGURATION)
        (config / "custom_components").symlink_to(REPO / "custom_components")
        (config / ".storage").mkdir()
        (config / ".storage" / "core.config_entries").write_text(json.dumps(_entries(urls)))
        log = config / "hass.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                [str(Path(sys.executable).with_name("hass")), "-c", folder, "--skip-pip"],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Home Assistant did not start:\n{log.read_text()[-2000:]}")
                text = log.read_text(errors="replace")
                polled = {name for name, _ in _fetches(log)}
                if "Home Assistant initialized" in text and len(polled) >= len(urls):
                    break
                time.sleep(0.5)
            time.sleep(2 * INTERVAL)  # every meter past its first poll
            offset = len(log.read_text(errors="replace"))
            cpu, started = _cpu_seconds(process.pid), time.monotonic()
            time.sleep(window)
            cpu, elapsed = _cpu_seconds(process.pid) - cpu, time.monotonic() - started
            fetches = _fetches(log, offset)
            return {
                "cpu_s_per_s": cpu / elapsed,
                "updates": len(fetches),
                "latencies": [seconds for _, seconds in fetches],
                "rss_mb": rss_kib(process.pid) / 1024,
                "elapsed": elapsed,
            }
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def measure(counts: tuple[int, ...] = (1, 4, 16), window: float = 20.0) -> dict[str, Any]:
    with SimHost(f"mep:{max(counts)}", pace=True) as host:
        baseline = _run([], window)
        results: dict[str, Any] = {"baseline_rss_mb": round(baseline["rss_mb"], 1)}
        for count in counts:
            run = _run(host.urls["mep"][:count], window)
            added_cpu = (run["cpu_s_per_s"] - baseline["cpu_s_per_s"]) * run["elapsed"]
            results[str(count)] = {
                "updates": run["updates"],
                "cpu_ms_per_update": round(added_cpu / max(1, run["updates"]) * 1000, 2),
                "latency_median_s": round(statistics.median(run["latencies"]), 3),
                "latency_max_s": round(max(run["latencies"]), 3),
                "rss_mb": round(run["rss_mb"], 1),
                "rss_mb_per_meter": round((run["rss_mb"] - baseline["rss_mb"]) / count, 2),
            }
    return results
