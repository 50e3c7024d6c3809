"""ESPHome serial proxy URLs: which the link accepts, and how they are shown (no aioesphomeapi needed)."""

from __future__ import annotations

import pytest

from nesmeter import InvalidPortError, validate_port
from nesmeter.link.transport import describe_port

NOISE_KEY = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="


@pytest.mark.parametrize(
    "url",
    [
        "esphome://meter-proxy.local:6053?port_name=mep&key=abc",
        "esphome://10.0.0.7?port_name=mep",
        "esphome-hass://esphome/01JABCDEF?port_name=mep",
        "esphome-hass://esphome/01JABCDEF?port_udev_id=usb-FTDI_FT232R_A1",
    ],
)
def test_proxy_urls_are_accepted(url: str) -> None:
    assert validate_port(url) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("esphome://meter-proxy.local:6053", "port_name"),
        ("esphome://?port_name=mep", "host"),
        ("esphome-hass://esphome/?port_name=mep", "entry id"),
    ],
)
def test_incomplete_proxy_urls_are_refused(url: str, problem: str) -> None:
    with pytest.raises(InvalidPortError, match=problem):
        validate_port(url)


def test_the_noise_key_is_redacted_in_descriptions() -> None:
    shown = describe_port(f"esphome://host:6053?port_name=mep&key={NOISE_KEY}")
    assert NOISE_KEY not in shown and "port_name=mep" in shown and "key=REDACTED" in shown
