"""The decoded reading the library hands out: SI units, clear names, ``None`` if absent.

BT28 values are mapped by their BT27 source id (the authoritative selection), so the
same code serves meters with 22 to 84 present values. Source ids: MEP guide p.204-207.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, Final

from nesmeter.tables.tables import RegisterDimensions

# source id -> (snapshot field, scale to SI)
PRESENT_SOURCES: Final[dict[int, tuple[str, float]]] = {
    8: ("power_import_w", 1),
    9: ("power_export_w", 1),
    10: ("reactive_power_import_var", 1),
    11: ("reactive_power_export_var", 1),
    12: ("current_l1_a", 1e-3),
    13: ("current_l2_a", 1e-3),
    14: ("current_l3_a", 1e-3),
    15: ("voltage_l1_v", 1e-3),
    16: ("voltage_l2_v", 1e-3),
    17: ("voltage_l3_v", 1e-3),
    18: ("power_factor_l1", 1e-3),
    19: ("frequency_hz", 1e-3),
    20: ("apparent_power_va", 1),
    21: ("power_factor_l2", 1e-3),
    22: ("power_factor_l3", 1e-3),
    104: ("reactive_power_q1_var", 1),
    105: ("reactive_power_q2_var", 1),
    106: ("reactive_power_q3_var", 1),
    107: ("reactive_power_q4_var", 1),
    185: ("power_import_l1_w", 1),
    186: ("power_import_l2_w", 1),
    187: ("power_import_l3_w", 1),
    188: ("power_export_l1_w", 1),
    189: ("power_export_l2_w", 1),
    190: ("power_export_l3_w", 1),
    208: ("average_power_import_w", 1),
    209: ("average_power_export_w", 1),
    232: ("current_neutral_a", 1e-3),
}

# Sources that already include the CT/VT ratios (guide p.215-217, source table p.204-205).
# BT28 values do not, unless stated: on a CT meter 8-14 and 185-190 are low by the
# ratio, so these take precedence over their raw twins whenever BT27 lists them.
POST_RATIO_SOURCES: Final[dict[int, tuple[str, float]]] = {
    81: ("power_import_w", 1),
    82: ("power_export_w", 1),
    83: ("reactive_power_import_var", 1),
    84: ("reactive_power_export_var", 1),
    191: ("power_import_l1_w", 1),
    192: ("power_import_l2_w", 1),
    193: ("power_import_l3_w", 1),
    194: ("power_export_l1_w", 1),
    195: ("power_export_l2_w", 1),
    196: ("power_export_l3_w", 1),
    197: ("current_l1_a", 1e-3),
    198: ("current_l2_a", 1e-3),
    199: ("current_l3_a", 1e-3),
}

# BT28 index -> source id for meters whose BT27 cannot be read (guide p.215-220).
STANDARD_PRESENT_ORDER: Final[tuple[int, ...]] = (
    *range(8, 26),  # 0-17: totals, currents, voltages, PF, frequency, VA, sin phi
    *range(81, 85),  # 18-21: totals after CT/VT ratios
    *range(104, 108),  # 22-25: reactive power Q1-Q4
    *range(185, 200),  # 26-40: per-phase power, post-CT values
    *range(202, 216),  # 41-54: continuous/average voltages, average powers
    *range(216, 245),  # 55-83: apparent power, neutral current, averages, angles, per-phase var
)

# BT22 summation source id -> (field, counts energy); energies are in units of the
# meter's Energy Register Unit (ET55, 1/10/100 Wh or varh; guide p.207, p.157-158).
SUMMATION_SOURCES: Final[dict[int, tuple[str, bool]]] = {
    0: ("energy_import_wh", True),
    1: ("energy_export_wh", True),
    2: ("reactive_energy_import_varh", True),
    3: ("reactive_energy_export_varh", True),
    4: ("power_outage_seconds", False),
    5: ("power_outage_count", False),
}

# What a decoded value is: (index in the table's value array, snapshot field, scale).
ValuePlan = tuple[tuple[int, str, float], ...]


@dataclass(slots=True)
class MeterSnapshot:
    """One poll's worth of values in SI units (Wh, W, var, V, A, Hz; PF as 0..1).

    A field is ``None`` when this poll did not read it: the caller did not want it
    (``MeterClient.set_wanted``), it was not due (``ReadSchedule``: energy registers may be
    read less often than the live values), or the meter does not have it. ``read_fields``
    names the fields read; ``MeterClient.available_fields`` those the meter has.
    """

    energy_import_wh: float | None = None
    energy_export_wh: float | None = None
    reactive_energy_import_varh: float | None = None
    reactive_energy_export_varh: float | None = None
    power_outage_seconds: float | None = None
    power_outage_count: float | None = None
    power_import_w: float | None = None
    power_export_w: float | None = None
    reactive_power_import_var: float | None = None
    reactive_power_export_var: float | None = None
    apparent_power_va: float | None = None
    frequency_hz: float | None = None
    voltage_l1_v: float | None = None
    voltage_l2_v: float | None = None
    voltage_l3_v: float | None = None
    current_l1_a: float | None = None
    current_l2_a: float | None = None
    current_l3_a: float | None = None
    current_neutral_a: float | None = None
    power_factor_l1: float | None = None
    power_factor_l2: float | None = None
    power_factor_l3: float | None = None
    power_import_l1_w: float | None = None
    power_import_l2_w: float | None = None
    power_import_l3_w: float | None = None
    power_export_l1_w: float | None = None
    power_export_l2_w: float | None = None
    power_export_l3_w: float | None = None
    reactive_power_q1_var: float | None = None
    reactive_power_q2_var: float | None = None
    reactive_power_q3_var: float | None = None
    reactive_power_q4_var: float | None = None
    average_power_import_w: float | None = None
    average_power_export_w: float | None = None
    meter_time: datetime | None = None
    alert_flags: tuple[str, ...] = field(default_factory=tuple)
    # The fields this poll read (or, for ``meter_time``, carried forward from a read); a
    # field outside it is None: not wanted, not due this poll, or not on this meter.
    read_fields: frozenset[str] = field(default_factory=frozenset)

    @property
    def power_net_w(self) -> float | None:
        """Import minus export: positive when the home draws from the grid."""
        if self.power_import_w is None or self.power_export_w is None:
            return None
        return self.power_import_w - self.power_export_w

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (times as ISO 8601)."""
        data = asdict(self)
        data["meter_time"] = self.meter_time.isoformat() if self.meter_time else None
        data["alert_flags"] = list(self.alert_flags)
        data["read_fields"] = sorted(self.read_fields)
        data["power_net_w"] = self.power_net_w
        return data


