"""Reads of what changes rarely (alarms, event log, billing, power quality): one per live poll.

Each part of the meter that changes slowly registers a :class:`RareRead` with its own
interval. After every live poll the scheduler does at most one table read: the next
read of a pass already under way (an event log catch-up takes several), else the most
overdue part. So the live values stay on time, a live poll is never delayed by more than
one read, and the meter stays well within the guide's average of one read per second.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
import logging
import time
from typing import Final

from nesmeter import MeterError

# Refused reads in a row after which a part's last values are dropped: a lost phase or a
# tamper alarm must not stay on from a read long ago, nor go unknown on one busy reply.
STALE_AFTER: Final = 3

RETRY_MIN: Final = 30.0  # a failed part waits this long, doubling up to its interval

_LOGGER = logging.getLogger(__name__)


@dataclass(slots=True)
class Misses:
    """A part's refused reads in a row, to tell when its last values are too old to show."""

    count: int = 0

    def stale(self, answered: bool) -> bool:
        """Count one read; whether the values shown are now stale (``STALE_AFTER`` misses)."""
        self.count = 0 if answered else self.count + 1
        return self.count >= STALE_AFTER


@dataclass(slots=True)
class RareRead:
    """One slowly changing part of the meter and how to read it, a table read per ``step``."""

    name: str
    interval: float  # seconds between passes
    step: Callable[[], Awaitable[bool]]  # does one read; True while the pass needs more
    abort: Callable[[], None] | None = None  # forget a pass cut short by an error
    just_read: bool = False  # setup read it already: its first pass is one interval away
    due: float = 0.0  # monotonic time of the next pass
    failures: int = 0  # passes in a row that failed


class RareReadScheduler:
    """Hands the line, one read per live poll, to the rare reads that are due."""

    def __init__(self, on_read_error: Callable[[MeterError], Awaitable[None]]) -> None:
        """Start with nothing to read; parts register with :meth:`add`.

        ``on_read_error`` hears of every meter error a part's read raised: mostly the
        link's (the readers turn a table the meter lacks into None themselves), but also a
        refusal, short or odd reply a reader passes on, and "TLS required"; it decides
        which of them close the port.
        """
        self._on_read_error = on_read_error
        self._reads: dict[str, RareRead] = {}
        self._current: RareRead | None = None

    def add(self, *reads: RareRead) -> None:
        """Schedule parts: due after the next live poll, or one interval away if ``just_read``."""
        now = time.monotonic()
        for read in reads:
            read.due = now + read.interval if read.just_read else 0.0
            self._reads[read.name] = read

    def poll_soon(self, *names: str) -> None:
        """Make these parts (all when none are named) due after the next live poll."""
        for name in names or tuple(self._reads):
            if (read := self._reads.get(name)) is not None:
                read.due = 0.0

    @property
    def names(self) -> tuple[str, ...]:
        """The parts this meter has, in the order they were added."""
        return tuple(self._reads)

    @property
    def pending(self) -> bool:
        """Whether a pass is under way or a part is due now."""
        now = time.monotonic()
        return self._current is not None or any(read.due <= now for read in self._reads.values())

    async def step(self) -> bool:
        """Do at most one read; return whether the line was used (other extra readers wait).

        A failed pass is tried again after a pause (30 s doubling up to the part's
        interval), so a part that keeps failing never takes every poll; a meter error is
        handed to ``on_read_error``; anything else (a decoder's bug) is logged. Neither
        costs the live values already read.
        """
        now = time.monotonic()
        due = sorted((read for read in self._reads.values() if read.due <= now), key=lambda read: read.due)
        read = self._current or (due[0] if due else None)
        if read is None:
            return False
        try:
            more = await read.step()
        except MeterError as err:
            delay = self._failed(read, now)
            _LOGGER.debug("%s read failed, trying again in %.0f s: %s", read.name, delay, err)
            await self._on_read_error(err)
            return True
        except Exception:
            delay = self._failed(read, now)
            _LOGGER.debug("%s read failed; trying again in %.0f s", read.name, delay, exc_info=True)
            return True
        read.failures = 0
        if more:
            self._current = read
        else:
            self._current = None
            read.due = time.monotonic() + read.interval
        return True

    def _failed(self, read: RareRead, now: float) -> float:
        if read.abort is not None:
            read.abort()
        self._current = None
        delay: float = min(read.interval, RETRY_MIN * 2.0**read.failures)
        read.failures += 1
        read.due = now + delay
        return delay
