"""The meter's event log and alarm bits, read rarely and a read at a time between live polls.

Every ``HEADER_INTERVAL`` seconds the alarm bits (BT03) and the event log header (BT74)
are due; after each live poll at most one of those reads is done, and the log's entries
are read (one read per live poll) only when its header moved. That keeps the live values
on time and the meter well within the guide's average of one read per second.

The newest sequence seen and when each alarm bit was first seen set are kept in the
entry's storage, so a restart neither fires old entries again nor loses "latched since".
On the very first setup the existing log is taken as history: stored, not fired.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
import logging
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util

from nesmeter import MeterClient
from nesmeter.client.events_reader import EventLogReader, StatusReader
from nesmeter.tables.events import HistoryEntry, MeterStatus

from .const import DOMAIN
from .rare_reads import Misses, RareRead, RareReadScheduler

_LOGGER = logging.getLogger(__name__)

HEADER_INTERVAL: Final = 300.0
STORAGE_VERSION: Final = 1
FIRE_SPACING: Final = 0.002

EventListener = Callable[[HistoryEntry], None]


def _store(hass: HomeAssistant, entry: ConfigEntry[Any]) -> Store[dict[str, Any]]:
    return Store(hass, STORAGE_VERSION, f"{DOMAIN}.events.{entry.entry_id}")


async def async_remove_event_storage(hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
    """Forget the newest sequence and latched alarms with the entry (a new entry starts afresh)."""
    await _store(hass, entry).async_remove()


class MeterEventTracker:
    """Event log entries to listeners, alarm bits to binary sensors."""

    def __init__(
        self, hass: HomeAssistant, entry: ConfigEntry[Any], client: MeterClient, scheduler: RareReadScheduler
    ) -> None:
        """Keep state in the entry's own storage file; ``scheduler`` hands out the line."""
        self._scheduler = scheduler
        self._store = _store(hass, entry)
        self._client = client
        self.reader: EventLogReader | None = None
        self._status_reader = StatusReader(client)
        self.status: MeterStatus | None = None
        self._status_misses = Misses()  # alarm-bit reads in a row the meter refused
        self.latched_since: dict[str, datetime] = {}
        self._listeners: list[EventListener] = []
        self._importing = False  # the first pass ever: history, not news
        self.imported = 0

    @property
    def has_event_log(self) -> bool:
        """Whether the meter keeps an event log (BT71, or BT70 on firmware 2.01/2.10, read and non-empty)."""
        return bool(self.reader and self.reader.available)

    async def async_setup(self) -> None:
        """Load what was seen before; learn whether the meter has a log and alarm bits (2-4 reads)."""
        stored = await self._store.async_load() or {}
        last = stored.get("last_sequence")
        self._importing = last is None
        self.latched_since = {
            name: parsed
            for name, text in stored.get("latched_since", {}).items()
            if (parsed := dt_util.parse_datetime(text)) is not None
        }
        self.reader = self._client.event_log_reader(last)
        await self.reader.dimensions_read()
        await self._set_status(await self._status_reader.read())

    def rare_reads(self) -> list[RareRead]:
        """Return the alarm bits and the event log as parts read every ``HEADER_INTERVAL`` seconds.

        The alarm bits were just read by ``async_setup``; the event log header is due after
        the first live poll.
        """
        reads = []
        if self._status_reader.available:
            reads.append(RareRead("status", HEADER_INTERVAL, self._status_step, just_read=True))
        if self.reader is not None and self.reader.available:
            reads.append(RareRead("events", HEADER_INTERVAL, self._events_step, abort=self.reader.abort))
        return reads

    @callback
    def async_add_listener(self, listener: EventListener) -> CALLBACK_TYPE:
        """Call ``listener`` with every new event log entry, oldest first."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def _status_step(self) -> bool:
        status = await self._status_reader.read()
        if self._status_misses.stale(status is not None):
            self.status = None
        await self._set_status(status)
        return False

    async def _events_step(self) -> bool:
        assert self.reader is not None
        await self._step(self.reader)
        return self.reader.in_pass

    async def _step(self, reader: EventLogReader) -> None:
        entries = await reader.step()
        if entries is None:
            return
        if self._importing:
            self._importing = False
            self.imported = len(entries)
            _LOGGER.debug("took %d existing event log entries as history", len(entries))
        else:
            for index, entry in enumerate(entries):
                if index:
                    # An event entity's state is the millisecond it fired: keep entries apart
                    # so each one is its own state change in the logbook and history.
                    await asyncio.sleep(FIRE_SPACING)
                for listener in list(self._listeners):
                    listener(entry)
        await self._save()

    async def _set_status(self, status: MeterStatus | None) -> None:
        if status is None:
            return
        previous, self.status = self.status, status
        # The meter flags what is new: read it now rather than at the next interval.
        if status.event_log_unread and not (previous and previous.event_log_unread):
            self._scheduler.poll_soon("events")
        if status.self_read_occurred and not (previous and previous.self_read_occurred):
            self._scheduler.poll_soon("self_read")
        now = dt_util.utcnow()
        changed = False
        for name in status.reported:
            if status.is_set(name) and name not in self.latched_since:
                self.latched_since[name] = now
                changed = True
            elif not status.is_set(name) and name in self.latched_since:
                del self.latched_since[name]  # the utility cleared it
                changed = True
        if changed:
            await self._save()

    def _data(self) -> dict[str, Any]:
        return {
            "last_sequence": self.reader.after_sequence if self.reader else None,
            "latched_since": {name: when.isoformat() for name, when in self.latched_since.items()},
        }

    async def _save(self) -> None:
        await self._store.async_save(self._data())

    def diagnostics(self) -> dict[str, Any]:
        """Return what the tracker knows: log dimensions, the newest sequence, the alarm bits."""
        reader = self.reader
        return {
            "event_log": reader.available if reader else None,
            "last_sequence": reader.after_sequence if reader else None,
            "entries": reader.dimensions.history_entries if reader and reader.dimensions else None,
            "alarms": list(self.status.active) if self.status else None,
        }
