"""The meter's event log (BT70/BT71, BT74) and its alarm bits (BT03), and an incremental reader.

Layouts (MEP guide "G", optical guide "O", printed pages):

* BT71 Actual Log (O p.50-51; G p.113-114 via ET42): 0 flags (bit 1 date/time, bit 2
  sequence number), 1 UINT8 standard event bytes, 2 UINT8 manufacturer event bytes,
  3 UINT8 history data (argument) length, 4 UINT8 event data length, 5 UINT16 history
  entries, 7 UINT16 event entries (always 0 on NES: there is no BT76 event log).
* BT70 Dimension Log (O p.50): the same nine bytes, as the maximum dimensions. BT74 is
  sized by BT70 on firmware 2.01 and 2.10, by BT71 from 2.12 (O p.49): BT70 is read
  when a meter refuses BT71.
* BT74 History Log Data (G p.241-243, O p.51-53): an 11-byte header: 0 flags (bit 0
  order, bit 1 overflow, bit 2 list type 1 = circular), 1 UINT16 valid entries, 3 UINT16
  last entry element, 5 UINT32 last entry sequence (never reset on firmware >= 3.70),
  9 UINT16 unread entries (the head end's; never touched here). Then ``Array[BT71.5]``
  of ``12 + BT71.3`` byte records: 0 LTIME_DATE (UTC), 6 UINT16 sequence (the low two
  bytes of the 32-bit one), 8 UINT16 user id (0xFFFF none, 0xFFFE PLC/P2P/G3, 0xFFFD a
  MEP client, else the optical logon user), 10 UINT16 bits 0-11 event id, 12 argument.
  The guide prints the record offsets of element 0 (11, 17, 19, 21, 23).
* BT03 End Device Mode Status (O p.45-47): 0 mode, 1 UINT16 standard status bits,
  3 extended bits, then ``BT00.17`` bytes of manufacturer bits (4 on the optical guide's
  meters, 9 in the MEP guide's BT00 on firmware 4.x). Alarms stay latched until the
  utility clears them; this library never writes.

Neither guide lists the event ids ("consult the documentation for your meter", G p.243):
their names, the sources of each and the decoding of their arguments are in
:mod:`nesmeter.tables.event_ids`; any other id is shown as ``unknown`` with its number.

Reading only what is new (:class:`EventLogReader`): the 11-byte header first; when its
sequence has not moved since the last pass nothing else is read. Otherwise the newest
``min(valid, sequence now - sequence seen)`` records (an upper bound: the alternate log
ET79 shares the numbering, G p.242) are read oldest first in whole records, split where
the ring wraps, and the header is read again. The 32-bit sequence of each record is
rebuilt from its 16 low bits against that second header, so a slot overwritten during
the read (the ring wrapped under us) is recognised as the newer entry it now holds; if
the header moved, another pass picks up what was written meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
import struct
from typing import Any, Final

from nesmeter.errors import DecodeError
from nesmeter.tables import tables
from nesmeter.tables.event_ids import EVENT_IDS, Details, decode_argument

BT00_MFG_STATUS_LENGTH: Final = 17  # BT00.17: bytes of manufacturer status bits in BT03
BT03: Final = 3
BT70: Final = 0x46
BT71: Final = 0x47
BT74: Final = 0x4A
BT71_SIZE: Final = 9
BT74_HEADER: Final = 11
RECORD_FIXED: Final = 12  # time 6, sequence 2, user 2, event 2; then the argument
SEQUENCE_MODULUS: Final = 1 << 32
MAX_PASSES: Final = 3  # header moved during the read: read again, at most this often

USERS: Final[dict[int, str]] = {0xFFFF: "none", 0xFFFE: "network", 0xFFFD: "mep"}

# id -> (name, family); the names' sources and disputed meanings are in event_ids.EVENT_IDS.
EVENTS: Final[dict[int, tuple[str, str]]] = {
    event_id: (known.name, known.family) for event_id, known in EVENT_IDS.items()
}
UNKNOWN: Final = "unknown"
FAMILIES: Final = ("power", "tamper", "power_quality", "clock", "meter", "other")


def event_types(family: str) -> tuple[str, ...]:
    """Return the event names of one family (``other`` also takes every unknown id)."""
    names = tuple(name for name, of in EVENTS.values() if of == family)
    return (*names, UNKNOWN) if family == "other" else names


# ---- decoders --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogDimensions:
    """BT71 (or BT70 on firmware 2.01/2.10): what the history log holds."""

    flags: int
    standard_event_bytes: int
    manufacturer_event_bytes: int
    argument_length: int
    event_data_length: int
    history_entries: int
    event_entries: int

    @property
    def record_size(self) -> int:
        """The bytes of one log record (BT74)."""
        return RECORD_FIXED + self.argument_length

    @property
    def has_time(self) -> bool:
        """Whether records carry a time (BT71 flag bit 1)."""
        return bool(self.flags & 0x02)

    @property
    def has_sequence(self) -> bool:
        """Whether records carry a sequence number (BT71 flag bit 2)."""
        return bool(self.flags & 0x04)


def decode_bt71(data: bytes, table: str = "BT71") -> LogDimensions:
    """BT71, or BT70: the same layout (O p.50)."""
    tables._need(data, BT71_SIZE, table)
    return LogDimensions(*struct.unpack_from("<BBBBBHH", data))


@dataclass(frozen=True, slots=True)
class LogHeader:
    """BT74's header: where the newest entry is and its 32-bit sequence number."""

    flags: int
    valid_entries: int
    last_element: int
    last_sequence: int
    unread_entries: int

    @property
    def overflow(self) -> bool:
        """Whether the log overflowed (entries were lost before they were read)."""
        return bool(self.flags & 0x02)

    @property
    def circular(self) -> bool:
        """Whether the log is a ring (the newest overwrite the oldest)."""
        return bool(self.flags & 0x04)


