"""The M-Bus devices behind the meter: who they are (ET14) and what they last sent (ET16, ET45).

An NES meter with the M-Bus module (ET29.0 bit 8) is a wired M-Bus master for up to four
devices (gas, water, heat meters). It reads them on its own schedule and keeps the
telegrams; a MEP client reads them with the same table reads as anything else, no
procedure call (MEP guide "G", "Reading M-Bus Scheduled Read Data", printed pp. 25-29).
Layouts (G pp. 81-95, 107-109, 117-121; every field little-endian):

* ET11 (dimensions): .0 devices (5; 6 on Gen 4: slots 1-4 M-Bus, then the MEP clients),
  .2 ET14 entry size (36), .5 UINT16 ET16 entry size (517).
* ET14 device status: 0 mode (bit 0 auto-discovery), 1 reserved UINT32, 5 occupancy
  bitmask (bits 0-3 M-Bus slots 1-4), then ``ARRAY[ET11.0]`` of ET11.2-byte entries from
  6: +0 UINT16 handle (1-999 M-Bus), +2 status (0 empty, 1 M-Bus up, 2 M-Bus down, 3/4
  MEP), +3 baud code, +4 UINT16 billing read length (bytes of the latest read in ET16,
  timestamp and terminator included; 0 before the first read), +6 UINT32 read attempts,
  +10 UINT32 answers, +14 UINT16 MEP alarms, +16 UINT8 M-Bus primary address (fw 4.30+),
  +17 reserved LTIME_DATE, +23 device alarms, +24 LTIME_DATE last status read, +30
  LTIME_DATE last billing read attempt (local time; it moves with every billing read,
  while the answer count also moves with status reads).
* ET16 device data, ``ARRAY[ET11.0]`` of ET11.5-byte "MEP billing reads" (MBR), one per
  slot: 0 LTIME_DATE (the meter's local time) of the last successful read, 6 response
  info (bit 0 data order MSB first, bit 1 fixed data structure, bit 2 key available,
  bits 3-4 authentication, bit 5 security failed), then a list of telegrams, each a
  length byte L and L bytes (the last one may be cut off by the record's size). A
  variable-data telegram (CI 0x72) is the M-Bus application data after the CI field:
  4-byte BCD serial, UINT16 manufacturer, version, medium (3 gas, 4 heat, 6 hot water,
  7 water), access number, status, UINT16 signature, then the data records, and a 0
  terminator that L counts. A fixed-data telegram (CI 0x73, L = 16) carries a serial,
  access number, status and two counters.
* ET36 (actual dimensions of the logs): count, then 17-byte rows from 1: TABLE_IDC
  (UINT16: bits 0-10 table number, bit 11 extended), +2 UINT16 entry size, +4 UINT16
  max entries, +6 UINT16 current entries, +8 flags (bit 0: a 2-byte length precedes
  each entry), 8 spare bytes. ET45's row is the fifth.
* ET45 recurring read log: 0 flags, 1 valid entries, 2 last entry element, 3 UINT16 last
  sequence, 5 unread (the head end's: never written here); entries of ET36's entry size
  from 6: +0 UINT16 length (bytes after it that hold data), +2 UINT16 identifier and
  namespace, +4 UINT16 handle, +6 execution status (2 = power-up backfill), +7 result
  (4 = success), +8 an MBR as in ET16. By default a meter keeps no ET45 (current
  entries 0) and every scheduled read lands in ET16.

The telegrams' data records are decoded by ``nesmeter.tables.mbus_telegram``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
import struct
from typing import Final

from nesmeter.errors import DecodeError
from nesmeter.tables import tables

ET14: Final = 0x0800 + 14
ET16: Final = 0x0800 + 16
ET36: Final = 0x0800 + 36
ET45: Final = 0x0800 + 45
MBUS_MODULE_BIT: Final = 8  # ET29.0 bit 8: the M-Bus module is fitted
MBUS_SLOTS: Final = 4
ET11_SPAN: Final = 7  # ET11.0-6: devices, entry sizes, the UINT16 ET16 entry size
ET14_HEADER: Final = 6
ET14_ENTRY_USED: Final = 36  # +0..+35: up to the LTIME_DATE of the last billing read attempt
MBR_HEADER: Final = 7  # LTIME_DATE and response info
ET36_ROW: Final = 17
ET36_ET45_ROW: Final = 4  # "the fifth entry of ET36"
ET45_HEADER: Final = 6
ET45_ENTRY_HEADER: Final = 8  # length, identifier, handle, execution status, result
ET45_SUCCESS: Final = 4
MEDIA: Final[dict[int, str]] = {
    0x00: "other",
    0x02: "electricity",
    0x03: "gas",
    0x04: "heat",
    0x06: "hot_water",
    0x07: "water",
    0x08: "heat_cost_allocator",
    0x0A: "cooling",
    0x0B: "cooling",
    0x0C: "heat",
    0x0D: "heat",
    0x15: "hot_water",
    0x16: "cold_water",
}  # EN 13757-3 device types; the guide lists 3, 4, 6 and 7
SLOT_STATES: Final = {0: "empty", 1: "up", 2: "down"}


@dataclass(frozen=True, slots=True)
class MbusDimensions:
    """What ET11 says about the M-Bus tables' sizes."""

    devices: int  # ET14/ET16 entries (5, 6 on Gen 4)
    status_entry: int  # ET14 entry size (36)
    data_entry: int  # ET16 entry size (517)


