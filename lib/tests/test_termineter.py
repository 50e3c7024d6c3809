"""An independent C12.18 client, termineter, reads our IR simulator (and so checks our framing)."""

from __future__ import annotations

import asyncio
import struct

from c1218.connection import Connection

from benchmarks.termineter_cycle import SERIAL_SETTINGS
from nesmeter.sim.simulator import SimServer, SimulatedMeter
from nesmeter.tables import tables

from .conftest import KEY_TEXT


def _termineter_reads(url: str) -> dict[int, bytes]:
    connection = Connection(url, c1218_settings={"pktsize": 64, "nbrpkts": 2}, serial_settings=SERIAL_SETTINGS)
    try:
        assert connection.start()
        assert connection.login(username="0000", userid=1, password=KEY_TEXT)
        return {table: connection.get_table_data(table) for table in (tables.BT01, tables.BT23, tables.BT28)}
    finally:
        connection.stop()
        connection.close()


async def test_termineter_reads_bt01_bt23_bt28(ir_server: SimServer, meter: SimulatedMeter) -> None:
    data = await asyncio.to_thread(_termineter_reads, ir_server.url)
    info = tables.decode_bt01(data[tables.BT01])
    assert (info.manufacturer, info.model, info.firmware_version) == ("NES", "83334", "3.70.21")
    assert len(data[tables.BT23]) == 220
    assert len(data[tables.BT28]) == 220  # multi-packet replies reassembled by termineter
    import_wh, export_wh = struct.unpack_from("<2i", data[tables.BT23])
    assert import_wh >= 344180
    assert export_wh == 7583
    voltages = struct.unpack_from("<3i", data[tables.BT28], 28)
    assert voltages == (228315, 226537, 228358)
    assert meter.stats.requests >= 6
