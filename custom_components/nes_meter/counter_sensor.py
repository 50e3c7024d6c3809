"""Energy sensors whose last value outlives restarts and reloads as the counter guard's baseline."""

from __future__ import annotations

from typing import Final

from homeassistant.components.sensor import RestoreSensor

from .coordinator import NesMeterCoordinator

RESTORED_UNITS: Final = frozenset({"kWh", "kvarh"})


class RestoredCounterSensor(RestoreSensor):
    """Hands the coordinator what the sensor showed before, once Home Assistant restored it.

    Read through ``RestoreSensor``'s public API when the entity is added: the setup's
    first reading is then checked against it before the sensor writes its first state.
    A value in another unit or not a number is no baseline.
    """

    coordinator: NesMeterCoordinator

    async def async_added_to_hass(self) -> None:
        """Restore the baseline, then show what the guard lets through."""
        await super().async_added_to_hass()
        state = await self.async_get_last_state()
        data = await self.async_get_last_sensor_data()
        if state is None or data is None or data.native_unit_of_measurement not in RESTORED_UNITS:
            return
        value = data.native_value
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        self.coordinator.restore_counter(
            self.entity_description.key, round(float(value) * 1000, 3), state.last_reported
        )
