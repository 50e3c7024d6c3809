"""The M-Bus devices behind the meter (gas, water, heat meters), read rarely.

The meter itself reads its M-Bus devices, hourly or daily, so one pass every fifteen
minutes (ET14, plus a device's record only when ET14 says it has a new read) is plenty,
within the rare reads' budget of one table read per live poll. The devices are learned
at setup so their sensors exist only where there are devices, and start with a value; a
device that appears later (ET14's occupancy or handles change) reloads the entry to get
its sensors. Values come from ``nesmeter.client.mbus_reader``.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from nesmeter import MeterClient
from nesmeter.client.mbus_reader import MbusDevice, MbusReader

from .rare_reads import RareRead

MBUS_INTERVAL: Final = 900.0
COUNTERS: Final = frozenset({"volume_m3", "energy_kwh"})  # what the Energy dashboard sums

_LOGGER = logging.getLogger(__name__)


class MbusTracker:
    """The M-Bus devices and their newest values, for their sensors."""

    def __init__(self, client: MeterClient) -> None:
        """Read through ``client``; nothing is known before ``async_setup``."""
        self._reader = MbusReader(client)
        self.devices_appeared = False  # set when ET14 names a device the sensors lack
        self._known: frozenset[tuple[int, int]] = frozenset()  # (slot, handle) the sensors were made for
        self._totals: dict[tuple[str, str], float] = {}  # (device id, counter) -> the highest value shown
        self._said: set[tuple[str, str]] = set()

    @property
    def devices(self) -> dict[int, MbusDevice]:
        """The devices of ET14 with their newest reads, by slot."""
        return self._reader.devices

    async def async_setup(self, hardware_options: int | None) -> None:
        """Learn whether there is a module (from ET29.0's ``hardware_options``), and read every device once."""
        if hardware_options is not None:
            await self._reader.setup(hardware_options)
        await self._reader.read_all()
        self._known = self._slots()
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
            if self._slots() != self._known:
                self.devices_appeared = True
            for device in self.devices.values():
                self._check(device)
        return more

    def _slots(self) -> frozenset[tuple[int, int]]:
        return frozenset((device.slot, device.handle) for device in self.devices.values())

    def _check(self, device: MbusDevice) -> None:
        """Remember each counter's highest value; a lower one is a glitch and is not shown."""
        telegram = device.telegram
        if telegram is None:
            return
        for key in COUNTERS & telegram.values.keys():
            value = telegram.values[key]
            assert isinstance(value, float)
            ident = (device_id(device), key)
            shown = self._totals.get(ident)
            if shown is not None and value < shown:
                if ident not in self._said:
                    self._said.add(ident)
                    _LOGGER.warning(
                        "M-Bus %s %s went down from %s to %s; keeping %s", ident[0], key, shown, value, shown
                    )
                continue
            self._totals[ident] = value

    def value(self, slot: int, key: str) -> float | str | None:
        """Return a device's newest value for ``key``; None when not read or not decodable."""
        device = self.devices.get(slot)
        if device is None or device.telegram is None:
            return None
        if key in COUNTERS:
            return self._totals.get((device_id(device), key))
        return device.telegram.values.get(key)

    def diagnostics(self) -> dict[str, Any]:
        """Return the module's presence and each device (no customer ids: they are never read)."""
        return {
            "module": self._reader.available,
            "devices": [device.as_dict() for device in self.devices.values()],
        }


def device_id(device: MbusDevice) -> str:
    """Return the device's M-Bus identity (manufacturer and serial), which survives slot changes."""
    telegram = device.telegram
    if telegram is None:
        return f"slot{device.slot}"
    return f"{telegram.manufacturer}{telegram.serial}".lower()
