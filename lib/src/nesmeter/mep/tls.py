"""TLS 1.2 PSK building blocks for MEP TLS mode: PRF, keys, records, handshake messages.

Exactly one cipher suite, ``TLS_PSK_WITH_AES_256_GCM_SHA384`` (0x00A9; RFC 4279, 5288,
5487), no extensions beyond the renegotiation indication, no resumption: what the MEP
guide (update 3A, p.8-9, p.14-15, p.18-19) specifies and what its TLS examples show.
Pure functions and small classes over bytes; the state machines live in
``tls_endpoint.py`` (shared), ``tls_client.py`` / ``nesmeter.sim.tls_server`` and the MEP exchange in
``tls_session.py``.

The PSK, the premaster and master secrets and the key block never leave this module's
objects: no repr, log or error message contains them.
"""

from __future__ import annotations

from dataclasses import dataclass
import enum
import struct
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nesmeter.errors import TlsError
from nesmeter.mep import framing as mep

VERSION: Final = b"\x03\x03"  # TLS 1.2
SUITE: Final = 0x00A9  # TLS_PSK_WITH_AES_256_GCM_SHA384
RENEGOTIATION_SCSV: Final = 0x00FF  # TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746)
EXT_RENEGOTIATION_INFO: Final = 0xFF01
RANDOM_SIZE: Final = 32
MASTER_SECRET_SIZE: Final = 48
VERIFY_DATA_SIZE: Final = 12
KEY_SIZE: Final = 32  # AES-256
SALT_SIZE: Final = 4  # GCM implicit nonce part (RFC 5288)
EXPLICIT_NONCE_SIZE: Final = 8
TAG_SIZE: Final = 16
RECORD_HEADER_SIZE: Final = 5
MAX_PLAINTEXT: Final = 2**14
MAX_CIPHERTEXT: Final = MAX_PLAINTEXT + 2048
MAX_PSK: Final = 64
RECORD_OVERHEAD: Final = RECORD_HEADER_SIZE + EXPLICIT_NONCE_SIZE + TAG_SIZE
# One MEP reply holds result(1) + one record; the C12.18 read reply inside has code(1) + count(2).
MAX_TLS_READ_DATA: Final = mep.MAX_MESSAGE - 1 - RECORD_OVERHEAD - 3  # 443


class ContentType(enum.IntEnum):
    """TLS record content types (RFC 5246 §6.2.1)."""

    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23


class HandshakeType(enum.IntEnum):
    """TLS handshake message types (RFC 5246 §7.4)."""

    HELLO_REQUEST = 0
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20


class AlertDescription(enum.IntEnum):
    """The RFC 5246 alerts this code sends or is likely to receive."""

    CLOSE_NOTIFY = 0
    UNEXPECTED_MESSAGE = 10
    BAD_RECORD_MAC = 20
    RECORD_OVERFLOW = 22
    HANDSHAKE_FAILURE = 40
    ILLEGAL_PARAMETER = 47
    DECODE_ERROR = 50
    DECRYPT_ERROR = 51
    PROTOCOL_VERSION = 70
    INTERNAL_ERROR = 80
    NO_RENEGOTIATION = 100
    UNSUPPORTED_EXTENSION = 110
    UNKNOWN_PSK_IDENTITY = 115


class KeyId(enum.IntEnum):
    """Which meter key a TLS session uses (guide p.18-19)."""

    MBK = 0  # MEP basic key
    MAK = 1  # MEP advanced key


class TlsCode(enum.IntEnum):
    """MEP request codes of TLS mode (guide Table 2.1)."""

    TERMINATE = 0x57
    HANDSHAKE = 0x58
    HANDSHAKE_CONT = 0x59
    TABLE = 0x80


class TlsResult(enum.IntEnum):
    """MEP response codes of TLS mode (guide Table 2.3, 0x0A from Table 2.1)."""

    OK = 0x00
    TLS_ERROR = 0x01
    INVALID_IDENTITY_OR_KEY = 0x03
    NO_SESSION = 0x0A


TLS_CODES: Final = frozenset(TlsCode)
CHANGE_CIPHER_SPEC_PAYLOAD: Final = b"\x01"


def alert_name(description: int) -> str:
    """Name a TLS alert description (``handshake_failure``), or show the number."""
    try:
        return AlertDescription(description).name.lower()
    except ValueError:
        return f"alert {description}"


# ---- PSK identity ----


