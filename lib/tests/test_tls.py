"""MEP TLS mode: the guide's TLS examples byte for byte, strictness, round trips, faults, no secrets."""

from __future__ import annotations

import base64
import logging
import ssl
import struct

import pytest

from nesmeter.errors import AuthenticationError, FrameError, NoResponseError, ResponseError, TlsError
from nesmeter.keys import MeterKey
from nesmeter.link.transport import SerialLink
from nesmeter.mep import framing as mep, tls
from nesmeter.mep.session import MepSession, MepTiming
from nesmeter.mep.tls import ContentType, KeyId, PskIdentity, TlsCode
from nesmeter.mep.tls_client import TlsClient
from nesmeter.mep.tls_session import MepTlsSession, TlsTiming
from nesmeter.sim.simulator import Faults, SimServer, SimulatedMeter
from nesmeter.sim.tls_server import MepTlsPort, TlsServer, TlsSimulatedMeter, meter_psk_lookup
from nesmeter.tables import tables

from .conftest import KEY, load_vectors

OFFICIAL = load_vectors("mep_official_examples.json")
EXAMPLES = {e["id"]: e for e in OFFICIAL["examples"] if e["id"].startswith("TLS-")}
FRAMES = {name: bytes.fromhex(e["frame_hex"]) for name, e in EXAMPLES.items()}
DEFAULT_MAK = MeterKey(bytes([1] * 16))  # the guide's "default MAK" (p.15), PSK of its TLS examples
GUIDE_IDENTITY = bytes.fromhex("640001")  # client 100, key id 1 (MAK), guide p.14
CLIENT_RANDOM = FRAMES["TLS-EX1-C1"][2 + 1 + 5 + 4 + 2 :][:32]
SERVER_RANDOM = FRAMES["TLS-EX1-S1"][2 + 1 + 5 + 4 + 2 :][:32]
SESSION_ID = FRAMES["TLS-EX1-S1"][2 + 1 + 5 + 4 + 2 + 32 + 1 :][:32]
# Cross-checked with an independent implementation, OpenSSL 3.0.19's TLS1-PRF:
#   openssl kdf -keylen 48 -kdfopt digest:SHA2-384 -kdfopt hexsecret:<premaster>
#     -kdfopt seed:"master secret" -kdfopt hexseed:<client random><server random> TLS1-PRF
# and likewise for the key block ("key expansion", server random first, 72 bytes).
EXAMPLE_MASTER = bytes.fromhex(
    "96c39ed01ead2e7b2df5c67fc5d7bb7f1ccf7573bece1f34ff3d44393078eeab79ceb795d5eaff3ab2bbf1783d9495ed"
)
EXAMPLE_KEY_BLOCK = bytes.fromhex(
    "3e3031aa44b847022eaf8b329083b87af7bb02d1d48c14649756256db860cd7a"  # client write key
    "aea86258c0cf5922cc997039b31b1dee46b4d95d40905292072fca7696ef6f83"  # server write key
    "7aab3cc0"  # client salt
    "594fa850"  # server salt
)
FAST = TlsTiming(response_timeout=0.2, handshake_timeout=0.4, min_spacing=0.02, enable_settle=0, enable_reset_off=0)
FAST_MEP = MepTiming(response_timeout=0.2, enable_settle=0, enable_reset_off=0)


def body(name: str) -> bytes:
    """A TLS example frame without LEN and the MEP code/result byte: the TLS records."""
    frame = FRAMES[name]
    (length,) = struct.unpack_from(">H", frame)
    assert length == len(frame) - 2
    return frame[3:]


def guide_client() -> TlsClient:
    return TlsClient(DEFAULT_MAK.mep_key, GUIDE_IDENTITY, client_random=CLIENT_RANDOM)


def guide_server() -> TlsServer:
    return TlsServer(meter_psk_lookup(None, DEFAULT_MAK), server_random=SERVER_RANDOM, session_id=SESSION_ID)


