"""``meter events``: the meter's event log (all of it, or after a sequence number), oldest first."""

from __future__ import annotations

import argparse
import asyncio
import json

from nesmeter.cli.cli_client import client_from_args
from nesmeter.client.events_reader import EventLogReader
from nesmeter.sim.sim_events import SimEventLog, event_id


async def events(args: argparse.Namespace) -> int:
    """Run ``nesmeter events``: the event log entries after ``--after-sequence`` and the alarm bits."""
    client = client_from_args(args)
    async with client:
        reader = EventLogReader(client, args.after_sequence)
        entries = await reader.read_new()
    if args.json:
        print(json.dumps({"events": [entry.as_dict() for entry in entries]}))
        return 0
    if reader.available is False:
        print("the meter keeps no event log")
        return 0
    for entry in entries:
        when = entry.time.isoformat() if entry.time else "-"
        name = entry.name if entry.known else f"unknown ({entry.event_id})"
        details = "".join(f" {key}={_text(value)}" for key, value in entry.details.items())
        print(f"{entry.sequence:>10}  {when}  {name:<28} argument={entry.argument:<6} user={entry.user}{details}")
    return 0


def _text(value: object) -> str:
    """Show a detail as ``key=value`` does: phases joined by commas, flags as true/false."""
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def parse_event(text: str) -> tuple[int, int | None, float]:
    """Parse ``NAME[=ARGUMENT][@SECONDS]`` (``--event``): the event id, its argument, the delay.

    An omitted argument is None: the simulator logs the event's typical one.
    """
    text, _, delay = text.partition("@")
    name, _, argument = text.partition("=")
    return event_id(name), int(argument, 0) if argument else None, float(delay or 0)


async def inject_later(log: SimEventLog, text: str) -> None:
    """Log one ``--event`` into a running simulator after its delay."""
    event, argument, delay = parse_event(text)
    await asyncio.sleep(delay)
    log.inject(event, argument)
