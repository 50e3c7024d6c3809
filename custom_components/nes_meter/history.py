"""Meter history: the load profile into Home Assistant's long-term statistics.

The meter snapshots its energy registers at the end of every load-profile interval and
keeps weeks of them (``nesmeter.tables.load_profile``). This module turns those snapshots
into hourly *external* statistics, as core's opower and tibber do, so the Energy dashboard
gets exact hours, backfilled after any downtime, and weeks of history on the first day:

* one statistic per energy channel (``history_channels``): ids
  ``nes_meter:<utility serial>_energy_import`` and ``..._energy_export`` (the serial in
  lower case, every character other than ``a-z 0-9`` turned into ``_``; kWh), the reactive
  channels' in kvarh; ``has_sum``, no mean (``unit_class`` where the recorder has it);
  their cost, when the options give a price, in ``history_cost``;
* one row per UTC hour: ``state`` is the register at the hour's end, ``sum`` grows by the
  register's increase and starts at 0 at the first imported hour. The sensors' own
  statistics are never touched; the user picks either these or the live sensors.

Rows are a pure function of the stored row they continue from and the meter's register
at each hour's end, so importing overlapping hours again writes identical rows (the
recorder replaces a row with the same start). ``sum`` never decreases: a register lower
than the previous hour's (a meter exchange or reset) adds nothing and becomes the new
base (warned once). Only readings taken exactly at an hour's end are used: with
15-minute intervals, the other three of each hour only tell the meter was recording. An
hour whose end reading is missing (skipped, opted out, never recorded) is not written
and nothing is invented for it: the next hour with a reading carries the whole delta.
With intervals longer than an hour (a daily profile) rows fall on the hours an interval
ends, each carrying its interval's energy.

Reads run between the live polls (``NesMeterCoordinator`` starts a worker task when a
pass is due and the worker takes the port for one load-profile table read at a time), so a
live poll waits for at most the one read in progress. On MEP the worker keeps to the
guide's average of one table read per second counting every request on the line (the
live polls, rare reads and setup too: :class:`ReadBudget`), and reads at least every
``MIN_STEP_SPACING`` seconds when fast polls use the whole budget; on the optical port,
which sets no such limit, it reads at wire speed between polls. A read that fails throws
the pass away; the next poll starts a new one from the last imported hour. Once the
meter's newest interval is imported, the next pass starts when the meter's clock passes
the next interval end. A pass that imports more than an hour (the first import, a catch
up after downtime) ends with one INFO line: how many hours, how long, how many reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from homeassistant.components.recorder.models import StatisticData, StatisticMetaData
from homeassistant.components.recorder.statistics import (
    async_add_external_statistics,
    get_last_statistics,
    statistics_during_period,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util

from nesmeter import MeterError
from nesmeter.client.load_profile_reader import LoadProfileReader
from nesmeter.errors import ABSENT
from nesmeter.tables.load_profile import LoadProfileInterval, channel_names

from .compat import STATISTICS_UNIT_CLASS
from .history_channels import HistoryChannel, history_channels, known_suffixes, skipped_channels
from .history_cost import COSTS, HistoryCost
from .history_metadata import statistic_id, sum_metadata

if TYPE_CHECKING:
    from homeassistant.config_entries import ConfigEntry

    from nesmeter import MeterClient, MeterIdentity, MeterSnapshot

_LOGGER = logging.getLogger(__name__)

HOUR: Final = timedelta(hours=1)
READ_RATE: Final = 1.0  # MEP: table reads per second on average, every request counted (G p.51)
MIN_STEP_SPACING: Final = 9.5  # seconds: a history read at least this often, even when polls use the budget
INTERVAL_MARGIN: Final = timedelta(seconds=15)  # after an interval's end before it is read
RETRY_AFTER: Final = timedelta(minutes=1)  # after a failed read or a pass that found nothing new
RECHECK_ABSENT: Final = timedelta(hours=6)  # a meter without load profile is asked again
SUM_DIGITS: Final = 6  # sums rounded to 1 mWh: canonical rows whatever the path to them
REREAD_LOOKBACK: Final = timedelta(days=62)  # how far back :meth:`async_reimport` finds its base


def statistic_ids(serial: str, channels: tuple[str, ...] | None = None) -> list[str]:
    """Every statistic the history of the meter ``serial`` may be written to.

    ``channels``: the meter's load-profile channels when known (a source recorded twice
    has a statistic of its own); the known energy channels are always included.
    """
    suffixes = dict.fromkeys(
        (
            *known_suffixes(),
            *(channel.suffix for channel in history_channels(channels or ())),
            *(cost for cost, _name, _fixed, _entity in COSTS.values()),
        )
    )
    return [statistic_id(serial, suffix) for suffix in suffixes]


def statistic_metadata(serial: str, channel: HistoryChannel, name: str) -> StatisticMetaData:
    """Metadata of one channel's history statistic: kWh or kvarh, a sum, no mean."""
    return sum_metadata(
        statistic_id(serial, channel.suffix), f"{name} {channel.name} (meter history)", channel.unit, channel.unit_class
    )


