"""Event entities: the meter's event log, one entity per family of events.

The entity's state is when Home Assistant saw the entry; the meter's own (UTC) time of
the entry, its sequence number, event id, argument, what the argument says (``phase``,
``voltage_v``, ``reset_cause``, ... per ``nesmeter.tables.event_ids``) and user are in the
attributes, and ``other_meaning`` where another source reads the id differently.
Entries logged before the integration was first set up are not fired.
"""

from __future__ import annotations

from typing import Any

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from nesmeter import MeterIdentity
from nesmeter.tables.events import FAMILIES, HistoryEntry, event_types

from .coordinator import NesMeterConfigEntry, NesMeterCoordinator
from .entity import NesMeterEntity

PARALLEL_UPDATES = 0

# "other" (head-end reads and writes, unknown ids) is opt-in: it fires on every utility read.
DESCRIPTIONS: tuple[EventEntityDescription, ...] = tuple(
    EventEntityDescription(
        key=f"{family}_event",
        translation_key=f"{family}_event",
        event_types=list(event_types(family)),
        entity_registry_enabled_default=family != "other",
    )
    for family in FAMILIES
)


async def async_setup_entry(
    hass: HomeAssistant, entry: NesMeterConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """One event entity per family, for a meter that keeps an event log."""
    coordinator = entry.runtime_data
    identity = coordinator.identity
    assert identity is not None
    if not coordinator.events.has_event_log:
        return
    async_add_entities(NesMeterEvent(coordinator, identity, description) for description in DESCRIPTIONS)


class NesMeterEvent(NesMeterEntity, EventEntity):
    """Fires once for each new entry of its family in the meter's event log."""

    def __init__(
        self, coordinator: NesMeterCoordinator, identity: MeterIdentity, description: EventEntityDescription
    ) -> None:
        """Describe the family this entity fires for."""
        super().__init__(coordinator, identity, description)
        self._family = description.key.removesuffix("_event")

    async def async_added_to_hass(self) -> None:
        """Listen to the event log."""
        await super().async_added_to_hass()
        self.async_on_remove(self.coordinator.events.async_add_listener(self._handle_entry))

    @callback
    def _handle_entry(self, entry: HistoryEntry) -> None:
        if entry.family != self._family:
            return
        attributes: dict[str, Any] = {
            "meter_time": entry.time.isoformat() if entry.time else None,
            "sequence": entry.sequence,
            "event_id": entry.event_id,
            "argument": entry.argument,
            **entry.details,
            "user": entry.user,
        }
        if entry.other_meaning is not None:
            attributes["other_meaning"] = entry.other_meaning
        self._trigger_event(entry.name, attributes)
        self.async_write_ha_state()
