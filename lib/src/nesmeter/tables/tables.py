"""Typed decoders for the ANSI C12.19 / NES tables a home user needs.

Every table field is little-endian (BT00.0 bit 0 = 0) except the packed version words of
BT01. Decoders take the bytes read (full or partial) and raise ``DecodeError`` when the
data is too short or nonsensical; nothing else escapes. Layouts: ``protocol/MEP.md`` §14
and §15, ``protocol/IR.md`` §7.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
import struct
from typing import Final

from nesmeter.errors import DecodeError, UnsupportedMeterError

# Table identifiers (manufacturer tables are 0x0800 + n).
BT00: Final = 0
BT01: Final = 1
BT20: Final = 20
BT21: Final = 21
BT22: Final = 22
BT23: Final = 23
BT27: Final = 27
BT28: Final = 28
BT52: Final = 52
BT55: Final = 55
BT61: Final = 61  # load profile: actual dimensions
BT62: Final = 62  # load profile: channel sources
BT63: Final = 63  # load profile: status
BT64: Final = 64  # load profile data, data set 1 (BT65-BT67: sets 2-4)
ET03: Final = 0x0800 + 3
ET11: Final = 0x0800 + 11
ET13: Final = 0x0800 + 13
ET21: Final = 0x0800 + 21  # load profile internal configuration
ET55: Final = 0x0800 + 55
ET70: Final = 0x0800 + 70

NI_FORMAT_INT32: Final = 8


def _need(data: bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise DecodeError(f"{what}: {len(data)} bytes, need {size}")


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("ascii", "replace").strip()


def _int32s(data: bytes, offset: int, count: int) -> tuple[int, ...]:
    return struct.unpack_from(f"<{count}i", data, offset)


# ---- BT00 ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeneralConfig:
    """BT00: formats the other tables use; we only accept what NES meters send."""

    little_endian: bool
    char_format: int
    ni_format1: int
    ni_format2: int
    device_class: str
    nameplate_type: int
    std_version: int
    std_revision: int


def check_data_format(config: GeneralConfig) -> None:
    """Refuse a meter whose numbers the decoders would misread (they assume LE INT32)."""
    if not config.little_endian:
        raise UnsupportedMeterError("the meter reports big-endian table data (BT00); only little-endian is supported")
    for name, value in (("NI_FORMAT1", config.ni_format1), ("NI_FORMAT2", config.ni_format2)):
        if value != NI_FORMAT_INT32:
            raise UnsupportedMeterError(f"the meter reports {name} = {value} (BT00); only INT32 (8) is supported")


def decode_bt00(data: bytes) -> GeneralConfig:
    """Decode BT00, the general configuration: the data formats every other table uses."""
    _need(data, 13, "BT00")
    return GeneralConfig(
        little_endian=not data[0] & 0x01,
        char_format=(data[0] >> 1) & 0x07,
        ni_format1=data[2] & 0x0F,
        ni_format2=data[2] >> 4,
        device_class=_text(data[3:7]),
        nameplate_type=data[7],
        std_version=data[11],
        std_revision=data[12],
    )


# ---- BT01 ------------------------------------------------------------------------


def format_version(word: int) -> str:
    """Format a packed ``x.yy.zz`` version word: bits 15-12, 11-5, 4-0 (3.10.21 = 0x3155)."""
    return f"{word >> 12}.{(word >> 5) & 0x7F:02d}.{word & 0x1F:02d}"


@dataclass(frozen=True, slots=True)
class ManufacturerInfo:
    """BT01: who made the meter and what it runs."""

    manufacturer: str
    model: str
    hardware_version: str
    firmware_version: str
    firmware_word: int
    manufacturer_serial: str | None


def decode_bt01(data: bytes) -> ManufacturerInfo:
    """Decode BT01: manufacturer, model, versions and the manufacturer serial number."""
    _need(data, 16, "BT01")
    hardware, firmware = struct.unpack_from(">HH", data, 12)
    serial = data[16:24].hex() if len(data) >= 24 else None
    return ManufacturerInfo(
        manufacturer=_text(data[0:4]),
        model=_text(data[4:12]),
        hardware_version=format_version(hardware),
        firmware_version=format_version(firmware),
        firmware_word=firmware,
        manufacturer_serial=serial,
    )


# ---- BT21 / BT22 / BT27: dimensions and selections -------------------------------


@dataclass(frozen=True, slots=True)
class RegisterDimensions:
    """BT21: how BT23 and BT28 are laid out on this meter."""

    flags1: int
    flags2: int
    self_reads: int
    summations: int
    demands: int
    coincident_values: int
    occurrences: int
    tiers: int
    present_demands: int
    present_values: int

    @property
    def has_demand_reset_counter(self) -> bool:
        """Whether BT23 starts with the demand reset counter."""
        return bool(self.flags1 & 0x04)

    @property
    def has_time_remaining(self) -> bool:
        """Whether present demands carry a time remaining."""
        return bool(self.flags1 & 0x40)

    @property
    def demand_record_size(self) -> int:
        """The bytes of one demand record in BT23 (BT21's flags and occurrences decide)."""
        size = 4 * self.occurrences
        if self.flags1 & 0x02:
            size += 5 * self.occurrences
        if self.flags1 & 0x10:
            size += 4
        if self.flags1 & 0x20:
            size += 4
        return size

    @property
    def summations_offset(self) -> int:
        """Where the summations start in BT23."""
        return 1 if self.has_demand_reset_counter else 0

    @property
    def register_block_size(self) -> int:
        """Size of BT23's total block (and of each tier block)."""
        return (
            4 * self.summations + self.demands * self.demand_record_size + self.coincident_values * 4 * self.occurrences
        )

    @property
    def bt23_size(self) -> int:
        """BT23's size: the total block and one block per tier."""
        return self.summations_offset + self.register_block_size * (1 + self.tiers)

    @property
    def present_values_offset(self) -> int:
        """Where the present values start in BT28, after the present demands."""
        return (4 + (3 if self.has_time_remaining else 0)) * self.present_demands

    @property
    def bt28_size(self) -> int:
        """BT28's size."""
        return self.present_values_offset + 4 * self.present_values

    @property
    def bt27_size(self) -> int:
        """BT27's size: one source id per present demand and value."""
        return self.present_demands + self.present_values


def decode_bt21(data: bytes) -> RegisterDimensions:
    """BT21, or BT20 (same layout) on firmware 2.x meters that have no BT21."""
    _need(data, 10, "BT21")
    dims = RegisterDimensions(*data[:10])
    if dims.summations == 0 and dims.present_values == 0:
        raise DecodeError("BT21 lists no summations and no present values")
    return dims


@dataclass(frozen=True, slots=True)
class PresentSelection:
    """BT27: the source id of each BT28 present demand and present value."""

    demand_sources: tuple[int, ...]
    value_sources: tuple[int, ...]


def decode_bt27(data: bytes, dims: RegisterDimensions) -> PresentSelection:
    """Decode BT27: which source each present demand and value is."""
    _need(data, dims.bt27_size, "BT27")
    return PresentSelection(
        demand_sources=tuple(data[: dims.present_demands]),
        value_sources=tuple(data[dims.present_demands : dims.bt27_size]),
    )


@dataclass(frozen=True, slots=True)
class DataSelection:
    """BT22: the source id of each BT23 summation (and demand)."""

    summation_sources: tuple[int, ...]
    demand_sources: tuple[int, ...]


def decode_bt22(data: bytes, dims: RegisterDimensions) -> DataSelection:
    """Decode BT22: which source each summation and demand is."""
    size = dims.summations + dims.demands
    _need(data, size, "BT22")
    return DataSelection(
        summation_sources=tuple(data[: dims.summations]),
        demand_sources=tuple(data[dims.summations : size]),
    )


# ---- BT23 / BT28: registers and present values ------------------------------------


def decode_bt23_summations(data: bytes, dims: RegisterDimensions, count: int | None = None) -> tuple[int, ...]:
    """Decode the first ``count`` summations of BT23's total block (all by default)."""
    wanted = dims.summations if count is None else min(count, dims.summations)
    start = dims.summations_offset
    _need(data, start + 4 * wanted, "BT23")
    return _int32s(data, start, wanted)


def decode_bt28(data: bytes, dims: RegisterDimensions, count: int | None = None) -> tuple[int, ...]:
    """Decode the first ``count`` present values of BT28 (all by default), signed 32-bit."""
    wanted = dims.present_values if count is None else min(count, dims.present_values)
    start = dims.present_values_offset
    _need(data, start + 4 * wanted, "BT28")
    return _int32s(data, start, wanted)


# ---- Clocks ----------------------------------------------------------------------


def decode_ltime_date(data: bytes, offset: int = 0, size: int = 6) -> datetime:
    """LTIME_DATE: YY MM DD hh mm ss, year 2000 + YY (``size`` 5: STIME_DATE, no seconds)."""
    _need(data, offset + size, "STIME_DATE" if size == 5 else "LTIME_DATE")
    fields = data[offset : offset + size]
    try:
        return datetime(2000 + fields[0], *fields[1:])
    except ValueError as err:
        raise DecodeError(f"invalid date/time in table data: {err}") from None


def encode_time_date(when: datetime | None, size: int = 6) -> bytes:
    """Encode a time as the two decoders read it (the simulator writes it): ``None`` is the all-zero "never"."""
    if when is None:
        return bytes(size)
    return bytes([when.year - 2000, when.month, when.day, when.hour, when.minute, when.second][:size])


def optional_time_date(data: bytes, offset: int, size: int) -> datetime | None:
    """STIME_DATE (5 bytes) or LTIME_DATE (6), naive: None when all zero ("never") or not a real date.

    For stamps of things that may not have happened (a last sag, a maximum demand): a
    meter leaves them zero, and a bad one must cost that value, not the table.
    """
    _need(data, offset + size, "STIME_DATE" if size == 5 else "LTIME_DATE")
    fields = data[offset : offset + size]
    if not any(fields):
        return None
    try:
        return datetime(2000 + fields[0], *fields[1:])
    except ValueError:
        return None


def decode_bt52(data: bytes) -> datetime:
    """BT52: the meter's UTC clock (never DST or time-zone adjusted)."""
    _need(data, 7, "BT52")
    return decode_ltime_date(data).replace(tzinfo=UTC)


# ---- Manufacturer tables ---------------------------------------------------------


def decode_et03(data: bytes) -> str:
    """ET03: the utility serial number, a NUL-terminated CHAR[30]."""
    _need(data, 1, "ET03")
    serial = _text(data[:30])
    if not serial or not serial.isprintable():
        raise DecodeError("ET03 holds no utility serial number")
    return serial


ET13_ALERT_FLAG_NAMES: Final = {
    0: "scheduled_read_request",
    1: "on_demand_request",
    3: "mbus_change",
    4: "delta_data_alert",
}


def energy_register_unit_offset(max_tiers: int, firmware_major: int) -> int:
    """ET55 offset of the Energy Register Unit: A + 39 with A after the step-tariff array.

    A = 146 + 4 * (BT20.7 - 1) on firmware 3.x, 147 + ... on 4.x (guide p.155-158).
    """
    base = 147 if firmware_major >= 4 else 146
    return base + 4 * max(0, max_tiers - 1) + 39


ENERGY_REGISTER_UNITS: Final = (1, 10, 100)


def decode_energy_register_unit(data: bytes) -> int:
    """ET55.A+39: Wh/varh per register count; 0 (never set) means 1."""
    _need(data, 1, "ET55")
    unit = data[0] or 1
    if unit not in ENERGY_REGISTER_UNITS:
        raise DecodeError(f"ET55 energy register unit {unit} is not 1, 10 or 100")
    return unit


def decode_mep_client_index(data: bytes) -> int:
    """ET70.142, Gen 4: 1 when this port is MEP1, 2 when MEP2 (guide p.173-174)."""
    _need(data, 1, "ET70")
    return 2 if data[0] == 2 else 1


def alert_flags_offset(et11: bytes, mep_client: int = 1) -> int:
    """Offset of a MEP client's Alert Flags byte in ET13 (ET11.1 = ET13 entry size)."""
    _need(et11, 2, "ET11")
    entry = et11[1]
    return (4 if mep_client == 1 else 5) * entry + 8


def decode_alert_flags(flags: int) -> tuple[str, ...]:
    """Return the names of the set ET13 alert flags."""
    return tuple(name for bit, name in ET13_ALERT_FLAG_NAMES.items() if flags & (1 << bit))
