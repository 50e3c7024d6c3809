"""Shared fixtures of the library's tests: the simulated meter on loopback TCP, the protocol vectors.

No Home Assistant here: these tests run in a venv with only the wheel and its test tools.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from nesmeter import MeterKey
from nesmeter.sim.simulator import SimServer, SimulatedMeter

# The shared protocol references beside the clone (/work/shared/protocol), when present.
SHARED = Path(__file__).resolve().parents[3] / "shared" / "protocol"
VECTORS = Path(__file__).resolve().parent / "vectors"
KEY_TEXT = "a7941d85bce8a8fa2ab7"
KEY = MeterKey.parse(KEY_TEXT)
SERIAL = "5712345678"


def load_vectors(name: str) -> dict[str, Any]:
    """The protocol vectors; a copy ships in lib/tests/vectors so a clone tests on its own."""
    path = VECTORS / name
    return json.loads(path.read_text())


@pytest.fixture(autouse=True)
def loopback_sockets(request: pytest.FixtureRequest) -> None:
    """The simulator listens on 127.0.0.1: where pytest-socket blocks sockets (Home Assistant's
    test plugin, when the root suite runs these tests too), loopback is let through again."""
    with contextlib.suppress(pytest.FixtureLookupError):  # no pytest-socket: nothing is blocked
        request.getfixturevalue("socket_enabled")


@pytest.fixture
def meter() -> SimulatedMeter:
    return SimulatedMeter(KEY)


@pytest.fixture
async def mep_server(meter: SimulatedMeter) -> AsyncIterator[SimServer]:
    server = await meter.serve_tcp("mep")
    yield server
    await server.close()


@pytest.fixture
async def ir_server(meter: SimulatedMeter) -> AsyncIterator[SimServer]:
    server = await meter.serve_tcp("ir")
    yield server
    await server.close()
