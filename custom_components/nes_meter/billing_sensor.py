"""Billing sensors: the current tariff tier, energy per tier, maximum demands, the newest self-read.

Only what the meter keeps is created: tier sensors when tiers are in use (tiers that
have counted are enabled, the others are there but disabled), demand sensors when
demands are configured, self-read sensors when the meter takes self-reads. Tier
energies are Energy-dashboard-ready (kWh, total increasing); the self-read values are a
billing snapshot, not a second energy series, so they have no state class.
"""

from __future__ import annotations

from homeassistant.components.sensor import SensorDeviceClass, SensorEntity, SensorStateClass
from homeassistant.const import EntityCategory, UnitOfEnergy, UnitOfPower

from nesmeter import MeterIdentity
from nesmeter.tables.billing import DemandValue, TierEnergy

from .billing_tracker import DIRECTIONS, MAX_TIERS, TIER_COUNTERS, MeterBillingTracker
from .coordinator import NesMeterCoordinator
from .tracked_sensor import (
    NesTrackedCounterSensor,
    NesTrackedSensor,
    NesTrackedSensorDescription,
    Value,
    ValueFn,
    meter_local,
    utc_text,
)

TIER_OPTIONS = [f"tier_{number}" for number in range(1, MAX_TIERS + 1)]
UNIT_VAR = "var"
TIER_SENSOR_KEYS = frozenset(counter.removesuffix("_wh") for counter in TIER_COUNTERS)


def billing_sensors(coordinator: NesMeterCoordinator, identity: MeterIdentity) -> list[SensorEntity]:
    """Create the billing sensors this meter's tables say it has."""
    billing = coordinator.billing
    descriptions = [*_tier_sensors(billing), *_demand_sensors(billing), *_self_read_sensors(billing)]
    return [
        (NesTrackedCounterSensor if description.key in TIER_SENSOR_KEYS else NesTrackedSensor)(
            coordinator, identity, description
        )
        for description in descriptions
    ]


def _tier_sensors(billing: MeterBillingTracker) -> list[NesTrackedSensorDescription]:
    if not billing.has_tiers:
        return []
    sensors = []
    if billing.reader.has_tariff:
        sensors.append(
            NesTrackedSensorDescription(
                key="tariff_tier",
                translation_key="tariff_tier",
                device_class=SensorDeviceClass.ENUM,
                options=TIER_OPTIONS[: billing.reader.tiers],
                value_fn=_current_tier,
                attributes_fn=lambda coordinator: (
                    {"tier_drive": tariff.tier_drive, "season": tariff.season}
                    if (tariff := coordinator.billing.tariff)
                    else None
                ),
            )
        )
    for tier, registers in sorted(billing.tiers.items()):  # every tier setup read
        for direction in DIRECTIONS:
            if getattr(registers, f"energy_{direction}_wh") is None:
                continue  # BT22 lists no such summation
            sensors.append(
                NesTrackedSensorDescription(
                    key=f"energy_{direction}_tier_{tier + 1}",
                    translation_key=f"energy_{direction}_tier",
                    translation_placeholders={"tier": str(tier + 1)},
                    device_class=SensorDeviceClass.ENERGY,
                    state_class=SensorStateClass.TOTAL_INCREASING,
                    native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
                    suggested_display_precision=3,
                    value_fn=_tier_energy(tier, direction),
                    entity_registry_enabled_default=tier in billing.tiers_in_use,
                )
            )
    return sensors


def _current_tier(coordinator: NesMeterCoordinator) -> Value:
    """Return the tier as an option; a tier beyond what BT21 dimensions is not shown."""
    tariff = coordinator.billing.tariff
    if tariff is None or tariff.tier >= coordinator.billing.reader.tiers:
        return None
    return f"tier_{tariff.tier + 1}"


def _tier_energy(tier: int, direction: str) -> ValueFn:
    def value(coordinator: NesMeterCoordinator) -> Value:
        registers: TierEnergy | None = coordinator.billing.tiers.get(tier)
        wh = getattr(registers, f"energy_{direction}_wh", None) if registers else None
        return None if wh is None else wh / 1000

    return value


def _demand_sensors(billing: MeterBillingTracker) -> list[NesTrackedSensorDescription]:
    demands = billing.demands
    if demands is None:
        return []
    sensors = [_demand(value) for value in demands.values]
    if demands.resets is not None:
        sensors.append(
            NesTrackedSensorDescription(
                key="demand_resets",
                translation_key="demand_resets",
                state_class=SensorStateClass.TOTAL_INCREASING,
                value_fn=lambda coordinator: demands.resets if (demands := coordinator.billing.demands) else None,
                entity_category=EntityCategory.DIAGNOSTIC,
            )
        )
    return sensors


def _demand(described: DemandValue) -> NesTrackedSensorDescription:
    index = described.index

    def current(coordinator: NesMeterCoordinator) -> DemandValue | None:
        demands = coordinator.billing.demands
        return next((value for value in demands.values if value.index == index), None) if demands else None

    extreme = "max" if described.maximum else "min"
    return NesTrackedSensorDescription(
        # The source is part of the key: a demand register set to measure something else
        # (another unit) is another sensor, not a jump in this one's statistics.
        key=f"{extreme}_demand_{index + 1}_{described.name}",
        translation_key=f"{extreme}_demand",
        translation_placeholders={"number": str(index + 1)},
        device_class={"W": SensorDeviceClass.POWER, UNIT_VAR: SensorDeviceClass.REACTIVE_POWER}.get(described.unit),
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement={"W": UnitOfPower.WATT, UNIT_VAR: UNIT_VAR}.get(described.unit),
        suggested_display_precision=0,
        value_fn=lambda coordinator: value.value if (value := current(coordinator)) else None,
        attributes_fn=lambda coordinator: (
            {"source": value.name, "time": utc_text(meter_local(coordinator, value.time))}
            if (value := current(coordinator))
            else None
        ),
    )


def _self_read_sensors(billing: MeterBillingTracker) -> list[NesTrackedSensorDescription]:
    if not billing.reader.has_self_reads:
        return []

    def attributes(coordinator: NesMeterCoordinator) -> dict[str, str | int | None] | None:
        self_read = coordinator.billing.self_read
        if self_read is None:
            return None
        return {"time": utc_text(meter_local(coordinator, self_read.time)), "sequence": self_read.sequence}

    def energy(direction: str) -> NesTrackedSensorDescription:
        def value(coordinator: NesMeterCoordinator) -> Value:
            self_read = coordinator.billing.self_read
            wh = getattr(self_read, f"energy_{direction}_wh") if self_read else None
            return None if wh is None else wh / 1000

        return NesTrackedSensorDescription(
            key=f"self_read_energy_{direction}",
            translation_key=f"self_read_energy_{direction}",
            device_class=SensorDeviceClass.ENERGY,
            native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
            suggested_display_precision=3,
            value_fn=value,
            attributes_fn=attributes,
            entity_category=EntityCategory.DIAGNOSTIC,
        )

    return [
        NesTrackedSensorDescription(
            key="self_read_time",
            translation_key="self_read_time",
            device_class=SensorDeviceClass.TIMESTAMP,
            value_fn=lambda coordinator: meter_local(coordinator, self_read.time)
            if (self_read := coordinator.billing.self_read)
            else None,
            attributes_fn=attributes,
            entity_category=EntityCategory.DIAGNOSTIC,
        ),
        energy("import"),
        energy("export"),
    ]
