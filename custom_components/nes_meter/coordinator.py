"""Polls one meter: keeps the port open, reconnects with backoff, guards the counters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta
import logging
import time
from typing import Any, Final
from urllib.parse import urlsplit

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryError, HomeAssistantError
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
from homeassistant.util import dt as dt_util

from nesmeter import (
    AuthenticationError,
    MeterClient,
    MeterError,
    MeterIdentity,
    MeterKey,
    MeterSnapshot,
    NoResponseError,
    PortError,
    ProxyAuthError,
    ProxyOfflineError,
    ProxyPortNotFoundError,
    TlsRequiredError,
    UnsupportedMeterError,
)
from nesmeter.client.recording import record_reading
from nesmeter.errors import ABSENT
from nesmeter.link.transport import describe_port, is_esphome_proxy
from nesmeter.mep.tls import KeyId

from .billing_tracker import TIER_COUNTERS, MeterBillingTracker
from .compat import update_failed
from .const import (
    BACKOFF_MAX,
    BACKOFF_MIN,
    CONF_ENABLE_LINE,
    CONF_ENCRYPT,
    CONF_KEY,
    CONF_KEY_FORMAT,
    CONF_MEP_SECURITY,
    CONF_TLS_KEY_ID,
    CONF_TRANSPORT,
    CONF_UPDATE_INTERVAL,
    DEFAULT_ENABLE_LINE,
    DEFAULT_UPDATE_INTERVAL,
    DOMAIN,
    MEP_SECURITY_PLAIN,
    MEP_SECURITY_RC4,
    MEP_SECURITY_TLS,
)
from .events_coordinator import MeterEventTracker
from .guard import GUARDED_COUNTERS, CounterGuard
from .history import HistoryImporter
from .mbus_tracker import MbusTracker
from .quality_tracker import PowerQualityTracker
from .rare_reads import RareReadScheduler

_LOGGER = logging.getLogger(__name__)

type NesMeterConfigEntry = ConfigEntry[NesMeterCoordinator]


def counter_key(name: str) -> str:
    """Return the sensor key of a guarded snapshot field: ``energy_import_wh`` -> ``energy_import``."""
    return name.rsplit("_", 1)[0]


COUNTER_NAMES: Final = {counter_key(name): name for name in (*GUARDED_COUNTERS, *TIER_COUNTERS)}


def mep_security(options: Mapping[str, Any]) -> str:
    """Return the MEP security mode of an entry's options (older entries only had the RC4 switch)."""
    mode = options.get(CONF_MEP_SECURITY)
    if isinstance(mode, str):
        return mode
    return MEP_SECURITY_RC4 if options.get(CONF_ENCRYPT) else MEP_SECURITY_PLAIN


def build_client(data: Mapping[str, Any], options: Mapping[str, Any] | None = None) -> MeterClient:
    """Build a client for an entry's data (port, transport, key) and options."""
    options = options or {}
    security = mep_security(options) if data[CONF_TRANSPORT] == "mep" else MEP_SECURITY_PLAIN
    return MeterClient(
        data[CONF_PORT],
        data[CONF_TRANSPORT],
        MeterKey.parse(data[CONF_KEY], data.get(CONF_KEY_FORMAT, "auto")),
        encrypt=security == MEP_SECURITY_RC4,
        tls=security == MEP_SECURITY_TLS,
        tls_key_id=KeyId[str(options.get(CONF_TLS_KEY_ID, "mbk")).upper()],
        enable_line=options.get(CONF_ENABLE_LINE, DEFAULT_ENABLE_LINE),
    )


