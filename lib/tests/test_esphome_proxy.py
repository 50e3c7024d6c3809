"""The meter through an ESPHome serial proxy: serialx and aioesphomeapi against a test ESPHome device.

The device (nesmeter.sim.esphome_proxy) speaks the native API on 127.0.0.1, plaintext or Noise,
and wires its serial proxy ports to simulated meters. Skipped where aioesphomeapi is not
installed (the Home Assistant releases whose pins it does not fit: 2025.4, 2025.10).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
import logging

import pytest

pytest.importorskip("aioesphomeapi")

from nesmeter import (
    MeterClient,
    PortError,
    ProxyAuthError,
    ProxyOfflineError,
    ProxyPortNotFoundError,
)
from nesmeter.sim.esphome_proxy import DTR, RTS, EsphomeProxyDevice, ProxyPort
from nesmeter.sim.simulator import SimulatedMeter

from .conftest import KEY, KEY_TEXT, SERIAL
from .test_security import assert_secret_absent, run_cli

PSK = bytes(range(1, 33))
NOISE_KEY = base64.b64encode(PSK).decode()  # as ESPHome's YAML spells it (api: encryption: key:)
OTHER_KEY = base64.b64encode(bytes(32)).decode()


@pytest.fixture(params=["plaintext", "noise"])
async def device(request: pytest.FixtureRequest) -> AsyncIterator[EsphomeProxyDevice]:
    """A device with two proxies: "mep" wired to a meter's MEP port, "ir" to another's optical head."""
    ports = [ProxyPort("mep", SimulatedMeter(KEY), "mep"), ProxyPort("ir", SimulatedMeter(KEY), "ir")]
    async with EsphomeProxyDevice(ports, noise_psk=PSK if request.param == "noise" else None) as proxy:
        yield proxy


def _key(device: EsphomeProxyDevice) -> str | None:
    return NOISE_KEY if device.noise_psk is not None else None


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_the_client_reads_the_meter_through_the_proxy(device: EsphomeProxyDevice, transport: str) -> None:
    client = MeterClient(device.url(transport, key=_key(device)), transport, KEY)  # type: ignore[arg-type]
    async with client:
        identity = await client.identify()
        snapshot = await client.read_snapshot()
    assert identity.utility_serial == SERIAL
    assert snapshot.energy_import_wh is not None and snapshot.energy_import_wh > 0
    port = device.ports[0 if transport == "mep" else 1]
    assert port.baudrate == 9600
    assert port.bytes_written > 0


@pytest.mark.parametrize(("line", "bit"), [("rts", RTS), ("dtr", DTR)])
async def test_mep_asserts_enable_through_the_proxy_before_the_first_request(
    device: EsphomeProxyDevice, line: str, bit: int
) -> None:
    client = MeterClient(device.url("mep", key=_key(device)), "mep", KEY, enable_line=line)  # type: ignore[arg-type]
    async with client:
        await client.identify()
    port = device.ports[0]
    assert port.pins_at_first_write == bit  # the chosen line, and only it, was up before the first byte
    assert port.pin_changes[0] == bit


async def test_no_enable_line_leaves_the_proxy_pins_alone(device: EsphomeProxyDevice) -> None:
    client = MeterClient(device.url("mep", key=_key(device)), "mep", KEY, enable_line="none")
    async with client:
        await client.identify()
    assert device.ports[0].pin_changes == [] and device.ports[0].pins_at_first_write == 0


async def test_an_offline_proxy_is_told_apart(device: EsphomeProxyDevice) -> None:
    url = device.url("mep", key=_key(device))
    await device.stop_listening()
    with pytest.raises(ProxyOfflineError, match="cannot be reached"):
        async with MeterClient(url, "mep", KEY):
            pass


async def test_an_unknown_port_name_is_told_apart(device: EsphomeProxyDevice) -> None:
    with pytest.raises(ProxyPortNotFoundError, match="no such serial proxy port"):
        async with MeterClient(device.url("uart2", key=_key(device)), "mep", KEY):
            pass


@pytest.mark.parametrize("sent", ["wrong", "missing", "unexpected"])
async def test_a_refused_noise_key_is_told_apart_and_never_shown(sent: str) -> None:
    ports = [ProxyPort("mep", SimulatedMeter(KEY), "mep")]
    async with EsphomeProxyDevice(ports, noise_psk=None if sent == "unexpected" else PSK) as device:
        key = {"wrong": OTHER_KEY, "missing": None, "unexpected": NOISE_KEY}[sent]
        with pytest.raises(ProxyAuthError, match="encryption key") as info:
            async with MeterClient(device.url("mep", key=key), "mep", KEY):
                pass
    for secret in (NOISE_KEY, OTHER_KEY):
        assert secret not in str(info.value)
        assert secret.replace("=", "%3D") not in str(info.value)


async def test_a_proxy_lost_mid_session_fails_the_read_and_a_new_open_reads_again(device: EsphomeProxyDevice) -> None:
    client = MeterClient(device.url("mep", key=_key(device)), "mep", KEY)
    async with client:
        await client.identify()
        await device.drop_clients()
        with pytest.raises(PortError):
            await client.read_snapshot()
    async with client:
        assert (await client.identify()).utility_serial == SERIAL
    assert device.connections == 2


async def test_the_keys_stay_out_of_the_log(device: EsphomeProxyDevice, caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG, aioesphomeapi logs what it sends; the meter's password crosses the proxy in a write."""
    caplog.set_level(logging.DEBUG)
    for transport in ("mep", "ir"):
        async with MeterClient(device.url(transport, key=_key(device)), transport, KEY) as client:  # type: ignore[arg-type]
            await client.identify()
    assert "aioesphomeapi" in caplog.text or "serialx" in caplog.text  # they did log
    assert_secret_absent(caplog.text, "the log")
    assert NOISE_KEY not in caplog.text


async def test_the_command_line_reads_through_the_proxy(device: EsphomeProxyDevice) -> None:
    url = device.url("mep", key=_key(device))
    output = await run_cli("read", "--transport", "mep", "--port", url, "--key", KEY_TEXT)
    assert SERIAL in output and "energy_import" in output
    assert_secret_absent(output, "the CLI output")
    assert NOISE_KEY not in output
