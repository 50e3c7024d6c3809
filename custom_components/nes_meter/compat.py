"""Every difference between the Home Assistant releases the integration supports, in one place.

The code is written for the newest release; where the floor (2025.4) lacks an API, the
fallback is here and nowhere else. Each check tests for the API itself, not for a
version number, so a backport or a yanked release cannot fool it.
"""

from __future__ import annotations

from collections.abc import Mapping
import inspect
from typing import TYPE_CHECKING, Any, Final, cast

from homeassistant import config_entries
from homeassistant.components.recorder.models import StatisticMetaData
from homeassistant.config_entries import ConfigEntry, ConfigFlowResult
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.update_coordinator import UpdateFailed
from homeassistant.util import unit_conversion

# Statistics metadata gained ``unit_class`` in 2025.11 (recorder schema 51); older releases
# refuse the key in the recorder thread, and write nothing.
STATISTICS_UNIT_CLASS: Final = "unit_class" in StatisticMetaData.__annotations__

# 2025.12: a failed update may say when to try again.
UPDATE_FAILED_RETRY_AFTER: Final = "retry_after" in inspect.signature(UpdateFailed.__init__).parameters

# 2025.8: the options flow that reloads its entry when the flow changed the options. The
# fallback does the same on the floor; type checkers (run on the floor) see the fallback.
if TYPE_CHECKING or not hasattr(config_entries, "OptionsFlowWithReload"):

    class OptionsFlowWithReload(config_entries.OptionsFlow):
        """Reload the entry once when the flow changed its options, as 2025.8+ does itself.

        The options are stored here rather than by the flow manager afterwards, so that the
        reload scheduled next reads them; the manager's own update then changes nothing.
        """

        def async_create_entry(self, *, data: Mapping[str, Any], **kwargs: Any) -> ConfigFlowResult:
            """Store the options, reload when they changed, then end the flow."""
            entry = self.config_entry
            if self.hass.config_entries.async_update_entry(entry, options=data):
                self.hass.config_entries.async_schedule_reload(entry.entry_id)
            return super().async_create_entry(data=data, **kwargs)

else:
    OptionsFlowWithReload = config_entries.OptionsFlowWithReload


def update_failed(*, retry_after: float | None = None, **kwargs: Any) -> UpdateFailed:
    """Return an ``UpdateFailed`` that tells the coordinator when to poll again (2025.12+).

    Older releases keep polling at the update interval; the coordinator's own backoff
    then answers those polls without touching the port.
    """
    if retry_after is not None and UPDATE_FAILED_RETRY_AFTER:
        return UpdateFailed(retry_after=retry_after, **kwargs)  # type: ignore[call-arg,unused-ignore]
    return UpdateFailed(**kwargs)


# 2026.5: the standard serial port selector. The frontend lists USB adapters and ESPHome serial
# proxies in it (from the usb integration's scan) and lets a URL be typed in; older releases
# keep the integration's own list (a dropdown that also takes typed values).
try:
    from homeassistant.helpers.selector import (  # type: ignore[attr-defined,unused-ignore]
        SerialPortSelector as _SerialPortSelector,
    )

    SERIAL_PORT_SELECTOR: Final = True
except ImportError:  # the floor
    SERIAL_PORT_SELECTOR = False  # type: ignore[misc,unused-ignore]


def serial_port_selector() -> Any:
    """Return the standard serial port selector (2026.5+); call only when ``SERIAL_PORT_SELECTOR``."""
    return _SerialPortSelector()


async def async_scanned_ports(hass: HomeAssistant) -> list[tuple[str, str]] | None:
    """Return the ports core's usb integration knows (USB adapters and ESPHome serial proxies) as (device, label).

    None where the release has no ``usb.async_scan_serial_ports`` (before 2026.5) or the usb
    integration is not loaded: the caller then uses its own scan.
    """
    if "usb" not in hass.config.components:
        return None
    try:
        from homeassistant.components import usb
    except ImportError:  # the usb integration's requirements are missing (test environments)
        return None
    scan = getattr(usb, "async_scan_serial_ports", None)
    if scan is None:
        return None
    ports: list[tuple[str, str]] = []
    for port in await scan(hass):
        details = " - ".join(part for part in (port.description, port.interface_description, port.manufacturer) if part)
        ports.append((port.device, details))
    return ports


# Reactive energy: a unit enum and a statistics unit class ("reactive_energy") on newer releases;
# the floor knows "kvarh" only as text (the enum's value is the same) and has no class.
_REACTIVE_ENERGY_CONVERTER: Final[Any] = getattr(unit_conversion, "ReactiveEnergyConverter", None)
REACTIVE_ENERGY_UNIT: Final = "kvarh"
REACTIVE_ENERGY_UNIT_CLASS: Final[str | None] = (
    _REACTIVE_ENERGY_CONVERTER.UNIT_CLASS if _REACTIVE_ENERGY_CONVERTER is not None else None
)

try:  # the unit enum that replaces the bare PERCENTAGE constant
    from homeassistant.const import UnitOfRatio

    PERCENTAGE: Final[str] = UnitOfRatio.PERCENTAGE
except ImportError:  # the floor
    from homeassistant.const import PERCENTAGE

__all__ = [
    "PERCENTAGE",
    "REACTIVE_ENERGY_UNIT",
    "REACTIVE_ENERGY_UNIT_CLASS",
    "SERIAL_PORT_SELECTOR",
    "STATISTICS_UNIT_CLASS",
    "UPDATE_FAILED_RETRY_AFTER",
    "OptionsFlowWithReload",
    "async_scanned_ports",
    "serial_port_selector",
    "update_failed",
]


# A device behind another names it by device id (via_device_id) since DeviceInfo has that key
# (2026.8; a dataclass from 2026.11); the (domain, identifier) tuple of before is deprecated there.
VIA_DEVICE_ID: Final = "via_device_id" in inspect.get_annotations(DeviceInfo)


def linked_device_info(hass: HomeAssistant, entry: ConfigEntry, parent: tuple[str, str], **fields: Any) -> DeviceInfo:
    """Return a DeviceInfo of ``fields`` for a device behind the parent device ``parent`` names."""
    if not VIA_DEVICE_ID:
        return cast(DeviceInfo, {**fields, "via_device": parent})
    device = dr.async_get(hass).async_get_or_create(config_entry_id=entry.entry_id, identifiers={parent})
    return cast(DeviceInfo, cast(Any, DeviceInfo)(**fields, via_device_id=device.id))  # a TypedDict or a dataclass
