"""Sensors of the M-Bus devices behind the meter: each device its own Home Assistant device.

Each gas, water or heat meter the electricity meter reads becomes a device linked to the
meter (``via_device``) and named after its medium and serial. Volumes (gas and water in
m³) and heat energy (kWh) are totals the Energy dashboard takes; flow, power and
temperatures are measurements; the time of the meter's read of the device is a
timestamp sensor, the device's own clock its attribute. A device gets the sensors its
telegram has values for; unique ids are built from its M-Bus identity (manufacturer and
serial), so a device keeps its history when it moves to another slot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from homeassistant.components.sensor import SensorDeviceClass, SensorEntity, SensorStateClass
from homeassistant.const import (
    EntityCategory,
    UnitOfEnergy,
    UnitOfPower,
    UnitOfTemperature,
    UnitOfTime,
    UnitOfVolume,
    UnitOfVolumeFlowRate,
)
from homeassistant.helpers.device_registry import DeviceInfo

from nesmeter import MeterIdentity
from nesmeter.client.mbus_reader import MbusDevice

from .compat import linked_device_info
from .const import DOMAIN
from .coordinator import NesMeterCoordinator
from .counter_sensor import RestoredCounterSensor
from .mbus_tracker import COUNTERS, device_id
from .tracked_sensor import NesTrackedSensor, NesTrackedSensorDescription, Value, meter_local

WATER_MEDIA: Final = frozenset({"water", "cold_water", "hot_water"})
DEVICE_KEYS: Final = {  # medium -> the device name's translation key
    "gas": "mbus_gas",
    "water": "mbus_water",
    "cold_water": "mbus_water",
    "hot_water": "mbus_hot_water",
    "heat": "mbus_heat",
    "cooling": "mbus_heat",
}


@dataclass(frozen=True, kw_only=True)
class MbusValue:
    """How one telegram value becomes a sensor."""

    key: str
    device_class: SensorDeviceClass | None
    unit: str | None
    state_class: SensorStateClass
    category: EntityCategory | None = None
    enabled: bool = True


VALUES: Final = (
    MbusValue(key="energy_kwh", device_class=SensorDeviceClass.ENERGY, unit=UnitOfEnergy.KILO_WATT_HOUR,
              state_class=SensorStateClass.TOTAL_INCREASING),
    MbusValue(key="power_w", device_class=SensorDeviceClass.POWER, unit=UnitOfPower.WATT,
              state_class=SensorStateClass.MEASUREMENT),
    MbusValue(key="flow_m3h", device_class=SensorDeviceClass.VOLUME_FLOW_RATE,
              unit=UnitOfVolumeFlowRate.CUBIC_METERS_PER_HOUR, state_class=SensorStateClass.MEASUREMENT),
    MbusValue(key="flow_temperature_c", device_class=SensorDeviceClass.TEMPERATURE, unit=UnitOfTemperature.CELSIUS,
              state_class=SensorStateClass.MEASUREMENT),
    MbusValue(key="return_temperature_c", device_class=SensorDeviceClass.TEMPERATURE,
              unit=UnitOfTemperature.CELSIUS, state_class=SensorStateClass.MEASUREMENT),
    # a difference in kelvin is not a temperature to convert to °C: no device class
    MbusValue(key="temperature_difference_k", device_class=None, unit=UnitOfTemperature.KELVIN,
              state_class=SensorStateClass.MEASUREMENT),
    MbusValue(key="external_temperature_c", device_class=SensorDeviceClass.TEMPERATURE,
              unit=UnitOfTemperature.CELSIUS, state_class=SensorStateClass.MEASUREMENT),
    MbusValue(key="on_time_s", device_class=SensorDeviceClass.DURATION, unit=UnitOfTime.SECONDS,
              state_class=SensorStateClass.TOTAL_INCREASING, category=EntityCategory.DIAGNOSTIC, enabled=False),
)  # fmt: skip


def mbus_sensors(coordinator: NesMeterCoordinator, identity: MeterIdentity) -> list[SensorEntity]:
    """Create the sensors of every M-Bus device that sent a telegram."""
    entities: list[SensorEntity] = []
    for device in coordinator.mbus.devices.values():
        telegram = device.telegram
        if telegram is None:
            continue
        info = _device_info(coordinator, device, identity)
        ident = device_id(device)
        descriptions = [_volume(ident, telegram.medium)] if "volume_m3" in telegram.values else []
        descriptions += [_value(ident, value) for value in VALUES if value.key in telegram.values]
        descriptions.append(_read_at(ident))
        entities += [
            (NesMbusCounterSensor if description.key in COUNTERS else NesMbusSensor)(
                coordinator, identity, description, ident, info
            )
            for description in descriptions
        ]
    return entities


def _device_info(coordinator: NesMeterCoordinator, device: MbusDevice, identity: MeterIdentity) -> DeviceInfo:
    telegram = device.telegram
    assert telegram is not None
    medium = telegram.medium
    key = DEVICE_KEYS.get(medium, "mbus_other")
    return linked_device_info(
        coordinator.hass,
        coordinator.config_entry,
        (DOMAIN, identity.utility_serial),
        identifiers={(DOMAIN, f"mbus_{device_id(device)}")},
        manufacturer=telegram.manufacturer or None,
        model=f"M-Bus {medium.replace('_', ' ')} meter",
        serial_number=telegram.serial,
        hw_version=str(telegram.version),
        translation_key=key,
        translation_placeholders={"serial": telegram.serial},
    )


def _reader(ident: str, key: str) -> Callable[[NesMeterCoordinator], Value]:
    return lambda coordinator: coordinator.mbus.value(ident, key)


def _volume(ident: str, medium: str) -> NesTrackedSensorDescription:
    device_class = SensorDeviceClass.GAS if medium == "gas" else SensorDeviceClass.VOLUME
    if medium in WATER_MEDIA:
        device_class = SensorDeviceClass.WATER
    return NesTrackedSensorDescription(
        key="volume_m3",
        translation_key="mbus_volume",
        device_class=device_class,
        native_unit_of_measurement=UnitOfVolume.CUBIC_METERS,
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=_reader(ident, "volume_m3"),
    )


def _value(ident: str, value: MbusValue) -> NesTrackedSensorDescription:
    return NesTrackedSensorDescription(
        key=value.key,
        translation_key=f"mbus_{value.key.rsplit('_', 1)[0]}",
        device_class=value.device_class,
        native_unit_of_measurement=value.unit,
        state_class=value.state_class,
        entity_category=value.category,
        entity_registry_enabled_default=value.enabled,
        value_fn=_reader(ident, value.key),
    )


def _read_at(ident: str) -> NesTrackedSensorDescription:
    def read_at(coordinator: NesMeterCoordinator) -> Value:
        device = coordinator.mbus.device(ident)
        return meter_local(coordinator, device.read_at) if device is not None else None

    def attributes(coordinator: NesMeterCoordinator) -> dict[str, Any] | None:
        return {"device_time": coordinator.mbus.value(ident, "device_time")}

    return NesTrackedSensorDescription(
        key="read_at",
        translation_key="mbus_read_at",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=read_at,
        attributes_fn=attributes,
    )


class NesMbusSensor(NesTrackedSensor):
    """A value of one M-Bus device, on that device's page."""

    def __init__(
        self,
        coordinator: NesMeterCoordinator,
        identity: MeterIdentity,
        description: NesTrackedSensorDescription,
        ident: str,
        info: DeviceInfo,
    ) -> None:
        """Describe ``description``'s value of the device ``ident`` names, behind the meter ``identity`` names."""
        super().__init__(coordinator, identity, description)
        self.ident = ident
        self._attr_unique_id = f"{identity.utility_serial}_mbus_{ident}_{description.key}"
        self._attr_device_info = info


class NesMbusCounterSensor(RestoredCounterSensor, NesMbusSensor):
    """A device's volume or heat energy: restored across restarts as the counter guard's baseline."""

    def restore_baseline(self, value: float, seen: datetime) -> None:
        """Hand the restored value (m³ or kWh) to the M-Bus counter guard."""
        self.coordinator.mbus.restore(self.ident, self.entity_description.key, value, seen)