def established_pair() -> tuple[TlsClient, TlsServer]:
    client, server = TlsClient(KEY.mep_key, PskIdentity().encode()), TlsServer(meter_psk_lookup(KEY))
    assert client.receive(server.receive(client.client_hello())) == b""
    return client, server


def finish(client: TlsClient, server: TlsServer) -> None:
    flight = server.receive(client.client_hello())
    assert client.receive(server.receive(client.receive(flight))) == b""
    assert client.established and server.established


# ---- the guide's examples (p.14-15), byte for byte ----


def test_vector_file_holds_the_guides_tls_examples() -> None:
    assert set(EXAMPLES) == {"TLS-EX1-C1", "TLS-EX1-S1", "TLS-EX1-C2", "TLS-EX1-S2", "TLS-EX2-REQ", "TLS-EX2-RSP"}
    assert [FRAMES[name][2] for name in ("TLS-EX1-C1", "TLS-EX1-C2", "TLS-EX2-REQ")] == [0x58, 0x59, 0x80]


def test_prf_sha384_matches_openssl() -> None:
    """Vector computed with ``openssl kdf -keylen 100 -kdfopt digest:SHA2-384 ... TLS1-PRF``."""
    out = tls.prf(bytes(range(16)), b"test label", bytes(range(0xA0, 0xB0)), 100)
    assert out.hex() == (
        "1cca056b13fd7feb155b19763681dcac6e45b6ae8ecf133d79f15e7713490de31111da4745971bdc957751e0aff393591502"
        "b09c05d75332f85235c0d4eba026304998f9bb3a8c4be03748bf89e0a019d08e147486fef3288cd79dcbf4788cf393a7bbb0"
    )


def test_example_key_schedule() -> None:
    """PSK = the first 16 key bytes; classic master secret (no extended_master_secret); key block."""
    premaster = tls.psk_premaster(DEFAULT_MAK.mep_key)
    assert premaster == b"\x00\x10" + bytes(16) + b"\x00\x10" + bytes([1] * 16)
    master = tls.master_secret(premaster, CLIENT_RANDOM, SERVER_RANDOM)
    assert master == EXAMPLE_MASTER
    keys = tls.TrafficKeys(master, CLIENT_RANDOM, SERVER_RANDOM)
    assert keys.client_key + keys.server_key + keys.client_salt + keys.server_salt == EXAMPLE_KEY_BLOCK
    assert "3e3031" not in repr(keys)


def test_example_identity() -> None:
    identity = PskIdentity.decode(GUIDE_IDENTITY)
    assert (identity.client_id, identity.key_id) == (100, KeyId.MAK)
    assert identity.encode() == GUIDE_IDENTITY
    assert PskIdentity(100, KeyId.MBK).encode() == b"\x64\x00\x00"  # the MBK identity ends in a zero byte
    assert EXAMPLES["TLS-EX1-C2"]["verification"]["psk_identity_hex"] == GUIDE_IDENTITY.hex()


def test_client_reproduces_the_guides_handshake_and_table_request() -> None:
    client = guide_client()
    assert tls.mep_request(TlsCode.HANDSHAKE, client.client_hello()) == FRAMES["TLS-EX1-C1"]
    assert tls.mep_request(TlsCode.HANDSHAKE_CONT, client.receive(body("TLS-EX1-S1"))) == FRAMES["TLS-EX1-C2"]
    assert client.receive(body("TLS-EX1-S2")) == b""
    assert client.established
    assert client.session_id == SESSION_ID and client.server_identity_hint is None
    request = bytes.fromhex("3f084600008e0001")  # partial read ET70.142, 1 byte
    assert tls.mep_request(TlsCode.TABLE, client.seal(request)) == FRAMES["TLS-EX2-REQ"]
    reply = client.open(body("TLS-EX2-RSP"))
    assert reply.hex() == EXAMPLES["TLS-EX2-RSP"]["verification"]["decrypted_hex"] == "00000102"
    assert mep.parse_response_body(reply) == (0, b"\x02", None)  # the client is on MEP port 2


