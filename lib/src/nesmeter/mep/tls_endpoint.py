"""What both ends of a TLS 1.2 PSK session share.

Kept in one place so the client and the simulator's server
cannot drift apart in it: records in, handshake messages out, the ChangeCipherSpec switch,
the application-data channel, and a session that is dead after its first error.

``TlsClient`` (``tls_client.py``) and ``TlsServer`` (``nesmeter.sim.tls_server``) name their states,
say which of them wait for the peer's ChangeCipherSpec and Finished, and handle their
own handshake messages in ``_message``.
"""

from __future__ import annotations

import enum
from typing import ClassVar

from nesmeter.errors import TlsError
from nesmeter.mep import tls
from nesmeter.mep.tls import AlertDescription, ContentType


class TlsEndpoint:
    """One side of a session; a subclass fills in the states and ``_message``."""

    __slots__ = ("_handshake", "_master", "_pending_read", "_read", "_state", "_transcript", "_write")

    PEER: ClassVar[str]  # the other end, as errors name it
    WAIT_CCS: ClassVar[enum.Enum]  # waits for the peer's ChangeCipherSpec
    WAIT_FINISHED: ClassVar[enum.Enum]  # waits for the peer's Finished (then protected)
    ESTABLISHED: ClassVar[enum.Enum]
    FAILED: ClassVar[enum.Enum]

    def __init__(self, state: enum.Enum) -> None:
        """Start in ``state``, with an empty transcript and no keys."""
        self._state = state
        self._transcript = bytearray()
        self._handshake = tls.HandshakeBuffer()
        self._master = b""
        self._read: tls.RecordCipher | None = None
        self._pending_read: tls.RecordCipher | None = None
        self._write: tls.RecordCipher | None = None

    def __repr__(self) -> str:
        """Show the state, never keys."""
        return f"{type(self).__name__}(<redacted>, state={self._state.value!r})"

    @property
    def established(self) -> bool:
        """Whether the handshake finished and application data may flow."""
        return self._state is self.ESTABLISHED

    @property
    def state(self) -> str:
        """The state's name, for logs and diagnostics."""
        return str(self._state.value)

    def seal(self, plaintext: bytes) -> bytes:
        """One application-data record."""
        self._expect(self.ESTABLISHED)
        assert self._write is not None
        return self._write.seal(ContentType.APPLICATION_DATA, plaintext)

    def open(self, data: bytes) -> bytes:
        """Return the plaintext of the peer's application-data records."""
        self._expect(self.ESTABLISHED)
        assert self._read is not None
        try:
            return tls.open_application_data(self._read, data, peer=self.PEER)
        except TlsError:
            self._fail()
            raise

    # ---- for the subclasses ----

    def _receive_records(self, data: bytes, *, first_flight: bool = False) -> bytes:
        """Feed the peer's handshake records; the records to send back (maybe none)."""
        try:
            out = bytearray()
            for content_type, payload in tls.parse_records(data, first_flight=first_flight):
                out += self._record(content_type, payload)
            return bytes(out)
        except TlsError:
            self._fail()
            raise

    def _message(self, msg_type: int, body: bytes, raw: bytes) -> bytes:
        raise NotImplementedError

    def _expect(self, state: enum.Enum) -> None:
        if self._state is not state:
            raise TlsError(f"{type(self).__name__} is in state {self._state.value!r}, not {state.value!r}")

    def _fail(self) -> None:
        """Dead for good; the write keys stay so that a server can still send its alert."""
        self._state = self.FAILED
        self._master = b""
        self._read = self._pending_read = None

    def _record(self, content_type: int, payload: bytes) -> bytes:
        if content_type == ContentType.ALERT:
            if self._read is not None:
                payload = self._read.open(content_type, payload)
            raise tls.alert_error(payload, peer=self.PEER)
        if content_type == ContentType.CHANGE_CIPHER_SPEC:
            if self._state is not self.WAIT_CCS or self._handshake.pending:
                raise TlsError("unexpected ChangeCipherSpec", alert=AlertDescription.UNEXPECTED_MESSAGE)
            if payload != tls.CHANGE_CIPHER_SPEC_PAYLOAD:
                raise TlsError("malformed ChangeCipherSpec", alert=AlertDescription.DECODE_ERROR)
            self._read, self._pending_read = self._pending_read, None
            self._state = self.WAIT_FINISHED
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

    def _unexpected(self, msg_type: int) -> TlsError:
        """Return the error for a handshake message this state does not take."""
        try:
            name = tls.HandshakeType(msg_type).name
        except ValueError:
            name = f"type {msg_type}"
        return TlsError(
            f"unexpected handshake message {name} ({self._state.value})", alert=AlertDescription.UNEXPECTED_MESSAGE
        )
