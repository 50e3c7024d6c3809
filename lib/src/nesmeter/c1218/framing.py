"""ANSI C12.18 (optical port) codec: CRC, link-layer packets and PSEM services.

Pure functions over bytes; the asyncio link and session live in ``nesmeter.c1218.session``.
Layouts follow ANSI C12.18 as used by the OSGP Optical Port Programmer's Guide; see
``protocol/IR.md`` §2-§4.
"""

from __future__ import annotations

from dataclasses import dataclass
import enum
import struct
from typing import Final

from nesmeter.errors import FrameError, WriteRefusedError

STP: Final = 0xEE
ACK: Final = 0x06
NAK: Final = 0x15
HEADER_SIZE: Final = 6  # STP, identity, control, seq-nbr, length(2)
OVERHEAD: Final = HEADER_SIZE + 2  # plus CRC
MAX_DATA: Final = 8183
DEFAULT_PACKET_SIZE: Final = 64
MIN_PACKET_SIZE: Final = 16  # room for a PSEM reply header after the link overhead
CTRL_MULTI: Final = 0x80
CTRL_FIRST: Final = 0x40
CTRL_TOGGLE: Final = 0x20


class Service(enum.IntEnum):
    """PSEM request codes."""

    IDENTIFY = 0x20
    TERMINATE = 0x21
    FULL_READ = 0x30
    PARTIAL_READ = 0x3F
    FULL_WRITE = 0x40
    PARTIAL_WRITE = 0x4F
    LOGON = 0x50
    SECURITY = 0x51
    LOGOFF = 0x52
    NEGOTIATE = 0x60
    NEGOTIATE_BAUD = 0x61
    WAIT = 0x70


# Services a read-only client may send: session control and reads, never writes.
ALLOWED_SERVICES: Final = frozenset(
    {
        Service.IDENTIFY,
        Service.TERMINATE,
        Service.FULL_READ,
        Service.PARTIAL_READ,
        Service.LOGON,
        Service.SECURITY,
        Service.LOGOFF,
        Service.NEGOTIATE,
        Service.NEGOTIATE_BAUD,
        Service.WAIT,
    }
)

RESPONSE_NAMES: Final = {
    0x00: "ok",
    0x01: "err",
    0x02: "sns",
    0x03: "isc",
    0x04: "onp",
    0x05: "iar",
    0x06: "bsy",
    0x07: "dnr",
    0x08: "dlk",
    0x09: "rno",
    0x0A: "isss",
}
BAUD_9600: Final = 0x06


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/X-25 over ``data`` (sent low byte first on the wire)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF


def table_checksum(data: bytes) -> int:
    """Return the 8-bit two's-complement checksum that follows table data in reads."""
    return (-sum(data)) & 0xFF


@dataclass(frozen=True, slots=True)
class Packet:
    """One link-layer packet."""

    control: int
    sequence: int
    data: bytes

    @property
    def toggle(self) -> bool:
        """Whether the toggle bit is set: it alternates per new packet, so a repeat is seen."""
        return bool(self.control & CTRL_TOGGLE)

    @property
    def multi(self) -> bool:
        """Whether this packet is one of a multi-packet answer."""
        return bool(self.control & CTRL_MULTI)

    @property
    def first(self) -> bool:
        """Whether this packet is the first of a multi-packet answer."""
        return bool(self.control & CTRL_FIRST)


def encode_packet(data: bytes, *, toggle: bool, control: int = 0, sequence: int = 0) -> bytes:
    """Frame ``data`` as ``EE 00 ctrl seq LEN data CRC``."""
    if len(data) > MAX_DATA:
        raise ValueError("packet data too long")
    ctrl = (control & ~CTRL_TOGGLE) | (CTRL_TOGGLE if toggle else 0)
    frame = struct.pack(">BBBBH", STP, 0, ctrl, sequence, len(data)) + data
    return frame + struct.pack("<H", crc16(frame))


def decode_packet(frame: bytes) -> Packet:
    """Validate one complete frame (header, length, CRC) and return its packet."""
    if len(frame) < OVERHEAD or frame[0] != STP:
        raise FrameError("not a C12.18 frame")
    (length,) = struct.unpack_from(">H", frame, 4)
    if length != len(frame) - OVERHEAD:
        raise FrameError("C12.18 frame length mismatch")
    (crc,) = struct.unpack_from("<H", frame, len(frame) - 2)
    if crc != crc16(frame[:-2]):
        raise FrameError("C12.18 frame CRC mismatch")
    return Packet(control=frame[2], sequence=frame[3], data=frame[HEADER_SIZE:-2])


