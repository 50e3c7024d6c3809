"""MEP TLS mode through ``MeterClient`` and the CLI: true values over pty and TCP, a clear
error for a meter that requires TLS when read without it, the option's limits.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nesmeter import KeyId, MeterClient, MeterKey, ResponseError, TlsRequiredError, probe_transport
from nesmeter.cli import cli
from nesmeter.mep.tls_session import TlsTiming
from nesmeter.sim.simulator import SimulatedMeter
from nesmeter.sim.tls_server import TlsSimulatedMeter

from .conftest import KEY, KEY_TEXT, SERIAL
from .test_client import client_for
from .test_variants import assert_true_values, frozen_meter

FAST_TLS = TlsTiming(response_timeout=0.2, handshake_timeout=0.4, enable_settle=0, enable_reset_off=0)
MAK_TEXT = "advanced-key-0123456"


def tls_meter(**kwargs: object) -> TlsSimulatedMeter:
    """A TLS-requiring meter whose load model stands still (exact values to compare)."""
    image = frozen_meter().image
    return TlsSimulatedMeter(KEY, image=image, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("listen", ["tcp", "pty"])
async def test_tls_client_reads_true_values(listen: str) -> None:
    meter = tls_meter()
    server = await (meter.serve_tcp("mep") if listen == "tcp" else meter.serve_pty("mep"))
    try:
        async with MeterClient(server.url, "mep", KEY, tls=True, enable_line="none", mep_timing=FAST_TLS) as client:
            identity = await client.identify()
            first = await client.read_snapshot()
            second = await client.read_snapshot()
            diagnostics = client.diagnostics()
    finally:
        await server.close()
    assert identity.utility_serial == SERIAL
    assert_true_values(first, meter)
    assert_true_values(second, meter)
    assert diagnostics["mep_security"] == "tls"
    assert client.stats.session_starts == 1 and client.stats.retries == 0
    assert meter.tls_port.handshakes == 1 and not meter.tls_port.active  # closed with TLS_TERMINATE
    assert meter.refused_digest_messages == 0


async def test_tls_client_with_the_mak() -> None:
    meter = tls_meter(mak=MeterKey.parse(MAK_TEXT))
    async with await meter.serve_tcp("mep") as server:
        client = MeterClient(
            server.url, "mep", MeterKey.parse(MAK_TEXT), tls=True, tls_key_id=KeyId.MAK, mep_timing=FAST_TLS
        )
        async with client:
            snapshot = await client.read_snapshot()
    assert_true_values(snapshot, meter)


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "rc4"])
@pytest.mark.parametrize("refusal", ["signed", "bare-0a", "bare-01"])
async def test_plain_or_rc4_read_of_a_tls_meter_names_tls(encrypt: bool, refusal: str) -> None:
    meter = tls_meter(refusal=refusal)
    async with await meter.serve_tcp("mep") as server:
        with pytest.raises(TlsRequiredError) as info:
            async with client_for(server, "mep", encrypt=encrypt) as client:
                await client.identify()
    message = str(info.value)
    assert "requires TLS" in message and "TLS option" in message
    assert isinstance(info.value, ResponseError) and info.value.code == 0x0A
    assert meter.refused_digest_messages >= 1
    assert client.stats.errors.get("timeout", 0) == 0  # an answer, not "no reply"


async def test_one_bare_tls_style_reply_is_not_enough() -> None:
    """A lone unsigned 00 01 0A may be a damaged frame: the next (good) reply is taken."""
    meter = frozen_meter()
    async with await meter.serve_tcp("mep") as server:
        client = client_for(server, "mep")
        async with client:
            session = client._session
            link = client._link
            real_write = link.write
            calls = 0

            def write(frame: bytes) -> None:
                nonlocal calls
                calls += 1
                if calls == 1:  # the meter "answers" the first request with a bare 0A
                    link.unread(b"\x00\x01\x0a")
                    return
                real_write(frame)

            link.write = write  # type: ignore[method-assign]
            data = await session.read(1, 0, 4)
    assert data == b"NES "
    assert client.stats.errors["tls_style_reply"] == 1


async def test_probe_finds_mep_on_a_tls_meter() -> None:
    for refusal in ("signed", "bare-0a"):
        async with await tls_meter(refusal=refusal).serve_tcp("mep") as server:
            assert await probe_transport(server.url) == "mep"


def test_tls_option_limits() -> None:
    with pytest.raises(ValueError, match="optical port has no TLS"):
        MeterClient("socket://127.0.0.1:9", "ir", KEY, tls=True)
    with pytest.raises(ValueError, match="TLS or RC4"):
        MeterClient("socket://127.0.0.1:9", "mep", KEY, tls=True, encrypt=True)
    modes = [
        MeterClient("socket://127.0.0.1:9", "mep", KEY, **options).diagnostics()["mep_security"]  # type: ignore[arg-type]
        for options in ({}, {"encrypt": True}, {"tls": True})
    ]
    assert modes == ["plain", "rc4", "tls"]
    assert MeterClient("socket://127.0.0.1:9", "ir", KEY).diagnostics()["mep_security"] is None


async def test_a_plain_meter_read_with_tls_says_so() -> None:
    async with await SimulatedMeter(KEY).serve_tcp("mep") as server:
        with pytest.raises(Exception, match="does not speak MEP TLS"):
            async with MeterClient(server.url, "mep", KEY, tls=True, mep_timing=FAST_TLS):
                pass


# ---- the command line: simulate --tls in its own process, read in this one ----


def _start_simulator(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "nesmeter.cli", "simulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "TLS meter at socket://" in line, line
    return process, line.split()[-1]


def test_cli_read_tls_against_simulate_tls(capsys: pytest.CaptureFixture[str]) -> None:
    process, url = _start_simulator("--transport", "mep", "--tls", "--key", KEY_TEXT, "--mak", MAK_TEXT)
    try:
        read = ["read", "--transport", "mep", "--port", url, "--enable-line", "none"]
        assert cli.main([*read, "--key", KEY_TEXT, "--tls", "--json"]) == 0
        values = json.loads(capsys.readouterr().out)
        assert values["utility_serial"] == SERIAL and values["energy_import_wh"] >= 344180
        assert cli.main([*read, "--key", MAK_TEXT, "--tls", "--key-id", "mak", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["utility_serial"] == SERIAL

        assert cli.main([*read, "--key", KEY_TEXT]) == 1
        err = capsys.readouterr().err
        assert "requires TLS" in err and "--tls" in err
        assert cli.main([*read, "--key", KEY_TEXT, "--tls", "--encrypt"]) == 1
        assert "TLS or RC4" in capsys.readouterr().err
        assert cli.main([*read, "--key", KEY_TEXT, "--key-id", "mak"]) == 1
        assert "--key-id" in capsys.readouterr().err
    finally:
        process.terminate()
        process.wait(10)


def test_cli_simulate_refuses_tls_on_the_optical_port() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nesmeter.cli",
            "simulate",
            "--transport",
            "ir",
            "--tls",
            "--key",
            KEY_TEXT,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "no TLS" in result.stderr
