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
import time
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util

from .const import DOMAIN
from .meter import MeterClient, MeterError
from .meter.events import EventLogReader, HistoryEntry, MeterStatus, StatusReader

_LOGGER = logging.getLogger(__name__)

HEADER_INTERVAL: Final = 300.0
STORAGE_VERSION: Final = 1
FIRE_SPACING: Final = 0.002

EventListener = Callable[[HistoryEntry], None]


class MeterEventTracker:
    """Event log entries to listeners, alarm bits to binary sensors."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry[Any], client: MeterClient) -> None:
        """Keep state in the entry's own storage file."""
        self._store: Store[dict[str, Any]] = Store(hass, STORAGE_VERSION, f"{DOMAIN}.events.{entry.entry_id}")
        self._client = client
        self.reader: EventLogReader | None = None
        self._status_reader = StatusReader(client)
        self.status: MeterStatus | None = None
        self.latched_since: dict[str, datetime] = {}
        self._listeners: list[EventListener] = []
        self._queue: list[str] = []
        self._due = 0.0
        self._importing = False  # the first pass ever: history, not news
        self.imported = 0

    @property
    def has_event_log(self) -> bool:
        """Whether the meter keeps an event log (BT71 read and non-empty)."""
        return bool(self.reader and self.reader.available)

    async def async_setup(self) -> None:
        """Load what was seen before; learn whether the meter has a log and alarm bits (2-3 reads)."""
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
        # The alarm bits were just read: the first live poll reads the log header.
        self._queue = ["events"] if self.reader.available else []
        self._due = time.monotonic() + HEADER_INTERVAL

    def poll_soon(self) -> None:
        """Read the alarm bits and the log header after the next live poll."""
        self._due = 0.0

    @callback
    def async_add_listener(self, listener: EventListener) -> CALLBACK_TYPE:
        """Call ``listener`` with every new event log entry, oldest first."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def after_poll(self) -> bool:
        """Do at most one of the due reads; a failed one is tried again after the next poll.

        Returns whether it used the line, so the poll's other extra reader (meter history)
        waits: a live poll gets at most one extra read in all.
        """
        reader = self.reader
        if reader is None:
            return False
        now = time.monotonic()
        if not self._queue and not reader.in_pass and now >= self._due:
            self._due = now + HEADER_INTERVAL
            self._queue = [
                *(["status"] if self._status_reader.available else []),
                *(["events"] if reader.available else []),
            ]
        if not reader.in_pass and not self._queue:
            return False
        try:
            if reader.in_pass:
                await self._step(reader)
            elif self._queue.pop(0) == "status":
                await self._set_status(await self._status_reader.read())
            else:
                await self._step(reader)
        except MeterError as err:
            _LOGGER.debug("event log or alarm read failed, trying again next poll: %s", err)
            reader.abort()
            self._queue.clear()
            self._due = 0.0
        return True

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
        self.status = status
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
