"""The meter's side of MEP TLS mode, for the simulator: a sans-I/O TLS server and a MEP port.

``TlsServer`` is the mirror of ``TlsClient`` built from the same record layer: it
accepts a ClientHello that offers ``TLS_PSK_WITH_AES_256_GCM_SHA384``, answers
ServerHello (32-byte session id, renegotiation_info, like the meter's mbed TLS in the
guide's example) and ServerHelloDone, looks the PSK up by the client's identity,
verifies the client's Finished and sends its own.

``MepTlsPort`` is the TLS state of one MEP port (guide Tables 2.1-2.3): 58 resets and
starts a handshake, 59 continues it, 80 carries one bare C12.18 request, 57 ends the
session. ``TlsSimulatedMeter`` puts it in front of the simulator's MEP responder; a
meter configured to require TLS (ET97) refuses digest (plain or RC4) messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
import enum
import hmac
import logging
import secrets
import struct
from typing import Literal

from cryptography.hazmat.primitives.ciphers import CipherContext

from nesmeter.errors import TlsError
from nesmeter.keys import MeterKey
from nesmeter.mep import framing as mep, tls
from nesmeter.mep.tls import AlertDescription, ContentType, HandshakeType, KeyId, PskIdentity, TlsCode, TlsResult
from nesmeter.mep.tls_endpoint import TlsEndpoint
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import MEP_SEGMENT, MEP_SEGMENT_GAP, Faults, SimulatedMeter, Wire

_LOGGER = logging.getLogger(__name__)

PskLookup = Callable[[bytes], bytes | None]
_KEY_ALERTS = frozenset({AlertDescription.DECRYPT_ERROR, AlertDescription.BAD_RECORD_MAC})


class _State(enum.Enum):
    CLIENT_HELLO = "wait ClientHello"
    CLIENT_KEY_EXCHANGE = "wait ClientKeyExchange"
    CLIENT_CCS = "wait ChangeCipherSpec"
    CLIENT_FINISHED = "wait Finished"
    ESTABLISHED = "established"
    FAILED = "failed"


class UnknownIdentityError(TlsError):
    """The client's PSK identity names no key this server has."""


