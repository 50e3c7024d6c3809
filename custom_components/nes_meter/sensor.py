"""Sensors for an NES meter: energy for the Energy dashboard, live values, diagnostics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import (
    EntityCategory,
    Platform,
    UnitOfApparentPower,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfFrequency,
    UnitOfPower,
    UnitOfTime,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from nesmeter import MeterIdentity, MeterSnapshot

from .billing_sensor import billing_sensors
from .compat import PERCENTAGE
from .const import DOMAIN
from .coordinator import NesMeterConfigEntry, NesMeterCoordinator, counter_key
from .counter_sensor import RestoredCounterSensor
from .entity import NesMeterEntity
from .guard import GUARDED_COUNTERS
from .history_sensor import history_sensors
from .power_quality_sensor import power_quality_sensors

PARALLEL_UPDATES = 0

# Newer Home Assistant versions have dedicated classes; older ones get none (HA's rule).
REACTIVE_POWER = SensorDeviceClass.REACTIVE_POWER
REACTIVE_ENERGY: SensorDeviceClass | None = getattr(SensorDeviceClass, "REACTIVE_ENERGY", None)
UNIT_VAR = "var"
UNIT_KVARH = "kvarh"


@dataclass(frozen=True, kw_only=True)
class NesSensorDescription(SensorEntityDescription):
    """How one snapshot field becomes a sensor."""

    value_fn: Callable[[MeterSnapshot], float | datetime | str | None]
    exists_fn: Callable[[MeterIdentity], bool] = lambda _identity: True
    reads: tuple[str, ...]  # the snapshot fields value_fn uses: only these are read from the meter


def _present(source: int) -> Callable[[MeterIdentity], bool]:
    """Check that the meter lists this BT28 source in BT27 (no entity for values a meter lacks)."""
    return lambda identity: source in identity.present_sources


def _summation(index: int) -> Callable[[MeterIdentity], bool]:
    return lambda identity: identity.dimensions.summations > index


def _kilo(name: str) -> Callable[[MeterSnapshot], float | None]:
    def value(snapshot: MeterSnapshot) -> float | None:
        raw = getattr(snapshot, name)
        return None if raw is None else raw / 1000

    return value


def _field(name: str) -> Callable[[MeterSnapshot], float | None]:
    return lambda snapshot: getattr(snapshot, name)


def _percent(name: str) -> Callable[[MeterSnapshot], float | None]:
    def value(snapshot: MeterSnapshot) -> float | None:
        raw = getattr(snapshot, name)
        return None if raw is None else round(raw * 100, 1)

    return value


def clock_offset(meter_time: datetime | None) -> int | None:
    """How far the meter's clock is ahead of Home Assistant's (negative: behind), in whole seconds.

    The meter reports whole seconds, so its clock is read as the middle of that second.
    The meter time itself changes every poll, which would write a recorder row each time;
    it is in the diagnostics instead.
    """
    if meter_time is None:
        return None
    return round((meter_time - dt_util.utcnow()).total_seconds() + 0.5)


def _energy(key: str, index: int, *, reactive: bool = False) -> NesSensorDescription:
    """Describe a BT23 register; active energy is enabled for the Energy dashboard, reactive is opt-in."""
    return NesSensorDescription(
        key=key,
        translation_key=key,
        device_class=REACTIVE_ENERGY if reactive else SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UNIT_KVARH if reactive else UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        value_fn=_kilo(f"{key}_varh" if reactive else f"{key}_wh"),
        reads=(f"{key}_varh" if reactive else f"{key}_wh",),
        exists_fn=_summation(index),
        entity_registry_enabled_default=not reactive,
    )


def _outage(key: str, field: str, index: int, **kwargs: Any) -> NesSensorDescription:
    """Describe a BT23 power-outage counter: diagnostic and opt-in."""
    return NesSensorDescription(
        key=key,
        translation_key=key,
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=_field(field),
        reads=(field,),
        exists_fn=_summation(index),
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        **kwargs,
    )


def _measurement(
    key: str,
    source: int,
    device_class: SensorDeviceClass | None,
    unit: str,
    *,
    value_fn: Callable[[MeterSnapshot], float | None] | None = None,
    field: str | None = None,
    precision: int | None = None,
    enabled: bool = False,
) -> NesSensorDescription:
    """Describe a live BT28 value; ``source`` is its BT27 source id (absent on meters that lack it)."""
    field = field or f"{key}_{unit.lower()}"
    return NesSensorDescription(
        key=key,
        translation_key=key,
        device_class=device_class,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=unit,
        suggested_display_precision=precision,
        value_fn=value_fn or _field(field),
        reads=(field,),
        exists_fn=_present(source),
        entity_registry_enabled_default=enabled,
    )


def _power(key: str, source: int, *, enabled: bool = True) -> NesSensorDescription:
    return _measurement(key, source, SensorDeviceClass.POWER, UnitOfPower.WATT, precision=0, enabled=enabled)


def _phase_sensors() -> list[NesSensorDescription]:
    sensors: list[NesSensorDescription] = []
    for phase in (1, 2, 3):
        sensors += [
            _measurement(
                f"voltage_l{phase}",
                14 + phase,
                SensorDeviceClass.VOLTAGE,
                UnitOfElectricPotential.VOLT,
                precision=1,
                enabled=phase == 1,
            ),
            _measurement(
                f"current_l{phase}",
                11 + phase,
                SensorDeviceClass.CURRENT,
                UnitOfElectricCurrent.AMPERE,
                precision=2,
                enabled=phase == 1,
            ),
            _measurement(
                f"power_factor_l{phase}",
                (18, 21, 22)[phase - 1],
                SensorDeviceClass.POWER_FACTOR,
                PERCENTAGE,
                value_fn=_percent(f"power_factor_l{phase}"),
                field=f"power_factor_l{phase}",
                precision=1,
            ),
            _power(f"power_import_l{phase}", 184 + phase, enabled=False),
            _power(f"power_export_l{phase}", 187 + phase, enabled=False),
        ]
    return sensors


SENSORS: tuple[NesSensorDescription, ...] = (
    _energy("energy_import", 0),
    _energy("energy_export", 1),
    _energy("reactive_energy_import", 2, reactive=True),
    _energy("reactive_energy_export", 3, reactive=True),
    _power("power_import", 8),
    _power("power_export", 9),
    NesSensorDescription(
        key="power_net",
        translation_key="power_net",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        value_fn=lambda snapshot: snapshot.power_net_w,
        reads=("power_import_w", "power_export_w"),
        exists_fn=lambda identity: {8, 9}.issubset(identity.present_sources),
    ),
    _power("average_power_import", 208, enabled=False),
    _power("average_power_export", 209, enabled=False),
    _measurement("reactive_power_import", 10, REACTIVE_POWER, UNIT_VAR),
    _measurement("reactive_power_export", 11, REACTIVE_POWER, UNIT_VAR),
    _measurement("apparent_power", 20, SensorDeviceClass.APPARENT_POWER, UnitOfApparentPower.VOLT_AMPERE),
    _measurement("frequency", 19, SensorDeviceClass.FREQUENCY, UnitOfFrequency.HERTZ, precision=2),
    *_phase_sensors(),
    _outage("power_outage_count", "power_outage_count", 5),
    _outage(
        "power_outage_duration",
        "power_outage_seconds",
        4,
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
    ),
    NesSensorDescription(
        key="clock_offset",
        translation_key="clock_offset",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        suggested_display_precision=0,
        value_fn=lambda snapshot: clock_offset(snapshot.meter_time),
        reads=("meter_time",),
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
    ),
)


# The library names what went wrong in its own terms (C12.18 response names, MEP result
# codes, link events); the sensor shows what it means for the user, translated. The
# exact name is still counted in the diagnostics.
LAST_ERROR_STATES: Final[dict[str, str]] = {
    "timeout": "timeout",
    "bad_frame": "corrupt_reply",
    "bad_crc": "corrupt_reply",
    "stray_byte": "corrupt_reply",
    "nak": "nak",
    "duplicate": "duplicate",
    "security_rejected": "key_rejected",
    "isc": "key_rejected",  # C12.18: insufficient security clearance
    "0x0B": "key_rejected",  # MEP: authentication failure
    "bsy": "busy",
    "dnr": "busy",  # C12.18: data not ready
    "err": "refused",
    "sns": "refused",
    "onp": "refused",
    "iar": "refused",
    "dlk": "refused",
    "0x01": "refused",
    "0x02": "refused",
    "0x03": "refused",
    "0x04": "refused",
    "0x05": "refused",
    "isss": "out_of_sequence",
    "rno": "out_of_sequence",
    "0x0C": "out_of_sequence",
    "0x0A": "tls_required",
    "late_reply": "timeout",  # MEP: an answer that came after its timeout, dropped
    "tls_refused": "key_rejected",  # MEP TLS: the key exchange was refused
    "tls_session_lost": "out_of_sequence",  # MEP TLS: the meter no longer knows the session
    "tls_result_damaged": "corrupt_reply",
    "tls_style_reply": "tls_required",  # MEP: a bare 0A/01, as a TLS-only meter may answer
}
LAST_ERROR_OPTIONS: Final[list[str]] = ["none", *dict.fromkeys(LAST_ERROR_STATES.values()), "other"]


def last_error_state(name: str | None) -> str:
    """Map the library's last error name to an enum state; new names show as ``other``."""
    if name is None:
        return "none"
    return LAST_ERROR_STATES.get(name, "other")


