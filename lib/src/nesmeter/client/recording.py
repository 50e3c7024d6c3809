"""Record one whole reading as a trace: what ``nesmeter read --trace`` and the diagnostics download do.

The trace itself (``nesmeter.link.trace``) knows bytes only; putting a reading into one
needs the client, so it lives here, above both.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nesmeter.client.client import MeterClient
    from nesmeter.tables.identity import MeterIdentity
    from nesmeter.tables.snapshot import MeterSnapshot

_LOGGER = logging.getLogger(__name__)


def reading(identity: MeterIdentity, snapshot: MeterSnapshot) -> dict[str, Any]:
    """Return the decoded values as a trace stores them (``result``): plain JSON types only."""
    return json.loads(json.dumps({"identity": identity.as_dict(), "snapshot": snapshot.as_dict()}, default=str))  # type: ignore[no-any-return]


async def record_reading(client: MeterClient, *, notes: list[str] | None = None) -> dict[str, Any]:
    """Trace one complete reading from a fresh session and return the trace document.

    Closes the client first, so the trace covers the whole session start (Identify,
    Negotiate, Logon on IR) and every identification table; reopens it afterwards if it
    was open. A failed reading still gives a trace, with ``error`` set. The caller must
    make sure nothing else uses the client meanwhile (a poll would interleave).
    """
    was_open = client.is_open
    await client.close()
    trace = client.start_trace()
    result: dict[str, Any] | None = None
    error: str | None = None
    try:
        async with client:
            identity = await client.identify()
            snapshot = await client.read_snapshot()
        result = reading(identity, snapshot)
    except Exception as err:  # the trace is wanted most when the reading fails
        error = f"{type(err).__name__}: {err}"
    finally:
        client.stop_trace()
    doc = trace.document(stats=client.stats.as_dict(), result=result, error=error, notes=notes)
    if was_open:
        try:
            await client.open()
        except Exception as err:  # the next poll reopens it
            _LOGGER.debug("reopening after the trace: %s", err)
    return doc
