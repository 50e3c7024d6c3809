"""The simulated meter's event log (BT70, BT71, BT74) and alarm bits (BT03).

The ring holds 100 entries (the manufacturer default, O p.50) and starts full and
wrapped: 130 entries were written, so the newest sits at element 29, and the 32-bit
sequence numbers cross a 16-bit boundary (the records carry only the low 16 bits). The
entries are what a house meter plausibly logs over a few weeks: outages (power down and
up with the reset cause), tier switches, DST, a sag and a swell, a firmware change and
the cover opened at installation. ``inject`` logs one more at run time (tests, and
``meter simulate --event NAME[=ARGUMENT]``), with a typical argument of that event when none
is given (``TYPICAL_ARGUMENTS``: laid out as the sources of ``nesmeter.tables.event_ids``
describe, several of them EnergyICT's examples); latched alarms (cover removed, magnetic
tamper, phase loss, ...) also set their BT03 bit, as a meter does until the utility clears it.
BT70 holds the maximum dimensions (200 entries) and BT71 the configured ones (O p.50);
the ``bt70-log`` meter is firmware 2.01/2.10's, whose log is sized by BT70 (O p.49).
Layouts: ``nesmeter.tables.events``. When the model runs (``speed`` > 0) a tier switch is logged
every model hour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
import struct
from typing import TYPE_CHECKING, Final

from nesmeter.sim.sim_host import USER_NONE, LoggedEvent
from nesmeter.tables import tables
from nesmeter.tables.events import (
    BT00_MFG_STATUS_LENGTH,
    BT03,
    BT70,
    BT71,
    BT74,
    BT74_HEADER,
    EVENT_LOG_UNREAD,
    EVENTS,
    RECORD_FIXED,
    SEQUENCE_MODULUS,
    STATUS_BITS,
)

if TYPE_CHECKING:
    from nesmeter.sim.sim_host import ImageHost

TABLE_IDS: Final = frozenset({BT03, BT70, BT71, BT74})
VARIANTS: Final[dict[str, str]] = {
    "no-event-log": "no history log: BT70, BT71 and BT74 answered with inappropriate action, BT03 too",
    "bt70-log": "firmware 2.01/2.10 event log: BT71 refused with inappropriate action, its dimensions in BT70",
    "event-gaps": "event log: every other sequence number goes to the alternate log (ET79)",
}
ENTRIES: Final = 100
MAX_ENTRIES: Final = 200  # BT70.5: "the default for most meter models is 100 or 200" (O p.50)
ARGUMENT_BYTES: Final = 2
RECORD: Final = RECORD_FIXED + ARGUMENT_BYTES
FIRST_SEQUENCE: Final = 65_480  # the 16-bit sequence in the records wraps inside the history
HISTORY: Final = 130
USER_NETWORK: Final = 0xFFFE
IAR: Final = 0x05
TIER_PERIOD: Final = 3600.0  # model seconds between logged tier switches
IDS: Final[dict[str, int]] = {name: event_id for event_id, (name, _family) in EVENTS.items()}
MBUS_DEVICE_1: Final = 1 << 13  # bits 13-15 of an M-Bus event's argument: the device
# An argument each event plausibly carries (the firmware change: the firmware BT01 names).
TYPICAL_ARGUMENTS: Final[dict[str, int]] = {
    "power_up": 3,  # power failure
    "list_pointers_reset": 8,  # the history log
    "list_pointers_updated": 8,
    "season_change": 1,
    "tier_switch": 1,
    "system_reset": 0,  # watchdog timeout
    "nvm_failure": 0x4000 | 23,  # BT23, failed the read after a write
    "cover_removed": 0x01,
    "reverse_energy": 0x01,  # L1
    "disconnect_changed": 0x0102,  # opened by a remote command (EICT's 258)
    "control_relay_open": 0x0102,
    "phase_loss": 0x04,  # L3
    "phase_inversion": 4,  # +180 degrees
    "current_on_missing_phase": 0x01,
    "mbus_alarm": MBUS_DEVICE_1 | 2,  # device 1: status read, new device alarm (EICT's 8194)
    "power_quality_changed": 0x02,  # sag on L2
    "access_lockout_override": 1,
    "thd_changed": 0x01,
    "load_side_voltage": 2 | 0x08,  # present, on L1
    "mbus_status_changed": MBUS_DEVICE_1,  # device 1 paired (EICT's 8192)
    "voltage_sag": 207 * 4 + 1,  # 207 V on L2
    "voltage_swell": 249 * 4 + 2,  # 249 V on L3
    "voltage_thd_max": 9 * 4 + 0,
    "current_thd_max": 31 * 4 + 1,
    "power_thd_max": 12 * 4 + 2,
    "voltage_thd_average": 4 * 4 + 0,
    "current_thd_average": 18 * 4 + 1,
    "power_thd_average": 7 * 4 + 2,
    "disconnect_pulsed": 3,  # pulse count
    "mbus_sniffer_match": MBUS_DEVICE_1 | 0x7A,
    "mbus_device_alarm": MBUS_DEVICE_1 | 0x10,
    "mbus_alarm_match": MBUS_DEVICE_1 | 0x10,
    "dimmer_effect": 0x02,  # L2
}
# Events whose alarm stays latched in BT03 (name of the event -> name of the status bit).
LATCHES: Final[dict[str, str]] = {
    "cover_removed": "cover_removed",
    "magnetic_tamper": "magnetic_tamper",
    "phase_loss": "phase_loss",
    "phase_inversion": "phase_inversion",
    "invalid_password": "invalid_password",
    "current_on_missing_phase": "current_on_missing_phase",
    "load_side_voltage": "load_side_voltage",
    "voltage_sag": "power_quality_event",
    "voltage_swell": "power_quality_event",
    "power_quality_changed": "power_quality_event",
    "reverse_energy": "reverse_energy",
    "clock_error": "clock_error",
    "low_battery": "low_battery",
}


def event_id(name: str | int) -> int:
    """Return an event's id from its name (``cover_removed``) or number (``47``)."""
    if isinstance(name, int):
        return name
    if name.isdigit():
        return int(name)
    if name not in IDS:
        raise ValueError(f"unknown event {name!r}; known: {', '.join(sorted(IDS))}")
    return IDS[name]