class TlsServer(TlsEndpoint):
    """One server-side TLS 1.2 PSK session; ``psk_for`` maps an identity to its PSK."""

    __slots__ = ("_client_random", "_identity_hint", "_psk_for", "_server_random", "identity", "session_id")

    PEER = "client"
    WAIT_CCS = _State.CLIENT_CCS
    WAIT_FINISHED = _State.CLIENT_FINISHED
    ESTABLISHED = _State.ESTABLISHED
    FAILED = _State.FAILED

    def __init__(
        self,
        psk_for: PskLookup,
        *,
        server_random: bytes | None = None,
        session_id: bytes | None = None,
        identity_hint: bytes | None = None,
    ) -> None:
        """Serve handshakes with the PSK ``psk_for`` finds for a client's identity."""
        super().__init__(_State.CLIENT_HELLO)
        self._psk_for = psk_for
        self._server_random = server_random if server_random is not None else secrets.token_bytes(tls.RANDOM_SIZE)
        self.session_id = session_id if session_id is not None else secrets.token_bytes(32)
        if len(self._server_random) != tls.RANDOM_SIZE or len(self.session_id) > 32:
            raise ValueError("server random must be 32 bytes and the session id at most 32")
        self._identity_hint = identity_hint
        self._client_random = b""
        self.identity: bytes | None = None

    def receive(self, data: bytes) -> bytes:
        """Feed the client's handshake records; returns the records to send (maybe none)."""
        if self._state in (_State.ESTABLISHED, _State.FAILED):
            raise TlsError(f"no TLS handshake in progress ({self._state.value})")
        return self._receive_records(data, first_flight=self._state is _State.CLIENT_HELLO)

    def alert(self, description: int) -> bytes:
        """Build a fatal alert record for ``description``, protected once keys are in use."""
        payload = bytes([2, description])
        if self._write is not None:
            return self._write.seal(ContentType.ALERT, payload)
        return tls.encode_record(ContentType.ALERT, payload)

    # ---- internals ----

    def _message(self, msg_type: int, body: bytes, raw: bytes) -> bytes:
        state = self._state
        if state is _State.CLIENT_HELLO and msg_type == HandshakeType.CLIENT_HELLO:
            if self._handshake.pending:
                raise TlsError("data after the ClientHello", alert=AlertDescription.UNEXPECTED_MESSAGE)
            self._transcript += raw
            return self._server_flight(tls.ClientHello.decode(body))
        if state is _State.CLIENT_KEY_EXCHANGE and msg_type == HandshakeType.CLIENT_KEY_EXCHANGE:
            identity = tls.parse_client_key_exchange(body)
            psk = self._psk_for(identity)
            if psk is None:
                raise UnknownIdentityError("unknown PSK identity", alert=AlertDescription.UNKNOWN_PSK_IDENTITY)
            self.identity = identity
            self._transcript += raw
            self._master = tls.master_secret(tls.psk_premaster(psk), self._client_random, self._server_random)
            keys = tls.TrafficKeys(self._master, self._client_random, self._server_random)
            self._pending_read = tls.RecordCipher(keys.client_key, keys.client_salt)
            self._write = tls.RecordCipher(keys.server_key, keys.server_salt)
            self._state = _State.CLIENT_CCS
            return b""
        if state is _State.CLIENT_FINISHED and msg_type == HandshakeType.FINISHED:
            expected = tls.verify_data(self._master, b"client finished", bytes(self._transcript))
            if not hmac.compare_digest(body, expected):
                raise TlsError("the client's Finished does not verify", alert=AlertDescription.DECRYPT_ERROR)
            if self._handshake.pending:
                raise TlsError("data after the client's Finished", alert=AlertDescription.UNEXPECTED_MESSAGE)
            self._transcript += raw
            assert self._write is not None
            fin = tls.finished(tls.verify_data(self._master, b"server finished", bytes(self._transcript)))
            self._transcript.clear()
            self._master = b""
            self._state = _State.ESTABLISHED
            return tls.encode_record(ContentType.CHANGE_CIPHER_SPEC, tls.CHANGE_CIPHER_SPEC_PAYLOAD) + self._write.seal(
                ContentType.HANDSHAKE, fin
            )
        raise self._unexpected(msg_type)

    def _server_flight(self, hello: tls.ClientHello) -> bytes:
        if hello.version < tls.VERSION:
            raise TlsError(
                f"client offers TLS version {hello.version.hex()} only", alert=AlertDescription.PROTOCOL_VERSION
            )
        if tls.SUITE not in hello.cipher_suites:
            raise TlsError(
                "client does not offer TLS_PSK_WITH_AES_256_GCM_SHA384", alert=AlertDescription.HANDSHAKE_FAILURE
            )
        if 0 not in hello.compression_methods:
            raise TlsError("client does not offer null compression", alert=AlertDescription.ILLEGAL_PARAMETER)
        extensions = dict(hello.extensions)
        renegotiation = extensions.get(tls.EXT_RENEGOTIATION_INFO)
        if renegotiation is not None and renegotiation != b"\x00":
            raise TlsError(
                "renegotiation_info not empty on an initial handshake", alert=AlertDescription.HANDSHAKE_FAILURE
            )
        self._client_random = hello.random
        secure_renegotiation = renegotiation is not None or tls.RENEGOTIATION_SCSV in hello.cipher_suites
        server_hello = tls.ServerHello(
            tls.VERSION,
            self._server_random,
            self.session_id,
            tls.SUITE,
            0,
            (tls.RENEGOTIATION_INFO_EMPTY,) if secure_renegotiation else (),
        ).encode()
        messages = [server_hello]
        if self._identity_hint is not None:
            messages.append(tls.server_key_exchange(self._identity_hint))
        messages.append(tls.SERVER_HELLO_DONE)
        self._transcript += b"".join(messages)
        self._state = _State.CLIENT_KEY_EXCHANGE
        # One record per message, as mbed TLS writes them (guide p.14).
        return b"".join(tls.encode_record(ContentType.HANDSHAKE, message) for message in messages)


