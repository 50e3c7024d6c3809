"""Repairs the user can accept: switching a meter that now requires TLS to MEP TLS mode."""

from __future__ import annotations

from typing import Any

from homeassistant.components.repairs import ConfirmRepairFlow, RepairsFlow
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResult
from homeassistant.helpers import issue_registry as ir

from .const import CONF_MEP_SECURITY, DOMAIN, MEP_SECURITY_TLS


class TlsRequiredRepairFlow(ConfirmRepairFlow):
    """Confirm, then store MEP TLS mode in the entry's options and reload the entry."""

    def __init__(self, entry_id: str) -> None:
        """Remember which entry the issue is about."""
        super().__init__()
        self._entry_id = entry_id

    async def async_step_confirm(self, user_input: dict[str, str] | None = None) -> FlowResult:
        """Switch the option when the user confirms; the reload reads the meter in TLS mode."""
        if user_input is not None:
            entry = self.hass.config_entries.async_get_entry(self._entry_id)
            if entry is not None:  # reloaded either way: changed options, or a retry in TLS mode
                self.hass.config_entries.async_update_entry(
                    entry, options={**entry.options, CONF_MEP_SECURITY: MEP_SECURITY_TLS}
                )
                self.hass.config_entries.async_schedule_reload(entry.entry_id)
            return self.async_create_entry(data={})
        issue = ir.async_get(self.hass).async_get_issue(DOMAIN, self.issue_id)
        placeholders = issue.translation_placeholders if issue is not None else None
        return self.async_show_form(step_id="confirm", description_placeholders=placeholders)


async def async_create_fix_flow(hass: HomeAssistant, issue_id: str, data: dict[str, Any] | None) -> RepairsFlow:
    """Return the flow that fixes ``issue_id`` (only TLS issues are fixable)."""
    assert data is not None
    return TlsRequiredRepairFlow(str(data["entry_id"]))
