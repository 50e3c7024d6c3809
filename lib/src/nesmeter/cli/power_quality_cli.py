"""``meter power-quality``: ET09's sags, swells, frequency extremes, phase loss and outages, and the contactor."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from datetime import datetime
import json
from typing import Any

from nesmeter.cli.cli_client import client_from_args
from nesmeter.client.power_quality_reader import PowerQualityReader
from nesmeter.client.relay_reader import RelayReader
from nesmeter.tables.power_quality import PowerQuality

PHASES = ("L1", "L2", "L3")


def _plain(value: Any) -> Any:
    """JSON-able: times as ISO 8601 UTC with ``Z``, tuples as lists."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def as_dict(quality: PowerQuality | None, relay: RelayReader) -> dict[str, Any]:
    """Return the power quality and relay readings as plain JSON types."""
    hardware = relay.hardware
    return {
        "power_quality": _plain(asdict(quality)) if quality is not None else None,
        "relay": {
            "hardware": _plain(asdict(hardware)) if hardware is not None else None,
            "disconnect_state": relay.state,
        },
    }


async def power_quality(args: argparse.Namespace) -> int:
    """Run ``nesmeter power-quality``: sags, swells, outages, frequency and the relay."""
    client = client_from_args(args)
    async with client:
        reader = PowerQualityReader(client)
        await reader.setup()
        relay = RelayReader(client)
        await relay.setup()
        await relay.read()
    quality = reader.latest if reader.available else None
    if args.json:
        print(json.dumps(as_dict(quality, relay)))
        return 0
    for line in _lines(quality, relay):
        print(line)
    return 0


def _when(value: datetime | None) -> str:
    return value.isoformat().replace("+00:00", "Z") if value else "-"


def _lines(quality: PowerQuality | None, relay: RelayReader) -> list[str]:
    lines: list[str] = []
    if quality is None:
        lines.append("the meter gives no power quality data (ET09)")
    else:
        for kind, per_phase in (("sags", quality.sags), ("swells", quality.swells)):
            for phase, events in zip(PHASES, per_phase, strict=True):
                volts = f"{events.voltage_v:.3f} V" if events.voltage_v is not None else "-"
                lines.append(f"{kind:<7}{phase}  count={events.count:<5} last={_when(events.last)}  voltage={volts}")
        for name, hz, when in (
            ("min frequency", quality.min_frequency_hz, quality.min_frequency_time),
            ("max frequency", quality.max_frequency_hz, quality.max_frequency_time),
        ):
            lines.append(f"{name}  {f'{hz:.3f} Hz' if hz is not None else '-'}  at {_when(when)}")
        for phase, lost, count, when in zip(
            PHASES, quality.phase_loss, quality.phase_loss_counts, quality.phase_loss_last, strict=True
        ):
            lines.append(f"phase loss {phase}  {'LOST' if lost else 'present'}  count={count} last={_when(when)}")
        lines.append(f"over-current counts  {' / '.join(map(str, quality.over_current_counts))}")
        lines.append(f"short outages  {quality.short_outages}")
        outage = quality.last_outage
        if outage is None:
            lines.append("last outage  none recorded")
        else:
            lines.append(
                f"last outage  off {_when(outage.power_off)}  on {_when(outage.power_on)}"
                f"  {outage.duration_s} s  reset cause {outage.reset_cause}"
            )
    if relay.has_disconnect:
        lines.append(f"disconnect  {relay.state or 'unknown'}")
    else:
        lines.append("disconnect  no disconnect")
    hardware = relay.hardware
    if hardware is not None and (hardware.control_relay_1 or hardware.control_relay_2):
        present = [name for name, on in (("1", hardware.control_relay_1), ("2", hardware.control_relay_2)) if on]
        lines.append(f"control relays  {', '.join(present)} (state not read)")
    return lines
