"""Diagnostic sensors showing how far the meter history import has come (``history.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from homeassistant.components.sensor import SensorDeviceClass, SensorEntity, SensorEntityDescription
from homeassistant.const import EntityCategory, UnitOfTime
from homeassistant.core import callback

from nesmeter import MeterIdentity

from .coordinator import NesMeterCoordinator
from .entity import NesMeterEntity
from .history import HistoryImporter


@dataclass(frozen=True, kw_only=True)
class NesHistorySensorDescription(SensorEntityDescription):
    """A figure from the history importer."""

    value_fn: Callable[[HistoryImporter], datetime | int | None]


HISTORY_SENSORS: tuple[NesHistorySensorDescription, ...] = (
    NesHistorySensorDescription(
        key="history_imported_until",
        translation_key="history_imported_until",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=lambda importer: importer.imported_until,
        entity_category=EntityCategory.DIAGNOSTIC,
    ),
    NesHistorySensorDescription(
        key="history_pending",
        translation_key="history_pending",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.HOURS,
        suggested_display_precision=0,
        value_fn=lambda importer: importer.pending_hours,
        entity_category=EntityCategory.DIAGNOSTIC,
    ),
)


def history_sensors(coordinator: NesMeterCoordinator, identity: MeterIdentity) -> list[SensorEntity]:
    """Create the history sensors when history is imported at all (the recorder runs)."""
    if not coordinator.history.enabled:
        return []
    return [NesHistorySensor(coordinator, identity, description) for description in HISTORY_SENSORS]


class NesHistorySensor(NesMeterEntity, SensorEntity):
    """The newest imported hour, or the hours still to import; unavailable without a load profile."""

    entity_description: NesHistorySensorDescription

    async def async_added_to_hass(self) -> None:
        """Follow the import as it goes: its reads run between the polls."""
        await super().async_added_to_hass()
        self.async_on_remove(self.coordinator.history.add_listener(self._progress))

    @callback
    def _progress(self) -> None:
        if self.hass is not None:
            self.async_write_ha_state()

    @property
    def available(self) -> bool:
        """Unavailable once a pass has found that the meter keeps no load profile."""
        return self.coordinator.history.available is not False

    @property
    def native_value(self) -> datetime | int | None:
        """Return the importer's figure."""
        return self.entity_description.value_fn(self.coordinator.history)
