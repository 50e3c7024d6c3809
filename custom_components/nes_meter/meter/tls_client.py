"""Sans-I/O TLS 1.2 PSK client for MEP TLS mode: bytes in, bytes out, no sockets.

Flights, as the guide's TLS example 1 shows them (p.14):

1. ``client_hello()`` → ClientHello (MEP code 58).
2. ``receive(server flight)`` with ServerHello [ServerKeyExchange] ServerHelloDone →
   ClientKeyExchange + ChangeCipherSpec + Finished (MEP code 59).
3. ``receive(server flight)`` with ChangeCipherSpec + Finished → ``established``.

Then ``seal(plaintext)`` builds an application-data record (MEP code 80) and
``open(records)`` returns the plaintext of the reply. Anything else (alerts, other
versions or suites, extensions not asked for, certificates, renegotiation, a Finished
that does not verify) is a ``TlsError`` and the machine is dead afterwards.
"""

from __future__ import annotations

import enum
import hmac
import secrets

from . import tls
from .errors import TlsError
from .tls import AlertDescription, ContentType, HandshakeType


class _State(enum.Enum):
    START = "start"
    SERVER_HELLO = "wait ServerHello"
    SERVER_HELLO_DONE = "wait ServerHelloDone"
    SERVER_CCS = "wait ChangeCipherSpec"
    SERVER_FINISHED = "wait Finished"
    ESTABLISHED = "established"
    FAILED = "failed"