def test_server_reproduces_the_meters_side() -> None:
    server = guide_server()
    assert tls.mep_reply(0, server.receive(body("TLS-EX1-C1"))) == FRAMES["TLS-EX1-S1"]
    assert tls.mep_reply(0, server.receive(body("TLS-EX1-C2"))) == FRAMES["TLS-EX1-S2"]
    assert server.established and server.identity == GUIDE_IDENTITY
    assert server.open(body("TLS-EX2-REQ")).hex() == EXAMPLES["TLS-EX2-REQ"]["verification"]["decrypted_hex"]
    assert tls.mep_reply(0, server.seal(bytes.fromhex("00000102"))) == FRAMES["TLS-EX2-RSP"]


def test_finished_plaintexts_match_the_verification_notes() -> None:
    keys = tls.TrafficKeys(EXAMPLE_MASTER, CLIENT_RANDOM, SERVER_RANDOM)
    client_fin = body("TLS-EX1-C2")[-40:]
    server_fin = body("TLS-EX1-S2")[-40:]
    plain_c = tls.RecordCipher(keys.client_key, keys.client_salt).open(ContentType.HANDSHAKE, client_fin)
    plain_s = tls.RecordCipher(keys.server_key, keys.server_salt).open(ContentType.HANDSHAKE, server_fin)
    assert plain_c.hex() == EXAMPLES["TLS-EX1-C2"]["verification"]["client_finished_plain"]
    assert plain_s.hex() == EXAMPLES["TLS-EX1-S2"]["verification"]["server_finished_plain"]


def test_mep_tls_port_answers_the_guides_requests() -> None:
    """The simulator's port: the guide's request frames in, the guide's reply frames out."""
    served: list[bytes] = []

    def service(request: bytes) -> bytes:
        served.append(request)
        return bytes.fromhex("00000102")

    port = MepTlsPort(meter_psk_lookup(None, DEFAULT_MAK), service, server_factory=guide_server)
    for request, reply in (("TLS-EX1-C1", "TLS-EX1-S1"), ("TLS-EX1-C2", "TLS-EX1-S2"), ("TLS-EX2-REQ", "TLS-EX2-RSP")):
        answer = port.handle(FRAMES[request][2:])
        assert struct.pack(">H", len(answer)) + answer == FRAMES[reply]
    assert served == [bytes.fromhex("3f084600008e0001")]
    assert port.handle(bytes([TlsCode.TERMINATE, 0])) == b"\x00"
    assert port.handle(FRAMES["TLS-EX2-REQ"][2:]) == bytes([tls.TlsResult.NO_SESSION])


# ---- strictness ----


def test_the_example_with_another_key_fails_the_servers_finished() -> None:
    client = TlsClient(bytes([2] * 16), GUIDE_IDENTITY, client_random=CLIENT_RANDOM)
    client.client_hello()
    assert client.receive(body("TLS-EX1-S1")) != body("TLS-EX1-C2")
    with pytest.raises(TlsError, match="record failed authentication"):
        client.receive(body("TLS-EX1-S2"))
    assert client.state == "failed"
    with pytest.raises(TlsError):
        client.seal(b"\x30")


def _server_hello(**changes: object) -> bytes:
    fields = {
        "version": tls.VERSION,
        "random": SERVER_RANDOM,
        "session_id": SESSION_ID,
        "cipher_suite": tls.SUITE,
        "compression_method": 0,
        "extensions": (tls.RENEGOTIATION_INFO_EMPTY,),
    }
    fields.update(changes)
    message = tls.ServerHello(**fields).encode()  # type: ignore[arg-type]
    return tls.encode_record(ContentType.HANDSHAKE, message + tls.SERVER_HELLO_DONE)


