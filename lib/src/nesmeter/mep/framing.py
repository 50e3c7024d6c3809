"""MEP (Multi-purpose Expansion Port) message codec: digest, frames, RC4, responses.

Pure functions over bytes; the asyncio session that drives them lives in
``nesmeter.mep.session``. Layouts and rules follow the OSGP MEP Client Developer's Guide
(request frame p.10-12, digest Appendix A, RC4 Appendix B); see ``protocol/MEP.md``.
"""

from __future__ import annotations

import enum
import functools
import itertools
import struct
from typing import Final

from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext

from nesmeter.errors import FrameError, WriteRefusedError

DIGEST_SIZE: Final = 8
SEQUENCE_SIZE: Final = 4
MAX_MESSAGE: Final = 476  # bytes after the length field, request or response (guide p.8)
# A read reply carries code(1) + count(2) + data + digest(8) within MAX_MESSAGE.
MAX_READ_DATA: Final = MAX_MESSAGE - 1 - 2 - DIGEST_SIZE
ALERT_MARKER: Final = b"\x00\x00"
RC4_CONST_KEY: Final = bytes.fromhex("388B8FBC36A8558587AFC90FB23A3B99")


class MepCode(enum.IntEnum):
    """Request codes (client) the guide defines; only reads are ever built."""

    FULL_READ = 0x30
    PARTIAL_READ = 0x3F
    FULL_WRITE = 0x40
    PARTIAL_WRITE = 0x4F


class MepResult(enum.IntEnum):
    """Response codes (guide p.9-12)."""

    OK = 0x00
    UNRECOGNIZED = 0x01
    UNSUPPORTED = 0x02
    NO_PERMISSION = 0x03
    NOT_POSSIBLE = 0x04
    TABLE_OPERATION_NOT_POSSIBLE = 0x05
    TLS_SESSION_REQUIRED = 0x0A
    AUTHENTICATION_FAILURE = 0x0B
    INVALID_SEQUENCE = 0x0C


READ_CODES: Final = frozenset({MepCode.FULL_READ, MepCode.PARTIAL_READ})


def digest(key: bytes, message: bytes) -> bytes:
    """Compute the guide's 8-byte keyed digest (Appendix A), one shot, zero state, padded pass.

    Walks the key's bits 1.5 times per pass (``R = L + L // 2``, 24 bytes for a 16-byte
    key), one message byte per key bit; the message is zero padded to whole passes.
    Each step's byte mixing depends only on the key, so it is looked up, not computed.
    """
    if not key:
        raise ValueError("digest key must not be empty")
    schedule = _digest_schedule(key)
    passes = max(1, -(-len(message) // len(schedule)))
    padded = message.ljust(passes * len(schedule), b"\0")
    state = bytearray(DIGEST_SIZE)
    carry = 0
    for byte, (slot, mix) in zip(padded, itertools.cycle(schedule)):
        carry = (carry + byte + mix[state[slot]]) & 0xFF
        state[slot] = carry
    return bytes(state)


def _mix_table(slot: int, key_bit: int) -> bytes:
    """Return what a state byte contributes at ``slot`` when the key bit is ``key_bit``."""
    table = bytearray(256)
    for state_byte in range(256):
        value = (~(state_byte + slot)) & 0xFF
        if key_bit:
            table[state_byte] = ((value << 1) | (value >> 7)) & 0xFF
        else:
            table[state_byte] = (256 - (((value >> 1) | (value << 7)) & 0xFF)) & 0xFF
    return bytes(table)


_MIX_TABLES: Final = tuple(tuple(_mix_table(slot, key_bit) for key_bit in (0, 1)) for slot in range(8))


@functools.lru_cache(maxsize=8)
def _digest_schedule(key: bytes) -> tuple[tuple[int, bytes], ...]:
    """Per step of one pass: the state slot it updates and its mixing table."""
    key_len = len(key)
    rounds = 6 if key_len == 6 else key_len + key_len // 2
    steps = []
    for step in range(8 * rounds):
        bit, slot = step % 8, 7 - step % 8
        key_bit = (key[(step // 8) % key_len] >> bit) & 1
        steps.append((slot, _MIX_TABLES[slot][key_bit]))
    return tuple(steps)


def request_message(apdu: bytes, sequence: int) -> bytes:
    """Return the signed part of a request: APDU followed by the big-endian sequence number."""
    return apdu + struct.pack(">I", sequence & 0xFFFFFFFF)


def frame(body: bytes, body_digest: bytes) -> bytes:
    """``LEN | body | DIGEST`` as on the wire; LEN counts the body and the digest."""
    return struct.pack(">H", len(body) + DIGEST_SIZE) + body + body_digest


def encode_request(apdu: bytes, sequence: int, key: bytes) -> bytes:
    """Build a complete plaintext request frame: ``LEN | APDU | SEQ | DIGEST``."""
    message = request_message(apdu, sequence)
    return frame(message, digest(key, message))


def read_apdu(table_id: int, offset: int, count: int) -> bytes:
    """Build a partial-read APDU; the only table service this read-only client sends."""
    if not 0 <= table_id <= 0xFFFF or not 0 <= offset <= 0xFFFFFF or not 0 < count <= 0xFFFF:
        raise ValueError("table read out of range")
    return struct.pack(">BH", MepCode.PARTIAL_READ, table_id) + offset.to_bytes(3, "big") + struct.pack(">H", count)


def check_read_only(apdu: bytes) -> None:
    """Refuse anything but a read service, so no code path can change a meter."""
    if not apdu or apdu[0] not in READ_CODES:
        raise WriteRefusedError("only table read services may be sent to a meter")


def rc4_base_key(key: bytes) -> bytes:
    """EncKey = ConstKey XOR RC4(key)[0:16] (guide Appendix B)."""
    stream = Cipher(ARC4(key), mode=None).encryptor().update(bytes(16))
    return bytes(a ^ b for a, b in zip(RC4_CONST_KEY, stream, strict=True))


def rc4_packet_cipher(base_key: bytes, request_digest: bytes) -> CipherContext:
    """Return the per-exchange RC4 state: base key with its first 8 bytes XORed with the digest.

    The response is encrypted with the continuation of this same keystream.
    """
    packet_key = (
        bytes(b ^ d for b, d in zip(base_key[:DIGEST_SIZE], request_digest, strict=True)) + base_key[DIGEST_SIZE:]
    )
    return Cipher(ARC4(packet_key), mode=None).encryptor()


def parse_response_body(body: bytes) -> tuple[int, bytes, int | None]:
    """Split a plaintext response body (code..data, digest removed) by its code.

    Returns (code, table data, sequence for 0x0C). Raises ``FrameError`` when the
    layout contradicts the code; the COUNT of a read reply must match the length.
    """
    if not body:
        raise FrameError("empty response")
    code = body[0]
    if code == MepResult.OK:
        if len(body) == 1:
            return code, b"", None
        if len(body) < 3:
            raise FrameError("read reply shorter than its count field")
        (count,) = struct.unpack_from(">H", body, 1)
        if count != len(body) - 3:
            raise FrameError(f"read reply count {count} does not match its length {len(body) - 3}")
        return code, body[3:], None
    if code == MepResult.INVALID_SEQUENCE:
        if len(body) != 1 + SEQUENCE_SIZE:
            raise FrameError("sequence reply of the wrong length")
        return code, b"", struct.unpack_from(">I", body, 1)[0]
    if len(body) != 1:
        raise FrameError(f"response code 0x{code:02X} with unexpected data")
    return code, b"", None
