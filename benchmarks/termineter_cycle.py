"""The same optical-port poll done by termineter, the independent C12.18 client.

termineter is used the way its users run it from a script or Node-RED: one session per
poll (identify, negotiate, logon, security, read BT23 and BT28, logoff, terminate).
For comparison it is also timed reading the two tables inside an already open session.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from c1218.connection import Connection
import serial

from nesmeter.tables import tables

from .common import IDLE_BETWEEN_POLLS, KEY_TEXT
from .simhost import SimHost

SERIAL_SETTINGS: dict[str, Any] = {
    "parity": serial.PARITY_NONE,
    "baudrate": 9600,
    "bytesize": serial.EIGHTBITS,
    "xonxoff": False,
    "interCharTimeout": None,
    "rtscts": False,
    "timeout": 1,
    "stopbits": serial.STOPBITS_ONE,
    "dsrdtr": False,
    "writeTimeout": None,
}
POLL_TABLES = (tables.BT23, tables.BT28)


def _connect(url: str) -> Connection:
    connection = Connection(url, c1218_settings={"pktsize": 512, "nbrpkts": 4}, serial_settings=SERIAL_SETTINGS)
    if not (connection.start() and connection.login(username="0000", userid=1, password=KEY_TEXT)):
        raise RuntimeError("termineter could not log on to the simulator")
    return connection


def _close(connection: Connection) -> None:
    connection.stop()
    connection.close()


def _session_per_poll(url: str, cycles: int) -> list[float]:
    durations = []
    for _ in range(cycles):
        time.sleep(IDLE_BETWEEN_POLLS)
        started = time.perf_counter()
        connection = _connect(url)
        for table in POLL_TABLES:
            connection.get_table_data(table)
        _close(connection)
        durations.append(time.perf_counter() - started)
    return durations


def _reads_only(url: str, cycles: int) -> list[float]:
    connection = _connect(url)
    durations = []
    try:
        for _ in range(cycles):
            time.sleep(IDLE_BETWEEN_POLLS)
            started = time.perf_counter()
            for table in POLL_TABLES:
                connection.get_table_data(table)
            durations.append(time.perf_counter() - started)
    finally:
        _close(connection)
    return durations


def measure(cycles: int) -> dict[str, Any]:
    """termineter against a paced simulated meter in its own process (the same as ours)."""
    with SimHost("ir:1", pace=True) as host:
        url = host.urls["ir"][0]
        per_poll = _session_per_poll(url, cycles)
        reads = _reads_only(url, cycles)
    return {
        "median_s": round(statistics.median(per_poll), 4),
        "reads_only_median_s": round(statistics.median(reads), 4),
        "cycles": cycles,
    }