@dataclass(frozen=True, kw_only=True)
class NesLinkSensorDescription(SensorEntityDescription):
    """A connection diagnostic taken from the client's counters."""

    value_fn: Callable[[NesMeterCoordinator], float | str | None]


LINK_SENSORS: tuple[NesLinkSensorDescription, ...] = (
    NesLinkSensorDescription(
        key="last_error",
        translation_key="last_error",
        device_class=SensorDeviceClass.ENUM,
        options=LAST_ERROR_OPTIONS,
        value_fn=lambda coordinator: last_error_state(coordinator.client.stats.last_error),
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
    ),
    NesLinkSensorDescription(
        key="retries",
        translation_key="retries",
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda coordinator: coordinator.client.stats.retries,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: NesMeterConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the sensors this meter's dimension tables say it has."""
    coordinator = entry.runtime_data
    identity = coordinator.identity
    assert identity is not None
    counters = {counter_key(name) for name in GUARDED_COUNTERS}
    entities: list[SensorEntity] = [
        (NesMeterCounterSensor if description.key in counters else NesMeterSensor)(coordinator, identity, description)
        for description in SENSORS
        if description.exists_fn(identity)
    ]
    entities += [NesLinkSensor(coordinator, identity, description) for description in LINK_SENSORS]
    entities += history_sensors(coordinator, identity)
    entities += billing_sensors(coordinator, identity)
    entities += power_quality_sensors(coordinator, identity)
    async_add_entities(entities)
    coordinator.client.set_wanted(_wanted_fields(hass, identity))


def _wanted_fields(hass: HomeAssistant, identity: MeterIdentity) -> set[str]:
    """Return the snapshot fields the enabled sensors show: only those are read from the meter.

    Enabling or disabling an entity reloads the entry, which comes back here.
    """
    registry = er.async_get(hass)
    wanted: set[str] = set()
    for description in SENSORS:
        entity_id = registry.async_get_entity_id(
            Platform.SENSOR, DOMAIN, f"{identity.utility_serial}_{description.key}"
        )
        entry = registry.async_get(entity_id) if entity_id else None
        if entry.disabled if entry is not None else not description.entity_registry_enabled_default:
            continue
        wanted.update(description.reads)
    return wanted


class NesMeterSensor(NesMeterEntity, SensorEntity):
    """A value from the meter's registers or present values."""

    entity_description: NesSensorDescription

    @property
    def native_value(self) -> float | datetime | str | None:
        """Return the value from the last (guarded) reading."""
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Flag on total import power whether the per-phase powers add up to it."""
        if self.entity_description.key != "power_import":
            return None
        return {"phase_sum_mismatch": self.coordinator.guard.phase_mismatch}


class NesMeterCounterSensor(RestoredCounterSensor, NesMeterSensor):
    """An energy register: its last value is kept across restarts as the guard's baseline."""


class NesLinkSensor(NesMeterEntity, SensorEntity):
    """Connection health; available even while the meter is not."""

    entity_description: NesLinkSensorDescription

    @property
    def available(self) -> bool:
        """Stay available: connection health matters most while the meter is not."""
        return True

    @property
    def native_value(self) -> float | str | None:
        """Return the client's counter or last error."""
        return self.entity_description.value_fn(self.coordinator)
