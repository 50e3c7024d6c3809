"""``meter history``: the load profile since a time, as a table or one JSON object."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
import json
import sys

from nesmeter.cli.cli_client import client_from_args

BAR_WIDTH = 30


def parse_since(text: str) -> datetime:
    """ISO 8601; a time without an offset is UTC."""
    since = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return since if since.tzinfo else since.replace(tzinfo=UTC)


def progress_bar(done: int, total: int) -> None:
    """Draw a one-line progress bar on stderr, redrawn in place."""
    filled = BAR_WIDTH * done // max(total, 1)
    sys.stderr.write(f"\rreading load profile [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} reads")
    sys.stderr.flush()


async def history(args: argparse.Namespace) -> int:
    """Run ``nesmeter history``: the load profile since ``--since``, with progress on a terminal."""
    since = parse_since(args.since)
    client = client_from_args(args)
    show = sys.stderr.isatty()
    async with client:
        await client.identify()
        profile = await client.read_load_profile(since, progress=progress_bar if show else None)
    if show:
        sys.stderr.write("\n")
    if args.json:
        print(json.dumps(profile.as_dict()))
        return 0
    if not profile.available:
        print("the meter keeps no load profile")
        return 0
    print(f"{len(profile.intervals)} intervals of {profile.interval_minutes} min since {since.isoformat()}")
    for interval in profile.intervals:
        values = "  ".join(f"{name}={interval.values.get(name, '-')}" for name in profile.channels)
        flags = f"  [{', '.join(interval.status)}]" if interval.status else ""
        print(f"{interval.end.isoformat()}  {values}{flags}")
    return 0