def meter_psk_lookup(mbk: MeterKey | None, mak: MeterKey | None = None) -> PskLookup:
    """Pick the PSK by the meter's rule: the identity's key id picks MBK or MAK; the PSK is its first 16 bytes."""

    def lookup(identity: bytes) -> bytes | None:
        try:
            parsed = PskIdentity.decode(identity)
        except TlsError:
            return None
        key = mbk if parsed.key_id is KeyId.MBK else mak
        return key.mep_key if key is not None else None

    return lookup


class MepTlsPort:
    """TLS mode of one MEP port: MEP TLS messages in, MEP reply bodies (result + records) out."""

    def __init__(
        self,
        psk_for: PskLookup,
        service: Callable[[bytes], bytes],
        *,
        identity_hint: bytes | None = None,
        server_factory: Callable[[], TlsServer] | None = None,
    ) -> None:
        """Serve the TLS mode of one MEP port: ``service`` answers the plaintext reads inside."""
        self._psk_for = psk_for
        self._service = service
        self._identity_hint = identity_hint
        self._factory = server_factory
        self._server: TlsServer | None = None
        self.handshakes = 0
        self.tls_errors = 0

    @property
    def active(self) -> bool:
        """A session (or a handshake) exists: digest messages are refused until 57 (guide p.8)."""
        return self._server is not None

    def handle(self, body: bytes) -> bytes:
        """Answer one MEP message whose code is a TLS code; returns ``result | records``."""
        code, payload = body[0], body[1:]
        if code == TlsCode.TERMINATE:
            if not payload:
                return bytes([TlsResult.TLS_ERROR])
            self._server = None
            return bytes([TlsResult.OK])
        if code == TlsCode.HANDSHAKE:
            self._server = self._new_server()
            return self._handshake(payload)
        if code == TlsCode.HANDSHAKE_CONT:
            if self._server is None or self._server.established:
                return self._error("handshake continuation without a handshake")
            return self._handshake(payload)
        if code == TlsCode.TABLE:
            if self._server is None or not self._server.established:
                return bytes([TlsResult.NO_SESSION])
            try:
                request = self._server.open(payload)
            except TlsError as err:
                return self._error(str(err))
            return bytes([TlsResult.OK]) + self._server.seal(self._service(request))
        raise ValueError(f"0x{code:02X} is not a TLS code")

    def _new_server(self) -> TlsServer:
        if self._factory is not None:
            return self._factory()
        return TlsServer(self._psk_for, identity_hint=self._identity_hint)

    def _handshake(self, payload: bytes) -> bytes:
        assert self._server is not None
        try:
            out = self._server.receive(payload)
        except TlsError as err:
            if isinstance(err, UnknownIdentityError) or err.alert in _KEY_ALERTS:
                # Unknown identity, or a client Finished that does not decrypt or verify:
                # the client holds another key (guide Table 2.3: "invalid identity or key").
                self._server = None
                self.tls_errors += 1
                _LOGGER.debug("TLS handshake refused: %s", err)
                return bytes([TlsResult.INVALID_IDENTITY_OR_KEY])
            return self._error(str(err))
        if self._server.established:
            self.handshakes += 1
        return bytes([TlsResult.OK]) + out

    def _error(self, message: str) -> bytes:
        """Fail for good, as the meter's mbed TLS does with every failure: the session is gone."""
        _LOGGER.debug("TLS error: %s", message)
        self._server = None
        self.tls_errors += 1
        return bytes([TlsResult.TLS_ERROR])


