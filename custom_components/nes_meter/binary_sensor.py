"""Binary sensors: the meter's alarm bits (BT03), phase loss now (ET09), MEP alert flags (ET13).

Alarm bits are latched until the utility clears them: only the bits inside the status
length the meter reports are created, and only for a meter that answers BT03;
``latched_since`` is when Home Assistant first saw the bit set. Phase loss is the live
condition ET09 reports per measured phase. The alert flags are what the meter signals
to a MEP client with alert markers (read only when it does): they exist on MEP only and
are opt-in, as they mean most to a client registered with the utility.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from nesmeter.tables import tables
from nesmeter.tables.events import STATUS_BITS

from .const import TRANSPORT_MEP
from .coordinator import NesMeterConfigEntry, NesMeterCoordinator
from .entity import NesMeterEntity
from .power_quality_sensor import measured_phases
from .tracked_sensor import utc_text

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


@dataclass(frozen=True, kw_only=True)
class NesBinarySensorDescription(BinarySensorEntityDescription):
    """A condition the coordinator knows from its live poll or its rare reads."""

    is_on_fn: Callable[[NesMeterCoordinator], bool | None]
    attributes_fn: Callable[[NesMeterCoordinator], dict[str, Any] | None] = lambda _coordinator: None


def _phase_loss(phase: int) -> NesBinarySensorDescription:
    return NesBinarySensorDescription(
        key=f"phase_loss_l{phase}",
        translation_key="phase_loss_now",
        translation_placeholders={"phase": f"L{phase}"},
        device_class=BinarySensorDeviceClass.PROBLEM,
        is_on_fn=lambda coordinator: quality.phase_loss[phase - 1]
        if (quality := coordinator.quality.quality)
        else None,
        attributes_fn=lambda coordinator: (
            {"count": quality.phase_loss_counts[phase - 1], "last": utc_text(quality.phase_loss_last[phase - 1])}
            if (quality := coordinator.quality.quality)
            else None
        ),
    )


def _alert_flag(name: str) -> NesBinarySensorDescription:
    return NesBinarySensorDescription(
        key=f"alert_{name}",
        translation_key=f"alert_{name}",
        is_on_fn=lambda coordinator: name in coordinator.data.alert_flags,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
    )


async def async_setup_entry(
    hass: HomeAssistant, entry: NesMeterConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """One binary sensor per alarm bit the meter reports, phase and alert flag it has."""
    coordinator = entry.runtime_data
    identity = coordinator.identity
    assert identity is not None
    entities: list[BinarySensorEntity] = []
    if (status := coordinator.events.status) is not None:
        entities += [NesMeterAlarm(coordinator, identity, DESCRIPTIONS[name]) for name in status.reported]
    conditions: list[NesBinarySensorDescription] = []
    if coordinator.quality.has_power_quality:
        conditions += [_phase_loss(phase) for phase in measured_phases(identity)]
    if coordinator.client.transport == TRANSPORT_MEP:
        conditions += [_alert_flag(name) for name in tables.ET13_ALERT_FLAG_NAMES.values()]
    entities += [NesMeterCondition(coordinator, identity, description) for description in conditions]
    async_add_entities(entities)


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


class NesMeterCondition(NesMeterEntity, BinarySensorEntity):
    """On while the meter reports the condition."""

    entity_description: NesBinarySensorDescription

    @property
    def is_on(self) -> bool | None:
        """Whether the last read reported the condition."""
        return self.entity_description.is_on_fn(self.coordinator)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """What else the meter said about it."""
        return self.entity_description.attributes_fn(self.coordinator)
