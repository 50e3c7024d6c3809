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

from nesmeter.errors import TlsError
from nesmeter.mep import tls
from nesmeter.mep.tls import AlertDescription, ContentType, HandshakeType
from nesmeter.mep.tls_endpoint import TlsEndpoint


class _State(enum.Enum):
    START = "start"
    SERVER_HELLO = "wait ServerHello"
    SERVER_HELLO_DONE = "wait ServerHelloDone"
    SERVER_CCS = "wait ChangeCipherSpec"
    SERVER_FINISHED = "wait Finished"
    ESTABLISHED = "established"
    FAILED = "failed"


class TlsClient(TlsEndpoint):
    """One TLS 1.2 session of ``TLS_PSK_WITH_AES_256_GCM_SHA384`` with a binary identity."""

    __slots__ = ("_client_random", "_psk", "_server_random", "identity", "server_identity_hint", "session_id")

    PEER = "meter"
    WAIT_CCS = _State.SERVER_CCS
    WAIT_FINISHED = _State.SERVER_FINISHED
    ESTABLISHED = _State.ESTABLISHED
    FAILED = _State.FAILED

    def __init__(self, psk: bytes, identity: bytes, *, client_random: bytes | None = None) -> None:
        """Prepare a handshake with ``psk`` under ``identity``; a fixed ``client_random`` is for tests."""
        if not 1 <= len(psk) <= tls.MAX_PSK:
            raise ValueError("the PSK must be 1 to 64 bytes")
        if not 1 <= len(identity) <= 0xFFFF:
            raise ValueError("the PSK identity must be 1 to 65535 bytes")
        super().__init__(_State.START)
        self._psk = bytes(psk)
        self.identity = bytes(identity)
        self._client_random = client_random if client_random is not None else secrets.token_bytes(tls.RANDOM_SIZE)
        if len(self._client_random) != tls.RANDOM_SIZE:
            raise ValueError("client random must be 32 bytes")
        self._server_random = b""
        self.server_identity_hint: bytes | None = None
        self.session_id = b""

    def client_hello(self) -> bytes:
        """Return the first flight: one record with the guide's ClientHello."""
        self._expect(_State.START)
        message = tls.ClientHello.for_meter(self._client_random).encode()
        self._transcript += message
        self._state = _State.SERVER_HELLO
        return tls.encode_record(ContentType.HANDSHAKE, message)

    def receive(self, data: bytes) -> bytes:
        """Feed the server's handshake records; returns the records to send (maybe none)."""
        if self._state in (_State.START, _State.ESTABLISHED, _State.FAILED):
            raise TlsError(f"no TLS handshake in progress ({self._state.value})")
        return self._receive_records(data)

    # ---- internals ----

    def _fail(self) -> None:
        super()._fail()
        self._write = None

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
        raise self._unexpected(msg_type)

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
