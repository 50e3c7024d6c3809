"""What differs between the Home Assistant versions the suite runs on (scripts/test: floor and latest).

Version differences live here only, so the tests themselves read the same on every version.
"""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr


def get_device(hass: HomeAssistant, entry: ConfigEntry, identifier: tuple[str, str]) -> dr.DeviceEntry | None:
    """The entry's device with this identifier.

    HA 2026.x deprecates ``async_get_device`` (identifiers are unique per config entry only) and
    raises when it is called from outside an integration; older versions lack its replacement.
    """
    registry = dr.async_get(hass)
    if hasattr(registry, "async_get_device_by_identifier"):
        return registry.async_get_device_by_identifier(identifier, entry.entry_id)
    return registry.async_get_device(identifiers={identifier})


def form_as_sent(schema: Any) -> str:
    """A form's schema as the frontend receives it.

    HA up to 2025.x serialises with ``voluptuous_serialize``; 2026.x with ``probatio``.
    """
    from homeassistant.helpers import config_validation as cv

    try:
        import probatio
    except ImportError:
        import voluptuous_serialize

        return repr(voluptuous_serialize.convert(schema, custom_serializer=cv.custom_serializer))
    return repr(probatio.to_field_list(schema, custom_serializer=cv.custom_serializer))
