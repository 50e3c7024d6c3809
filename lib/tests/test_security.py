"""The key stays secret and the client stays read-only, whatever happens (the library's part).

serialx's DEBUG records carry no payload, TLS keys and derived secrets appear nowhere, and no
request but reads and session services reaches the line. The integration's test (every flow
and error path in Home Assistant, searched for either key) is tests/test_security.py; it uses
``secret_forms`` and ``assert_secret_absent`` from here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import pytest

from nesmeter import MeterClient, MeterError, MeterKey, WriteRefusedError
from nesmeter.mep import tls
from nesmeter.mep.session import MepSession
from nesmeter.sim.simulator import Faults, SimServer, SimulatedMeter
from nesmeter.sim.tls_server import TlsSimulatedMeter

from .conftest import KEY, KEY_TEXT

WRONG_KEY_TEXT = "Zq8!wrong-key-#2026x"
WRONG_KEY = MeterKey.parse(WRONG_KEY_TEXT)


def secret_forms(key: MeterKey) -> set[str]:
    """Every way a key could leak: as typed, hex, decimal, the derived MEP key and password."""
    forms = set(key.forms())
    forms |= {form.encode().hex() for form in key.forms()}
    for derived in (key.mep_key, key.password):
        forms |= {derived.hex(), derived.hex().upper(), repr(derived), derived.decode("latin-1")}
    forms |= {key.mep_key.decode("latin-1")[:12]}  # a long enough prefix of the MEP key text
    return {form for form in forms if len(form.strip("\x00 ")) >= 8}


def assert_secret_absent(text: str, where: str) -> None:
    for key in (KEY, WRONG_KEY):
        for form in secret_forms(key):
            assert form not in text, f"a form of the key appears in {where}"


async def run_cli(*args: str) -> str:
    """``nesmeter -v ARGS`` in a subprocess: its whole output, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nesmeter.cli",
        "-v",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return output.decode(errors="replace")


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_device_paths_log_no_payload(caplog: pytest.LogCaptureFixture, transport: str) -> None:
    """On a tty, serialx logs the bytes it moves at DEBUG; the IR logon carries the password."""
    caplog.set_level(logging.DEBUG)
    meter = SimulatedMeter(KEY)
    server = await meter.serve_pty(transport)
    try:
        async with MeterClient(server.url, transport, KEY, enable_line="none") as client:
            await client.read_snapshot()
    finally:
        await server.close()
    assert "bytes>" in caplog.text  # serialx did log, with the payload replaced by its length
    assert_secret_absent(caplog.text, "the log")


async def test_other_serialx_users_keep_their_log_records(caplog: pytest.LogCaptureFixture) -> None:
    """The payload filter touches only records made for our own ports (not ZHA's, not core usb's)."""
    caplog.set_level(logging.DEBUG)
    meter = SimulatedMeter(KEY)
    server = await meter.serve_pty("ir")
    try:
        async with MeterClient(server.url, "ir", KEY, enable_line="none") as client:
            await client.read_snapshot()
            logging.getLogger("serialx.platforms.serial_posix").debug("Writing %d bytes: %r", 3, b"zha")
    finally:
        await server.close()
    assert "bytes>" in caplog.text
    assert "Writing 3 bytes: b'zha'" in caplog.text


# Session control and reads: everything else a C12.18 meter offers can change it.
C1218_ALLOWED = {0x20, 0x21, 0x30, 0x3F, 0x50, 0x51, 0x52, 0x60, 0x61, 0x70}
MEP_ALLOWED = {0x30, 0x3F}


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_no_service_but_reads_reaches_the_line(transport: str, meter: SimulatedMeter) -> None:
    """Every request code outside the read-only set is refused before a byte is sent."""
    server: SimServer = await meter.serve_tcp(transport)
    client = MeterClient(server.url, transport, KEY)
    try:
        await client.open()
        session = client._session
        send = session.transact if isinstance(session, MepSession) else session._request
        allowed = MEP_ALLOWED if transport == "mep" else C1218_ALLOWED
        for code in range(256):
            if code in allowed:
                continue
            sent = client.bytes_exchanged
            request = bytes([code, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x06])
            with pytest.raises(WriteRefusedError):
                await send(request)
            assert client.bytes_exchanged == sent
        assert meter.stats.requests <= 6  # only the session start reached the meter
    finally:
        await client.close()
        await server.close()


def _tls_secrets(frames: list[dict[str, Any]], key: MeterKey) -> list[bytes]:
    """The PSK and every handshake's derived secrets, rebuilt from the public frames."""
    found = [key.mep_key, tls.psk_premaster(key.mep_key)]
    client_random = None
    for frame in frames:
        raw = bytes.fromhex(frame["hex"])
        if frame["direction"] == "tx" and frame["hex"][4:6] == "58":
            client_random = raw[14:46]
        elif client_random and frame["hex"][6:12] == "160303" and frame["hex"][16:18] == "02":
            server_random = raw[14:46]
            master = tls.master_secret(found[1], client_random, server_random)
            keys = tls.TrafficKeys(master, client_random, server_random)
            found += [master, keys.client_key, keys.server_key]
            client_random = None
    return found


async def test_tls_key_and_derived_secrets_appear_nowhere(caplog: pytest.LogCaptureFixture) -> None:
    """MEP TLS mode: logs (serialx on a pty included), errors, diagnostics, CLI output."""
    caplog.set_level(logging.DEBUG)
    meter = TlsSimulatedMeter(KEY, faults=Faults(corrupt=0.1, drop=0.05, seed=3))
    server = await meter.serve_pty("mep")
    shown: list[str] = []
    frames: list[dict[str, Any]] = []
    try:
        client = MeterClient(server.url, "mep", KEY, tls=True, enable_line="none")
        try:
            for _ in range(4):
                if not client.is_open:
                    await client.open()
                try:
                    await client.read_snapshot()
                except MeterError as err:
                    shown.append(repr(err))
                    await client.close()
                frames += client.frames.as_list()
                client.frames.clear()
            shown.append(json.dumps(client.diagnostics(), default=str))
        finally:
            await client.close()
        meter.faults = Faults()
        for options in ({"tls": True}, {}):
            bad = MeterClient(server.url, "mep", WRONG_KEY, enable_line="none", **options)  # type: ignore[arg-type]
            with pytest.raises(MeterError) as info:
                async with bad:
                    await bad.identify()
            shown.append(repr(info.value))
            frames += bad.frames.as_list()
    finally:
        await server.close()
    async with await meter.serve_tcp("mep") as tcp:
        for key_text in (KEY_TEXT, WRONG_KEY_TEXT):
            shown.append(await run_cli("read", "--transport", "mep", "--tls", "--port", tcp.url, "--key", key_text))
    assert "utility_serial" in shown[-2] and "refused the TLS key exchange" in shown[-1]
    assert "bytes>" in caplog.text  # serialx did log, payloads replaced by their length
    secrets = _tls_secrets(frames, KEY) + _tls_secrets(frames, WRONG_KEY)
    assert len(secrets) >= 2 * 2 + 3  # at least one handshake's secrets rebuilt
    forms = {form for secret in secrets for form in (secret.hex(), secret.hex().upper(), repr(secret))}
    for where, text in (("the log", caplog.text), *((f"output {i}", text) for i, text in enumerate(shown))):
        assert_secret_absent(text, where)
        for form in forms:
            assert form not in text, f"a TLS secret appears in {where}"