def firmware_word(bt01: bytes | bytearray | None) -> int:
    """BT01's firmware version word (bits 15-12, 11-5, 4-0: the layout event 36 logs)."""
    if bt01 is None or len(bt01) < 16:
        return 0
    return int.from_bytes(bt01[14:16], "big")


class SimEventLog:
    """BT70/BT71/BT74/BT03 of the simulated meter."""

    def __init__(self, image: ImageHost) -> None:
        """Add BT03, BT70, BT71 and BT74 to ``image``, with a log of past events."""
        self.image = image
        self.entries = ENTRIES
        self.sequence = FIRST_SEQUENCE - 1  # the last one handed out
        self.step = 1
        self.logged: list[LoggedEvent] = []
        self.inject_after_reads: list[tuple[int, str | int, int]] = []  # (record reads, event, argument)
        self.listeners: list[Callable[[LoggedEvent], None]] = []  # told of each injected event (ET09 follows)
        self._record_reads = 0
        self._tier = 0
        self._next_tier = TIER_PERIOD
        status_length = image.tables[tables.BT00][BT00_MFG_STATUS_LENGTH]
        image.tables[BT70] = bytearray(self._dimensions(MAX_ENTRIES))
        image.tables[BT71] = bytearray(self._dimensions(self.entries))
        image.tables[BT74] = bytearray(BT74_HEADER + self.entries * RECORD)
        image.tables[BT03] = bytearray(4 + status_length)
        self._history()

    def configure(self, variants: Iterable[str]) -> None:
        """Apply the event-log variants (before the first read)."""
        chosen = set(variants)
        if "no-event-log" in chosen:
            for table_id in TABLE_IDS:
                self.image.tables.pop(table_id, None)
                self.image.refused[table_id] = IAR
        if "bt70-log" in chosen and BT71 in self.image.tables:
            # Firmware 2.01/2.10: the ring BT74 holds is the one BT70 describes (O p.49).
            self.image.tables[BT70][:] = self.image.tables.pop(BT71)
            self.image.refused[BT71] = IAR
        if "event-gaps" in chosen and self.image.tables.get(BT74) is not None:
            self.step = 2  # the history is written again with the gaps
            self.sequence, self.logged = FIRST_SEQUENCE - 1, []
            self.image.tables[BT74][:] = bytes(len(self.image.tables[BT74]))
            self._history()

    @staticmethod
    def _dimensions(entries: int) -> bytes:
        """BT70/BT71 (O p.50): date/time and sequence kept, 8 + 19 event bytes, 2-byte arguments."""
        return struct.pack("<BBBBBHH", 0x06, 8, 19, ARGUMENT_BYTES, 2, entries, 0)

    def _history(self) -> None:
        """About three weeks of a house meter's life, oldest first."""
        now = datetime.now(UTC).replace(microsecond=0)
        start = now - timedelta(days=21)
        plan: list[tuple[float, str, int]] = [
            (0.0, "firmware_changed", self.typical_argument(event_id("firmware_changed"))),
            (0.01, "cover_removed", 0),
            (0.02, "configuration_error", 0),
        ]
        for day in range(21):
            plan.append((day + 6 / 24, "tier_switch", 1))
            plan.append((day + 22 / 24, "tier_switch", 0))
            if day % 3 == 1:
                plan.append((day + 14.1 / 24, "power_down", 0))
                plan.append((day + 14.8 / 24, "power_up", 3))
            if day % 5 == 2:
                plan.append((day + 9.5 / 24, "voltage_sag", TYPICAL_ARGUMENTS["voltage_sag"]))
            if day % 7 == 4:
                plan.append((day + 12.25 / 24, "voltage_swell", TYPICAL_ARGUMENTS["voltage_swell"]))
        plan.append((10.1, "dst_off", 0))
        plan.sort()
        filler = HISTORY - len(plan)
        for index in range(filler):  # table reads by the head end, spread over the days
            plan.append((index * 21 / filler + 0.3, "table_written", 23))
        plan.sort()
        for days, name, argument in plan[-HISTORY:]:
            self._log(
                event_id(name),
                argument,
                start + timedelta(days=days),
                USER_NETWORK if name == "table_written" else USER_NONE,
            )
        self._write_status()

    def _log(self, event: int, argument: int, when: datetime, user_id: int = USER_NONE) -> LoggedEvent:
        self.sequence = (self.sequence + self.step) % SEQUENCE_MODULUS
        element = (len(self.logged)) % self.entries
        entry = LoggedEvent(self.sequence, when.replace(microsecond=0), event, argument, user_id)
        self.logged.append(entry)
        table = self.image.tables.get(BT74)
        if table is None:
            return entry
        record = tables.encode_time_date(entry.time) + struct.pack(
            "<HHH", entry.sequence & 0xFFFF, user_id, event & 0x0FFF
        )
        record += argument.to_bytes(ARGUMENT_BYTES, "little")
        offset = BT74_HEADER + element * RECORD
        table[offset : offset + RECORD] = record
        valid = min(len(self.logged), self.entries)
        unread = min(valid, struct.unpack_from("<H", table, 9)[0] + 1)
        flags = 0x04 | (0x02 if len(self.logged) > self.entries else 0)
        table[:BT74_HEADER] = struct.pack("<BHHIH", flags, valid, element, entry.sequence, unread)
        return entry

    def typical_argument(self, event: int) -> int:
        """Return the argument ``event`` is logged with when none is given; 0 for most."""
        if event == event_id("firmware_changed"):
            return firmware_word(self.image.tables.get(tables.BT01))
        return TYPICAL_ARGUMENTS.get(EVENTS.get(event, ("", ""))[0], 0)

    def inject(self, name: str | int, argument: int | None = None, when: datetime | None = None) -> LoggedEvent:
        """Log an event now (or at ``when``); a latched alarm sets its BT03 bit."""
        event = event_id(name)
        if argument is None:
            argument = self.typical_argument(event)
        entry = self._log(event, argument, when or datetime.now(UTC))
        self._write_status()
        for listener in self.listeners:
            listener(entry)
        return entry

    def _write_status(self) -> None:
        status = self.image.tables.get(BT03)
        if status is None:
            return
        for logged in self.logged:
            latch = LATCHES.get(EVENTS.get(logged.event_id, ("", ""))[0])
            if latch is not None:
                self._set_bit(status, latch)
        byte, bit = EVENT_LOG_UNREAD
        if byte < len(status):
            status[byte] |= 1 << bit

    @staticmethod
    def _set_bit(status: bytearray, name: str) -> None:
        for (byte, bit), known in STATUS_BITS.items():
            index = byte + bit // 8
            if known == name and index < len(status):
                status[index] |= 1 << (bit % 8)

    def clear_alarms(self) -> None:
        """Do what the utility's head end does (a procedure this client never calls)."""
        status = self.image.tables.get(BT03)
        if status is not None:
            status[1:] = bytes(len(status) - 1)

    def advance(self, elapsed: float) -> None:
        """Log a tier switch every model hour while the model runs (a ``tou`` meter logs its calendar's)."""
        if self.image.billing.calendar:
            return
        while elapsed >= self._next_tier:
            self._tier = 1 - self._tier
            self.inject("tier_switch", self._tier)
            self._next_tier += TIER_PERIOD

    def before_read(self, table_id: int, offset: int) -> None:
        """Log the events a test scheduled to arrive between two record reads."""
        if table_id != BT74 or offset < BT74_HEADER:
            return
        self._record_reads += 1
        due = [item for item in self.inject_after_reads if item[0] < self._record_reads]
        for item in due:
            self.inject_after_reads.remove(item)
            self.inject(item[1], item[2])
