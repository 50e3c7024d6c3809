"""The simulated meter's table image: real captured replies plus the guides' layouts.

BT28 starts as the public MEP dump of a 3-phase fw 3.7x meter (55 present values), BT23
and the identity tables as the optical captures (11 summations, 4 tiers). Values then
evolve: power follows a slow deterministic curve and the energy registers integrate it,
so energy rises consistently with power. BT23 and BT28 are written from the image's own
BT21/BT22/BT27 (by source id, like a meter), so a meter variant only changes those and
the model's CT ratio and energy register unit.
"""

from __future__ import annotations

from datetime import UTC, datetime
import math
import struct
import time
from typing import Final

from nesmeter.sim.sim_billing import TABLE_IDS as BILLING_TABLES, SimBilling
from nesmeter.sim.sim_events import TABLE_IDS as EVENT_TABLES, SimEventLog
from nesmeter.sim.sim_host import ENERGY_SUMMATIONS
from nesmeter.sim.sim_load_profile import TABLE_IDS as LOAD_PROFILE_TABLES, SimLoadProfile
from nesmeter.sim.sim_power_quality import SimPowerQuality
from nesmeter.tables import tables
from nesmeter.tables.snapshot import STANDARD_PRESENT_ORDER

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
BT20_IMAGE: Final = bytes.fromhex("030c000b000000040054")  # limits: 4 tiers, up to 84 present values
# ET11, the MFG dimension table (G p.77-80), as a Gen 3 meter on firmware 3.50+ has it: ET11.0-31,
# every field at the guide's value, 2-byte fields little-endian (as the guide's own example reply).
ET11_IMAGE: Final = (
    bytes([5, 66, 36, 5, 6])  # devices (1 MEP client + 4 M-Bus), ET13/ET14 entry sizes, ET15 queue, entry
    + struct.pack("<HHH", 517, 896, 1785)  # ET16 entry, transaction request (fw 3.50+) and response
    + bytes([25, 16, 22, 0, 0, 0, 0])  # on-demand write entry, phase data, ET34 entry; 14-17 reserved
    + bytes([10, 10, 65, 120, 6, 10, 10, 16, 80, 10])  # 18-27: group ids ... delta data alert sources
    + struct.pack("<HH", 261, 769)  # 28/30: RAM-only transaction request and response lengths
)
# Firmware 4.0+ (Gen 4) adds 32-37: reserved 6 and 7, the MEP channel count (34), reserved 10 and
# UINT16 1250 (4.30+ adds 38, the error/caution screen count; no simulated firmware is that new).
# Gen 4 has 6 devices (2 MEP clients).
ET11_FW4_TAIL: Final = bytes([6, 7, 2, 10]) + struct.pack("<H", 1250)
DEFAULT_SERIAL: Final = "5712345678"
PHASE_SHARE: Final = (321 / 432, 59 / 432, 52 / 432)
ET55_SIZE: Final = 260
CAPTURED_PRESENT: Final = dict(zip(STANDARD_PRESENT_ORDER, struct.unpack_from("<55i", CAPTURED_BT28), strict=False))


