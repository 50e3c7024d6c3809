"""Config flow: pick a port, a transport and the key; test with a real read first."""

from __future__ import annotations

from collections.abc import Mapping
import logging
import os
from pathlib import Path
from typing import Any

from homeassistant.config_entries import ConfigEntryState, ConfigFlow, ConfigFlowResult
from homeassistant.const import CONF_PORT
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.selector import (
    EntitySelector,
    EntitySelectorConfig,
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
from homeassistant.helpers.service_info.usb import UsbServiceInfo
import serialx
import voluptuous as vol

from nesmeter import (
    KEY_FORMATS,
    AuthenticationError,
    InvalidPortError,
    KeyFormatError,
    MeterError,
    MeterIdentity,
    NoResponseError,
    PortError,
    ProxyAuthError,
    ProxyOfflineError,
    ProxyPortNotFoundError,
    TlsError,
    TlsRequiredError,
    UnsupportedMeterError,
    validate_port,
)

from .compat import SERIAL_PORT_SELECTOR, OptionsFlowWithReload, async_scanned_ports, serial_port_selector
from .const import (
    CONF_ENABLE_LINE,
    CONF_EXPORT_PRICE,
    CONF_EXPORT_PRICE_ENTITY,
    CONF_IMPORT_PRICE,
    CONF_IMPORT_PRICE_ENTITY,
    CONF_KEY,
    CONF_KEY_FORMAT,
    CONF_MEP_SECURITY,
    CONF_TLS_KEY_ID,
    CONF_TRANSPORT,
    CONF_UPDATE_INTERVAL,
    DEFAULT_ENABLE_LINE,
    DEFAULT_UPDATE_INTERVAL,
    DOMAIN,
    MAX_UPDATE_INTERVAL,
    MEP_SECURITY_MODES,
    MEP_SECURITY_TLS,
    MIN_UPDATE_INTERVAL,
    TLS_KEY_IDS,
    TRANSPORT_IR,
    TRANSPORT_MEP,
)
from .coordinator import NesMeterConfigEntry, build_client, mep_security

_LOGGER = logging.getLogger(__name__)
BY_ID = Path("/dev/serial/by-id")


def _list_ports() -> dict[str, str]:
    """List serial ports as {stable path: label}; runs in the executor (it touches sysfs)."""
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


async def validate_meter(
    hass: HomeAssistant, data: Mapping[str, Any], options: Mapping[str, Any] | None = None
) -> tuple[MeterIdentity, dict[str, Any]]:
    """Open the port, authenticate and read once; raises the library's errors.

    A MEP meter that refuses everything but TLS is tried again in TLS mode: the user
    need not know the mode. Returns the identity and the options that worked.
    """
    options = dict(options or {})
    try:
        return await _read_once(data, options), options
    except TlsRequiredError:
        if mep_security(options) == MEP_SECURITY_TLS:
            raise
    options[CONF_MEP_SECURITY] = MEP_SECURITY_TLS
    return await _read_once(data, options), options


async def _read_once(data: Mapping[str, Any], options: Mapping[str, Any]) -> MeterIdentity:
    client = build_client(data, options)
    try:
        await client.open()
        identity = await client.identify()
        await client.read_snapshot()
    finally:
        await client.close()
    return identity


def _by_id_path(device: str) -> str:
    """Return the ``/dev/serial/by-id`` link of a device node, or the node if it has none.

    The by-id name stays the same when adapters are replugged in another order; runs
    in the executor (it reads the file system).
    """
    if BY_ID.is_dir():
        wanted = os.path.realpath(device)
        for link in sorted(BY_ID.iterdir()):
            if os.path.realpath(link) == wanted:
                return str(link)
    return device


def _same_device(port: str) -> str:
    """Reduce a port to what two spellings of it share: the device node a path resolves to.

    ``/dev/serial/by-id/...`` and ``/dev/ttyUSB0`` are the same adapter; URLs compare as
    written. Runs in the executor (it follows symlinks).
    """
    return port if "://" in port else os.path.realpath(port)


def _error_for(err: MeterError) -> str:
    if isinstance(err, KeyFormatError):
        return "invalid_key_format"
    if isinstance(err, AuthenticationError):
        return "invalid_key"
    if isinstance(err, InvalidPortError):
        return "invalid_port"
    if isinstance(err, ProxyOfflineError):
        return "proxy_offline"
    if isinstance(err, ProxyAuthError):
        return "proxy_invalid_key"
    if isinstance(err, ProxyPortNotFoundError):
        return "proxy_unknown_port"
    if isinstance(err, PortError):
        return "cannot_connect"
    if isinstance(err, NoResponseError):
        return "no_response"
    if isinstance(err, UnsupportedMeterError):
        return "unsupported_meter"
    if isinstance(err, TlsRequiredError):
        return "tls_required"
    if isinstance(err, TlsError):
        return "tls_failed"
    return "unknown"


def _key_schema(key_format: str, *, keep_stored: bool = False) -> dict[vol.Marker, Any]:
    """Build the key fields. The key never has a default: a default is sent to the browser.

    ``keep_stored``: the field may stay empty, which keeps the stored key (reconfigure).
    """
    key_marker = vol.Optional(CONF_KEY) if keep_stored else vol.Required(CONF_KEY)
    return {
        key_marker: TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD)),
        vol.Required(CONF_KEY_FORMAT, default=key_format): SelectSelector(
            SelectSelectorConfig(
                options=list(KEY_FORMATS), translation_key=CONF_KEY_FORMAT, mode=SelectSelectorMode.DROPDOWN
            )
        ),
    }