def recorder_loaded(hass: HomeAssistant) -> bool:
    """Whether the recorder runs (statistics need it; tests without it skip history)."""
    return "recorder" in hass.config.components


async def async_clear_statistics(hass: HomeAssistant, serial: str) -> None:
    """Remove the history statistics of the meter ``serial`` (the entry was deleted)."""
    if recorder_loaded(hass):
        get_instance(hass).async_clear_statistics(statistic_ids(serial))


class ReadBudget:
    """The MEP guide's average of ``rate`` table reads per second, as a leaky bucket.

    Every request on the line fills it by one (``requests``: the client's count of frames
    sent, so live polls, rare reads and retries count too) and it drains at ``rate`` per
    second; a history read may start when the bucket is empty. Any window of ``w`` seconds
    then holds at most ``rate * w + 1`` requests. ``rate`` None: no budget (wire speed).

    Requests counted at a look are taken as sent just then (the bucket drained empty before
    them), which wastes the drain while they went out. Where the port was held for them, the
    caller says when that began (:meth:`spent`) and they count from there: a window then
    holds at most ``rate * (w + d) + 1``, ``d`` the longest hold (one read or one poll).
    """

    def __init__(self, rate: float | None) -> None:
        """Start empty: what was sent before the first look counts at the first look."""
        self.rate = rate
        self.level = 0.0
        self._seen = 0
        self._at: float | None = None

    def delay(self, requests: int, now: float) -> float:
        """Seconds from ``now`` until a read may start, ``requests`` sent so far."""
        if self.rate is None:
            return 0.0
        if self._at is not None:
            self.level = max(0.0, self.level - (now - self._at) * self.rate)
        self.level += max(0, requests - self._seen)
        self._seen, self._at = requests, now
        return self.level / self.rate

    def spent(self, before: int, started: float, after: int, now: float) -> None:
        """Count the requests ``before``..``after``, sent with the port held from ``started`` to ``now``."""
        if self.rate is None:
            return
        self.delay(before, started if self._at is None else max(started, self._at))
        self.level += max(0, after - self._seen)
        self._seen = after
        self.delay(after, now)


@dataclass(slots=True)
class Track:
    """One statistic's newest row: the hour end it covers, the register there (kWh), the sum."""

    end: datetime | None = None
    state: float | None = None
    total: float = 0.0
    decreases: int = 0

    def row(self, end: datetime, wh: float) -> StatisticData | None:
        """Return the row for the hour ending at ``end`` (register ``wh``), None if already written.

        The first row is the base (sum 0: the meter holds no reading from its hour's
        start). A register below the previous row's adds nothing and is the new base.
        """
        if self.end is not None and end <= self.end:
            return None
        state = wh / 1000
        if self.state is None:
            total = self.total
        else:
            delta = state - self.state
            if delta < 0:
                self.decreases += 1
                delta = 0.0
            total = round(self.total + delta, SUM_DIGITS)
        self.end, self.state, self.total = end, state, total
        return StatisticData(start=end - HOUR, state=state, sum=total)


