"""The M-Bus devices behind the meter (gas, water, heat meters), read rarely.

The meter itself reads its M-Bus devices, hourly or daily, so one pass every fifteen
minutes (ET14, plus a device's record only when ET14 says it has a new read) is plenty,
within the rare reads' budget of one table read per live poll. The devices are learned
at setup so their sensors exist only where there are devices, and start with a value; a
device that appears later (ET14's occupancy or handles change) reloads the entry to get
its sensors. Values come from ``nesmeter.client.mbus_reader``.
"""

from __future__ import annotations

from datetime import datetime
import time
from typing import Any, Final

from homeassistant.util import dt as dt_util

from nesmeter import MeterClient
from nesmeter.client.mbus_reader import MbusDevice, MbusReader

from .guard import CounterGuard
from .rare_reads import RareRead

MBUS_INTERVAL: Final = 900.0
COUNTERS: Final = frozenset({"volume_m3", "energy_kwh"})  # what the Energy dashboard sums: guarded
GUARD_DIAGNOSTICS: Final = ("restored_counters", "accepted_resets", "dropped_readings")  # no phase sums here


class MbusTracker:
    """The M-Bus devices and their newest values, for their sensors."""

    def __init__(self, client: MeterClient) -> None:
        """Read through ``client``; nothing is known before ``async_setup``."""
        self._reader = MbusReader(client)
        self.devices_appeared = False  # set when ET14 names a device the sensors lack
        self._known: frozenset[tuple[int, int, str]] = frozenset()
        self.guard = CounterGuard()  # the Energy dashboard's totals: volumes and heat energy
        self._shown: dict[tuple[str, str], float | None] = {}  # (device id, counter) -> what the guard let through
        self._checked: dict[str, datetime | None] = {}  # device id -> the read its counters were checked from

    @property
    def devices(self) -> dict[int, MbusDevice]:
        """The devices of ET14 with their newest reads, by slot."""
        return self._reader.devices

    async def async_setup(self, hardware_options: int | None) -> None:
        """Learn whether there is a module (from ET29.0's ``hardware_options``), and read every device once.

        ``hardware_options`` is what the relay reader read at setup; None when the meter
        refused ET29, which is then not asked again: no hardware table, no M-Bus module known.
        """
        if hardware_options is None:
            return
        await self._reader.setup(hardware_options)
        await self._reader.read_all()
        self._known = self._identities()
        for device in self.devices.values():
            self._check(device)

    def rare_reads(self) -> list[RareRead]:
        """Return the M-Bus pass for a meter with devices (``async_setup`` just read them)."""
        if not self._reader.available:
            return []
        return [RareRead("mbus", MBUS_INTERVAL, self._step, abort=self._reader.abort, just_read=True)]

    async def _step(self) -> bool:
        more = await self._reader.step()
        if not more:
            if self._identities() != self._known:
                self.devices_appeared = True
            for device in self.devices.values():
                self._check(device)
        return more

    def _identities(self) -> frozenset[tuple[int, int, str]]:
        """Return what the sensors are made for: each slot's handle and device.

        A telegram decoded only later, a device replaced behind the same handle and a new
        slot all change it.
        """
        return frozenset((device.slot, device.handle, device_id(device)) for device in self.devices.values())

    def _check(self, device: MbusDevice) -> None:
        """Pass a device's new read of its counters through the counter guard (once per read)."""
        telegram = device.telegram
        ident = device_id(device)
        if telegram is None or self._checked.get(ident) == device.read_at:
            return
        self._checked[ident] = device.read_at
        now = time.monotonic()
        for key in COUNTERS & telegram.values.keys():
            value = telegram.values[key]
            assert isinstance(value, float)
            accepted = self.guard.check(guard_name(ident, key), value * 1000, now)
            self._shown[(ident, key)] = accepted / 1000 if accepted is not None else None

    def restore(self, ident: str, key: str, value: float, seen: datetime) -> None:
        """Give the guard what a device's counter sensor showed before a restart or reload.

        Like the meter's own energy sensors: the setup's first read, the only one not yet
        checked, is checked against it, so a glitching 0 or lower value never reaches the
        Energy dashboard.
        """
        age = max((dt_util.utcnow() - seen).total_seconds(), 0.0)
        shown = self.guard.restore(guard_name(ident, key), value * 1000, time.monotonic() - age)
        self._shown[(ident, key)] = shown / 1000 if shown is not None else None

    def device(self, ident: str) -> MbusDevice | None:
        """Return the device with M-Bus identity ``ident`` (its sensors follow it, not its slot)."""
        return next((device for device in self.devices.values() if device_id(device) == ident), None)

    def value(self, ident: str, key: str) -> float | str | None:
        """Return a device's newest value for ``key`` (a counter as the guard lets it through); None when unknown."""
        device = self.device(ident)
        if device is None or device.telegram is None:
            return None
        if key in COUNTERS:
            return self._shown.get((ident, key))
        return device.telegram.values.get(key)

    def diagnostics(self) -> dict[str, Any]:
        """Return the module's presence and each device (no customer ids: they are never read)."""
        return {
            "module": self._reader.available,
            "devices": [device.as_dict() for device in self.devices.values()],
            "guard": {key: value for key, value in self.guard.as_dict().items() if key in GUARD_DIAGNOSTICS},
        }


def guard_name(ident: str, key: str) -> str:
    """Return the counter guard's name of a device's counter, ending in its guarded unit (Wh, litres)."""
    return f"mbus_{ident}_{'energy_wh' if key == 'energy_kwh' else 'volume_l'}"


def device_id(device: MbusDevice) -> str:
    """Return the device's M-Bus identity (manufacturer and serial), which survives slot changes."""
    telegram = device.telegram
    if telegram is None:
        return f"slot{device.slot}"
    return f"{telegram.manufacturer}{telegram.serial}".lower()