class MeterImage:
    """Table bytes by table id, with live values derived from a simple load model.

    ``ct_ratio`` models a CT meter: BT28's raw sources read low by the ratio, the
    post-ratio sources (81-84, 191-199) and BT23 carry the true values (guide p.207, p.215).
    ``energy_unit`` is ET55's Energy Register Unit: BT23 counts units of it.
    """

    def __init__(
        self,
        *,
        utility_serial: str = DEFAULT_SERIAL,
        start: float | None = None,
        speed: float = 1.0,
        ct_ratio: int = 1,
        energy_unit: int = 1,
        history_days: int = 7,
    ) -> None:
        """Build the image of a meter with ``utility_serial``; ``speed`` > 1 runs the model faster."""
        self.speed = speed
        self.ct_ratio = ct_ratio
        self.energy_unit = energy_unit
        self._t0 = time.monotonic() if start is None else start
        self._last = self._t0
        self.import_wh = float(struct.unpack_from("<i", CAPTURED_BT23_HEAD, 0)[0])
        self.export_wh = float(struct.unpack_from("<i", CAPTURED_BT23_HEAD, 4)[0])
        self.reactive_import_varh = 12_000.0
        self.reactive_export_varh = 30_000.0
        self.alert_flags = 0
        self.refused: dict[int, int] = {}  # table id -> the error code a read gets (C12.18 code)
        et03 = utility_serial.encode("ascii")[:29].ljust(143, b"\x00")
        self.tables: dict[int, bytearray] = {
            tables.BT00: bytearray(BT00_IMAGE),
            tables.BT01: bytearray(BT01_IMAGE),
            tables.BT20: bytearray(BT20_IMAGE),
            tables.BT21: bytearray(BT21_IMAGE),
            tables.BT22: bytearray(bytes(range(11))),
            tables.BT23: bytearray(220),
            tables.BT27: bytearray(STANDARD_PRESENT_ORDER[:55]),
            tables.BT28: bytearray(CAPTURED_BT28),
            tables.BT52: bytearray(7),
            tables.ET03: bytearray(et03),
            tables.ET11: bytearray(ET11_IMAGE),
            tables.ET13: bytearray(6 * 66),
            tables.ET55: bytearray(ET55_SIZE),
        }
        self.load_profile = SimLoadProfile(self, history_days=history_days)  # its tables come on first read
        self.events = SimEventLog(self)  # BT03, BT70, BT71, BT74
        self.billing = SimBilling(self)  # BT55, BT26, BT23 tier blocks and demand records
        self.power_quality = SimPowerQuality(self)  # ET04, ET09, ET23, ET29
        self.write_energy_unit()
        self.update(self._t0)

    @property
    def dimensions(self) -> tables.RegisterDimensions:
        """BT21 as it stands (BT20 on a meter without BT21)."""
        return tables.RegisterDimensions(*self.tables.get(tables.BT21, self.tables[tables.BT20])[:10])

    @property
    def elapsed(self) -> float:
        """Model seconds from the image's start to its last update."""
        return (self._last - self._t0) * self.speed

    def set_layout(self, bt21: bytes, *, value_sources: tuple[int, ...], demand_sources: tuple[int, ...] = ()) -> None:
        """Give the meter another register layout (BT21, BT27) and size BT23/BT28 to it."""
        self.tables[tables.BT21] = bytearray(bt21)
        dims = self.dimensions
        assert len(value_sources) == dims.present_values
        assert len(demand_sources) == dims.present_demands
        self.tables[tables.BT27] = bytearray(bytes(demand_sources) + bytes(value_sources))
        self.tables[tables.BT22] = bytearray(bytes(range(dims.summations)) + bytes(88 + d for d in range(dims.demands)))
        self.tables[tables.BT23] = bytearray(dims.bt23_size)
        self.tables[tables.BT28] = bytearray(dims.bt28_size)
        self.update()

    def write_et11(self) -> None:
        """ET11 as the firmware in BT01 has it: fields 32-37 and two MEP clients from 4.0 on."""
        et11 = bytearray(ET11_IMAGE)
        if self.tables[tables.BT01][14] >> 4 >= 4:
            et11[0] = 6
            et11 += ET11_FW4_TAIL
        self.tables[tables.ET11] = et11

    def write_energy_unit(self) -> None:
        """Write the energy register unit into ET55 at the offset BT20 and the firmware give."""
        limits = tables.RegisterDimensions(*self.tables[tables.BT20][:10])
        firmware_major = self.tables[tables.BT01][14] >> 4
        offset = tables.energy_register_unit_offset(limits.tiers, firmware_major)
        self.tables[tables.ET55][offset] = self.energy_unit

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
        self.load_profile.advance((now - self._t0) * self.speed)
        self.events.advance((now - self._t0) * self.speed)
        self.billing.advance((now - self._t0) * self.speed)

    def skip(self, seconds: float) -> None:
        """Let ``seconds`` of model time pass at once at the next update."""
        self._t0 -= seconds / self.speed
        self._last -= seconds / self.speed

    def _summation(self, source: int) -> int:
        energies = {
            0: self.import_wh,
            1: self.export_wh,
            2: self.reactive_import_varh,
            3: self.reactive_export_varh,
            6: self.import_wh + self.export_wh,
            7: max(0.0, self.import_wh - self.export_wh),
        }
        if source in ENERGY_SUMMATIONS:
            return int(energies.get(source, 0.0)) // self.energy_unit
        return {4: 3608, 5: 14}.get(source, 0)

    def _write_bt23(self) -> None:
        dims = self.dimensions
        table = self.tables[tables.BT23]
        sources = bytes(self.tables.get(tables.BT22, range(dims.summations)))[: dims.summations]
        total = [self._summation(source) for source in sources]
        start = dims.summations_offset
        if start:
            table[0] = 3  # demand resets so far
        block = dims.register_block_size
        struct.pack_into(f"<{len(total)}i", table, start, *total)
        # Demand and coincident records follow the summations: filled with a pattern so a
        # decoder that miscounts the layout reads nonsense instead of plausible zeros.
        tail = block - 4 * len(total)
        table[start + 4 * len(total) : start + block] = bytes([0xA5]) * tail
        if dims.tiers:
            # Tier 0 carries everything (single-tariff meter); other tiers stay zero.
            tier0 = [value if source in ENERGY_SUMMATIONS else 0 for value, source in zip(total, sources, strict=True)]
            struct.pack_into(f"<{len(tier0)}i", table, start + block, *tier0)

    def _present_values(self, p_import: float, p_export: float) -> dict[int, int]:
        """Present value by source id: the captured meter, moved by the load model."""
        values = dict(CAPTURED_PRESENT)
        volts = [values[15], values[16], values[17]]
        phase_import = [round(p_import * share) for share in PHASE_SHARE]
        phase_export = [round(p_export * share) for share in PHASE_SHARE]
        total_import, total_export = sum(phase_import), sum(phase_export)
        currents = [
            round(1e6 * (pi + pe) / v / 0.95) for pi, pe, v in zip(phase_import, phase_export, volts, strict=True)
        ]
        ratio = self.ct_ratio

        def raw(value: int) -> int:
            return round(value / ratio)

        values.update({8: raw(total_import), 9: raw(total_export), 81: total_import, 82: total_export})
        values.update(zip((12, 13, 14), map(raw, currents), strict=True))
        values.update(zip((197, 198, 199), currents, strict=True))
        values[20] = raw(round(sum(c * v for c, v in zip(currents, volts, strict=True)) / 1e6))
        values.update(zip((185, 186, 187, 188, 189, 190), map(raw, phase_import + phase_export), strict=True))
        values.update(zip((191, 192, 193, 194, 195, 196), phase_import + phase_export, strict=True))
        values.update({208: raw(total_import), 209: raw(total_export)})
        values.update(zip((210, 211, 212, 213, 214, 215), map(raw, phase_import + phase_export), strict=True))
        return values

    def _write_bt28(self, p_import: float, p_export: float) -> None:
        dims = self.dimensions
        values = self._present_values(p_import, p_export)
        selection = bytes(self.tables.get(tables.BT27, STANDARD_PRESENT_ORDER[: dims.present_values]))
        table = self.tables[tables.BT28]
        record = dims.present_values_offset // max(1, dims.present_demands)
        for index in range(dims.present_demands):  # [time remaining] + demand value
            table[index * record : (index + 1) * record] = bytes(record - 4) + struct.pack("<i", 1000 + index)
        sources = selection[dims.present_demands : dims.present_demands + dims.present_values]
        struct.pack_into(
            f"<{len(sources)}i", table, dims.present_values_offset, *(values.get(source, 0) for source in sources)
        )

    def _write_bt52(self) -> None:
        now = datetime.now(UTC)
        weekday = (now.weekday() + 1) % 7
        self.tables[tables.BT52][:] = tables.encode_time_date(now) + bytes([weekday | 0x10])

    def set_alert_flags(self, flags: int) -> None:
        """Raise alert conditions for the MEP client on this port (ET70.142 names it on Gen 4)."""
        self.alert_flags = flags
        et70 = self.tables.get(tables.ET70)
        mep_client = tables.decode_mep_client_index(bytes(et70[142:143])) if et70 else 1
        offset = tables.alert_flags_offset(bytes(self.tables[tables.ET11][:2]), mep_client)
        self.tables[tables.ET13][offset] = flags

    def read(self, table_id: int, offset: int, count: int) -> bytes | None:
        """Table bytes; past the end zero-filled like NES meters; None if no such table."""
        if table_id in LOAD_PROFILE_TABLES:
            self.load_profile.before_read(table_id)
        if table_id in EVENT_TABLES:
            self.events.before_read(table_id, offset)
        if table_id in BILLING_TABLES:
            self.update()
        table = self.tables.get(table_id)
        if table is None:
            return None
        if table_id in (tables.BT23, tables.BT28, tables.BT52):
            self.update()
        data = bytes(table[offset : offset + count])
        return data.ljust(count, b"\x00")

    def size(self, table_id: int) -> int | None:
        """Return a table's size (the load profile is built on first use); None if there is no such table."""
        if table_id in LOAD_PROFILE_TABLES:
            self.load_profile.ensure()
        table = self.tables.get(table_id)
        return None if table is None else len(table)