@dataclass(frozen=True, slots=True)
class PskIdentity:
    """The guide's binary PSK identity: client id (UINT16, LSB first), key id (UINT8).

    The guide calls it the "PSK Identity Hint"; it travels in ClientKeyExchange. With the
    MEP basic key it ends in a zero byte, which is why C-string based TLS stacks cannot
    send it (see MEP.md §8.3).
    """

    client_id: int = 0
    key_id: KeyId = KeyId.MBK

    def __post_init__(self) -> None:
        """Refuse a client id that does not fit the identity's 16 bits."""
        if not 0 <= self.client_id <= 0xFFFF:
            raise ValueError("client id must fit 16 bits")

    def encode(self) -> bytes:
        """Encode the identity: UINT16 client id (little-endian, as the meter reads it) and key id."""
        return struct.pack("<HB", self.client_id, self.key_id)

    @classmethod
    def decode(cls, data: bytes) -> PskIdentity:
        """Decode a 3-byte identity; anything else is a ``TlsError``."""
        if len(data) != 3:
            raise TlsError(f"PSK identity of {len(data)} bytes, expected 3 (client id, key id)")
        client_id, key_id = struct.unpack("<HB", data)
        try:
            return cls(client_id, KeyId(key_id))
        except ValueError:
            raise TlsError(f"PSK identity names unknown key id {key_id}") from None


# ---- PRF and key schedule (RFC 5246 §5, §8.1, §6.3; RFC 4279 §2; RFC 5487) ----