def split_packets(payload: bytes, packet_size: int) -> list[tuple[int, int, bytes]]:
    """Split a payload into (control, sequence, data) packets of at most ``packet_size``."""
    room = packet_size - OVERHEAD
    if room <= 0:
        raise ValueError("packet size too small")
    chunks = [payload[i : i + room] for i in range(0, len(payload), room)] or [b""]
    if len(chunks) == 1:
        return [(0, 0, chunks[0])]
    last = len(chunks) - 1
    return [(CTRL_MULTI | (CTRL_FIRST if index == 0 else 0), last - index, chunk) for index, chunk in enumerate(chunks)]


# ---- PSEM requests -------------------------------------------------------------


def check_read_only(request: bytes) -> None:
    """Refuse any service that could change the meter."""
    if not request or request[0] not in ALLOWED_SERVICES:
        raise WriteRefusedError("only session and table read services may be sent to a meter")


def identify_request() -> bytes:
    """Build the Identify request, the first service of every optical session."""
    return bytes([Service.IDENTIFY])


def negotiate_request(packet_size: int, packets: int) -> bytes:
    """Build the Negotiate request for ``packets`` packets of ``packet_size`` bytes at 9600 baud."""
    return struct.pack(">BHBB", Service.NEGOTIATE_BAUD, packet_size, packets, BAUD_9600)


def logon_request(user_id: int, user: str) -> bytes:
    """Build the Logon request: user id and a 10-character name, space-padded."""
    name = user.encode("ascii")[:10].ljust(10, b" ")
    return struct.pack(">BH", Service.LOGON, user_id) + name


def security_request(password: bytes) -> bytes:
    """Build the Security request: the 20-byte password (the key, which traces mask)."""
    if len(password) != 20:
        raise ValueError("C12.18 passwords are 20 bytes")
    return bytes([Service.SECURITY]) + password


def read_request(table_id: int, offset: int, count: int) -> bytes:
    """Build a partial read request; the ranges are checked here so no malformed request is sent."""
    if not 0 <= table_id <= 0xFFFF or not 0 <= offset <= 0xFFFFFF or not 0 < count <= 0xFFFF:
        raise ValueError("table read out of range")
    return struct.pack(">BH", Service.PARTIAL_READ, table_id) + offset.to_bytes(3, "big") + struct.pack(">H", count)


def full_read_request(table_id: int) -> bytes:
    """Build a full read request (the simulator and tests use it; the client reads in part)."""
    return struct.pack(">BH", Service.FULL_READ, table_id)


def wait_request(seconds: int) -> bytes:
    """Build the Wait request that holds the session ``seconds`` (1-255) longer."""
    return bytes([Service.WAIT, max(1, min(255, seconds))])


def simple_request(service: Service) -> bytes:
    """Build a request that is its service code alone (Terminate, Logoff)."""
    return bytes([service])


def mask_security(request: bytes) -> bytes:
    """Return the request as safe to show: a security service's password replaced by ``*``."""
    if request[:1] == bytes([Service.SECURITY]):
        return request[:1] + b"*" * (len(request) - 1)
    return request


# ---- PSEM responses ------------------------------------------------------------


def response_name(code: int) -> str:
    """Name a C12.18 response code (``isc``), or show it in hex if the standard has none."""
    return RESPONSE_NAMES.get(code, f"0x{code:02X}")


@dataclass(frozen=True, slots=True)
class NegotiatedLink:
    """The packet size and count a Negotiate settled on."""

    packet_size: int
    packets: int


def parse_negotiate(payload: bytes, asked: NegotiatedLink) -> NegotiatedLink:
    """Parse a Negotiate answer of ``00`` into the link to use: never fails on the body.

    NES meters are not documented to echo the values; a bare ``00``, a short body or an
    offer we did not ask for all occur in C12.18 practice. Take the smaller of asked and
    offered where the meter offered a usable value, else the link defaults.
    """
    size, packets = DEFAULT_PACKET_SIZE, 1
    if len(payload) >= 3:
        (offered,) = struct.unpack_from(">H", payload, 1)
        if offered >= MIN_PACKET_SIZE:
            size = min(offered, asked.packet_size)
        if len(payload) >= 4 and payload[3] >= 1:
            packets = min(payload[3], asked.packets)
    return NegotiatedLink(size, packets)


def parse_read(payload: bytes) -> bytes:
    """``00 COUNT DATA CKSUM`` → data, checking the count and the checksum."""
    if len(payload) < 4:
        raise FrameError("read reply too short")
    (count,) = struct.unpack_from(">H", payload, 1)
    if len(payload) != count + 4:
        raise FrameError(f"read reply count {count} does not match its length")
    data = payload[3 : 3 + count]
    if table_checksum(data) != payload[-1]:
        raise FrameError("read reply checksum mismatch")
    return data


def read_response(data: bytes) -> bytes:
    """Build the meter-side read answer (the simulator sends it)."""
    return b"\x00" + struct.pack(">H", len(data)) + data + bytes([table_checksum(data)])
