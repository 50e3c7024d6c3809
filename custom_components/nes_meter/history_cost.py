"""What the meter history's hours cost: statistics the Energy dashboard can take as cost.

Since 2026.3 the Energy dashboard accepts no entity or fixed price on an external
statistic, so the integration keeps the cost itself, as core's opower and tibber do:
``nes_meter:<serial>_energy_import_cost`` and ``..._energy_export_compensation``, in the
installation's currency, ``has_sum``, one row per hour the history statistics have.

The price is an option: a fixed price per kWh, or a price entity (a Nord Pool sensor, say),
whose hourly mean the recorder keeps. An hour costs its energy (the increase of the
history statistic's sum) times its price: the entity's mean of that hour; for an hour before
the entity's first compiled hour, its first mean (or, with no statistics at all, its
state); an hour newer than the newest compiled one waits until the recorder has compiled it
(the next pass prices it). Units ``<currency>/kWh``, ``/MWh`` and ``/Wh`` are understood;
any other is taken as per kWh.

An hour is priced once: its cost row is never written again, so when the price (or the
option) changes, hours already priced keep theirs. Rows are priced in order from the newest
cost row on, so hours imported later (after downtime, or the first import after the option
was set) are priced too: at load the hours the history holds beyond the newest cost row are
queued from the recorder, and every row the importer writes later is queued as it is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
import logging
from typing import TYPE_CHECKING, Any, Final

from homeassistant.components.recorder.statistics import (
    async_add_external_statistics,
    get_last_statistics,
    statistics_during_period,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance

from .const import CONF_EXPORT_PRICE, CONF_EXPORT_PRICE_ENTITY, CONF_IMPORT_PRICE, CONF_IMPORT_PRICE_ENTITY
from .history_metadata import sum_metadata

if TYPE_CHECKING:
    from homeassistant.components.recorder.models import StatisticData, StatisticMetaData

_LOGGER = logging.getLogger(__name__)

HOUR: Final = timedelta(hours=1)
COST_DIGITS: Final = 6
EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
# energy statistic suffix -> (cost suffix, name, fixed price option, price entity option)
COSTS: Final[dict[str, tuple[str, str, str, str]]] = {
    "energy_import": ("energy_import_cost", "energy import cost", CONF_IMPORT_PRICE, CONF_IMPORT_PRICE_ENTITY),
    "energy_export": (
        "energy_export_compensation",
        "energy export compensation",
        CONF_EXPORT_PRICE,
        CONF_EXPORT_PRICE_ENTITY,
    ),
}
PER_KWH: Final[dict[str, float]] = {"/kwh": 1.0, "/mwh": 1e-3, "/wh": 1e3}


@dataclass(frozen=True, slots=True)
class Price:
    """A fixed price per kWh, or the entity whose hourly mean is the price."""

    fixed: float | None = None
    entity_id: str | None = None


def prices(options: Mapping[str, Any]) -> dict[str, Price]:
    """Return the priced energy statistics of an entry's options (an entity wins over a fixed price)."""
    out: dict[str, Price] = {}
    for energy, (_suffix, _name, fixed_key, entity_key) in COSTS.items():
        if entity := options.get(entity_key):
            out[energy] = Price(entity_id=str(entity))
        elif (fixed := options.get(fixed_key)) is not None:
            out[energy] = Price(fixed=float(fixed))
    return out


def per_kwh(value: float, unit: str | None) -> float:
    """Return a price in ``unit`` (``DKK/MWh``...) per kWh."""
    lowered = (unit or "").replace(" ", "").lower()
    for tail, factor in PER_KWH.items():
        if lowered.endswith(tail):
            return value * factor
    return value


@dataclass(slots=True)
class CostTrack:
    """One cost statistic: its newest row's end and sum, the energy sum there, the rows to price."""

    end: datetime | None = None
    total: float = 0.0
    energy_sum: float | None = None
    queue: list[tuple[datetime, float]] = field(default_factory=list)  # (hour end, energy sum)

    def add(self, end: datetime, energy_sum: float) -> None:
        """Queue an hour of the energy statistic (one priced already is left alone)."""
        if self.end is not None and end <= self.end:
            if end == self.end and self.energy_sum is None:
                self.energy_sum = energy_sum  # the base the next hour's energy counts from
            return
        if self.queue and end <= self.queue[-1][0]:
            self.queue = [item for item in self.queue if item[0] < end]  # rewritten: the newer reading counts
        self.queue.append((end, energy_sum))


