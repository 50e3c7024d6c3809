"""The link works the same with every serialx that manifest.json admits (nesmeter/link/serialx_compat.py).

scripts/test runs this with serialx 1.15.1 (floor, and the wheel check) and 1.11.0 (latest, what HA 2026.10 pins); the
tests that remove ``serialx.redact_uri`` take the 1.11.0 path on either.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
import re

import pytest
import serialx

from nesmeter.link import serialx_compat
from nesmeter.link.transport import describe_port

TRANSPORT = Path(serialx_compat.__file__).with_name("transport.py")

CASES = [
    ("/dev/serial/by-id/usb-FTDI_FT232R-if00-port0", "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"),
    ("COM3", "COM3"),
    ("socket://192.0.2.7:4001", "socket://192.0.2.7:4001"),
    ("socket://user:s3cret@192.0.2.7:4001", "socket://***@192.0.2.7:4001"),
    ("rfc2217://u:p/w@d@host:2217?baud=9600#x", "rfc2217://***@host:2217?baud=9600#x"),
    ("socket://host:1?password=a@b&x=1", "socket://host:1?password=REDACTED&x=1"),
    ("esphome://host?key=k1&noise_psk=abc%3D&port=0", "esphome://host?key=REDACTED&noise_psk=REDACTED&port=0"),
    ("socket://host?Pass%77ord=p&pass\tword=q&keys=1", "socket://host?Pass%77ord=REDACTED&pass\tword=REDACTED&keys=1"),
    ("socket://u:p@host?token=t#frag", "socket://***@host?token=REDACTED#frag"),
]


@pytest.fixture(params=["installed", "without_redact_uri"])
def serialx_version(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "without_redact_uri":  # serialx 1.11.0
        monkeypatch.setattr(serialx_compat, "_SERIALX_REDACT", None)
    return str(request.param)


@pytest.mark.parametrize(("port", "shown"), CASES)
def test_describe_port_is_the_same_on_every_version(serialx_version: str, port: str, shown: str) -> None:
    assert describe_port(port) == shown


@pytest.mark.skipif(not hasattr(serialx, "redact_uri"), reason="this serialx has no redact_uri")
@pytest.mark.parametrize("port", [port for port, _ in CASES])
def test_our_redaction_already_hides_what_serialx_hides(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setattr(serialx_compat, "_SERIALX_REDACT", None)
    ours = serialx_compat.redact_uri(port)
    assert serialx.redact_uri(ours) == ours


def test_the_library_uses_only_what_the_installed_serialx_has() -> None:
    """Every ``serialx.NAME`` the library uses exists in the installed version (1.11.0 on latest),
    and the one name that 1.11.0 lacks is reached through serialx_compat only."""
    package = TRANSPORT.parents[1]
    used = {
        (path.relative_to(package).as_posix(), name)
        for path in package.rglob("*.py")
        if path.name != "serialx_compat.py"
        for name in re.findall(r"\bserialx\.(\w+)", path.read_text())
    }
    assert ("link/transport.py", "create_serial_connection") in used
    assert not [where for where in used if where[1] == "redact_uri"]
    missing = sorted(where for where in used if not hasattr(serialx, where[1]))
    assert not missing, f"serialx {importlib.metadata.version('serialx')} lacks {missing}"