def _hmac_sha384(secret: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(secret, hashes.SHA384())
    mac.update(data)
    return mac.finalize()


def prf(secret: bytes, label: bytes, seed: bytes, size: int) -> bytes:
    """TLS 1.2 PRF with HMAC-SHA384 (the suite's PRF hash): P_SHA384(secret, label + seed)."""
    seed = label + seed
    out = bytearray()
    chain = seed
    while len(out) < size:
        chain = _hmac_sha384(secret, chain)
        out += _hmac_sha384(secret, chain + seed)
    return bytes(out[:size])


def transcript_hash(messages: bytes) -> bytes:
    """Return the SHA-384 hash of the handshake messages so far (the suite's PRF hash)."""
    digest = hashes.Hash(hashes.SHA384())
    digest.update(messages)
    return digest.finalize()


def psk_premaster(psk: bytes) -> bytes:
    """Plain PSK premaster (RFC 4279 §2): N zero bytes and the PSK, each with a 16-bit length."""
    size = struct.pack(">H", len(psk))
    return size + bytes(len(psk)) + size + psk


def master_secret(premaster: bytes, client_random: bytes, server_random: bytes) -> bytes:
    """Derive the master secret the classic way: neither side negotiates extended_master_secret."""
    return prf(premaster, b"master secret", client_random + server_random, MASTER_SECRET_SIZE)


class TrafficKeys:
    """The key block of the suite: write keys and GCM salts of both sides (no MAC keys)."""

    __slots__ = ("client_key", "client_salt", "server_key", "server_salt")

    def __init__(self, master: bytes, client_random: bytes, server_random: bytes) -> None:
        """Expand the master secret into both directions' AES-256-GCM keys and salts."""
        block = prf(master, b"key expansion", server_random + client_random, 2 * (KEY_SIZE + SALT_SIZE))
        self.client_key = block[:KEY_SIZE]
        self.server_key = block[KEY_SIZE : 2 * KEY_SIZE]
        self.client_salt = block[2 * KEY_SIZE : 2 * KEY_SIZE + SALT_SIZE]
        self.server_salt = block[2 * KEY_SIZE + SALT_SIZE :]

    def __repr__(self) -> str:
        """Show no key material."""
        return "TrafficKeys(<redacted>)"


def verify_data(master: bytes, label: bytes, handshake_messages: bytes) -> bytes:
    """Finished.verify_data: PRF(master, label, SHA384(messages))[:12]."""
    return prf(master, label, transcript_hash(handshake_messages), VERIFY_DATA_SIZE)


# ---- records ----


def encode_record(content_type: int, payload: bytes) -> bytes:
    """Wrap a payload in a TLS 1.2 record header."""
    if len(payload) > MAX_CIPHERTEXT:
        raise ValueError("record payload too long")
    return struct.pack(">B2sH", content_type, VERSION, len(payload)) + payload


def parse_records(data: bytes, *, first_flight: bool = False) -> list[tuple[int, bytes]]:
    """Split bytes into whole records; anything partial, oversized or not TLS 1.2 is an error.

    A ClientHello's record may carry an older record-layer version (RFC 5246 Appendix E.1);
    ``first_flight`` accepts 03 00..03 03 there.
    """
    records: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < RECORD_HEADER_SIZE:
            raise TlsError("truncated TLS record header")
        content_type, version, length = struct.unpack_from(">B2sH", data, pos)
        if content_type not in ContentType._value2member_map_:
            raise TlsError(f"unknown TLS record type {content_type}")
        if version != VERSION and not (first_flight and version[0] == 3 and version[1] <= 3):
            raise TlsError(f"TLS record version {version.hex()}, expected 0303 (TLS 1.2)")
        if length > MAX_CIPHERTEXT:
            raise TlsError("TLS record too long")
        pos += RECORD_HEADER_SIZE
        if len(data) - pos < length:
            raise TlsError("truncated TLS record")
        records.append((content_type, data[pos : pos + length]))
        pos += length
    return records


def alert_error(payload: bytes, *, peer: str) -> TlsError:
    """Return the error for a received alert record's plaintext."""
    if len(payload) != 2:
        return TlsError(f"malformed TLS alert from the {peer}")
    level, description = payload
    kind = "fatal alert" if level == 2 else "alert"
    if description == AlertDescription.CLOSE_NOTIFY:
        return TlsError(f"the {peer} closed the TLS session (close_notify)", alert=description)
    return TlsError(f"the {peer} sent a TLS {kind}: {alert_name(description)}", alert=description)


def open_application_data(read: RecordCipher, data: bytes, *, peer: str) -> bytes:
    """Return the plaintext of an established session's records: application data only.

    The same rules on both ends: an alert ends the session, a handshake record (a
    renegotiation) is refused, any other record type is unexpected.
    """
    records = parse_records(data)
    if not records:
        raise TlsError(f"empty TLS records from the {peer}")
    out = bytearray()
    for content_type, payload in records:
        if content_type not in (ContentType.APPLICATION_DATA, ContentType.ALERT, ContentType.HANDSHAKE):
            raise TlsError(f"unexpected {ContentType(content_type).name} record in an established session")
        plaintext = read.open(content_type, payload)
        if content_type == ContentType.ALERT:
            raise alert_error(plaintext, peer=peer)
        if content_type == ContentType.HANDSHAKE:
            raise TlsError(f"the {peer} started a renegotiation; refused", alert=AlertDescription.NO_RENEGOTIATION)
        out += plaintext
    return bytes(out)


class RecordCipher:
    """AES-256-GCM protection of one direction (RFC 5288): nonce = salt ‖ explicit 8 bytes.

    The explicit part is the record sequence number, as mbed TLS and the guide's
    examples do; the additional data is ``seq ‖ type ‖ version ‖ plaintext length``.
    """

    __slots__ = ("_aead", "_salt", "sequence")

    def __init__(self, key: bytes, salt: bytes) -> None:
        """Seal or open records with AES-256-GCM under ``key``; ``salt`` is the implicit nonce part."""
        if len(key) != KEY_SIZE or len(salt) != SALT_SIZE:
            raise ValueError("AES-256-GCM needs a 32-byte key and a 4-byte salt")
        self._aead = AESGCM(key)
        self._salt = salt
        self.sequence = 0

    def __repr__(self) -> str:
        """Show the sequence number, never the key."""
        return f"RecordCipher(<redacted>, sequence={self.sequence})"

    def _next_sequence(self) -> bytes:
        if self.sequence >= 2**64 - 1:
            raise TlsError("TLS record sequence number exhausted")
        seq = self.sequence.to_bytes(8, "big")
        self.sequence += 1
        return seq

    def seal(self, content_type: int, plaintext: bytes) -> bytes:
        """Seal a payload into a complete protected record."""
        if len(plaintext) > MAX_PLAINTEXT:
            raise ValueError("record plaintext too long")
        seq = self._next_sequence()
        aad = seq + struct.pack(">B2sH", content_type, VERSION, len(plaintext))
        return encode_record(content_type, seq + self._aead.encrypt(self._salt + seq, plaintext, aad))

    def open(self, content_type: int, fragment: bytes) -> bytes:
        """Return the plaintext of a protected record's payload; any damage is a ``TlsError``."""
        size = len(fragment) - EXPLICIT_NONCE_SIZE - TAG_SIZE
        if size < 0:
            raise TlsError("protected TLS record too short")
        if size > MAX_PLAINTEXT:
            raise TlsError("protected TLS record too long")
        explicit = fragment[:EXPLICIT_NONCE_SIZE]
        seq = self._next_sequence()
        aad = seq + struct.pack(">B2sH", content_type, VERSION, size)
        try:
            return self._aead.decrypt(self._salt + explicit, fragment[EXPLICIT_NONCE_SIZE:], aad)
        except InvalidTag:
            raise TlsError(
                "TLS record failed authentication (bad_record_mac)", alert=AlertDescription.BAD_RECORD_MAC
            ) from None


# ---- handshake messages ----


class Reader:
    """Bounds-checked reading of a handshake body; every short read is a ``TlsError``."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        """Read ``data``, a ``what`` (named in errors), front to back."""
        self._data = data
        self._pos = 0
        self._what = what

    def take(self, size: int) -> bytes:
        """Take the next ``size`` bytes; too few is a decode error."""
        if len(self._data) - self._pos < size:
            raise TlsError(f"truncated {self._what}", alert=AlertDescription.DECODE_ERROR)
        out = self._data[self._pos : self._pos + size]
        self._pos += size
        return out

    def uint(self, size: int) -> int:
        """Take a big-endian unsigned integer of ``size`` bytes."""
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        """Take a vector with a ``length_size``-byte length in front."""
        return self.take(self.uint(length_size))

    @property
    def remaining(self) -> int:
        """The bytes not taken yet."""
        return len(self._data) - self._pos

    def end(self) -> None:
        """Check that nothing is left: trailing bytes are a decode error."""
        if self.remaining:
            raise TlsError(
                f"{self.remaining} unexpected bytes after the {self._what}", alert=AlertDescription.DECODE_ERROR
            )


def handshake_message(msg_type: int, body: bytes) -> bytes:
    """Frame a handshake message: type and 24-bit length before the body."""
    return struct.pack(">B", msg_type) + len(body).to_bytes(3, "big") + body


def vector(length_size: int, data: bytes) -> bytes:
    """Encode a vector: its length in ``length_size`` bytes, then the data."""
    return len(data).to_bytes(length_size, "big") + data


class HandshakeBuffer:
    """Reassembles handshake messages from handshake records (a message may span records)."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        """Start with no bytes buffered."""
        self._buffer = bytearray()

    def feed(self, payload: bytes) -> None:
        """Add a handshake record's payload; messages may span records."""
        self._buffer += payload

    @property
    def pending(self) -> bool:
        """Whether part of a message is buffered (a record ended inside it)."""
        return bool(self._buffer)

    def pop(self) -> tuple[int, bytes, bytes] | None:
        """(type, body, whole message) of the next complete message, or None."""
        if len(self._buffer) < 4:
            return None
        size = int.from_bytes(self._buffer[1:4], "big")
        if size > MAX_PLAINTEXT:
            raise TlsError("TLS handshake message too long")
        if len(self._buffer) < 4 + size:
            return None
        message = bytes(self._buffer[: 4 + size])
        del self._buffer[: 4 + size]
        return message[0], message[4:], message


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The ClientHello fields this profile uses (no extensions, one suite and the SCSV)."""

    version: bytes
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: bytes
    extensions: tuple[tuple[int, bytes], ...]

    def encode(self) -> bytes:
        """Encode the message body."""
        body = (
            self.version
            + self.random
            + vector(1, self.session_id)
            + vector(2, b"".join(struct.pack(">H", suite) for suite in self.cipher_suites))
            + vector(1, self.compression_methods)
        )
        if self.extensions:
            body += vector(2, encode_extensions(self.extensions))
        return handshake_message(HandshakeType.CLIENT_HELLO, body)

    @classmethod
    def for_meter(cls, random: bytes) -> ClientHello:
        """Return the guide's ClientHello: the suite plus the renegotiation SCSV, null compression, no extensions."""
        if len(random) != RANDOM_SIZE:
            raise ValueError("client random must be 32 bytes")
        return cls(VERSION, random, b"", (SUITE, RENEGOTIATION_SCSV), b"\x00", ())

    @classmethod
    def decode(cls, body: bytes) -> ClientHello:
        """Decode a ClientHello body (the simulator's server reads what the client sent)."""
        reader = Reader(body, "ClientHello")
        version = reader.take(2)
        random = reader.take(RANDOM_SIZE)
        session_id = reader.vector(1)
        if len(session_id) > 32:
            raise TlsError("ClientHello session id too long", alert=AlertDescription.ILLEGAL_PARAMETER)
        suites_raw = reader.vector(2)
        if not suites_raw or len(suites_raw) % 2:
            raise TlsError("malformed ClientHello cipher suite list", alert=AlertDescription.DECODE_ERROR)
        suites = tuple(struct.unpack(f">{len(suites_raw) // 2}H", suites_raw))
        compression = reader.vector(1)
        extensions: tuple[tuple[int, bytes], ...] = ()
        if reader.remaining:
            extensions = decode_extensions(reader.vector(2), "ClientHello")
        reader.end()
        return cls(version, random, session_id, suites, compression, extensions)


@dataclass(frozen=True, slots=True)
class ServerHello:
    """The ServerHello fields this profile uses."""

    version: bytes
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[tuple[int, bytes], ...]

    def encode(self) -> bytes:
        """Encode the message body."""
        body = (
            self.version
            + self.random
            + vector(1, self.session_id)
            + struct.pack(">HB", self.cipher_suite, self.compression_method)
        )
        if self.extensions:
            body += vector(2, encode_extensions(self.extensions))
        return handshake_message(HandshakeType.SERVER_HELLO, body)

    @classmethod
    def decode(cls, body: bytes) -> ServerHello:
        """Decode a ServerHello body; a version or suite the profile does not allow is an error."""
        reader = Reader(body, "ServerHello")
        version = reader.take(2)
        random = reader.take(RANDOM_SIZE)
        session_id = reader.vector(1)
        if len(session_id) > 32:
            raise TlsError("ServerHello session id too long", alert=AlertDescription.ILLEGAL_PARAMETER)
        suite = reader.uint(2)
        compression = reader.uint(1)
        extensions: tuple[tuple[int, bytes], ...] = ()
        if reader.remaining:
            extensions = decode_extensions(reader.vector(2), "ServerHello")
        reader.end()
        return cls(version, random, session_id, suite, compression, extensions)


def encode_extensions(extensions: tuple[tuple[int, bytes], ...]) -> bytes:
    """Encode hello extensions as (type, data) pairs in their vector."""
    return b"".join(struct.pack(">H", ext_type) + vector(2, data) for ext_type, data in extensions)


def decode_extensions(data: bytes, what: str) -> tuple[tuple[int, bytes], ...]:
    """Decode a hello's extensions vector into (type, data) pairs; damage is a decode error."""
    reader = Reader(data, f"{what} extensions")
    out: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    while reader.remaining:
        ext_type = reader.uint(2)
        if ext_type in seen:
            raise TlsError(f"{what} repeats extension 0x{ext_type:04X}", alert=AlertDescription.DECODE_ERROR)
        seen.add(ext_type)
        out.append((ext_type, reader.vector(2)))
    return tuple(out)


RENEGOTIATION_INFO_EMPTY: Final = (EXT_RENEGOTIATION_INFO, b"\x00")  # initial handshake: empty renegotiated_connection
SERVER_HELLO_DONE: Final = handshake_message(HandshakeType.SERVER_HELLO_DONE, b"")


def client_key_exchange(identity: bytes) -> bytes:
    """ClientKeyExchange of a plain PSK suite: just the identity (RFC 4279 §2)."""
    if not 1 <= len(identity) <= 0xFFFF:
        raise ValueError("PSK identity must be 1 to 65535 bytes")
    return handshake_message(HandshakeType.CLIENT_KEY_EXCHANGE, vector(2, identity))


def parse_client_key_exchange(body: bytes) -> bytes:
    """Return the PSK identity a ClientKeyExchange carries."""
    reader = Reader(body, "ClientKeyExchange")
    identity = reader.vector(2)
    reader.end()
    if not identity:
        raise TlsError("empty PSK identity", alert=AlertDescription.DECODE_ERROR)
    return identity


def server_key_exchange(identity_hint: bytes) -> bytes:
    """Build the ServerKeyExchange body: the PSK identity hint."""
    return handshake_message(HandshakeType.SERVER_KEY_EXCHANGE, vector(2, identity_hint))


def parse_server_key_exchange(body: bytes) -> bytes:
    """Return the PSK identity hint (RFC 4279 §2); the meter sends none, other servers may."""
    reader = Reader(body, "ServerKeyExchange")
    hint = reader.vector(2)
    reader.end()
    return hint


def finished(verify: bytes) -> bytes:
    """Build the Finished body from its verify data."""
    return handshake_message(HandshakeType.FINISHED, verify)


# ---- MEP framing of TLS mode (guide Tables 2.1-2.3) ----


def mep_request(code: int, payload: bytes) -> bytes:
    """``LEN | TLS code | TLS record bytes``; LEN counts code and payload."""
    if 1 + len(payload) > mep.MAX_MESSAGE:
        raise ValueError(f"TLS request of {1 + len(payload)} bytes exceeds one MEP message")
    return struct.pack(">HB", 1 + len(payload), code) + payload


def mep_reply(result: int, payload: bytes = b"") -> bytes:
    """``LEN | result | TLS record bytes`` as the meter sends it."""
    return struct.pack(">HB", 1 + len(payload), result) + payload
