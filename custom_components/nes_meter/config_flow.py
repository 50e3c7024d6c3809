"""Config flow: pick a port, a transport and the key; test with a real read first."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from homeassistant.config_entries import ConfigEntry, ConfigFlow, ConfigFlowResult, OptionsFlow
from homeassistant.const import CONF_PORT
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import serialx
import voluptuous as vol

from .const import (
    CONF_ENABLE_LINE,
    CONF_ENCRYPT,
    CONF_KEY,
    CONF_KEY_FORMAT,
    CONF_TRANSPORT,
    CONF_UPDATE_INTERVAL,
    DEFAULT_ENABLE_LINE,
    DEFAULT_UPDATE_INTERVAL,
    DOMAIN,
    MAX_UPDATE_INTERVAL,
    MIN_UPDATE_INTERVAL,
    TRANSPORT_IR,
    TRANSPORT_MEP,
)
from .coordinator import build_client
from .meter import (
    KEY_FORMATS,
    AuthenticationError,
    InvalidPortError,
    KeyFormatError,
    MeterError,
    MeterIdentity,
    NoResponseError,
    PortError,
    validate_port,
)

_LOGGER = logging.getLogger(__name__)
BY_ID = Path("/dev/serial/by-id")


def _list_ports() -> dict[str, str]:
    """Serial ports as {stable path: label}; runs in the executor (it touches sysfs)."""
    by_id: dict[str, str] = {}
    if BY_ID.is_dir():
        for link in BY_ID.iterdir():
            by_id[os.path.realpath(link)] = str(link)
    ports: dict[str, str] = {}
    for info in serialx.list_serial_ports():
        path = by_id.get(os.path.realpath(info.device), info.device)
        details = " - ".join(part for part in (info.manufacturer, info.product, info.serial_number) if part)
        ports[path] = f"{path} ({details})" if details else path
    return ports


async def validate_meter(hass: HomeAssistant, data: dict[str, Any]) -> MeterIdentity:
    """Open the port, authenticate and read once; raises the library's errors."""
    data[CONF_PORT] = validate_port(data[CONF_PORT])
    client = build_client(data)
    try:
        await client.open()
        identity = await client.identify()
        await client.read_snapshot()
    finally:
        await client.close()
    return identity


def _error_for(err: MeterError) -> str:
    if isinstance(err, KeyFormatError):
        return "invalid_key_format"
    if isinstance(err, AuthenticationError):
        return "invalid_key"
    if isinstance(err, InvalidPortError):
        return "invalid_port"
    if isinstance(err, PortError):
        return "cannot_connect"
    if isinstance(err, NoResponseError):
        return "no_response"
    return "unknown"


def _key_schema(defaults: dict[str, Any]) -> dict[vol.Marker, Any]:
    return {
        vol.Required(CONF_KEY, default=defaults.get(CONF_KEY, vol.UNDEFINED)): TextSelector(
            TextSelectorConfig(type=TextSelectorType.PASSWORD)
        ),
        vol.Required(CONF_KEY_FORMAT, default=defaults.get(CONF_KEY_FORMAT, "auto")): SelectSelector(
            SelectSelectorConfig(
                options=list(KEY_FORMATS), translation_key=CONF_KEY_FORMAT, mode=SelectSelectorMode.DROPDOWN
            )
        ),
    }


def _connection_schema(ports: dict[str, str], defaults: dict[str, Any]) -> vol.Schema:
    port_options = [SelectOptionDict(value=path, label=label) for path, label in ports.items()]
    return vol.Schema(
        {
            vol.Required(CONF_PORT, default=defaults.get(CONF_PORT, vol.UNDEFINED)): SelectSelector(
                SelectSelectorConfig(options=port_options, custom_value=True, mode=SelectSelectorMode.DROPDOWN)
            ),
            vol.Required(CONF_TRANSPORT, default=defaults.get(CONF_TRANSPORT, TRANSPORT_MEP)): SelectSelector(
                SelectSelectorConfig(
                    options=[TRANSPORT_MEP, TRANSPORT_IR], translation_key=CONF_TRANSPORT, mode=SelectSelectorMode.LIST
                )
            ),
            **_key_schema(defaults),
        }
    )


class NesMeterConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up a meter from the UI."""

    VERSION = 1

    async def _async_test(self, data: dict[str, Any]) -> tuple[MeterIdentity | None, dict[str, str]]:
        try:
            return await validate_meter(self.hass, data), {}
        except MeterError as err:
            _LOGGER.debug("meter test failed: %s", err)
            return None, {"base": _error_for(err)}
        except Exception:
            _LOGGER.exception("unexpected error while testing the meter")
            return None, {"base": "unknown"}

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            identity, errors = await self._async_test(user_input)
            if identity is not None:
                await self.async_set_unique_id(identity.utility_serial)
                self._abort_if_unique_id_configured()
                return self.async_create_entry(
                    title=f"NES {identity.model} ({user_input[CONF_TRANSPORT].upper()})", data=user_input
                )
        ports = await self.hass.async_add_executor_job(_list_ports)
        return self.async_show_form(
            step_id="user", data_schema=_connection_schema(ports, user_input or {}), errors=errors
        )

    async def async_step_reauth(self, entry_data: dict[str, Any]) -> ConfigFlowResult:
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            data = {**entry.data, **user_input}
            identity, errors = await self._async_test(data)
            if identity is not None:
                await self.async_set_unique_id(identity.utility_serial)
                self._abort_if_unique_id_mismatch(reason="wrong_meter")
                return self.async_update_reload_and_abort(entry, data_updates=user_input)
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema(_key_schema({CONF_KEY_FORMAT: entry.data.get(CONF_KEY_FORMAT, "auto")})),
            errors=errors,
            description_placeholders={"title": entry.title},
        )

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            identity, errors = await self._async_test(user_input)
            if identity is not None:
                await self.async_set_unique_id(identity.utility_serial)
                self._abort_if_unique_id_mismatch(reason="wrong_meter")
                return self.async_update_reload_and_abort(entry, data_updates=user_input)
        ports = await self.hass.async_add_executor_job(_list_ports)
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=_connection_schema(ports, user_input or dict(entry.data)),
            errors=errors,
        )

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> NesMeterOptionsFlow:
        return NesMeterOptionsFlow()


class NesMeterOptionsFlow(OptionsFlow):
    """Polling interval and MEP line options."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        if user_input is not None:
            return self.async_create_entry(data=user_input)
        options = self.config_entry.options
        schema: dict[vol.Marker, Any] = {
            vol.Required(
                CONF_UPDATE_INTERVAL, default=options.get(CONF_UPDATE_INTERVAL, DEFAULT_UPDATE_INTERVAL)
            ): NumberSelector(
                NumberSelectorConfig(
                    min=MIN_UPDATE_INTERVAL,
                    max=MAX_UPDATE_INTERVAL,
                    step=1,
                    unit_of_measurement="s",
                    mode=NumberSelectorMode.BOX,
                )
            ),
        }
        if self.config_entry.data[CONF_TRANSPORT] == TRANSPORT_MEP:
            schema[vol.Required(CONF_ENABLE_LINE, default=options.get(CONF_ENABLE_LINE, DEFAULT_ENABLE_LINE))] = (
                SelectSelector(
                    SelectSelectorConfig(
                        options=["rts", "dtr", "none"], translation_key=CONF_ENABLE_LINE, mode=SelectSelectorMode.LIST
                    )
                )
            )
            schema[vol.Required(CONF_ENCRYPT, default=options.get(CONF_ENCRYPT, False))] = BooleanSelector()
        return self.async_show_form(step_id="init", data_schema=vol.Schema(schema))
