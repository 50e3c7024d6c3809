"""Diagnostics: what a user can paste into an issue without leaking the key or serials."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_PORT
from homeassistant.core import HomeAssistant

from nesmeter.link.transport import describe_port

from .const import CONF_KEY
from .coordinator import NesMeterConfigEntry
from .sensor import clock_offset

TO_REDACT = {CONF_KEY, "utility_serial", "manufacturer_serial", "serial_number", "unique_id", "title"}


async def async_get_config_entry_diagnostics(hass: HomeAssistant, entry: NesMeterConfigEntry) -> dict[str, Any]:
    """Collect the entry, the last reading, the guard and the link; key and serials redacted."""
    coordinator = entry.runtime_data
    # A fresh, complete session for the trace (identification tables included): it is
    # what turns a meter that misbehaves into a test meter (scripts/meter simulate --replay).
    trace = await coordinator.async_record_trace()
    client = coordinator.client.diagnostics()
    identity = coordinator.identity
    secrets = [identity.utility_serial.encode().hex(), identity.manufacturer_serial or ""] if identity else []
    for frame in (*client["last_frames"], *trace["frames"]):
        for secret in filter(None, secrets):
            frame["hex"] = frame["hex"].replace(secret, "**" * (len(secret) // 2))
    snapshot = coordinator.data.as_dict() if coordinator.data else None
    meter_time = coordinator.data.meter_time if coordinator.data else None
    return {
        "entry": async_redact_data({**entry.data, CONF_PORT: describe_port(entry.data[CONF_PORT])}, TO_REDACT),
        "options": dict(entry.options),
        "snapshot": snapshot,
        "clock": {
            "meter_time": meter_time.isoformat() if meter_time else None,
            "offset_seconds": clock_offset(meter_time),
        },
        "guard": coordinator.guard.as_dict(),
        "events": coordinator.events.diagnostics(),
        "billing": coordinator.billing.diagnostics(),
        "power_quality": coordinator.quality.diagnostics(),
        "rare_reads": list(coordinator.rare_reads.names),
        "client": async_redact_data(client, TO_REDACT),
        "trace": async_redact_data(trace, TO_REDACT),
        "last_update_success": coordinator.last_update_success,
        "history": coordinator.history.as_dict(),
    }