def ha_error(err: MeterError, retry_after: float | None = None) -> HomeAssistantError:
    """Translate a library error: reauth for a rejected key, else a failed update.

    ``retry_after``: seconds until the backoff lets the next attempt through.
    """
    if isinstance(err, AuthenticationError):
        return ConfigEntryAuthFailed(translation_domain=DOMAIN, translation_key="invalid_key")
    if isinstance(err, TlsRequiredError):
        return update_failed(retry_after=retry_after, translation_domain=DOMAIN, translation_key="tls_required")
    if isinstance(err, UnsupportedMeterError):  # retrying cannot help: the meter's formats stay
        return ConfigEntryError(
            translation_domain=DOMAIN, translation_key="unsupported_meter", translation_placeholders={"error": str(err)}
        )
    if isinstance(err, ProxyOfflineError):
        key = "proxy_offline"
    elif isinstance(err, ProxyAuthError):
        key = "proxy_invalid_key"
    elif isinstance(err, ProxyPortNotFoundError):
        key = "proxy_unknown_port"
    elif isinstance(err, PortError):
        key = "cannot_connect"
    elif isinstance(err, NoResponseError):
        key = "no_response"
    else:
        key = "communication_error"
    return update_failed(
        retry_after=retry_after,
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders={"error": str(err)},
    )


def tls_issue_id(entry: ConfigEntry) -> str:
    """Return the id of the repair issue raised when the entry's meter requires MEP TLS mode."""
    return f"tls_required_{entry.entry_id}"


def proxy_issue_id(entry: ConfigEntry) -> str:
    """Return the id of the repair issue raised while the entry's ESPHome serial proxy is missing."""
    return f"proxy_missing_{entry.entry_id}"


# Failed polls in a row before a lost proxy becomes a repair issue (a reboot or a Wi-Fi blip is not one).
PROXY_ISSUE_AFTER: Final = 3


def proxy_device_name(hass: HomeAssistant, port: str) -> str:
    """Name the ESPHome device behind a proxy URL: its config entry's title, or the host the URL names."""
    parts = urlsplit(port)
    if parts.scheme.lower() == "esphome-hass":
        esphome_entry = hass.config_entries.async_get_entry(parts.path.strip("/"))
        return esphome_entry.title if esphome_entry is not None else parts.path.strip("/")
    return parts.hostname or port


