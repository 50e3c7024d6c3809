"""``meter mbus``: the gas, water and heat meters behind the meter (ET14, ET16, ET45) and their newest reads."""

from __future__ import annotations

import argparse
import json

from nesmeter.cli.cli_client import client_from_args
from nesmeter.client.mbus_reader import MbusReader


async def mbus(args: argparse.Namespace) -> int:
    """Run ``nesmeter mbus``: list the M-Bus devices with their newest values."""
    client = client_from_args(args)
    async with client:
        reader = MbusReader(client)
        devices = await reader.read_all()
    listed = [device.as_dict() for _slot, device in sorted(devices.items())]
    if args.json:
        print(json.dumps({"module": bool(reader.available), "devices": listed}))
        return 0
    if not reader.available:
        print("the meter has no M-Bus module (ET29)")
        return 0
    if not listed:
        print("no M-Bus devices (ET14)")
    for device in listed:
        values = "  ".join(f"{key}={value}" for key, value in device["values"].items())
        who = f"{device['medium'] or '-'}  {device['manufacturer'] or '-'} {device['serial'] or '-'}"
        read = f"read {device['read_at'] or '-'} ({device['source'] or '-'})"
        print(f"slot {device['slot']}  {who}  {device['status']}  {read}  {values or device['error'] or ''}")
    return 0