class TlsClient:
    """One TLS 1.2 session of ``TLS_PSK_WITH_AES_256_GCM_SHA384`` with a binary identity."""

    __slots__ = (
        "_client_random",
        "_handshake",
        "_master",
        "_pending_read",
        "_psk",
        "_read",
        "_server_random",
        "_state",
        "_transcript",
        "_write",
        "identity",
        "server_identity_hint",
        "session_id",
    )

    def __init__(self, psk: bytes, identity: bytes, *, client_random: bytes | None = None) -> None:
        if not 1 <= len(psk) <= tls.MAX_PSK:
            raise ValueError("the PSK must be 1 to 64 bytes")
        if not 1 <= len(identity) <= 0xFFFF:
            raise ValueError("the PSK identity must be 1 to 65535 bytes")
        self._psk = bytes(psk)
        self.identity = bytes(identity)
        self._client_random = client_random if client_random is not None else secrets.token_bytes(tls.RANDOM_SIZE)
        if len(self._client_random) != tls.RANDOM_SIZE:
            raise ValueError("client random must be 32 bytes")
        self._state = _State.START
        self._transcript = bytearray()
        self._handshake = tls.HandshakeBuffer()
        self._master = b""
        self._server_random = b""
        self._read: tls.RecordCipher | None = None
        self._pending_read: tls.RecordCipher | None = None
        self._write: tls.RecordCipher | None = None
        self.server_identity_hint: bytes | None = None
        self.session_id = b""

    def __repr__(self) -> str:
        return f"TlsClient(<redacted>, state={self._state.value!r})"

    @property
    def established(self) -> bool:
        return self._state is _State.ESTABLISHED

    @property
    def state(self) -> str:
        return self._state.value

    def client_hello(self) -> bytes:
        """The first flight: one record with the guide's ClientHello."""
        self._expect(_State.START)
        message = tls.ClientHello.for_meter(self._client_random).encode()
        self._transcript += message
        self._state = _State.SERVER_HELLO
        return tls.encode_record(ContentType.HANDSHAKE, message)

    def receive(self, data: bytes) -> bytes:
        """Feed the server's handshake records; returns the records to send (maybe none)."""
        if self._state in (_State.START, _State.ESTABLISHED, _State.FAILED):
            raise TlsError(f"no TLS handshake in progress ({self._state.value})")
        try:
            out = bytearray()
            for content_type, payload in tls.parse_records(data):
                out += self._record(content_type, payload)
            return bytes(out)
        except TlsError:
            self._fail()
            raise

    def seal(self, plaintext: bytes) -> bytes:
        """One application-data record."""
        self._expect(_State.ESTABLISHED)
        assert self._write is not None
        return self._write.seal(ContentType.APPLICATION_DATA, plaintext)

    def open(self, data: bytes) -> bytes:
        """The plaintext of the server's application-data records."""
        self._expect(_State.ESTABLISHED)
        assert self._read is not None
        try:
            return tls.open_application_data(self._read, data, peer="meter")
        except TlsError:
            self._fail()
            raise

    # ---- internals ----

    def _expect(self, state: _State) -> None:
        if self._state is not state:
            raise TlsError(f"TLS client is in state {self._state.value!r}, not {state.value!r}")

    def _fail(self) -> None:
        self._state = _State.FAILED
        self._master = b""
        self._read = self._write = self._pending_read = None

    def _record(self, content_type: int, payload: bytes) -> bytes:
        if content_type == ContentType.ALERT:
            if self._read is not None:
                payload = self._read.open(content_type, payload)
            raise tls.alert_error(payload, peer="meter")
        if content_type == ContentType.CHANGE_CIPHER_SPEC:
            if self._state is not _State.SERVER_CCS or self._handshake.pending:
                raise TlsError("unexpected ChangeCipherSpec", alert=AlertDescription.UNEXPECTED_MESSAGE)
            if payload != tls.CHANGE_CIPHER_SPEC_PAYLOAD:
                raise TlsError("malformed ChangeCipherSpec", alert=AlertDescription.DECODE_ERROR)
            self._read, self._pending_read = self._pending_read, None
            self._state = _State.SERVER_FINISHED
            return b""
        if content_type != ContentType.HANDSHAKE:
            raise TlsError(
                f"unexpected {ContentType(content_type).name} record during the handshake",
                alert=AlertDescription.UNEXPECTED_MESSAGE,
            )
        if self._read is not None:
            payload = self._read.open(content_type, payload)
        self._handshake.feed(payload)
        out = bytearray()
        while (message := self._handshake.pop()) is not None:
            out += self._message(*message)
        return bytes(out)

    def _message(self, msg_type: int, body: bytes, raw: bytes) -> bytes:
        state = self._state
        if msg_type == HandshakeType.HELLO_REQUEST:
            raise TlsError("the meter asked for a renegotiation; refused", alert=AlertDescription.NO_RENEGOTIATION)
        if state is _State.SERVER_HELLO and msg_type == HandshakeType.SERVER_HELLO:
            self._server_hello(tls.ServerHello.decode(body))
            self._transcript += raw
            self._state = _State.SERVER_HELLO_DONE
            return b""
        if state is _State.SERVER_HELLO_DONE and msg_type == HandshakeType.SERVER_KEY_EXCHANGE:
            if self.server_identity_hint is not None:
                raise TlsError("second ServerKeyExchange", alert=AlertDescription.UNEXPECTED_MESSAGE)
            self.server_identity_hint = tls.parse_server_key_exchange(body)
            self._transcript += raw
            return b""
        if state is _State.SERVER_HELLO_DONE and msg_type == HandshakeType.SERVER_HELLO_DONE:
            if body:
                raise TlsError("ServerHelloDone with a body", alert=AlertDescription.DECODE_ERROR)
            if self._handshake.pending:
                raise TlsError("data after ServerHelloDone", alert=AlertDescription.UNEXPECTED_MESSAGE)
            self._transcript += raw
            return self._key_exchange_flight()
        if state is _State.SERVER_FINISHED and msg_type == HandshakeType.FINISHED:
            expected = tls.verify_data(self._master, b"server finished", bytes(self._transcript))
            if not hmac.compare_digest(body, expected):
                raise TlsError("the meter's Finished does not verify", alert=AlertDescription.DECRYPT_ERROR)
            if self._handshake.pending:
                raise TlsError("data after the meter's Finished", alert=AlertDescription.UNEXPECTED_MESSAGE)
            self._transcript.clear()
            self._state = _State.ESTABLISHED
            return b""
        try:
            name = HandshakeType(msg_type).name
        except ValueError:
            name = f"type {msg_type}"
        raise TlsError(
            f"unexpected handshake message {name} ({state.value})", alert=AlertDescription.UNEXPECTED_MESSAGE
        )

    def _server_hello(self, hello: tls.ServerHello) -> None:
        if hello.version != tls.VERSION:
            raise TlsError(
                f"the meter chose TLS version {hello.version.hex()}, not 0303 (TLS 1.2)",
                alert=AlertDescription.PROTOCOL_VERSION,
            )
        if hello.cipher_suite != tls.SUITE:
            raise TlsError(
                f"the meter chose cipher suite 0x{hello.cipher_suite:04X}, not TLS_PSK_WITH_AES_256_GCM_SHA384",
                alert=AlertDescription.HANDSHAKE_FAILURE,
            )
        if hello.compression_method != 0:
            raise TlsError("the meter chose compression", alert=AlertDescription.ILLEGAL_PARAMETER)
        for ext_type, data in hello.extensions:
            if ext_type != tls.EXT_RENEGOTIATION_INFO:
                raise TlsError(
                    f"the meter sent extension 0x{ext_type:04X} that was not offered",
                    alert=AlertDescription.UNSUPPORTED_EXTENSION,
                )
            if data != b"\x00":
                raise TlsError(
                    "non-empty renegotiation_info on an initial handshake", alert=AlertDescription.HANDSHAKE_FAILURE
                )
        self.session_id = hello.session_id
        self._server_random = hello.random

    def _key_exchange_flight(self) -> bytes:
        cke = tls.client_key_exchange(self.identity)
        self._transcript += cke
        self._master = tls.master_secret(tls.psk_premaster(self._psk), self._client_random, self._server_random)
        keys = tls.TrafficKeys(self._master, self._client_random, self._server_random)
        self._write = tls.RecordCipher(keys.client_key, keys.client_salt)
        self._pending_read = tls.RecordCipher(keys.server_key, keys.server_salt)
        fin = tls.finished(tls.verify_data(self._master, b"client finished", bytes(self._transcript)))
        self._transcript += fin
        self._state = _State.SERVER_CCS
        return (
            tls.encode_record(ContentType.HANDSHAKE, cke)
            + tls.encode_record(ContentType.CHANGE_CIPHER_SPEC, tls.CHANGE_CIPHER_SPEC_PAYLOAD)
            + self._write.seal(ContentType.HANDSHAKE, fin)
        )
