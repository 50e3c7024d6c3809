"""The base every entity of a meter shares: one device per meter, translated names."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from nesmeter import MeterIdentity

from .const import DOMAIN
from .coordinator import NesMeterCoordinator


class NesMeterEntity(CoordinatorEntity[NesMeterCoordinator]):
    """Ties an entity to its meter's device; platforms add their own entity class.

    The unique id is the meter's utility serial (ET03) plus the description key: the
    serial survives port, transport and key changes, so entity ids and history do too.
    """

    _attr_has_entity_name = True

    def __init__(
        self, coordinator: NesMeterCoordinator, identity: MeterIdentity, description: EntityDescription
    ) -> None:
        """Describe one value of the meter ``identity`` names."""
        super().__init__(coordinator)
        self.entity_description = description
        self._attr_unique_id = f"{identity.utility_serial}_{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, identity.utility_serial)},
            manufacturer="NES/Echelon" if identity.manufacturer in ("NES", "ELON") else identity.manufacturer,
            model=identity.model,
            serial_number=identity.utility_serial,
            sw_version=identity.firmware_version,
            hw_version=identity.hardware_version,
            name=f"NES {identity.model}",
        )
