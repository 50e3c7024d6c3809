"""The same optical-port poll done by termineter, the independent C12.18 client.

termineter is used the way its users run it from a script or Node-RED: one session per
poll (identify, negotiate, logon, security, read BT23 and BT28, logoff, terminate).
For comparison it is also timed reading the two tables inside an already open session.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from c1218.connection import Connection
import serial

from custom_components.nes_meter.meter import tables
from custom_components.nes_meter.meter.simulator import SimulatedMeter

from .wire import IDLE_BETWEEN_POLLS, KEY, KEY_TEXT, TURNAROUND

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


async def measure(cycles: int) -> dict[str, Any]:
    meter = SimulatedMeter(KEY, pace=True, turnaround=TURNAROUND)
    server = await meter.serve_tcp("ir")
    try:
        per_poll = await asyncio.to_thread(_session_per_poll, server.url, cycles)
        reads = await asyncio.to_thread(_reads_only, server.url, cycles)
    finally:
        await server.close()
    return {
        "median_s": round(statistics.median(per_poll), 4),
        "reads_only_median_s": round(statistics.median(reads), 4),
        "cycles": cycles,
    }
