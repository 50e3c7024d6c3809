"""The simulated meter's table image: real captured replies plus the guides' layouts.

BT28 starts as the public MEP dump of a 3-phase fw 3.7x meter (55 present values), BT23
and the identity tables as the optical captures (11 summations, 4 tiers). Values then
evolve: power follows a slow deterministic curve and the energy registers integrate it,
so energy rises consistently with power.
"""

from __future__ import annotations

from datetime import UTC, datetime
import math
import struct
import time
from typing import Final

from . import tables
from .snapshot import STANDARD_PRESENT_ORDER

# Real captured replies (see protocol/mep_vectors.json and protocol/ir_vectors.json).
CAPTURED_BT28: Final = bytes.fromhex(
    "af010000000000000000000021020000be0700000e03000054030000db7b0300e9740300067c0300c502000050c30000"
    "360300004e0100000c0100003cfeffff69fcffff64fcffffaf01000000000000000000002102000000000000000000000000"
    "000021020000410100003b00000034000000000000000000000000000000410100003b0000003400000000000000000000"
    "0000000000bc0700000303000053030000947b0300bb750300ea7b0300b47c030034770300a9720300af010000000000004101"
    "00003b00000034000000000000000000000000000000"
)
CAPTURED_BT23_HEAD: Final = bytes.fromhex("744005009f1d0000")
BT00_IMAGE: Final = bytes.fromhex(
    "022a884e4553200200ff0c01000a0d020c04028b01f0140000100000000808000000008800000000"
    "000000000000000000000000000000008000000000000000000000000000000000000000000000"
)
BT01_IMAGE: Final = bytes.fromhex("4e4553203833333334202020300038d50000001234567890")
BT21_IMAGE: Final = bytes.fromhex("030c000b000000040037")
ET11_IMAGE: Final = bytes.fromhex("05422405060502010300")
DEFAULT_SERIAL: Final = "5712345678"
PHASE_SHARE: Final = (321 / 432, 59 / 432, 52 / 432)


class MeterImage:
    """Table bytes by table id, with live values derived from a simple load model."""

    def __init__(self, *, utility_serial: str = DEFAULT_SERIAL, start: float | None = None, speed: float = 1.0) -> None:
        self.speed = speed
        self._t0 = time.monotonic() if start is None else start
        self._last = self._t0
        self.import_wh = float(struct.unpack_from("<i", CAPTURED_BT23_HEAD, 0)[0])
        self.export_wh = float(struct.unpack_from("<i", CAPTURED_BT23_HEAD, 4)[0])
        self.reactive_import_varh = 12_000.0
        self.reactive_export_varh = 30_000.0
        self.alert_flags = 0
        et03 = utility_serial.encode("ascii")[:29].ljust(143, b"\x00")
        self.tables: dict[int, bytearray] = {
            tables.BT00: bytearray(BT00_IMAGE),
            tables.BT01: bytearray(BT01_IMAGE),
            tables.BT21: bytearray(BT21_IMAGE),
            tables.BT22: bytearray(bytes(range(11))),
            tables.BT23: bytearray(220),
            tables.BT27: bytearray(STANDARD_PRESENT_ORDER[:55]),
            tables.BT28: bytearray(CAPTURED_BT28),
            tables.BT52: bytearray(7),
            tables.ET03: bytearray(et03),
            tables.ET11: bytearray(ET11_IMAGE),
            tables.ET13: bytearray(6 * 66),
        }
        self.update(self._t0)

    def power_w(self, elapsed: float) -> tuple[float, float]:
        """(import, export) W: a day-like curve compressed to a 10-minute period."""
        phase = 2 * math.pi * elapsed / 600
        net = 900 + 1500 * math.sin(phase) + 300 * math.sin(phase * 7.3)
        return (max(net, 0.0), max(-net, 0.0))

    def update(self, now: float | None = None) -> None:
        """Advance the model to ``now`` (monotonic seconds) and rewrite BT23/BT28/BT52."""
        now = time.monotonic() if now is None else now
        dt = max(0.0, now - self._last) * self.speed
        self._last = now
        p_import, p_export = self.power_w((now - self._t0) * self.speed)
        self.import_wh += p_import * dt / 3600
        self.export_wh += p_export * dt / 3600
        self.reactive_export_varh += 0.2 * p_import * dt / 3600
        self._write_bt23()
        self._write_bt28(p_import, p_export)
        self._write_bt52()

    def _write_bt23(self) -> None:
        summations = [0] * 11
        summations[0] = int(self.import_wh)
        summations[1] = int(self.export_wh)
        summations[2] = int(self.reactive_import_varh)
        summations[3] = int(self.reactive_export_varh)
        summations[4] = 3608
        summations[5] = 14
        summations[6] = summations[0] + summations[1]
        summations[7] = max(0, summations[0] - summations[1])
        struct.pack_into("<11i", self.tables[tables.BT23], 0, *summations)
        # Tier 0 carries everything (single-tariff meter); other tiers stay zero.
        struct.pack_into("<4i", self.tables[tables.BT23], 44, *summations[:4])

    def _write_bt28(self, p_import: float, p_export: float) -> None:
        values = list(struct.unpack_from("<55i", CAPTURED_BT28, 0))
        volts = values[7:10]
        phase_import = [round(p_import * share) for share in PHASE_SHARE]
        phase_export = [round(p_export * share) for share in PHASE_SHARE]
        total_import, total_export = sum(phase_import), sum(phase_export)
        currents = [
            round(1e6 * (pi + pe) / v / 0.95) for pi, pe, v in zip(phase_import, phase_export, volts, strict=True)
        ]
        values[0], values[1] = total_import, total_export
        values[18], values[19] = total_import, total_export
        values[4:7] = currents
        values[12] = round(sum(c * v for c, v in zip(currents, volts, strict=True)) / 1e6)
        values[26:29] = phase_import
        values[29:32] = phase_export
        values[32:35] = phase_import
        values[35:38] = phase_export
        values[38:41] = currents
        values[47], values[48] = total_import, total_export
        values[49:52] = phase_import
        values[52:55] = phase_export
        struct.pack_into("<55i", self.tables[tables.BT28], 0, *values)

    def _write_bt52(self) -> None:
        now = datetime.now(UTC)
        weekday = (now.weekday() + 1) % 7
        self.tables[tables.BT52][:] = bytes(
            [now.year - 2000, now.month, now.day, now.hour, now.minute, now.second, weekday | 0x10]
        )

    def set_alert_flags(self, flags: int) -> None:
        self.alert_flags = flags
        self.tables[tables.ET13][4 * 66 + 8] = flags

    def read(self, table_id: int, offset: int, count: int) -> bytes | None:
        """Table bytes; past the end zero-filled like NES meters; None if no such table."""
        table = self.tables.get(table_id)
        if table is None:
            return None
        if table_id in (tables.BT23, tables.BT28, tables.BT52):
            self.update()
        data = bytes(table[offset : offset + count])
        return data.ljust(count, b"\x00")

    def size(self, table_id: int) -> int | None:
        table = self.tables.get(table_id)
        return None if table is None else len(table)