SNAPSHOT_FIELDS: Final = frozenset(f.name for f in fields(MeterSnapshot)) - {"read_fields"}


def scaled(raw: int, scale: float) -> float:
    """Return a register count in the field's unit, at the register's resolution.

    A count of milli-units is divided by 1000 rather than multiplied by 1e-3: the division
    gives the float nearest the decimal the meter holds (3296 mA is 3.296 A, where
    ``3296 * 1e-3`` is 3.2960000000000003), so JSON output and Home Assistant states show it.
    """
    if scale == 1:
        return raw
    if scale < 1:
        return raw / round(1 / scale)
    return raw * scale


def present_sources(dims: RegisterDimensions, selection: tuple[int, ...] | None) -> tuple[int, ...]:
    """Source id per BT28 value: BT27 when it was read, else the documented order."""
    if selection is not None and len(selection) >= dims.present_values:
        return selection[: dims.present_values]
    return STANDARD_PRESENT_ORDER[: dims.present_values]


def summation_sources(dims: RegisterDimensions, selection: tuple[int, ...] | None) -> tuple[int, ...]:
    """Source id per BT23 summation: BT22 when it was read, else the guide's fixed order."""
    if selection is not None and len(selection) >= dims.summations:
        return selection[: dims.summations]
    return tuple(range(dims.summations))


def summation_plan(sources: tuple[int, ...], energy_unit: int = 1) -> ValuePlan:
    """Which BT23 summation feeds each field, with the energy register unit applied."""
    plan = []
    for index, source in enumerate(sources):
        mapped = SUMMATION_SOURCES.get(source)
        if mapped is not None:
            name, is_energy = mapped
            plan.append((index, name, float(energy_unit) if is_energy else 1.0))
    return tuple(plan)