class TlsSimulatedMeter(SimulatedMeter):
    """A simulated meter with MEP TLS mode; ``require_tls`` is ET97's "Require TLS on MEPn".

    Digest messages (plain or RC4) that verify are refused with an authenticated 0x0A
    while TLS is required or a TLS session exists; ones that do not verify get 0x0B as
    before. The guide says such messages are "not accepted" (p.8) but not with which
    code; 0x0A is its code for a service in the wrong security state (TLS_TABLE without
    a session, p.9). ``refusal`` picks another way a real meter may say it: a bare,
    unsigned ``00 01 0A`` ("bare-0a") or ``00 01 01`` ("bare-01"), TLS mode's framing.
    """

    mep_min_request = 1  # TLS messages carry no digest: every length is a message

    def __init__(
        self,
        key: MeterKey,
        *,
        mak: MeterKey | None = None,
        require_tls: bool = True,
        identity_hint: bytes | None = None,
        image: MeterImage | None = None,
        faults: Faults | None = None,
        pace: bool = False,
        turnaround: float = 0.0,
        variants: Iterable[str] | str = (),
        reply_latency: float | None = None,
        refusal: Literal["signed", "bare-0a", "bare-01"] = "signed",
    ) -> None:
        """Simulate a meter whose MEP port takes TLS, keyed by ``key`` (MBK) and ``mak``.

        TLS is required unless ``require_tls`` is False (then plain and RC4 reads work too).
        """
        super().__init__(
            key,
            image=image,
            faults=faults,
            pace=pace,
            turnaround=turnaround,
            variants=variants,
            reply_latency=reply_latency,
        )
        self.mak = mak
        self.require_tls = require_tls
        self.refusal = refusal
        self.refused_digest_messages = 0
        self.tls_port = MepTlsPort(
            lambda identity: meter_psk_lookup(self.key, self.mak)(identity),
            self._mep_service,
            identity_hint=identity_hint,
        )

    async def _answer_mep(self, wire: Wire, key: bytes, body: bytes) -> None:
        digest_message = self._verify_digest_message(key, body)
        if digest_message is None and body[0] in tls.TLS_CODES:
            self.stats.requests += 1
            reply = self.tls_port.handle(body)
            await self._reply(wire, _frame(reply), segment=MEP_SEGMENT, gap=MEP_SEGMENT_GAP)
            return
        if digest_message is not None and (self.require_tls or self.tls_port.active):
            self.stats.requests += 1
            self.refused_digest_messages += 1
            if self.refusal != "signed":
                result = TlsResult.NO_SESSION if self.refusal == "bare-0a" else TlsResult.TLS_ERROR
                await self._reply(wire, _frame(bytes([result])))
                return
            message, cipher = digest_message
            reply = bytes([mep.MepResult.TLS_SESSION_REQUIRED])
            frame = mep.frame(cipher.update(reply) if cipher else reply, mep.digest(key, message + reply))
            await self._reply(wire, frame)
            return
        if len(body) < mep.DIGEST_SIZE + 1:
            return  # neither TLS nor a digest message: a receiver times it out
        await super()._answer_mep(wire, key, body)

    @staticmethod
    def _verify_digest_message(key: bytes, body: bytes) -> tuple[bytes, CipherContext | None] | None:
        """(plaintext message, RC4 state) if ``body`` is a digest message for ``key``."""
        if len(body) < mep.DIGEST_SIZE + 1:
            return None
        message, request_digest = body[: -mep.DIGEST_SIZE], body[-mep.DIGEST_SIZE :]
        if mep.digest(key, message) == request_digest:
            return message, None
        cipher = mep.rc4_packet_cipher(mep.rc4_base_key(key), request_digest)
        plain = cipher.update(message)
        if mep.digest(key, plain) == request_digest:
            return plain, cipher
        return None


def _frame(reply_body: bytes) -> bytes:
    return struct.pack(">H", len(reply_body)) + reply_body