@pytest.mark.parametrize(
    ("flight", "match"),
    [
        (_server_hello(version=b"\x03\x02"), "TLS version 0302"),
        (_server_hello(cipher_suite=0x00A8), "cipher suite 0x00A8"),
        (_server_hello(compression_method=1), "compression"),
        (_server_hello(extensions=((0x0017, b""),)), "extension 0x0017"),
        (_server_hello(extensions=((0xFF01, b"\x01\x00"),)), "renegotiation_info"),
        (tls.encode_record(ContentType.ALERT, b"\x02\x28"), "fatal alert: handshake_failure"),
        (tls.encode_record(ContentType.ALERT, b"\x02\x73"), "unknown_psk_identity"),
        (
            tls.encode_record(ContentType.HANDSHAKE, tls.handshake_message(tls.HandshakeType.CERTIFICATE, b"")),
            "CERTIFICATE",
        ),
        (
            tls.encode_record(ContentType.HANDSHAKE, tls.handshake_message(tls.HandshakeType.HELLO_REQUEST, b"")),
            "renegotiation",
        ),
        (tls.encode_record(ContentType.APPLICATION_DATA, b"x" * 30), "APPLICATION_DATA"),
        (tls.encode_record(ContentType.CHANGE_CIPHER_SPEC, b"\x01"), "unexpected ChangeCipherSpec"),
        (_server_hello() + b"\x16\x03\x03", "truncated TLS record header"),
        (_server_hello()[:-1], "truncated TLS record"),
        (_server_hello().replace(b"\x16\x03\x03", b"\x16\x03\x01", 1), "record version 0301"),
        (_server_hello() + tls.encode_record(ContentType.HANDSHAKE, tls.SERVER_HELLO_DONE), "unexpected handshake"),
    ],
)
def test_client_rejects_unexpected_server_flights(flight: bytes, match: str) -> None:
    client = guide_client()
    client.client_hello()
    with pytest.raises(TlsError, match=match):
        client.receive(flight)
    assert not client.established


def test_client_rejects_a_tampered_finished_or_record() -> None:
    client = guide_client()
    client.client_hello()
    client.receive(body("TLS-EX1-S1"))
    tampered = bytearray(body("TLS-EX1-S2"))
    tampered[-1] ^= 1
    with pytest.raises(TlsError, match="bad_record_mac"):
        client.receive(bytes(tampered))
    client = guide_client()
    client.client_hello()
    client.receive(body("TLS-EX1-S1"))
    client.receive(body("TLS-EX1-S2"))
    client.seal(b"\x3f" + bytes(7))
    reply = bytearray(body("TLS-EX2-RSP"))
    reply[20] ^= 0x80
    with pytest.raises(TlsError, match="bad_record_mac"):
        client.open(bytes(reply))


def test_replayed_or_reordered_records_fail() -> None:
    client, server = TlsClient(KEY.mep_key, b"\x01\x00\x00"), TlsServer(meter_psk_lookup(KEY))
    finish(client, server)
    first = client.seal(b"one")
    assert server.open(first) == b"one"
    with pytest.raises(TlsError, match="bad_record_mac"):
        server.open(first)  # the same record again: its sequence number is gone


def test_established_sessions_refuse_renegotiation_and_alerts() -> None:
    client, server = TlsClient(KEY.mep_key, b"\x01\x00\x00"), TlsServer(meter_psk_lookup(KEY))
    finish(client, server)
    assert server._write is not None
    hello_request = server._write.seal(ContentType.HANDSHAKE, tls.handshake_message(0, b""))
    with pytest.raises(TlsError, match="renegotiation"):
        client.open(hello_request)
    client, server = TlsClient(KEY.mep_key, b"\x01\x00\x00"), TlsServer(meter_psk_lookup(KEY))
    finish(client, server)
    with pytest.raises(TlsError, match="close_notify"):
        client.open(server.alert(tls.AlertDescription.CLOSE_NOTIFY))


