"""Power quality sensors (ET09) and the disconnect switch (ET23.94), for meters that have them.

Named after dsmr's power-failure and sag/swell sensors. Sag and swell counters, the
last event's voltage and the frequency extremes are diagnostic and off by default (they
interest few households); the last outage and the short-outage counter are on. Phase
sensors exist for the phases the meter measures (BT27 lists their voltages).
"""

from __future__ import annotations

from collections.abc import Callable

from homeassistant.components.sensor import SensorDeviceClass, SensorEntity, SensorStateClass
from homeassistant.const import EntityCategory, UnitOfElectricPotential, UnitOfFrequency, UnitOfTime

from nesmeter import MeterIdentity
from nesmeter.tables.power_quality import PhaseEvents, PowerQuality
from nesmeter.tables.relay import RELAY_STATES

from .coordinator import NesMeterCoordinator
from .tracked_sensor import NesTrackedSensor, NesTrackedSensorDescription, Value, utc_text

VOLTAGE_SOURCES = (15, 16, 17)  # BT28 voltage L1-L3: the phases a meter measures


def measured_phases(identity: MeterIdentity) -> tuple[int, ...]:
    """Return the phases (1-3) whose voltage the meter lists; phase 1 at least."""
    return tuple(phase for phase, source in enumerate(VOLTAGE_SOURCES, 1) if source in identity.present_sources) or (1,)


def power_quality_sensors(coordinator: NesMeterCoordinator, identity: MeterIdentity) -> list[SensorEntity]:
    """Create the power quality and disconnect sensors the meter has."""
    descriptions: list[NesTrackedSensorDescription] = []
    if coordinator.quality.has_power_quality:
        for phase in measured_phases(identity):
            descriptions += [_phase_events("sag", phase), _phase_events("swell", phase)]
            descriptions += [_event_voltage("sag", phase), _event_voltage("swell", phase)]
        descriptions += [_frequency("min"), _frequency("max"), *_outage_sensors()]
    if coordinator.quality.has_disconnect:
        descriptions.append(
            NesTrackedSensorDescription(
                key="disconnect_switch",
                translation_key="disconnect_switch",
                device_class=SensorDeviceClass.ENUM,
                options=list(RELAY_STATES),
                value_fn=lambda coordinator: coordinator.quality.relay,
            )
        )
    return [NesTrackedSensor(coordinator, identity, description) for description in descriptions]


def _quality(pick: Callable[[PowerQuality], Value]) -> Callable[[NesMeterCoordinator], Value]:
    return lambda coordinator: pick(quality) if (quality := coordinator.quality.quality) else None


def _events(kind: str, phase: int) -> Callable[[PowerQuality], PhaseEvents]:
    return lambda quality: (quality.sags if kind == "sag" else quality.swells)[phase - 1]


def _last_time(kind: str, phase: int) -> Callable[[NesMeterCoordinator], dict[str, str | None] | None]:
    events = _events(kind, phase)
    return lambda coordinator: (
        {"last": utc_text(events(quality).last)} if (quality := coordinator.quality.quality) else None
    )


def _phase_events(kind: str, phase: int) -> NesTrackedSensorDescription:
    events = _events(kind, phase)
    return NesTrackedSensorDescription(
        key=f"voltage_{kind}_l{phase}_count",
        translation_key=f"voltage_{kind}_count",
        translation_placeholders={"phase": f"L{phase}"},
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=_quality(lambda quality: events(quality).count),
        attributes_fn=_last_time(kind, phase),
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
    )


def _event_voltage(kind: str, phase: int) -> NesTrackedSensorDescription:
    events = _events(kind, phase)
    return NesTrackedSensorDescription(
        key=f"last_{kind}_voltage_l{phase}",
        translation_key=f"last_{kind}_voltage",
        translation_placeholders={"phase": f"L{phase}"},
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        suggested_display_precision=1,
        value_fn=_quality(lambda quality: events(quality).voltage_v),
        attributes_fn=_last_time(kind, phase),
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
    )


def _frequency(extreme: str) -> NesTrackedSensorDescription:
    def attributes(coordinator: NesMeterCoordinator) -> dict[str, str | None] | None:
        quality = coordinator.quality.quality
        return {"time": utc_text(getattr(quality, f"{extreme}_frequency_time"))} if quality else None

    def value(quality: PowerQuality) -> Value:
        frequency: float | None = getattr(quality, f"{extreme}_frequency_hz")
        return frequency

    return NesTrackedSensorDescription(
        key=f"{extreme}_frequency",
        translation_key=f"{extreme}_frequency",
        device_class=SensorDeviceClass.FREQUENCY,
        native_unit_of_measurement=UnitOfFrequency.HERTZ,
        suggested_display_precision=3,
        value_fn=_quality(value),
        attributes_fn=attributes,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
    )


def _outage_sensors() -> list[NesTrackedSensorDescription]:
    def outage_attributes(coordinator: NesMeterCoordinator) -> dict[str, str | int | None] | None:
        quality = coordinator.quality.quality
        outage = quality.last_outage if quality else None
        if outage is None:
            return None
        return {
            "power_off": utc_text(outage.power_off),
            "power_on": utc_text(outage.power_on),
            "reset_cause": outage.reset_cause,
        }

    return [
        NesTrackedSensorDescription(
            key="short_power_failure_count",
            translation_key="short_power_failure_count",
            state_class=SensorStateClass.TOTAL_INCREASING,
            value_fn=_quality(lambda quality: quality.short_outages),
            entity_category=EntityCategory.DIAGNOSTIC,
        ),
        NesTrackedSensorDescription(
            key="last_power_failure_duration",
            translation_key="last_power_failure_duration",
            device_class=SensorDeviceClass.DURATION,
            native_unit_of_measurement=UnitOfTime.SECONDS,
            value_fn=_quality(lambda quality: quality.last_outage.duration_s if quality.last_outage else None),
            attributes_fn=outage_attributes,
            entity_category=EntityCategory.DIAGNOSTIC,
        ),
    ]