def _connection_schema(
    ports: dict[str, str], defaults: Mapping[str, Any], *, keep_stored_key: bool = False
) -> vol.Schema:
    """Port, transport and key; ``defaults`` fill the port and transport, never the key.

    Where Home Assistant has the standard serial port selector (2026.5+), the port field is
    that: the frontend lists the usb integration's ports, USB adapters and ESPHome serial
    proxies alike, and takes a typed path or URL. Older releases get ``ports``.
    """
    port_field: Any
    if SERIAL_PORT_SELECTOR:
        port_field = serial_port_selector()
    else:
        if CONF_PORT in defaults and defaults[CONF_PORT] not in ports:
            ports = {defaults[CONF_PORT]: defaults[CONF_PORT], **ports}
        port_options = [SelectOptionDict(value=path, label=label) for path, label in ports.items()]
        port_field = SelectSelector(
            SelectSelectorConfig(options=port_options, custom_value=True, mode=SelectSelectorMode.DROPDOWN)
        )
    return vol.Schema(
        {
            vol.Required(CONF_PORT, default=defaults.get(CONF_PORT, vol.UNDEFINED)): port_field,
            vol.Required(CONF_TRANSPORT, default=defaults.get(CONF_TRANSPORT, TRANSPORT_MEP)): SelectSelector(
                SelectSelectorConfig(
                    options=[TRANSPORT_MEP, TRANSPORT_IR], translation_key=CONF_TRANSPORT, mode=SelectSelectorMode.LIST
                )
            ),
            **_key_schema(defaults.get(CONF_KEY_FORMAT, "auto"), keep_stored=keep_stored_key),
        }
    )


class NesMeterConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up a meter from the UI."""

    VERSION = 1

    def __init__(self) -> None:
        """Start with nothing discovered."""
        self._discovered: dict[str, Any] = {}
        self._options: dict[str, Any] = {}  # what reading the meter needed (TLS found on the way)

    async def _async_test(
        self, data: dict[str, Any], running: NesMeterConfigEntry | None = None
    ) -> tuple[MeterIdentity | None, dict[str, str]]:
        """Read the meter with ``data``; the errors are the form's.

        ``running``: the entry this flow changes. While it is loaded its coordinator holds
        the port, so the port is released for the test; the entry is reloaded afterwards
        on success, and on failure its next poll opens the port again.
        """
        options = running.options if running is not None else {}
        try:
            if running is not None and running.state is ConfigEntryState.LOADED:
                async with running.runtime_data.port_released():
                    identity, self._options = await validate_meter(self.hass, data, options)
            else:
                identity, self._options = await validate_meter(self.hass, data, options)
        except MeterError as err:
            _LOGGER.debug("meter test failed: %s", err)
            return None, {"base": _error_for(err)}
        except Exception:
            _LOGGER.exception("unexpected error while testing the meter")
            return None, {"base": "unknown"}
        return identity, {}

    async def _async_port_owner(self, port: str, *, ignore: str | None = None) -> str | None:
        """Return the title of another entry that already reads from ``port``, if any.

        Checked before the port is opened: a loaded entry holds its port exclusively, so
        opening it would only say "cannot connect".
        """
        wanted = await self.hass.async_add_executor_job(_same_device, port)
        for entry in self._async_current_entries(include_ignore=False):
            if entry.entry_id == ignore or CONF_PORT not in entry.data:
                continue
            if await self.hass.async_add_executor_job(_same_device, entry.data[CONF_PORT]) == wanted:
                return entry.title
        return None

    async def _async_ports(self) -> dict[str, str]:
        """Return the ports for the form's own list: none with the standard selector (the frontend lists them).

        Where core's usb integration scans ports (USB adapters and ESPHome serial proxies) its
        list is used, else the integration's own scan.
        """
        if SERIAL_PORT_SELECTOR:
            return {}
        scanned = await async_scanned_ports(self.hass)
        if scanned is not None:
            return {device: f"{device} ({label})" if label else device for device, label in scanned}
        return await self.hass.async_add_executor_job(_list_ports)

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the port, the meter port and the key; test them with a real read."""
        return await self._async_step_connect("user", user_input, {})

    async def async_step_usb(self, discovery_info: UsbServiceInfo) -> ConfigFlowResult:
        """Offer a plugged-in optical probe that has a USB id of its own.

        Only probes made for meter reading are matched (see ``manifest.json``); generic
        USB serial adapters are not, as they could be anything. The probe, not the meter,
        is the flow's unique id until the first read: an ignored probe stays ignored.
        """
        port = await self.hass.async_add_executor_job(_by_id_path, discovery_info.device)
        await self.async_set_unique_id(
            f"usb_{discovery_info.vid}_{discovery_info.pid}_{discovery_info.serial_number or port}"
        )
        self._abort_if_unique_id_configured()
        if await self._async_port_owner(port) is not None:
            return self.async_abort(reason="already_configured")
        self._discovered = {CONF_PORT: port, CONF_TRANSPORT: TRANSPORT_IR}
        self.context["title_placeholders"] = {"name": discovery_info.description or port}
        return await self.async_step_usb_confirm()

    async def async_step_usb_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show the user form with the probe's port and the optical port already chosen."""
        return await self._async_step_connect("usb_confirm", user_input, self._discovered)

    async def _async_step_connect(
        self, step_id: str, user_input: dict[str, Any] | None, defaults: dict[str, Any]
    ) -> ConfigFlowResult:
        """Test the settings, then create the entry for the meter that answered."""
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                user_input[CONF_PORT] = validate_port(user_input[CONF_PORT])
            except InvalidPortError:
                errors["base"] = "invalid_port"
            else:
                if await self._async_port_owner(user_input[CONF_PORT]) is not None:
                    return self.async_abort(reason="already_configured")
                identity, errors = await self._async_test(user_input)
                if identity is not None:
                    await self.async_set_unique_id(identity.utility_serial, raise_on_progress=False)
                    self._abort_if_unique_id_configured()
                    return self.async_create_entry(
                        title=f"NES {identity.model} ({user_input[CONF_TRANSPORT].upper()})",
                        data=user_input,
                        options=self._options,
                    )
        ports = await self._async_ports()
        return self.async_show_form(
            step_id=step_id,
            data_schema=_connection_schema(ports, user_input or defaults),
            errors=errors,
            description_placeholders=self.context.get("title_placeholders"),
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """Ask for the current key after the meter rejected the stored one."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Test the new key on the entry's port, then store it and reload the entry."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            data = {**entry.data, **user_input}
            identity, errors = await self._async_test(data, entry)
            if identity is not None:
                await self.async_set_unique_id(identity.utility_serial)
                self._abort_if_unique_id_mismatch(reason="wrong_meter")
                return self.async_update_reload_and_abort(entry, data_updates=user_input, options=self._options)
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema(_key_schema(entry.data.get(CONF_KEY_FORMAT, "auto"))),
            errors=errors,
            description_placeholders={"title": entry.title},
        )

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Change the port, the meter port or the key; an empty key keeps the stored one."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            data = {**entry.data, **user_input}
            if not user_input.get(CONF_KEY):
                data[CONF_KEY] = entry.data[CONF_KEY]
                data[CONF_KEY_FORMAT] = entry.data.get(CONF_KEY_FORMAT, "auto")
            try:
                data[CONF_PORT] = validate_port(data[CONF_PORT])
            except InvalidPortError:
                errors["base"] = "invalid_port"
            else:
                if await self._async_port_owner(data[CONF_PORT], ignore=entry.entry_id) is not None:
                    errors["base"] = "port_in_use"
                else:
                    identity, errors = await self._async_test(data, entry)
                    if identity is not None:
                        await self.async_set_unique_id(identity.utility_serial)
                        self._abort_if_unique_id_mismatch(reason="wrong_meter")
                        return self.async_update_reload_and_abort(entry, data=data, options=self._options)
        ports = await self._async_ports()
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=_connection_schema(ports, user_input or entry.data, keep_stored_key=True),
            errors=errors,
        )

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: NesMeterConfigEntry) -> NesMeterOptionsFlow:
        """Options: polling interval, and the MEP line settings."""
        return NesMeterOptionsFlow()


class NesMeterOptionsFlow(OptionsFlowWithReload):
    """Polling interval and MEP line options."""

    config_entry: NesMeterConfigEntry

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """One form; saving changed options reloads the entry, once."""
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
            schema[vol.Required(CONF_MEP_SECURITY, default=mep_security(options))] = SelectSelector(
                SelectSelectorConfig(
                    options=list(MEP_SECURITY_MODES), translation_key=CONF_MEP_SECURITY, mode=SelectSelectorMode.LIST
                )
            )
            schema[vol.Required(CONF_TLS_KEY_ID, default=options.get(CONF_TLS_KEY_ID, "mbk"))] = SelectSelector(
                SelectSelectorConfig(
                    options=list(TLS_KEY_IDS), translation_key=CONF_TLS_KEY_ID, mode=SelectSelectorMode.LIST
                )
            )
        schema.update(price_fields(options, self.hass.config.currency))
        return self.async_show_form(step_id="init", data_schema=vol.Schema(schema))


def price_fields(options: Mapping[str, Any], currency: str) -> dict[vol.Marker, Any]:
    """Return the price options of the meter history's cost: a fixed price per kWh or a price entity, each optional."""
    fields: dict[vol.Marker, Any] = {}
    for fixed, entity in ((CONF_IMPORT_PRICE, CONF_IMPORT_PRICE_ENTITY), (CONF_EXPORT_PRICE, CONF_EXPORT_PRICE_ENTITY)):
        fields[vol.Optional(fixed, description={"suggested_value": options.get(fixed)})] = NumberSelector(
            NumberSelectorConfig(
                min=0, max=100000, step="any", unit_of_measurement=f"{currency}/kWh", mode=NumberSelectorMode.BOX
            )
        )
        fields[vol.Optional(entity, description={"suggested_value": options.get(entity)})] = EntitySelector(
            EntitySelectorConfig(domain=["sensor", "input_number", "number"])
        )
    return fields
