"""The NES meter integration: Echelon/NES (OSGP) meters over MEP or the optical port."""

from __future__ import annotations

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant

from .coordinator import NesMeterConfigEntry, NesMeterCoordinator
from .events_coordinator import async_remove_event_storage
from .history import async_clear_statistics

PLATFORMS: list[Platform] = [Platform.BINARY_SENSOR, Platform.EVENT, Platform.SENSOR]


async def async_setup_entry(hass: HomeAssistant, entry: NesMeterConfigEntry) -> bool:
    """Connect to the meter, read it once, then create the entities."""
    coordinator = NesMeterCoordinator(hass, entry)
    # A failed first read raises ConfigEntryNotReady or ConfigEntryAuthFailed; Home Assistant
    # then runs the entry's unload callbacks, among them the coordinator's shutdown, which
    # closes the port.
    await coordinator.async_config_entry_first_refresh()
    entry.runtime_data = coordinator
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: NesMeterConfigEntry) -> bool:
    """Remove the entities; the port closes after this.

    The coordinator registered its own ``async_shutdown`` (which stops its timers and
    closes the port) with ``entry.async_on_unload`` when it was created, so unloading
    needs nothing from ``runtime_data`` and works for any entry that reached LOADED.
    """
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: NesMeterConfigEntry) -> None:
    """Delete the meter history statistics and event log state with the entry (reloads keep them)."""
    await async_remove_event_storage(hass, entry)
    if entry.unique_id:
        await async_clear_statistics(hass, entry.unique_id)
