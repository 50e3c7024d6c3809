"""Meter history: the load profile into Home Assistant's long-term statistics.

The meter snapshots its energy registers at the end of every load-profile interval and
keeps weeks of them (``meter/load_profile.py``). This module turns those snapshots into
hourly *external* statistics, as core's opower and tibber do, so the Energy dashboard
gets exact hours, backfilled after any downtime, and weeks of history on the first day:

* ids ``nes_meter:<utility serial>_energy_import`` and ``..._energy_export`` (the serial
  in lower case, every character other than ``a-z 0-9`` turned into ``_``), kWh,
  ``has_sum``, no mean (``unit_class`` only on Home Assistant versions that know it);
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

Reads are interleaved with the live poll (``NesMeterCoordinator`` calls :meth:`async_step`
after each successful snapshot, holding the port): at most one load-profile table read
per poll, and none when the last one was less than ``MIN_STEP_SPACING`` seconds ago (the
guide asks for one table read per second on average; a snapshot costs two, so a poll
every 3 s or more takes a history read each time, the 2 s minimum every fifth poll). A
read that fails throws the pass away; the next poll starts a new one from the last
imported hour. Once the meter's newest interval is imported, the next pass starts when
the meter's clock passes the next interval end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import logging
import re
import time
from typing import TYPE_CHECKING, Any, Final, cast

from homeassistant.components.recorder.models import StatisticData, StatisticMeanType, StatisticMetaData
from homeassistant.components.recorder.statistics import (
    async_add_external_statistics,
    get_last_statistics,
    statistics_during_period,
)
from homeassistant.const import UnitOfEnergy
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util

from nesmeter import MeterError
from nesmeter.client.load_profile_reader import LoadProfileReader
from nesmeter.errors import ABSENT
from nesmeter.tables.load_profile import LoadProfileInterval

from .compat import STATISTICS_UNIT_CLASS
from .const import DOMAIN

if TYPE_CHECKING:
    from collections.abc import Callable

    from homeassistant.config_entries import ConfigEntry

    from nesmeter import MeterClient, MeterIdentity, MeterSnapshot

_LOGGER = logging.getLogger(__name__)

HOUR: Final = timedelta(hours=1)
# Load-profile channel -> statistic suffix. Energy channels are in Wh (load_profile.py
# applies the register unit); the statistics are in kWh.
CHANNELS: Final[dict[str, str]] = {"energy_import_wh": "energy_import", "energy_export_wh": "energy_export"}
NAMES: Final[dict[str, str]] = {"energy_import": "energy import", "energy_export": "energy export"}
ENERGY_UNIT_CLASS: Final = "energy"
FAST_POLL: Final = 3.0  # polls more often than this already read about once a second
MIN_STEP_SPACING: Final = 9.5  # seconds between history reads when polls are fast
INTERVAL_MARGIN: Final = timedelta(seconds=15)  # after an interval's end before it is read
RETRY_AFTER: Final = timedelta(minutes=1)  # after a failed read or a pass that found nothing new
RECHECK_ABSENT: Final = timedelta(hours=6)  # a meter without load profile is asked again
SUM_DIGITS: Final = 6  # sums rounded to 1 mWh: canonical rows whatever the path to them
REREAD_LOOKBACK: Final = timedelta(days=62)  # how far back :meth:`async_reimport` finds its base


def statistic_id(serial: str, suffix: str) -> str:
    """``nes_meter:<serial>_<suffix>``, with the serial reduced to what the recorder accepts.

    The recorder takes ``[a-z0-9_]`` with no ``__`` and no ``_`` at either end.
    """
    object_id = re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", serial.lower())).strip("_") or "meter"
    return f"{DOMAIN}:{object_id}_{suffix}"


def statistic_ids(serial: str) -> list[str]:
    """Every statistic the history of the meter ``serial`` is written to."""
    return [statistic_id(serial, suffix) for suffix in CHANNELS.values()]


def statistic_metadata(serial: str, suffix: str, name: str) -> StatisticMetaData:
    """Metadata of one history statistic: kWh, a sum, no mean."""
    metadata: StatisticMetaData = {
        "mean_type": StatisticMeanType.NONE,
        "has_sum": True,
        "name": f"{name} {NAMES[suffix]} (meter history)",
        "source": DOMAIN,
        "statistic_id": statistic_id(serial, suffix),
        "unit_of_measurement": UnitOfEnergy.KILO_WATT_HOUR,
    }
    if STATISTICS_UNIT_CLASS:
        cast(dict[str, Any], metadata)["unit_class"] = ENERGY_UNIT_CLASS
    return metadata


def recorder_loaded(hass: HomeAssistant) -> bool:
    """Whether the recorder runs (statistics need it; tests without it skip history)."""
    return "recorder" in hass.config.components


async def async_clear_statistics(hass: HomeAssistant, serial: str) -> None:
    """Remove the history statistics of the meter ``serial`` (the entry was deleted)."""
    if recorder_loaded(hass):
        get_instance(hass).async_clear_statistics(statistic_ids(serial))


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
        poll_interval: Callable[[], float],
    ) -> None:
        """Start idle; the first step after setup loads the newest stored rows.

        Reads through ``client``; ``identity`` and ``poll_interval`` give the meter's
        identity once known and the seconds between polls (both change after setup).
        """
        self.hass = hass
        self._entry = entry
        self._client = client
        self._identity = identity
        self._poll_interval = poll_interval
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
        self._last_step = -1e9
        self._loaded = False
        self._warned: set[str] = set()

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
            "imported_until": imported.isoformat() if imported else None,
            "newest_interval_end": self.newest_end.isoformat() if self.newest_end else None,
            "pending_hours": self.pending_hours,
            "reading": self.reader is not None,
            "steps": self.steps,
            "passes": self.passes,
            "register_decreases": {key: track.decreases for key, track in self.tracks.items() if track.decreases},
            "last_error": self.last_error,
            "unit_class": STATISTICS_UNIT_CLASS,
        }

    # ---- the work ----

    def _serial(self) -> str | None:
        identity = self._identity()
        return identity.utility_serial if identity else None

    def step_allowed(self) -> bool:
        """At most one history read per poll, and not more often than the read rate allows."""
        if self._poll_interval() >= FAST_POLL:
            return True
        return time.monotonic() - self._last_step >= MIN_STEP_SPACING

    async def async_step(self, snapshot: MeterSnapshot) -> bool:
        """Do at most one load-profile read and store the hours it completes.

        Called with the port held, right after a successful snapshot. Never raises a
        meter error: a failed read drops the pass (the next starts from what is stored)
        and closes the port when the link itself failed, so the next poll reconnects.
        Returns whether it used the line.
        """
        if not self.enabled or not self.step_allowed():
            return False
        serial = self._serial()
        if serial is None:
            return False
        now = snapshot.meter_time or dt_util.utcnow()
        if self.reader is None:
            if self._next_pass is not None and now < self._next_pass:
                return False
            if not self._loaded:
                await self._async_load(serial)
            self.reader = self._client.load_profile_reader(self._since())
            self._first_seen = None
        self._last_step = time.monotonic()
        self.steps += 1
        reader = self.reader
        try:
            intervals = await reader.step()
        except MeterError as err:
            self.reader = None
            self.last_error = f"{type(err).__name__}: {err}"
            self._next_pass = now + RETRY_AFTER
            _LOGGER.debug("load profile read failed (%s); the next pass starts from the last imported hour", err)
            if not isinstance(err, ABSENT):  # a refused or odd reply leaves the link up
                await self._client.close()
            return True
        self.newest_end = reader.result.newest_end or self.newest_end
        if intervals:
            self._first_seen = self._first_seen or intervals[0].end
            self._store(serial, intervals)
        if reader.done:
            self._finish(reader, now)
        return True

    def _since(self) -> datetime | None:
        """Where the next pass starts: the oldest of the statistics' newest hours."""
        ends = [track.end for track in self.tracks.values() if track.end is not None]
        return min(ends) if ends else None

    def _finish(self, reader: LoadProfileReader, now: datetime) -> None:
        self.reader = None
        self.passes += 1
        result = reader.result
        self.available = result.available
        if not result.available:
            self._warn_once("absent", "the meter keeps no load profile; its history is not imported")
            self._next_pass = now + RECHECK_ABSENT
            return
        self.last_error = None
        if result.ring_wrapped:
            # Blocks overwritten during the read were left out; the next pass picks up
            # after the last imported hour, and the next written hour carries any gap.
            self._next_pass = None
            return
        due = now + RETRY_AFTER
        if result.newest_end is not None and result.interval_minutes:
            due = max(due, result.newest_end + timedelta(minutes=result.interval_minutes) + INTERVAL_MARGIN)
        self._next_pass = due

    def _store(self, serial: str, intervals: list[LoadProfileInterval]) -> None:
        """Write the hours these intervals end, per statistic."""
        rows: dict[str, list[StatisticData]] = {}
        for interval in intervals:
            if not hour_end(interval.end):
                continue
            for channel, suffix in CHANNELS.items():
                value = interval.values.get(channel)
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
                        f"the meter's {NAMES[suffix]} register went down at {interval.end.isoformat()} "
                        "(meter exchange or reset?); the history sum continues from the new reading",
                    )
                if row is not None:
                    rows.setdefault(suffix, []).append(row)
        identity = self._identity()
        name = f"NES {identity.model} {serial}" if identity else f"NES {serial}"
        for suffix, statistics in rows.items():
            async_add_external_statistics(self.hass, statistic_metadata(serial, suffix, name), statistics)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _LOGGER.warning("%s: %s", self._entry.title, message)

    async def _async_load(self, serial: str) -> None:
        """Continue from the newest stored row of each statistic."""
        instance = get_instance(self.hass)
        for suffix in CHANNELS.values():
            stat_id = statistic_id(serial, suffix)
            last = await instance.async_add_executor_job(
                get_last_statistics, self.hass, 1, stat_id, False, {"state", "sum"}
            )
            if rows := last.get(stat_id):
                self.tracks[suffix] = track_from(rows[-1])
        self._loaded = True

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
        for suffix in CHANNELS.values():
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