def test_server_requires_the_suite_and_a_known_identity() -> None:
    hello = tls.ClientHello(tls.VERSION, bytes(32), b"", (0x008D, 0x00FF), b"\x00", ())
    with pytest.raises(TlsError, match="does not offer TLS_PSK_WITH_AES_256_GCM_SHA384"):
        TlsServer(meter_psk_lookup(KEY)).receive(tls.encode_record(ContentType.HANDSHAKE, hello.encode()))
    old = tls.ClientHello(b"\x03\x01", bytes(32), b"", (tls.SUITE,), b"\x00", ())
    with pytest.raises(TlsError, match="TLS version 0301"):
        TlsServer(meter_psk_lookup(KEY)).receive(tls.encode_record(ContentType.HANDSHAKE, old.encode()))
    port = MepTlsPort(meter_psk_lookup(KEY), lambda _: b"\x00")  # no MAK configured
    client = TlsClient(KEY.mep_key, PskIdentity(7, KeyId.MAK).encode())
    reply = port.handle(bytes([TlsCode.HANDSHAKE]) + client.client_hello())
    assert reply[0] == 0
    assert port.handle(bytes([TlsCode.HANDSHAKE_CONT]) + client.receive(reply[1:])) == b"\x03"


def test_binary_identities_with_zero_bytes_go_out_whole() -> None:
    """What C-string TLS stacks cannot send: client id 0, key id 0 (MBK)."""
    client, server = TlsClient(KEY.mep_key, b"\x00\x00\x00"), TlsServer(meter_psk_lookup(KEY))
    finish(client, server)
    assert server.identity == b"\x00\x00\x00"


def test_identity_hint_in_a_server_key_exchange_is_accepted() -> None:
    client, server = TlsClient(KEY.mep_key, b"\x01\x00\x00"), TlsServer(meter_psk_lookup(KEY), identity_hint=b"hint")
    finish(client, server)
    assert client.server_identity_hint == b"hint"
    assert server.open(client.seal(b"ping")) == b"ping"
    assert client.open(server.seal(b"pong")) == b"pong"


def test_handshake_messages_may_span_records() -> None:
    client, server = TlsClient(KEY.mep_key, b"\x01\x00\x00"), TlsServer(meter_psk_lookup(KEY))
    flight = server.receive(client.client_hello())
    records = tls.parse_records(flight)
    joined = b"".join(payload for _, payload in records)
    split = b"".join(tls.encode_record(ContentType.HANDSHAKE, joined[i : i + 7]) for i in range(0, len(joined), 7))
    assert client.receive(server.receive(client.receive(split))) == b""
    assert client.established


# ---- interoperability with OpenSSL (CPython's ssl, 3.13+) ----

needs_psk_ssl = pytest.mark.skipif(
    not hasattr(ssl.SSLContext, "set_psk_client_callback"), reason="ssl PSK callbacks need Python 3.13"
)