@dataclass(frozen=True, slots=True)
class MbusSlot:
    """One occupied M-Bus slot of ET14."""

    slot: int  # 1-4
    handle: int
    status: str  # "up", "down", or "status N"
    billing_read_length: int  # bytes of the latest read in ET16; 0 before the first
    read_attempts: int
    read_answers: int
    alarms: int
    primary_address: int | None  # fw 4.30+; None when 0 (not assigned or older firmware)
    last_attempt: datetime | None = None  # the meter's local time of its last billing read attempt


@dataclass(frozen=True, slots=True)
class MbusRecord:
    """One MEP billing read (MBR) of ET16 or ET45: when, how to read it, and the telegrams."""

    read_at: datetime | None  # the meter's local time, naive; None when never or not a date
    msb_first: bool  # data order mode 2 (CI 0x76)
    fixed: bool  # fixed data structure (CI 0x73)
    security_failed: bool
    telegrams: tuple[bytes, ...]  # the complete ones, each without its length byte


@dataclass(frozen=True, slots=True)
class LogDimensions:
    """ET45's row of ET36."""

    entry_size: int
    current_entries: int
    length_included: bool


@dataclass(frozen=True, slots=True)
class LogHeader:
    """ET45's list header."""

    valid: int
    last_element: int
    last_sequence: int


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One ET45 entry: the device's handle and its read."""

    handle: int
    backfill: bool  # execution status 2: read at power-up for an interval missed
    record: MbusRecord


def decode_mbus_dimensions(data: bytes) -> MbusDimensions:
    """ET11.0-6."""
    if len(data) < ET11_SPAN:
        raise DecodeError(f"ET11: {len(data)} bytes, need {ET11_SPAN}")
    return MbusDimensions(data[0], data[2], struct.unpack_from("<H", data, 5)[0])


def has_mbus_module(options: int) -> bool:
    """Whether ET29.0's hardware options say the M-Bus module is fitted."""
    return bool(options >> MBUS_MODULE_BIT & 1)


def et14_size(dims: MbusDimensions) -> int:
    """Bytes of ET14 up to the last M-Bus slot's fields read here."""
    return ET14_HEADER + (min(dims.devices, MBUS_SLOTS) - 1) * dims.status_entry + ET14_ENTRY_USED


def decode_et14(data: bytes, dims: MbusDimensions) -> tuple[MbusSlot, ...]:
    """Decode the occupied M-Bus slots (1-4) of ET14, in slot order."""
    if dims.status_entry < ET14_ENTRY_USED:
        raise DecodeError(f"ET14: entries of {dims.status_entry} bytes, need {ET14_ENTRY_USED}")
    if len(data) < et14_size(dims):
        raise DecodeError(f"ET14: {len(data)} bytes, need {et14_size(dims)}")
    occupancy = data[5]
    slots = []
    for index in range(min(dims.devices, MBUS_SLOTS)):
        if not occupancy >> index & 1:
            continue
        at = ET14_HEADER + index * dims.status_entry
        handle, status, _baud, length, attempts, answers, alarms, address = struct.unpack_from("<HBBHIIHB", data, at)
        slots.append(
            MbusSlot(
                slot=index + 1,
                handle=handle,
                status=SLOT_STATES.get(status, f"status {status}"),
                billing_read_length=length,
                read_attempts=attempts,
                read_answers=answers,
                alarms=alarms,
                primary_address=address or None,
                last_attempt=tables.optional_time_date(data, at + 30, 6),
            )
        )
    return tuple(slots)


