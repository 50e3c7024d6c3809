"""The simulated meter's M-Bus devices: ET14, ET16, ET36 and ET45 (layouts: ``nesmeter.tables.mbus``).

Without a variant the meter has no M-Bus module (ET29.0 bit 8 clear) and no M-Bus
tables. Variant ``mbus`` fits the module with three devices in slots 1-3, read by the
meter every hour, each sending a telegram captured from a real device (libmbus's test
set, taken as data): an Itron Cyble gas meter, an Itron Cyble water meter and a Kamstrup
Multical 601 heat meter. Their counters run on from those captures: the stored
telegram of each read carries the volume (and the heat meter's energy) at that hour. As
the guide's default, ET45 holds no entries and every scheduled read overwrites the
device's ET16 record. Variant ``mbus-log`` configures ET45 with 24 entries, as a head
end may: ET16 keeps each device's first read (a month old) and the hourly reads go to
ET45, newest at its "last entry element".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import struct
from typing import TYPE_CHECKING, Final

from nesmeter.sim.sim_billing import LOCAL_OFFSET
from nesmeter.tables import tables
from nesmeter.tables.mbus import ET14, ET16, ET36, ET36_ROW, ET45, ET45_HEADER, MBUS_MODULE_BIT

if TYPE_CHECKING:
    from nesmeter.sim.sim_host import ImageHost

TABLE_IDS: Final = frozenset({ET14, ET16, ET36, ET45})
VARIANTS: Final[dict[str, str]] = {
    "mbus": "M-Bus module with a gas, a water and a heat meter (real telegrams) read hourly into ET16",
    "mbus-log": "as mbus, with ET45 configured: hourly reads in the recurring read log, ET16 a month old",
}
ET14_ENTRY: Final = 36
ET16_ENTRY: Final = 517
ET45_ENTRY: Final = 525  # the guide's default: 8 bytes of entry header + an ET16-sized read
LOG_ENTRIES: Final = 24
BAUD_2400: Final = 4
COMMISSIONED_DAYS: Final = 30
# ET36's rows as a meter lists them (G p.107-109); ET45 is the fifth. (table, entry size, max)
ET36_ROWS: Final = (
    (31, 232, 255),
    (32, 525, 255),
    (38, 35, 255),
    (41, 0, 255),
    (45, ET45_ENTRY, 253),
    (75, 143, 253),
    (81, 12, 253),
)


@dataclass(frozen=True, slots=True)
class Counter:
    """An INT32 counter inside a captured telegram: where, its unit, and how fast it runs."""

    offset: int  # of the value's first byte in the application data
    unit: float  # what one count is worth, in the counter's unit (m³ or kWh)
    start: float  # the value now
    per_hour: float


@dataclass(frozen=True, slots=True)
class SimDevice:
    """One M-Bus device: its slot, handle and captured telegram (application data after CI 0x72)."""

    slot: int
    handle: int
    telegram: bytes
    counters: tuple[Counter, ...]
    clock: int  # offset of the device's own date and time (type F, 4 bytes) in the telegram


# libmbus's test-frames itron_cyble_m-bus_v1.4_gas, _water and kamstrup_multical_601: each
# frame's application data (after 68 L L 68 C A CI, before the checksum), as ET16 stores it.
GAS: Final = bytes.fromhex(
    "87030210770414039a0000000c78870302100d7c084449202e747375630a20202020202020202020046d2b0f791a027c"
    "09656d6974202e746162d20f04141a00000004947f000000004414190000000f00021f"
)
WATER: Final = bytes.fromhex(
    "71000012770414070a3000000c78710000120d7c084449202e747375630a454c4259432054534554046d2b0d9811027c"
    "09656d6974202e746162f21004143d30000004947f140000004414000000000f10011f"
)
HEAT: Final = bytes.fromhex(
    "175885062d2c0804040000000c78175885060406e791000004142cdb00000422d90300000459b9270000045d08120000"
    "0461b1150000042d5b010000142dc0010000043b1f020000143b74020000841006000000008420060000000084401400"
    "000000848040140000000084c0400600000000046d1a2f65114406518200004414b2c30000542d26020000543b030400"
    "00c4100600000000c4200600000000c4401400000000c480401400000000c4c0400600000000426c5f1c0f00000000e7"
    "e40000636600000000000000000000000000005bc9a50234530000e0b20300899c680000000000010001070709010300"
    "00000000"
)
DEVICES: Final = (
    # gas: 04 6D at 40, its clock from 42; 04 14 at 60, the volume in 0.01 m³ from 62
    SimDevice(1, 1, GAS, (Counter(62, 0.01, 1843.27, 0.05),), clock=42),
    # water: the same records at the same places
    SimDevice(2, 2, WATER, (Counter(62, 0.01, 123.49, 0.01),), clock=42),
    # heat: 04 06 at 18, the energy in kWh from 20; 04 14 at 24, the volume in 0.01 m³ from 26;
    # 04 6D at 115, its clock from 117
    SimDevice(3, 3, HEAT, (Counter(20, 1.0, 37351.0, 1.0), Counter(26, 0.01, 561.08, 0.02)), clock=117),
)


def type_f(when: datetime) -> bytes:
    """EN 13757-3 type F date and time: minute, hour, day + year bits 0-2, month + year bits 3-6."""
    year = when.year - 2000
    return bytes([when.minute, when.hour, when.day | (year & 0x07) << 5, when.month | (year >> 3) << 4])


class SimMbus:
    """ET14, ET16, ET36 and ET45 of a meter with an M-Bus module (variants ``mbus``, ``mbus-log``)."""

    def __init__(self, image: ImageHost) -> None:
        """No module until a variant fits one."""
        self.image = image
        self.devices: tuple[SimDevice, ...] = ()
        self.log = False
        self._start = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        self._skipped = timedelta()

    def configure(self, variants: Iterable[str], set_options: Callable[[int], None]) -> None:
        """Fit the module and its devices for ``mbus``/``mbus-log`` (``set_options`` ORs ET29.0 bits)."""
        chosen = set(variants)
        if not chosen & VARIANTS.keys():
            return
        self.devices = DEVICES
        self.log = "mbus-log" in chosen
        set_options(1 << MBUS_MODULE_BIT)
        self.write()

    @property
    def slots(self) -> int:
        """ET11.0: the devices ET14 and ET16 have entries for."""
        return self.image.tables[tables.ET11][0]

    def local_now(self) -> datetime:
        """Return the meter's local time in the model (naive)."""
        return self._start + LOCAL_OFFSET + self._skipped + timedelta(seconds=int(self.image.elapsed))

    def skip(self, hours: float) -> None:
        """Let ``hours`` pass for the M-Bus devices (and their meter's hourly reads of them)."""
        self._skipped += timedelta(hours=hours)

    def value(self, counter: Counter, when: datetime) -> float:
        """Return a counter's value at ``when`` (local), on from its start."""
        hours = (when - self._start - LOCAL_OFFSET).total_seconds() / 3600
        return counter.start + counter.per_hour * hours

    def telegram(self, device: SimDevice, when: datetime) -> bytes:
        """Return the device's telegram as read at ``when``, with its meter's zero terminator."""
        data = bytearray(device.telegram)
        for counter in device.counters:
            struct.pack_into("<i", data, counter.offset, round(self.value(counter, when) / counter.unit))
        data[device.clock : device.clock + 4] = type_f(when)
        return bytes(data) + b"\x00"

    def record(self, device: SimDevice, when: datetime) -> bytes:
        """One MBR: the read's local time, response info 0 (mode 1, variable data), one telegram."""
        telegram = self.telegram(device, when)
        return tables.encode_time_date(when) + bytes([0, len(telegram)]) + telegram

    def before_read(self) -> None:
        """Bring the tables to the meter's last hourly read."""
        if self.devices:
            self.write()

    def write(self) -> None:
        """Render ET14, ET16, ET36 and ET45 for the last hourly read."""
        latest = self.local_now().replace(minute=0, second=0)
        first = latest - timedelta(days=COMMISSIONED_DAYS)
        et14 = bytearray(6 + self.slots * ET14_ENTRY)
        et16 = bytearray(self.slots * ET16_ENTRY)
        et14[5] = sum(1 << (device.slot - 1) for device in self.devices)
        for device in self.devices:
            record = self.record(device, first if self.log else latest)
            at = (device.slot - 1) * ET16_ENTRY
            et16[at : at + len(record)] = record
            reads = int((latest - first).total_seconds() // 3600) + 1
            at = 6 + (device.slot - 1) * ET14_ENTRY
            struct.pack_into(
                "<HBBHIIHB", et14, at, device.handle, 1, BAUD_2400, len(record), reads, reads, 0, device.slot,
            )  # fmt: skip
            et14[at + 24 : at + 30] = tables.encode_time_date(latest)  # last status read
            et14[at + 30 : at + 36] = tables.encode_time_date(latest)  # last billing read attempt
        self.image.tables[ET14] = et14
        self.image.tables[ET16] = et16
        self.image.tables[ET36] = self._et36()
        self.image.tables[ET45] = self._et45(latest)

    def _et36(self) -> bytearray:
        et36 = bytearray([len(ET36_ROWS)])
        for table, size, most in ET36_ROWS:
            current = LOG_ENTRIES if table == 45 and self.log else 0
            flags = 1 if table == 45 else 0  # ET45 entries start with their length
            row = struct.pack("<HHHHB", 0x800 | table, size, most, current, flags)
            et36 += row.ljust(ET36_ROW, b"\x00")
        return et36 + bytes(1)  # the unread-entries bitmap

    def _et45(self, latest: datetime) -> bytearray:
        """24 entries, the devices' hourly reads in turn; the newest at the last entry element."""
        if not self.log:
            return bytearray(ET45_HEADER)
        et45 = bytearray(ET45_HEADER + LOG_ENTRIES * ET45_ENTRY)
        per_hour = len(self.devices)
        hours = LOG_ENTRIES // per_hour
        sequence = 1000 + int((latest - self._start).total_seconds() // 3600) * per_hour
        last = sequence % LOG_ENTRIES
        for back in range(LOG_ENTRIES):
            hour, index = divmod(back, per_hour)
            device = self.devices[per_hour - 1 - index]
            when = latest - timedelta(hours=hour)
            if hour >= hours:
                break
            record = self.record(device, when)
            element = (last - back) % LOG_ENTRIES
            entry = struct.pack("<HHHBB", 6 + len(record), 0, device.handle, 0, 4) + record
            at = ET45_HEADER + element * ET45_ENTRY
            et45[at : at + len(entry)] = entry
        struct.pack_into("<BBBHB", et45, 0, 0x04, LOG_ENTRIES, last, sequence & 0xFFFF, LOG_ENTRIES)
        return et45