def _ssl_context(server_side: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    if not server_side:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("PSK-AES256-GCM-SHA384")
    return ctx


def _pump(obj: ssl.SSLObject) -> bool:
    """One handshake step; True once the handshake is complete."""
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        return False
    return True


@needs_psk_ssl
def test_our_client_against_openssls_server() -> None:
    ctx = _ssl_context(server_side=True)
    seen: list[str | None] = []

    def psk_for(identity: str | None) -> bytes:
        seen.append(identity)
        return KEY.mep_key

    ctx.set_psk_server_callback(psk_for, identity_hint="meter")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = ctx.wrap_bio(incoming, outgoing, server_side=True)
    client = TlsClient(KEY.mep_key, b"\x64\x00\x00")
    incoming.write(client.client_hello())
    assert not _pump(server)
    incoming.write(client.receive(outgoing.read()))
    assert _pump(server)
    assert client.receive(outgoing.read()) == b""
    assert client.established and client.server_identity_hint == b"meter"
    assert seen == ["d"]  # OpenSSL cuts the binary identity at its first zero byte
    incoming.write(client.seal(b"\x3f\x00\x01\x00\x00\x00\x00\x18"))
    assert server.read() == b"\x3f\x00\x01\x00\x00\x00\x00\x18"
    server.write(b"\x00\x00\x01\x02")
    assert client.open(outgoing.read()) == b"\x00\x00\x01\x02"


@needs_psk_ssl
def test_openssls_client_against_our_server() -> None:
    ctx = _ssl_context(server_side=False)
    ctx.set_psk_client_callback(lambda hint: ("\x01\x01\x01", KEY.mep_key))  # MAK identity, client id 0x0101
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(incoming, outgoing, server_hostname=None)
    server = TlsServer(meter_psk_lookup(None, KEY))
    assert not _pump(client)
    incoming.write(server.receive(outgoing.read()))  # OpenSSL's ClientHello: extensions, record version 0301
    assert not _pump(client)  # its key exchange and Finished are out; it waits for ours
    incoming.write(server.receive(outgoing.read()))
    assert _pump(client)
    assert server.established and server.identity == b"\x01\x01\x01"
    client.write(b"hello meter")
    assert server.open(outgoing.read()) == b"hello meter"
    incoming.write(server.seal(b"hello client"))
    assert client.read() == b"hello client"


# ---- over the line: SerialLink + simulator ----


async def _session(server: SimServer, key: MeterKey = KEY, **kwargs: object) -> tuple[SerialLink, MepTlsSession]:
    link = SerialLink(server.url, enable_line="none")
    await link.open()
    session = MepTlsSession(link, key, timing=FAST, **kwargs)  # type: ignore[arg-type]
    return link, session


@pytest.mark.parametrize("listen", ["tcp", "pty"])
async def test_round_trip_reads_tables(listen: str) -> None:
    meter = TlsSimulatedMeter(KEY)
    server = await (meter.serve_tcp("mep") if listen == "tcp" else meter.serve_pty("mep"))
    link, session = await _session(server)
    try:
        await session.start()
        assert session.established
        bt01 = await session.read(tables.BT01, 0, 24)
        et03 = await session.read(tables.ET03, 0, 30)
        bt28 = await session.read(tables.BT28, 0, 220)
        await session.stop()
    finally:
        await link.close()
        await server.close()
    assert bt01 == meter.image.read(tables.BT01, 0, 24)
    assert et03 == meter.image.read(tables.ET03, 0, 30)
    assert len(bt28) == 220
    assert session.stats.session_starts == 1 and session.stats.retries == 0
    assert meter.tls_port.handshakes == 1 and not meter.tls_port.active  # terminated
    assert meter.stats.rejected_digest == 0


async def test_reads_larger_than_one_record_are_chunked() -> None:
    meter = TlsSimulatedMeter(KEY)
    meter.image.tables[0x0899] = bytearray(bytes(range(256)) * 4)
    async with await meter.serve_tcp("mep") as server:
        link, session = await _session(server)
        try:
            await session.start()
            data = await session.read(0x0899, 10, 1000)
        finally:
            await link.close()
    assert data == bytes(meter.image.tables[0x0899][10:1010])
    assert session.stats.frames_sent == 2 + 3  # handshake + ceil(1000 / 443) reads
    assert tls.MAX_TLS_READ_DATA == 443


async def test_plain_and_rc4_clients_are_refused_with_an_error_that_names_tls() -> None:
    meter = TlsSimulatedMeter(KEY)
    sent = 0
    async with await meter.serve_tcp("mep") as server:
        for encrypt in (False, True):
            link = SerialLink(server.url, enable_line="none")
            await link.open()
            session = MepSession(link, KEY, encrypt=encrypt, timing=FAST_MEP)
            try:
                with pytest.raises(ResponseError, match="requires TLS") as info:
                    await session.read(tables.BT01, 0, 24)
            finally:
                await link.close()
            assert info.value.code == 0x0A
            sent += session.stats.frames_sent
    # Every digest message was refused; a loaded machine may make a client resend one after
    # FAST_MEP's 0.2 s reply timeout, which the meter refuses as well.
    assert sent >= 2
    assert meter.refused_digest_messages == sent


async def test_rc4_is_refused_while_a_tls_session_exists_then_accepted_after_terminate() -> None:
    meter = TlsSimulatedMeter(KEY, require_tls=False)
    async with await meter.serve_tcp("mep") as server:
        link = SerialLink(server.url, enable_line="none")
        await link.open()
        try:
            plain = MepSession(link, KEY, timing=FAST_MEP)
            assert await plain.read(tables.BT01, 0, 4) == b"NES "
            session = MepTlsSession(link, KEY, timing=FAST)
            await session.start()
            with pytest.raises(ResponseError, match="requires TLS"):
                await plain.read(tables.BT01, 0, 4)
            await session.stop()
            assert await plain.read(tables.BT01, 0, 4) == b"NES "
        finally:
            await link.close()


async def test_a_meter_without_tls_gets_a_clear_error() -> None:
    meter = SimulatedMeter(KEY)
    async with await meter.serve_tcp("mep") as server:
        link, session = await _session(server)
        try:
            with pytest.raises(TlsError, match="does not speak MEP TLS"):
                await session.start()
        finally:
            await link.close()


@pytest.mark.parametrize(
    ("client_key", "key_id"),
    [(MeterKey(b"another key 12345678"), KeyId.MBK), (KEY, KeyId.MAK)],
    ids=["wrong-key", "no-mak"],
)
async def test_wrong_key_or_key_id_is_an_authentication_error(client_key: MeterKey, key_id: KeyId) -> None:
    meter = TlsSimulatedMeter(KEY)
    async with await meter.serve_tcp("mep") as server:
        link, session = await _session(server, client_key, key_id=key_id)
        try:
            with pytest.raises(AuthenticationError, match="TLS"):
                await session.start()
            await session.stop()  # a 58 went out: the meter is told to drop whatever it holds
        finally:
            await link.close()
    assert meter.tls_port.tls_errors == 3
    assert [frame["hex"][4:6] for frame in session.frames.as_list()[-2:]] == ["57", "00"]


async def test_mak_sessions() -> None:
    mak = MeterKey(b"advanced-key-0123456")
    meter = TlsSimulatedMeter(KEY, mak=mak)
    async with await meter.serve_tcp("mep") as server:
        link, session = await _session(server, mak, key_id=KeyId.MAK, client_id=100)
        try:
            await session.start()
            assert await session.read(tables.BT01, 0, 4) == b"NES "
        finally:
            await link.close()


async def test_a_lost_session_is_renegotiated_by_a_new_handshake() -> None:
    meter = TlsSimulatedMeter(KEY)
    async with await meter.serve_tcp("mep") as server:
        link, session = await _session(server)
        try:
            await session.start()
            meter.tls_port.handle(bytes([TlsCode.TERMINATE, 0]))  # e.g. the meter restarted
            assert await session.read(tables.BT01, 0, 4) == b"NES "
        finally:
            await link.close()
    assert session.stats.session_starts == 2
    assert session.stats.errors["tls_session_lost"] == 1


async def test_silent_meter_is_no_response() -> None:
    meter = TlsSimulatedMeter(KEY, faults=Faults(silent=True))
    async with await meter.serve_tcp("mep") as server:
        link, session = await _session(server)
        try:
            with pytest.raises(NoResponseError):
                await session.start()
        finally:
            await link.close()


async def test_write_services_never_leave_the_client() -> None:
    meter = TlsSimulatedMeter(KEY)
    async with await meter.serve_tcp("mep") as server:
        link, session = await _session(server)
        try:
            await session.start()
            with pytest.raises(Exception, match="only table read"):
                await session.transact(bytes.fromhex("4f0832 00001e 0001 01"))
        finally:
            await link.close()


STATIC_READS = ((tables.BT00, 0, 40), (tables.BT01, 0, 24), (tables.BT21, 0, 10), (tables.ET03, 0, 30))


@pytest.mark.parametrize("seed", [1, 2])
async def test_fault_matrix_gives_no_wrong_values(seed: int) -> None:
    """Drops, corruption, garbage, split replies and markers inside replies: retries, never wrong data."""
    faults = Faults(drop=0.04, corrupt=0.06, garbage=0.03, split=0.05, alert_inside=0.03, seed=seed)
    meter = TlsSimulatedMeter(KEY, faults=faults)
    ok = wrong = failed = 0
    async with await meter.serve_tcp("mep") as server:
        link, session = await _session(server)
        try:
            for index in range(40):
                table_id, offset, count = STATIC_READS[index % len(STATIC_READS)]
                try:
                    data = await session.read(table_id, offset, count)
                except (NoResponseError, FrameError, TlsError):
                    failed += 1
                    continue
                if data == meter.image.read(table_id, offset, count):
                    ok += 1
                else:
                    wrong += 1
        finally:
            await link.close()
    print(f"seed {seed}: ok {ok} failed {failed} wrong {wrong}", session.stats.as_dict(), meter.stats.faults)
    assert wrong == 0
    assert ok >= 36 and failed <= 4
    assert session.stats.retries > 0 and session.stats.session_starts > 1
    assert sum(meter.stats.faults.values()) >= 5


# ---- secrets ----


async def test_no_key_or_derived_secret_in_logs_frames_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    meter = TlsSimulatedMeter(KEY, faults=Faults(corrupt=0.2, seed=5))
    async with await meter.serve_tcp("mep") as server:
        link, session = await _session(server)
        try:
            await session.start()
            await session.read(tables.BT01, 0, 24)
            client = session._tls
            texts = [repr(session), repr(client), repr(meter.tls_port._server)]
            frames = session.frames.as_list()
        finally:
            await link.close()
        bad_link, bad = await _session(server, MeterKey(b"another key 12345678"))
        try:
            with pytest.raises(AuthenticationError):
                await bad.start()
        finally:
            await bad_link.close()
    # Reconstruct the last session's secrets from its public handshake frames.
    hello = next(bytes.fromhex(f["hex"]) for f in reversed(frames) if f["hex"][4:6] == "58")
    reply = next(
        bytes.fromhex(f["hex"])
        for f in reversed(frames)
        if f["direction"] == "rx" and f["hex"][6:12] == "160303" and f["hex"][16:18] == "02"
    )
    client_random, server_random = hello[14:46], reply[14:46]
    master = tls.master_secret(tls.psk_premaster(KEY.mep_key), client_random, server_random)
    keys = tls.TrafficKeys(master, client_random, server_random)
    secrets = [KEY.mep_key, tls.psk_premaster(KEY.mep_key), master, keys.client_key, keys.server_key]
    forms = [form for secret in secrets for form in _forms(secret)] + list(KEY.forms())
    haystack = "\n".join([caplog.text, *texts, *(f["hex"] for f in frames), *(f["hex"] for f in bad.frames.as_list())])
    for form in forms:
        assert form not in haystack
    for salt in (keys.client_salt, keys.server_salt):  # 4 bytes may occur by chance in ciphertext, not in text
        assert salt.hex() not in caplog.text


def _forms(secret: bytes) -> list[str]:
    return [
        secret.hex(),
        secret.hex().upper(),
        secret.decode("latin-1"),
        base64.b64encode(secret).decode(),
        repr(secret),
    ]


def test_the_largest_tls_read_fits_one_mep_message() -> None:
    assert 1 + tls.RECORD_OVERHEAD + 3 + tls.MAX_TLS_READ_DATA == mep.MAX_MESSAGE