class HistoryCost:
    """Keeps the cost statistics of one meter's history statistics."""

    def __init__(self, hass: HomeAssistant, options: Mapping[str, Any]) -> None:
        """Price what ``options`` say; nothing when they name no price."""
        self.hass = hass
        self.prices = prices(options)
        self.tracks: dict[str, CostTrack] = {energy: CostTrack() for energy in self.prices}
        self.waiting: dict[str, str] = {}  # energy suffix -> why its newest hours wait

    @property
    def due(self) -> bool:
        """Whether hours wait to be priced."""
        return any(track.queue for track in self.tracks.values())

    def as_dict(self) -> dict[str, Any]:
        """Return what diagnostics show: which price, priced until when, what waits."""
        return {
            energy: {
                "price": "entity" if price.entity_id else "fixed",
                "priced_until": track.end.isoformat() if (track := self.tracks[energy]).end else None,
                "hours_waiting": len(track.queue),
                "waiting_for": self.waiting.get(energy),
            }
            for energy, price in self.prices.items()
        }

    async def async_load(self, stat_id: Callable[[str], str], name: str) -> None:
        """Continue from the newest cost rows and queue the energy hours beyond them.

        ``stat_id(suffix)`` is the statistic id of a suffix (this meter's serial).
        """
        instance = get_instance(self.hass)
        for energy, track in self.tracks.items():
            cost_id = stat_id(COSTS[energy][0])
            last = await instance.async_add_executor_job(get_last_statistics, self.hass, 1, cost_id, False, {"sum"})
            since = EPOCH
            if rows := last.get(cost_id):
                track.end = _start(rows[-1]["start"]) + HOUR
                track.total = float(rows[-1].get("sum") or 0.0)
                since = track.end - HOUR  # its own hour: the energy sum the next counts from
            energy_id = stat_id(energy)
            stored = await instance.async_add_executor_job(
                statistics_during_period, self.hass, since, None, {energy_id}, "hour", None, {"sum"}
            )
            for row in stored.get(energy_id, []):
                track.add(_start(row["start"]) + HOUR, float(row.get("sum") or 0.0))
        await self.async_price(stat_id, name)

    def note_rows(self, energy: str, rows: list[StatisticData]) -> None:
        """Queue the rows the importer just wrote to the energy statistic ``energy``."""
        if (track := self.tracks.get(energy)) is not None:
            for row in rows:
                track.add(row["start"] + HOUR, float(row.get("sum") or 0.0))

    async def async_price(self, stat_id: Callable[[str], str], name: str) -> None:
        """Write the cost of every queued hour whose price is known."""
        currency = self.hass.config.currency
        for energy, track in self.tracks.items():
            if not track.queue:
                continue
            price = self.prices[energy]
            hourly = await self._hourly_prices(price)
            rows: list[StatisticData] = []
            while track.queue:
                end, energy_sum = track.queue[0]
                unit_price = hourly(end - HOUR)
                if unit_price is None:
                    self.waiting[energy] = "the price entity's hourly mean"
                    break
                base = energy_sum if track.energy_sum is None else track.energy_sum
                track.total = round(track.total + max(0.0, energy_sum - base) * unit_price, COST_DIGITS)
                track.end, track.energy_sum = end, energy_sum
                rows.append({"start": end - HOUR, "sum": track.total, "state": unit_price})
                track.queue.pop(0)
            else:
                self.waiting.pop(energy, None)
            if rows:
                suffix, label, _fixed, _entity = COSTS[energy]
                async_add_external_statistics(
                    self.hass, cost_metadata(stat_id(suffix), f"{name} {label}", currency), rows
                )

    async def _hourly_prices(self, price: Price) -> Callable[[datetime], float | None]:
        """Return ``price_of(hour start) -> price per kWh, None while not known``."""
        if price.entity_id is None:
            fixed = price.fixed
            return lambda _start: fixed
        entity_id = price.entity_id
        state = self.hass.states.get(entity_id)
        unit = state.attributes.get("unit_of_measurement") if state else None
        stored = await get_instance(self.hass).async_add_executor_job(
            statistics_during_period, self.hass, EPOCH, None, {entity_id}, "hour", None, {"mean"}
        )
        means = {
            _start(row["start"]): per_kwh(mean, unit)
            for row in stored.get(entity_id, [])
            if (mean := row.get("mean")) is not None
        }
        current: float | None = None
        if state is not None:
            try:
                current = per_kwh(float(state.state), unit)
            except ValueError:
                current = None
        if not means:
            return lambda _start: current
        oldest, newest = min(means), max(means)

        def price_of(start: datetime) -> float | None:
            if start in means:
                return means[start]
            if start < oldest:
                return means[oldest]  # before the entity's statistics began: its first mean
            if start > newest:
                return None  # not compiled yet: the next pass prices it
            earlier = max(hour for hour in means if hour < start)  # a gap in its statistics
            return means[earlier]

        return price_of


def cost_metadata(stat_id: str, name: str, currency: str) -> StatisticMetaData:
    """Metadata of a cost statistic: the installation's currency, a sum, no mean, no unit class."""
    return sum_metadata(stat_id, f"{name} (meter history)", currency, None)


def _start(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
