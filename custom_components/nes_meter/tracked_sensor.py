"""Sensors whose values come from the rare reads (billing, power quality), not the live poll.

Each value is taken from the coordinator's trackers when the coordinator updates (the
rare reads run inside its poll), so these sensors go unavailable with the meter, like
the live ones. The meter's own time of a value goes into the attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from homeassistant.components.sensor import SensorEntity, SensorEntityDescription
from homeassistant.util import dt as dt_util

from .coordinator import NesMeterCoordinator
from .counter_sensor import RestoredCounterSensor
from .entity import NesMeterEntity

type Value = float | int | str | datetime | None
type ValueFn = Callable[[NesMeterCoordinator], Value]


@dataclass(frozen=True, kw_only=True)
class NesTrackedSensorDescription(SensorEntityDescription):
    """How one value of a tracker becomes a sensor."""

    value_fn: ValueFn
    attributes_fn: Callable[[NesMeterCoordinator], dict[str, Any] | None] = lambda _coordinator: None


class NesTrackedSensor(NesMeterEntity, SensorEntity):
    """A value the rare reads keep."""

    entity_description: NesTrackedSensorDescription

    @property
    def native_value(self) -> Value:
        """Return the tracker's newest value."""
        return self.entity_description.value_fn(self.coordinator)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Return when the meter recorded the value, and what else it said about it."""
        return self.entity_description.attributes_fn(self.coordinator)


class NesTrackedCounterSensor(RestoredCounterSensor, NesTrackedSensor):
    """An energy register kept by a tracker: restored across restarts as the guard's baseline."""


def utc_text(when: datetime | None) -> str | None:
    """Format an aware meter time as ISO 8601 for an attribute."""
    return when.isoformat() if when else None


def meter_local(coordinator: NesMeterCoordinator, when: datetime | None) -> datetime | None:
    """Return a meter local time (the BT55 clock of billing stamps) as an aware UTC time.

    The meter keeps local time with its own zone settings (BT53), which need not be
    Home Assistant's (many meters keep standard time all year): the offset its BT55
    clock shows against UTC is used; Home Assistant's zone only when BT55 is unknown.
    """
    if when is None:
        return None
    offset = coordinator.billing.utc_offset
    if offset is None:
        return dt_util.as_utc(when.replace(tzinfo=dt_util.get_default_time_zone()))
    return (when - offset).replace(tzinfo=UTC)
