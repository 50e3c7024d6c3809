"""Binary sensors for the meter's alarm bits (BT03): latched until the utility clears them.

Only the bits inside the status length the meter reports are created, and only for a
meter that answers BT03. ``latched_since`` is when Home Assistant first saw the bit set.
"""

from __future__ import annotations

from typing import Any, Final

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import NesMeterConfigEntry
from .entity import NesMeterEntity
from .meter.events import STATUS_BITS

PARALLEL_UPDATES = 0

TAMPER: Final = frozenset({"cover_removed", "magnetic_tamper"})
BATTERY: Final = frozenset({"low_battery"})
# Enabled for a new user: tampering and the faults a household would want to hear of.
# The rest are opt-in: normal in many homes (reverse energy with solar panels) or rare.
ENABLED: Final = frozenset(
    {"cover_removed", "magnetic_tamper", "phase_loss", "power_quality_event", "clock_error", "nvm_failure"}
)


def _description(name: str) -> BinarySensorEntityDescription:
    if name in TAMPER:
        device_class = BinarySensorDeviceClass.TAMPER
    elif name in BATTERY:
        device_class = BinarySensorDeviceClass.BATTERY
    else:
        device_class = BinarySensorDeviceClass.PROBLEM
    return BinarySensorEntityDescription(
        key=f"alarm_{name}",
        translation_key=f"alarm_{name}",
        device_class=device_class,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=name in ENABLED,
    )


DESCRIPTIONS: Final = {name: _description(name) for name in STATUS_BITS.values()}


async def async_setup_entry(
    hass: HomeAssistant, entry: NesMeterConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """One binary sensor per alarm bit the meter reports."""
    coordinator = entry.runtime_data
    identity = coordinator.identity
    assert identity is not None
    status = coordinator.events.status
    if status is None:
        return
    async_add_entities(NesMeterAlarm(coordinator, identity, DESCRIPTIONS[name]) for name in status.reported)


class NesMeterAlarm(NesMeterEntity, BinarySensorEntity):
    """On while the meter holds the alarm bit set."""

    @property
    def _name(self) -> str:
        return self.entity_description.key.removeprefix("alarm_")

    @property
    def is_on(self) -> bool | None:
        """Whether the bit is set in the last BT03 read."""
        status = self.coordinator.events.status
        return None if status is None else status.is_set(self._name)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """When Home Assistant first saw the bit set."""
        since = self.coordinator.events.latched_since.get(self._name)
        return {"latched_since": since.isoformat()} if since else None