def decode_bt74_header(data: bytes) -> LogHeader:
    """Decode BT74's header: flags, entry counts, the last element and sequence."""
    tables._need(data, BT74_HEADER, "BT74 header")
    return LogHeader(*struct.unpack_from("<BHHIH", data))


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One event log entry; ``sequence`` is the full 32-bit number."""

    sequence: int
    time: datetime | None  # the meter's UTC time of the entry; None if it holds no valid date
    event_id: int
    argument: int
    user_id: int

    @property
    def name(self) -> str:
        """The event's name (``unknown`` for ids this library does not know)."""
        return EVENTS.get(self.event_id, (UNKNOWN, "other"))[0]

    @property
    def family(self) -> str:
        """The event's family (``other`` for unknown ids)."""
        return EVENTS.get(self.event_id, (UNKNOWN, "other"))[1]

    @property
    def known(self) -> bool:
        """Whether this library knows the event id."""
        return self.event_id in EVENTS

    @property
    def user(self) -> str:
        """Who caused it: a named user or the optical port's user id."""
        return USERS.get(self.user_id, f"optical:{self.user_id}")

    @property
    def details(self) -> Details:
        """The argument decoded by name (``phase``, ``voltage_v``, ...); ``{}`` when nothing is known."""
        return decode_argument(self.event_id, self.argument)

    @property
    def other_meaning(self) -> str | None:
        """The name another source gives this id, until a capture from an OSGP meter settles it."""
        known = EVENT_IDS.get(self.event_id)
        return known.other_meaning if known else None

    def as_dict(self) -> dict[str, Any]:
        """Return the entry as plain JSON types."""
        return {
            "sequence": self.sequence,
            "time": self.time.isoformat().replace("+00:00", "Z") if self.time else None,
            "event_id": self.event_id,
            "name": self.name,
            "argument": self.argument,
            "details": self.details,
            "other_meaning": self.other_meaning,
            "user": self.user,
        }


def full_sequence(low16: int, newest: int) -> int:
    """Return the 32-bit sequence whose low 16 bits are ``low16``, at or before ``newest``."""
    return (newest - ((newest - low16) & 0xFFFF)) % SEQUENCE_MODULUS


