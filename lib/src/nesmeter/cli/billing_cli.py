"""``meter billing``: the tariff state, tier energies, demands and the newest self-read."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from datetime import datetime
import json
from typing import Any

from nesmeter.cli.cli_client import client_from_args
from nesmeter.client.billing_reader import BillingReader
from nesmeter.client.client import MeterClient


def _plain(value: Any) -> Any:
    """JSON-friendly: naive meter-local times as ISO 8601 without an offset (they have none)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


async def read_billing(client: MeterClient) -> dict[str, Any]:
    """Everything ``BillingReader`` offers, one read each, the tier blocks one per group (after ``identify``)."""
    reader = BillingReader(client)
    await reader.setup()
    groups = [await reader.read_tiers(group) for group in range(len(reader.tier_spans()))]
    tiers = None if all(group is None for group in groups) else [tier for group in groups for tier in group or ()]
    demands = await reader.read_demands() if reader.has_demands else None
    newest = await reader.read_newest_self_read() if reader.has_self_reads else None
    result: dict[str, Any] = _plain(
        {
            "tariff": asdict(reader.tariff) if reader.tariff else None,
            "tiers": [asdict(tier) for tier in tiers] if tiers is not None else None,
            "demands": asdict(demands) if demands else None,
            "self_read_header": asdict(reader.self_read_header) if reader.self_read_header else None,
            "newest_self_read": asdict(newest) if newest else None,
        }
    )
    return result


async def billing(args: argparse.Namespace) -> int:
    """Run ``nesmeter billing``: tariff, tiers, demands and the newest self-read, as text or JSON."""
    client = client_from_args(args)
    async with client:
        await client.identify()
        result = await read_billing(client)
    if args.json:
        print(json.dumps(result))
        return 0
    tariff = result["tariff"]
    if tariff:
        print(
            f"tariff       tier {tariff['tier']} ({tariff['tier_drive']}), season {tariff['season']}, "
            f"special schedule {tariff['special_schedule']}, local time {tariff['local_time'] or '-'}"
            f"{' DST' if tariff['dst'] else ''}"
        )
    else:
        print("tariff       not available (BT55)")
    for tier in result["tiers"] or []:
        print(f"tier {tier['tier']}       import {tier['energy_import_wh']} Wh, export {tier['energy_export_wh']} Wh")
    demands = result["demands"]
    if demands:
        print(f"demand resets {demands['resets'] if demands['resets'] is not None else '-'}")
        for value in demands["values"]:
            kind = "max" if value["maximum"] else "min"
            amount = f"{kind} {value['value']} {value['unit']}"
            print(f"demand {value['index']}     {value['name']:<24} {amount} at {value['time'] or '-'}")
    newest = result["newest_self_read"]
    if newest:
        print(
            f"self-read    #{newest['sequence']} at {newest['time'] or '-'} (season {newest['season']}): "
            f"import {newest['energy_import_wh']} Wh, export {newest['energy_export_wh']} Wh"
        )
    else:
        print("self-read    none")
    return 0