class HistoryImporter:
    """Feeds one meter's load profile into its history statistics, a read at a time."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        client: MeterClient,
        *,
        identity: Callable[[], MeterIdentity | None],
    ) -> None:
        """Start idle; the first step after setup loads the newest stored rows.

        Reads through ``client``; ``identity`` gives the meter's identity once known.
        """
        self.hass = hass
        self._entry = entry
        self._client = client
        self._identity = identity
        self.cost = HistoryCost(hass, entry.options)
        self.enabled = recorder_loaded(hass)
        self.available: bool | None = None  # None until a pass has seen the load profile
        self.tracks: dict[str, Track] = {}
        self.reader: LoadProfileReader | None = None
        self.newest_end: datetime | None = None  # the meter's newest interval end
        self.last_error: str | None = None
        self.steps = 0
        self.passes = 0
        self._first_seen: datetime | None = None
        self._next_pass: datetime | None = None  # None: as soon as possible
        self._last_step = time.monotonic()  # the fallback spacing counts from setup
        self._loaded = False
        self._warned: set[str] = set()
        self._clock_offset = timedelta(0)  # meter clock - Home Assistant's, from the last poll
        self.budget = ReadBudget(READ_RATE if client.transport == "mep" else None)
        self.reads_done = 0  # history reads completed (a live poll waits for at most one)
        self.poll_wait_max_s = 0.0  # the longest a live poll waited for a history read
        self.poll_wait_max_reads = 0  # the most history reads completed while one poll waited
        self.step_max_s = 0.0  # the longest history read
        self._backfill: tuple[float, int] | None = None  # (monotonic start, reads) of a catch-up
        self._backfill_hours = 0
        self._listeners: list[Callable[[], None]] = []
        self._pass_longest = 0.0  # the longest read of the running pass

    # ---- state for the sensors and diagnostics ----

    @property
    def imported_until(self) -> datetime | None:
        """The end of the newest hour every history statistic has a row for."""
        ends = [track.end for track in self.tracks.values() if track.end is not None]
        return min(ends) if ends else None

    @property
    def pending_hours(self) -> int | None:
        """Whole hours the meter holds beyond the newest imported one (None: not known yet)."""
        start = self.imported_until or self._first_seen
        if self.newest_end is None or start is None:
            return None
        return max(0, int((self.newest_end - start) / HOUR))

    def as_dict(self) -> dict[str, Any]:
        """Return what diagnostics show (no statistic ids: they contain the serial)."""
        layout = self._client.load_profile_layout
        imported = self.imported_until
        return {
            "enabled": self.enabled,
            "available": self.available,
            "layout": layout.as_dict() if layout else None,
            "channels_imported": [known.channel for known in self._channels()] if layout else None,
            "channels_not_imported": skipped_channels(names) if (names := self.channel_names()) else None,
            "imported_until": imported.isoformat() if imported else None,
            "newest_interval_end": self.newest_end.isoformat() if self.newest_end else None,
            "pending_hours": self.pending_hours,
            "reading": self.reader is not None,
            "steps": self.steps,
            "passes": self.passes,
            "register_decreases": {key: track.decreases for key, track in self.tracks.items() if track.decreases},
            "last_error": self.last_error,
            "read_budget_per_s": self.budget.rate,
            "longest_read_s": round(self.step_max_s, 3),
            "longest_poll_wait_s": round(self.poll_wait_max_s, 3),
            "most_reads_a_poll_waited_for": self.poll_wait_max_reads,
            "unit_class": STATISTICS_UNIT_CLASS,
            "cost": self.cost.as_dict(),
        }

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` whenever the progress changes (reads run between polls); returns its removal."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    # ---- the work ----

    def _serial(self) -> str | None:
        identity = self._identity()
        return identity.utility_serial if identity else None

    def now(self) -> datetime:
        """Return the meter's clock, estimated from the last poll's reading of it."""
        return dt_util.utcnow() + self._clock_offset

    def pass_due(self, snapshot: MeterSnapshot) -> bool:
        """After a successful poll: whether a pass runs or should start (the worker's work)."""
        if snapshot.meter_time is not None:
            self._clock_offset = snapshot.meter_time - dt_util.utcnow()
        if not self.enabled or self._serial() is None:
            return False
        return self.reader is not None or self._next_pass is None or self.now() >= self._next_pass

    def delay(self) -> float:
        """Seconds until the next history read may start (0: now)."""
        now = time.monotonic()
        wait = self.budget.delay(self._client.stats.frames_sent, now)
        return max(0.0, min(wait, self._last_step + MIN_STEP_SPACING - now))

    @contextmanager
    def holding_port(self) -> Iterator[None]:
        """Around a use of the port held by this meter's lock: its requests count from the start."""
        before, started = self._client.stats.frames_sent, time.monotonic()
        try:
            yield
        finally:
            self.budget.spent(before, started, self._client.stats.frames_sent, time.monotonic())

    def note_poll_wait(self, seconds: float, reads: int) -> None:
        """Note that a live poll waited ``seconds`` for the port while ``reads`` history reads completed."""
        self.poll_wait_max_s = max(self.poll_wait_max_s, seconds)
        self.poll_wait_max_reads = max(self.poll_wait_max_reads, reads)

    def drop_pass(self) -> None:
        """Give up the running pass; the next starts from the last imported hour after ``RETRY_AFTER``."""
        self.reader = None
        self._next_pass = self.now() + RETRY_AFTER

    def cut_pass(self) -> None:
        """Forget the running pass, cut off by a cancelled worker: the next poll starts it afresh.

        Not a failure, so no ``RETRY_AFTER``: the worker of an instance stopped mid-read
        (Home Assistant stopping one instance for its recovery mode) left the import
        waiting a minute for nothing.
        """
        self.reader = None

    async def async_begin(self) -> bool:
        """Start a pass unless one runs; whether there is one (not before it is due)."""
        serial = self._serial()
        if not self.enabled or serial is None:
            return False
        if self.reader is None:
            if self._next_pass is not None and self.now() < self._next_pass:
                return False
            if not self._loaded:
                await self._async_load(serial)
            self.reader = self._client.load_profile_reader(self._since())
            self._first_seen = None
            self._pass_longest = 0.0
            if self._backfill is None:
                self._backfill = (time.monotonic(), self.reads_done)
                self._backfill_hours = 0
        return True

    async def async_step(self) -> bool:
        """Do one load-profile read of the running pass and store the hours it completes.

        Called with the port held. Never raises a meter error: a failed read drops the
        pass (the next starts from what is stored) and closes the port when the link
        itself failed, so the next poll reconnects. Returns whether it used the line.
        """
        serial = self._serial()
        reader = self.reader
        if reader is None or serial is None:
            return False
        now = self.now()
        started = self._last_step = time.monotonic()
        self.steps += 1
        try:
            intervals = await reader.step()
        except MeterError as err:
            self.reader = None
            self.last_error = f"{type(err).__name__}: {err}"
            self._next_pass = now + RETRY_AFTER
            _LOGGER.debug("load profile read failed (%s); the next pass starts from the last imported hour", err)
            if not isinstance(err, ABSENT):  # a refused or odd reply leaves the link up
                await self._client.close()
            self._notify()
            return True
        finally:
            self.reads_done += 1
            took = time.monotonic() - started
            self.step_max_s = max(self.step_max_s, took)
            self._pass_longest = max(self._pass_longest, took)
        self.newest_end = reader.result.newest_end or self.newest_end
        if intervals:
            self._first_seen = self._first_seen or intervals[0].end
            self._store(serial, intervals)
        if reader.done:
            self._finish(reader, now)
        if intervals or reader.done:
            self._notify()
        return True

    def _since(self) -> datetime | None:
        """Where the next pass starts: the oldest of the statistics' newest hours."""
        ends = [track.end for track in self.tracks.values() if track.end is not None]
        return min(ends) if ends else None

    def _finish(self, reader: LoadProfileReader, now: datetime) -> None:
        self.reader = None
        self.passes += 1
        result = reader.result
        _LOGGER.debug("meter history pass done: %d reads, the longest %.3f s", result.reads, self._pass_longest)
        self.available = result.available
        if not result.available:
            self._backfill = None
            self._warn_once("absent", "the meter keeps no load profile; its history is not imported")
            self._next_pass = now + RECHECK_ABSENT
            return
        self.last_error = None
        self._log_backfill(result.ring_wrapped)
        if result.ring_wrapped:
            # Blocks overwritten during the read were left out; the next pass picks up
            # after the last imported hour, and the next written hour carries any gap.
            self._next_pass = None
            return
        due = now + RETRY_AFTER
        if result.newest_end is not None and result.interval_minutes:
            due = max(due, result.newest_end + timedelta(minutes=result.interval_minutes) + INTERVAL_MARGIN)
        self._next_pass = due

    def _log_backfill(self, more: bool) -> None:
        """One INFO line when a catch-up of more than an hour is complete."""
        if self._backfill is None or more:
            return
        started, reads = self._backfill
        self._backfill = None
        if self._backfill_hours > 1:
            _LOGGER.info(
                "%s: meter history imported: %d hours up to %s in %.1f s (%d load-profile reads)",
                self._entry.title,
                self._backfill_hours,
                self.imported_until.isoformat() if self.imported_until else "?",
                time.monotonic() - started,
                self.reads_done - reads,
            )

    def _store(self, serial: str, intervals: list[LoadProfileInterval]) -> None:
        """Write the hours these intervals end, per statistic."""
        rows: dict[str, list[StatisticData]] = {}
        channels = self._channels()
        for interval in intervals:
            if not hour_end(interval.end):
                continue
            for known in channels:
                suffix = known.suffix
                value = interval.values.get(known.channel)
                if value is None:
                    # Skipped, opted out or not recorded: no row for this hour; the next
                    # hour with a reading carries its energy.
                    continue
                track = self.tracks.setdefault(suffix, Track())
                decreases = track.decreases
                row = track.row(interval.end, value)
                if track.decreases > decreases:
                    self._warn_once(
                        f"decrease_{suffix}",
                        f"the meter's {known.name} register went down at {interval.end.isoformat()} "
                        "(meter exchange or reset?); the history sum continues from the new reading",
                    )
                if row is not None:
                    rows.setdefault(suffix, []).append(row)
        name = self._name(serial)
        self._backfill_hours += max((len(statistics) for statistics in rows.values()), default=0)
        for known in channels:
            if statistics := rows.get(known.suffix):
                async_add_external_statistics(self.hass, statistic_metadata(serial, known, name), statistics)
                self.cost.note_rows(known.suffix, statistics)

    def _name(self, serial: str) -> str:
        identity = self._identity()
        return f"NES {identity.model} {serial}" if identity else f"NES {serial}"

    async def async_price(self) -> None:
        """Write the cost of the imported hours whose price is known (the cost statistics)."""
        if (serial := self._serial()) is not None:
            await self.cost.async_price(lambda suffix: statistic_id(serial, suffix), self._name(serial))

    def channel_names(self) -> tuple[str, ...] | None:
        """Return the meter's load-profile channels (None until the layout has been read)."""
        layout = self._client.load_profile_layout
        return tuple(name for name, _scale in channel_names(layout.sources)) if layout else None

    def _channels(self) -> tuple[HistoryChannel, ...]:
        return history_channels(self.channel_names())

    def _suffixes(self) -> tuple[str, ...]:
        """Return the statistics to continue: every known energy channel's and this meter's."""
        return tuple(dict.fromkeys((*known_suffixes(), *(known.suffix for known in self._channels()))))

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _LOGGER.warning("%s: %s", self._entry.title, message)

    async def _async_load(self, serial: str) -> None:
        """Continue from the newest stored row of each statistic."""
        instance = get_instance(self.hass)
        for suffix in self._suffixes():
            stat_id = statistic_id(serial, suffix)
            last = await instance.async_add_executor_job(
                get_last_statistics, self.hass, 1, stat_id, False, {"state", "sum"}
            )
            if rows := last.get(stat_id):
                self.tracks[suffix] = track_from(rows[-1])
        self._loaded = True
        await self.cost.async_load(lambda suffix: statistic_id(serial, suffix), self._name(serial))

    async def async_reimport(self, since: datetime) -> None:
        """Read the meter again from the hour ending at ``since`` on, over the stored rows.

        Each statistic continues from its newest row ending at or before ``since``; the
        rows written then are the same as the stored ones wherever the meter still holds
        the same readings. The pass starts at the next poll.
        """
        serial = self._serial()
        if not self.enabled or serial is None:
            return
        instance = get_instance(self.hass)
        tracks: dict[str, Track] = {}
        for suffix in self._suffixes():
            stat_id = statistic_id(serial, suffix)
            stored = await instance.async_add_executor_job(
                statistics_during_period,
                self.hass,
                since - REREAD_LOOKBACK,
                since,
                {stat_id},
                "hour",
                None,
                {"state", "sum"},
            )
            if rows := stored.get(stat_id):
                tracks[suffix] = track_from(rows[-1])
        self.tracks = tracks
        if not self._loaded:  # the cost statistics continue from their own newest rows
            await self.cost.async_load(lambda suffix: statistic_id(serial, suffix), self._name(serial))
        self._loaded = True
        self.reader = None
        self._next_pass = None


def hour_end(when: datetime) -> bool:
    """Whether ``when`` is the top of an hour (UTC offsets are whole hours here: UTC)."""
    return when.minute == 0 and when.second == 0 and when.microsecond == 0


def track_from(row: Mapping[str, Any]) -> Track:
    """Return a track continuing from a stored row (``start`` a timestamp or a datetime)."""
    start = row["start"]
    begin = start if isinstance(start, datetime) else datetime.fromtimestamp(start, UTC)
    state = row.get("state")
    return Track(begin + HOUR, None if state is None else float(state), float(row.get("sum") or 0.0))