def decode_record(data: bytes, offset: int, dims: LogDimensions, newest: int) -> HistoryEntry:
    """One BT74 record at ``offset``; ``newest`` is the header's 32-bit sequence."""
    tables._need(data, offset + dims.record_size, "BT74 record")
    try:
        when: datetime | None = tables.decode_ltime_date(data, offset).replace(tzinfo=UTC)
    except DecodeError:
        when = None
    low16, user_id, event_word = struct.unpack_from("<HHH", data, offset + 6)
    argument = int.from_bytes(data[offset + RECORD_FIXED : offset + dims.record_size], "little")
    return HistoryEntry(full_sequence(low16, newest), when, event_word & 0x0FFF, argument, user_id)


def ring_runs(last_element: int, count: int, size: int) -> list[tuple[int, int]]:
    """(first element, elements) runs holding the ``count`` newest entries, oldest first."""
    if count <= 0 or size <= 0:
        return []
    count = min(count, size)
    first = (last_element - count + 1) % size
    if first + count <= size:
        return [(first, count)]
    return [(first, size - first), (0, count - (size - first))]


# ---- BT03 ------------------------------------------------------------------------

# (byte, bit) -> name; the standard bits are the LE16 at byte 1 (bit n of 1.n counts from byte 1).
STATUS_BITS: Final[dict[tuple[int, int], str]] = {
    (1, 3): "ram_failure",
    (1, 4): "rom_failure",
    (1, 5): "nvm_failure",
    (1, 6): "clock_error",
    (1, 7): "measurement_error",
    (1, 8): "low_battery",
    (1, 12): "cover_removed",
    (1, 13): "reverse_energy",
    (1, 15): "disconnect_switch_error",
    (4, 4): "phase_loss",
    (4, 5): "phase_inversion",
    (4, 7): "general_error",
    (5, 0): "invalid_password",
    (5, 2): "current_on_missing_phase",
    (5, 5): "software_crc_error",
    (6, 3): "phase_rotation_changed",
    (7, 1): "magnetic_tamper",
    (7, 3): "power_quality_event",
    (7, 7): "load_side_voltage",
    (8, 0): "unbalanced_voltage",
}
EVENT_LOG_UNREAD: Final = (7, 4)
SELF_READ_OCCURRED: Final = (4, 1)


@dataclass(frozen=True, slots=True)
class MeterStatus:
    """BT03 as read: which alarm bits the meter reports, and which are set."""

    raw: bytes

    @property
    def reported(self) -> tuple[str, ...]:
        """The named bits inside the length the meter reports (older firmware has fewer bytes)."""
        return tuple(name for (byte, bit), name in STATUS_BITS.items() if byte + bit // 8 < len(self.raw))

    def is_set(self, name: str) -> bool:
        """Whether the named status bit is set."""
        for (byte, bit), known in STATUS_BITS.items():
            if known == name:
                return bit_set(self.raw, byte, bit)
        raise KeyError(name)

    @property
    def active(self) -> tuple[str, ...]:
        """The names of the reported conditions that are set."""
        return tuple(name for name in self.reported if self.is_set(name))

    @property
    def event_log_unread(self) -> bool:
        """Whether the event log holds entries not read yet (BT03)."""
        return bit_set(self.raw, *EVENT_LOG_UNREAD)

    @property
    def self_read_occurred(self) -> bool:
        """Whether a self-read happened since the flag was last cleared (BT03)."""
        return bit_set(self.raw, *SELF_READ_OCCURRED)


def bit_set(raw: bytes, byte: int, bit: int) -> bool:
    """Return whether bit ``bit`` of byte ``byte`` of ``raw`` is set (bits past ``raw`` are clear)."""
    index, within = byte + bit // 8, bit % 8
    return index < len(raw) and bool(raw[index] >> within & 1)


def decode_bt03(data: bytes) -> MeterStatus:
    """Decode BT03, the meter's status bits."""
    tables._need(data, 4, "BT03")
    return MeterStatus(bytes(data))


# ---- reading ---------------------------------------------------------------------