class NesMeterCoordinator(DataUpdateCoordinator[MeterSnapshot]):
    """One meter, one open port, one poll per interval."""

    config_entry: NesMeterConfigEntry

    def __init__(self, hass: HomeAssistant, entry: NesMeterConfigEntry) -> None:
        """Poll at the entry's interval; the port is opened by the first refresh."""
        interval = entry.options.get(CONF_UPDATE_INTERVAL, DEFAULT_UPDATE_INTERVAL)
        super().__init__(
            hass,
            _LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {entry.title}",
            update_interval=timedelta(seconds=interval),
        )
        self.client = build_client(dict(entry.data), dict(entry.options))
        self.identity: MeterIdentity | None = None
        self.guard = CounterGuard()
        self.rare_reads = RareReadScheduler(self._extra_read_failed)  # what changes rarely
        self.events = MeterEventTracker(hass, entry, self.client, self.rare_reads)  # event log and alarm bits
        # tariff, tiers, demands and self-reads; tier registers pass the counter guard
        self.billing = MeterBillingTracker(self.client, self.rare_reads, self.guard)
        self.quality = PowerQualityTracker(self.client)  # power quality and the disconnect relay
        self.mbus = MbusTracker(self.client)  # the gas, water and heat meters behind the meter
        self._failures = 0
        self._retry_at = 0.0
        self._port_lock = asyncio.Lock()
        self._tls_issue_raised = False
        self._proxy_issue_raised = False
        self.history = HistoryImporter(hass, entry, self.client, identity=lambda: self.identity)
        self._history_task: asyncio.Task[None] | None = None  # the worker reading the load profile

    @property
    def interval_seconds(self) -> float:
        """Seconds between polls: how long the optical session is held open."""
        assert self.update_interval is not None
        return self.update_interval.total_seconds()

    async def _async_setup(self) -> None:
        """Open the port and identify the meter; failures make setup retry later.

        The port is closed by ``async_setup_entry`` when the first refresh fails.
        """
        try:
            with self.history.holding_port():
                await self._connect()
                await self.events.async_setup()
                await self.billing.async_setup()
                await self.quality.async_setup()
                await self.mbus.async_setup(self.quality.hardware_options)
            self.rare_reads.add(
                *self.events.rare_reads(),
                *self.billing.rare_reads(),
                *self.quality.rare_reads(),
                *self.mbus.rare_reads(),
            )
        except MeterError as err:
            self._note_tls_required(err)
            self._note_proxy_missing(err)  # the entry retries setup: say which device is missing
            raise ha_error(err) from err
        ir.async_delete_issue(self.hass, DOMAIN, tls_issue_id(self.config_entry))  # read: fixed, if raised
        ir.async_delete_issue(self.hass, DOMAIN, proxy_issue_id(self.config_entry))

    def restore_counter(self, key: str, wh: float, seen: datetime) -> None:
        """Give the counter guard what energy sensor ``key`` showed before a restart or reload.

        Without it the setup's first reading would be accepted unchecked: a glitching 0,
        or a lower value, would make the Energy dashboard book the whole lifetime reading
        again when the real value returns. ``seen`` is when the sensor last reported it;
        the value it shows now is the one the guard lets through.
        """
        name = COUNTER_NAMES[key]
        age = max((dt_util.utcnow() - seen).total_seconds(), 0.0)
        shown = self.guard.restore(name, wh, time.monotonic() - age)
        if name in GUARDED_COUNTERS:
            setattr(self.data, name, shown)
        else:
            self.billing.show_tier_counter(name, shown)

    async def _connect(self) -> None:
        if not self.client.is_open:
            await self.client.open()
        self.identity = await self.client.identify()

    @asynccontextmanager
    async def port_released(self) -> AsyncIterator[None]:
        """Close the port and keep polls away from it until the block ends.

        The port is opened exclusively (and ser2net serves one client), so a config flow
        that tests new settings for this entry's meter needs it. A poll due meanwhile
        waits; the first poll after the block opens the port again.
        """
        async with self._port_lock:
            await self.client.close()
            yield

    async def async_record_trace(self) -> dict[str, Any]:
        """Trace one complete reading for the diagnostics download, between two polls."""
        async with self._port_lock:
            return await record_reading(self.client, notes=["recorded from the Home Assistant diagnostics download"])

    async def _async_update_data(self) -> MeterSnapshot:
        asked, reads = time.monotonic(), self.history.reads_done
        importing = self._history_task is not None and not self._history_task.done()
        async with self._port_lock:
            if importing:  # waited for at most the history read in progress
                waited, during = time.monotonic() - asked, self.history.reads_done - reads
                self.history.note_poll_wait(waited, during)
                if during:
                    _LOGGER.debug("live poll waited %.3f s for the port (%d meter history reads)", waited, during)
            with self.history.holding_port():
                snapshot = await self._async_poll()
                await self._rare_step()
        if self.history.pass_due(snapshot):
            self._start_history()
        return snapshot

    async def _rare_step(self) -> None:
        """At most one extra read per live poll: a rare read's (the meter history reads between polls)."""
        await self.rare_reads.step()
        if self.billing.tiers_appeared or self.mbus.devices_appeared:  # their sensors are made at setup
            self.billing.tiers_appeared = self.mbus.devices_appeared = False
            self.hass.config_entries.async_schedule_reload(self.config_entry.entry_id)

    def _start_history(self) -> None:
        if self._history_task is None or self._history_task.done():
            self._history_task = self.config_entry.async_create_background_task(
                self.hass, self._history_worker(), f"{DOMAIN} {self.config_entry.title} meter history"
            )

    async def async_history_idle(self) -> None:
        """Wait until the running history pass (if any) has ended."""
        if self._history_task is not None and not self._history_task.done():
            await asyncio.shield(self._history_task)

    async def _history_worker(self) -> None:
        """Run the due history pass to its end, one table read at a time between the live polls.

        The port is taken for one read and given back, so a live poll waits for at most
        the read in progress; between reads the worker waits for the read budget (MEP).
        It stops when the port is closed (a failed poll or read, a config flow using the
        port): the next successful poll starts it again.
        """
        history = self.history
        try:
            if not await history.async_begin():
                return
            while history.reader is not None:
                if (delay := history.delay()) > 0:
                    await asyncio.sleep(delay)
                    continue
                async with self._port_lock:
                    if not self.client.is_open:
                        return
                    with history.holding_port():
                        await self._history_step()
                if history.cost.due:  # after the read, with the port given back: no poll waits for it
                    await self._history_price()
        except asyncio.CancelledError:
            history.cut_pass()  # a read cut off mid-way: the next poll starts a pass afresh
            raise

    async def _history_price(self) -> None:
        try:
            await self.history.async_price()
        except Exception:  # a price entity's odd statistics must not stop the import
            _LOGGER.debug("meter history cost failed; it is tried again after the next read", exc_info=True)

    async def _history_step(self) -> None:
        try:
            await self.history.async_step()
        except Exception:  # a decoder's bug must not stop the live values
            self.history.drop_pass()
            _LOGGER.debug("meter history step failed; it starts again later", exc_info=True)

    async def _extra_read_failed(self, err: MeterError) -> None:
        """Reconnect at the next poll when a rare read's link failed (the live values stand).

        A refusal, a short table or content the decoder rejects came in a valid reply: the
        link is fine and stays open.
        """
        self._note_tls_required(err)
        if not isinstance(err, ABSENT):
            await self.client.close()

    async def _async_poll(self) -> MeterSnapshot:
        now = time.monotonic()
        if now < self._retry_at:
            raise update_failed(
                retry_after=self._retry_at - now,
                translation_domain=DOMAIN,
                translation_key="backoff",
                translation_placeholders={"seconds": str(round(self._retry_at - now))},
            )
        try:
            if not self.client.is_open:
                await self._connect()
            snapshot = await self.client.read_snapshot(hold_for=self.interval_seconds)
        except MeterError as err:
            await self.client.close()
            retry_after = None if isinstance(err, AuthenticationError) else self._schedule_retry()
            self._note_tls_required(err)
            if self._failures >= PROXY_ISSUE_AFTER:
                self._note_proxy_missing(err)
            raise ha_error(err, retry_after) from err
        if self._tls_issue_raised:
            ir.async_delete_issue(self.hass, DOMAIN, tls_issue_id(self.config_entry))
            self._tls_issue_raised = False
        if self._proxy_issue_raised:
            ir.async_delete_issue(self.hass, DOMAIN, proxy_issue_id(self.config_entry))
            self._proxy_issue_raised = False
        self._failures = 0
        self._retry_at = 0.0
        return self.guard.apply(snapshot, time.monotonic())

    def _note_tls_required(self, err: MeterError) -> None:
        """Raise a repair the user can accept (it switches the option) when the meter requires TLS."""
        if not isinstance(err, TlsRequiredError) or self._tls_issue_raised:
            return
        self._tls_issue_raised = True
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            tls_issue_id(self.config_entry),
            is_fixable=True,
            severity=ir.IssueSeverity.ERROR,
            translation_key="tls_required",
            translation_placeholders={"title": self.config_entry.title},
            data={"entry_id": self.config_entry.entry_id},
        )

    def _note_proxy_missing(self, err: MeterError) -> None:
        """Raise a repair naming the ESPHome device when the entry's serial proxy is offline or lost its port."""
        port = self.config_entry.data[CONF_PORT]
        if not isinstance(err, ProxyOfflineError | ProxyPortNotFoundError) or not is_esphome_proxy(port):
            return
        self._proxy_issue_raised = True
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            proxy_issue_id(self.config_entry),
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="proxy_missing",
            translation_placeholders={
                "title": self.config_entry.title,
                "device": proxy_device_name(self.hass, port),
                "port": describe_port(port),
            },
        )

    def _schedule_retry(self) -> float:
        """Exponential backoff, 1 s doubling up to 60 s, between reconnect attempts; the delay."""
        delay: float = min(BACKOFF_MAX, BACKOFF_MIN * 2.0 ** min(self._failures, 16))  # no float overflow
        self._failures += 1
        self._retry_at = time.monotonic() + delay
        return delay

    async def async_shutdown(self) -> None:
        """Stop polling and the history worker, and close the port (on unload, and on a failed setup)."""
        await super().async_shutdown()
        if self._history_task is not None:
            self._history_task.cancel()
            with suppress(asyncio.CancelledError):
                await self._history_task
            self._history_task = None
        await self.client.close()