def et16_offset(dims: MbusDimensions, slot: int) -> int:
    """Where slot ``slot``'s record starts in ET16."""
    return (slot - 1) * dims.data_entry


def decode_mbr(data: bytes) -> MbusRecord:
    """Decode an MBR: the read's time, its response info and the complete telegrams it holds.

    A telegram whose length runs past the data is the guide's "may be incomplete" last
    one, and is left out; a zero length ends the list.
    """
    if len(data) < MBR_HEADER:
        raise DecodeError(f"M-Bus read: {len(data)} bytes, need {MBR_HEADER}")
    info = data[6]
    telegrams = []
    at = MBR_HEADER
    while at < len(data) and (length := data[at]) and at + 1 + length <= len(data):
        telegrams.append(bytes(data[at + 1 : at + 1 + length]))
        at += 1 + length
    return MbusRecord(
        read_at=tables.optional_time_date(data, 0, 6),
        msb_first=bool(info & 0x01),
        fixed=bool(info & 0x02),
        security_failed=bool(info & 0x20),
        telegrams=tuple(telegrams),
    )


def decode_et45_dimensions(data: bytes) -> LogDimensions | None:
    """Decode ET45's row of ET36 (the guide's fifth), found by its table number; None without one.

    The number is matched with or without TABLE_IDC's "extended" bit (bit 11), which a
    firmware might leave clear.
    """
    if not data:
        raise DecodeError("ET36: no data")
    rows = []
    for row in range(min(data[0], (len(data) - 1) // ET36_ROW)):
        table_idc, entry_size, _max, current, flags = struct.unpack_from("<HHHHB", data, 1 + row * ET36_ROW)
        rows.append((table_idc & 0x7FF, LogDimensions(entry_size, current, bool(flags & 1))))
    return next((dims for number, dims in rows if number == ET45 & 0x7FF), None)


def et36_size(rows: int = ET36_ET45_ROW + 1) -> int:
    """Bytes of ET36 up to the end of row ``rows`` (ET45's by default)."""
    return 1 + rows * ET36_ROW


def decode_et45_header(data: bytes) -> LogHeader:
    """ET45.0-5."""
    if len(data) < ET45_HEADER:
        raise DecodeError(f"ET45: {len(data)} bytes, need {ET45_HEADER}")
    _flags, valid, last, sequence = struct.unpack_from("<BBBH", data, 0)
    return LogHeader(valid, last, sequence)


def et45_offset(log: LogDimensions, element: int) -> int:
    """Where ET45 entry ``element`` starts."""
    return ET45_HEADER + element * log.entry_size


@dataclass(frozen=True, slots=True)
class LogEntryHead:
    """The first bytes of an ET45 entry: enough to tell whose read it is and how long."""

    length: int
    handle: int
    usable: bool  # a successful read with data


def decode_et45_entry_head(data: bytes) -> LogEntryHead:
    """Decode an ET45 entry's length, handle and result (its first 8 bytes)."""
    if len(data) < ET45_ENTRY_HEADER:
        raise DecodeError(f"ET45 entry: {len(data)} bytes, need {ET45_ENTRY_HEADER}")
    length, _identifier, handle, _execution, result = struct.unpack_from("<HHHBB", data, 0)
    return LogEntryHead(length, handle, bool(length and handle and result == ET45_SUCCESS))


def et45_entry_span(head: LogEntryHead, log: LogDimensions) -> int:
    """Return the bytes of an entry worth reading, its length field included.

    The guide's length counts "the handle" onward, or the identifier before it: the two
    bytes are taken either way.
    """
    return min(log.entry_size, 4 + head.length)


def decode_et45_entry(data: bytes) -> LogEntry | None:
    """Decode one ET45 entry; None for an unsuccessful read or an empty entry.

    Telegrams carry their own lengths, so bytes read past the data (the two either way of
    the length's reading) end the list or are dropped as a cut-off telegram.
    """
    head = decode_et45_entry_head(data)
    if not head.usable:
        return None
    execution = data[6]
    end = min(len(data), 4 + head.length)
    return LogEntry(handle=head.handle, backfill=execution == 2, record=decode_mbr(data[ET45_ENTRY_HEADER:end]))
