"""Event ids of the NES/OSGP event log (BT74) and what their arguments say.

Neither OSGP guide lists the ids ("consult the documentation for your meter", G p.243). The
table below is reconciled from four independent sources and the OSGP firmware's own alarm
names; each id carries the tags of the sources that give it the meaning used here:

* ``U31``: Echelon's *ANSI Electric Meter v3.1 User's Guide* (078-0384-01), the event tables
  (pp.32-43), the sibling ANSI meter of the same platform.
* ``YUK``: Eaton/Cooper Yukon's NES event log decoder (``Mct440_213xBEventLog``): the
  standard table 0-50 and the manufacturer table 0-47 at offset 64 (ids 64-111), with
  argument layouts.
* ``EICT``: EnergyICT's NES protocol (``com.energyict.echelon``, ``EventConstants`` /
  ``EventMapper``, "all the events that exist in the NES system"), with argument values.
* ``C1219``: ANSI C12.19's standard event codes (as in termineter's ``c1219/constants.py``).
* ``BT03``: the OSGP optical guide's BT03 alarm bits (O pp.45-47): manufacturer bit ``n``
  is event ``64 + n`` up to 95 (the rule breaks above: bit 32 is unbalanced voltage, 96 an
  M-Bus status event). The name the OSGP firmware itself uses wins where sources disagree.

Where they disagree, ``other_meaning`` holds the other reading until a capture from an OSGP
meter settles it:

* 30/31: metering mode in C12.19, Yukon and OSGP's BT03 byte 0 (metering, test and meter
  shop mode are three modes there), test mode in U31; 32/33 test mode, 34/35 meter shop mode.
* 81/82/96: M-Bus alarm, M-Bus auto-discovery complete (BT03 bits 17/18, EICT) and M-Bus
  device status (EICT; Yukon's arguments name M-Bus devices 0-4); MEP in U31 and Yukon's names.
* 95/107: load-side voltage is BT03 bit 31 (firmware 3.30) and Yukon's 95; U31 puts it at
  107, which Yukon calls an M-Bus sniffer match.
* 70: PLC configuration failure (U31, EICT, BT03 bit 6), a serial port error in Yukon; 88:
  log dimension changed (U31, EICT, BT03 bit 24), an interface change in Yukon.

C12.19-2008 reuses 49 onwards for control points and credit; NES keeps 49 (data backup
incomplete: EICT, Yukon's "aborted save all", BT03 standard bit 14) and 50 (disconnect switch
error) as their own, and numbers its manufacturer events from 64 (no bit-11 flag).

:func:`decode_argument` turns an entry's argument into named details per these sources
(``phase``, ``voltage_v``, ``reset_cause``, ``firmware``, ``table``, ``state``, ``reason``,
...). It is pure, total (any id and argument) and returns only what it can name: a value no
source lists is left in the raw argument. Phases are ``L1``-``L3`` (the sources' A-C and
0-2, EICT's L1-L3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

Detail = str | int | bool | list[str]
Details = dict[str, Detail]


@dataclass(frozen=True, slots=True)
class EventId:
    """One event id: its name, the entity family it fires on, its sources, a disputed meaning."""

    name: str
    family: str
    sources: str  # space-separated tags, see the module docstring
    other_meaning: str | None = None


def _e(name: str, family: str, sources: str, other_meaning: str | None = None) -> EventId:
    return EventId(name, family, sources, other_meaning)


EVENT_IDS: Final[dict[int, EventId]] = {
    1: _e("power_down", "power", "U31 YUK EICT C1219"),
    2: _e("power_up", "power", "U31 YUK EICT C1219"),
    # Yukon's name table is shifted at 3-6; its argument decoders agree with the others.
    3: _e("time_changed_from", "clock", "U31 EICT C1219 YUK"),
    4: _e("time_changed_to", "clock", "U31 EICT C1219 YUK"),
    7: _e("read_access", "other", "U31 YUK C1219"),
    8: _e("write_access", "other", "U31 YUK EICT C1219"),
    9: _e("procedure_invoked", "other", "U31 YUK EICT C1219"),
    10: _e("table_written", "other", "U31 YUK EICT C1219"),
    11: _e("programmed", "meter", "U31 YUK C1219"),
    12: _e("communication_ended", "other", "YUK C1219"),
    13: _e("communication_aborted", "other", "YUK C1219"),
    14: _e("list_pointers_reset", "meter", "YUK EICT C1219"),
    15: _e("list_pointers_updated", "meter", "YUK EICT C1219"),
    16: _e("history_log_cleared", "meter", "YUK C1219"),
    17: _e("history_log_pointers_updated", "other", "YUK C1219"),
    18: _e("event_log_cleared", "meter", "YUK EICT C1219"),
    19: _e("event_log_pointers_changed", "meter", "YUK EICT C1219"),
    20: _e("demand_reset", "meter", "U31 YUK C1219"),
    21: _e("self_read", "meter", "U31 YUK EICT C1219"),
    22: _e("dst_on", "clock", "U31 YUK EICT C1219"),
    23: _e("dst_off", "clock", "U31 YUK EICT C1219"),
    24: _e("season_change", "meter", "U31 YUK EICT C1219"),
    25: _e("rate_change", "meter", "YUK C1219"),
    26: _e("special_schedule", "meter", "U31 YUK EICT C1219"),
    27: _e("tier_switch", "meter", "U31 YUK EICT C1219"),
    28: _e("pending_table_activated", "meter", "U31 YUK EICT C1219"),
    29: _e("pending_table_cleared", "meter", "U31 YUK EICT C1219"),
    30: _e("metering_mode_started", "meter", "YUK C1219 BT03", "test_mode_started"),
    31: _e("metering_mode_stopped", "meter", "YUK C1219 BT03", "test_mode_stopped"),
    32: _e("test_mode_started", "meter", "YUK C1219"),
    33: _e("test_mode_stopped", "meter", "YUK C1219"),
    34: _e("meter_shop_mode_started", "meter", "YUK C1219"),
    35: _e("meter_shop_mode_stopped", "meter", "YUK C1219"),
    36: _e("firmware_changed", "meter", "U31 YUK EICT C1219"),
    37: _e("configuration_error", "meter", "U31 YUK EICT C1219"),
    38: _e("system_reset", "meter", "U31 YUK EICT C1219 BT03"),  # C12.19, Yukon: self-check error
    39: _e("ram_failure", "meter", "U31 YUK EICT C1219"),
    40: _e("rom_failure", "meter", "U31 YUK EICT C1219"),
    41: _e("nvm_failure", "meter", "U31 YUK EICT C1219"),
    42: _e("clock_error", "clock", "U31 YUK EICT C1219"),
    43: _e("measurement_error", "meter", "U31 YUK EICT C1219"),
    44: _e("low_battery", "meter", "U31 YUK EICT C1219"),
    45: _e("low_loss_potential", "power_quality", "U31 YUK C1219"),
    46: _e("demand_overload", "power_quality", "U31 YUK C1219"),
    47: _e("cover_removed", "tamper", "U31 YUK EICT C1219"),
    48: _e("reverse_energy", "power_quality", "U31 YUK EICT C1219"),
    49: _e("data_backup_incomplete", "meter", "EICT YUK BT03"),
    50: _e("disconnect_switch_error", "meter", "U31 YUK EICT"),
    64: _e("load_profile_overflow", "meter", "U31 YUK EICT BT03"),
    65: _e("self_read_recorded", "meter", "YUK BT03"),
    66: _e("disconnect_changed", "power", "U31 YUK EICT BT03"),
    67: _e("control_relay_open", "power", "U31 YUK EICT BT03"),
    68: _e("phase_loss", "power_quality", "U31 YUK EICT BT03"),
    69: _e("phase_inversion", "tamper", "U31 YUK EICT BT03"),
    70: _e("plc_config_failure", "meter", "U31 EICT BT03", "serial_port_error"),
    71: _e("general_error", "meter", "U31 YUK EICT BT03"),
    72: _e("invalid_password", "tamper", "U31 YUK EICT BT03"),
    73: _e("remote_comms_inactive", "meter", "YUK EICT BT03"),
    74: _e("current_on_missing_phase", "tamper", "U31 YUK EICT BT03"),
    75: _e("pulse_input_1_tamper", "tamper", "YUK EICT BT03"),
    76: _e("pulse_input_2_tamper", "tamper", "YUK EICT BT03"),
    77: _e("software_crc_error", "meter", "U31 YUK EICT BT03"),
    78: _e("code_bank_changed", "meter", "U31 YUK EICT BT03"),
    79: _e("load_profile_backfill_failed", "meter", "U31 YUK EICT BT03"),
    80: _e("mep_installed_removed", "meter", "U31 YUK EICT BT03"),
    81: _e("mbus_alarm", "meter", "EICT BT03 YUK", "mep_alarm"),
    82: _e("mbus_discovery_complete", "meter", "EICT BT03", "mep_discovery_complete"),
    83: _e("phase_rotation_changed", "power_quality", "U31 YUK EICT BT03"),
    84: _e("prepay_credit_exhausted", "meter", "U31 YUK EICT BT03"),
    85: _e("prepay_warning_acknowledged", "meter", "U31 YUK EICT BT03"),
    86: _e("event_log_overflow_pending", "meter", "YUK BT03"),
    87: _e("manufacturer_log_entry", "other", "U31 YUK EICT BT03"),
    88: _e("log_dimension_changed", "meter", "U31 EICT BT03", "interface_changed"),
    89: _e("magnetic_tamper", "tamper", "U31 YUK BT03"),
    90: _e("access_lockout_override", "tamper", "U31 YUK EICT BT03"),
    91: _e("power_quality_changed", "power_quality", "U31 YUK EICT BT03"),
    92: _e("event_log_unread", "other", "YUK BT03"),
    93: _e("thd_changed", "power_quality", "YUK BT03"),
    94: _e("load_profile_unread", "other", "U31 YUK BT03"),
    95: _e("load_side_voltage", "power_quality", "YUK BT03"),
    96: _e("mbus_status_changed", "meter", "EICT YUK", "mep_status_changed"),
    97: _e("max_power_level_switched", "meter", "U31 YUK EICT"),
    98: _e("voltage_sag", "power_quality", "U31 YUK EICT"),
    99: _e("voltage_swell", "power_quality", "U31 YUK EICT"),
    100: _e("voltage_thd_max", "power_quality", "U31 YUK"),
    101: _e("current_thd_max", "power_quality", "U31 YUK"),
    102: _e("power_thd_max", "power_quality", "U31 YUK"),
    103: _e("voltage_thd_average", "power_quality", "U31 YUK"),
    104: _e("current_thd_average", "power_quality", "U31 YUK"),
    105: _e("power_thd_average", "power_quality", "U31 YUK"),
    106: _e("disconnect_pulsed", "power", "U31 YUK"),
    107: _e("mbus_sniffer_match", "meter", "YUK", "load_side_voltage"),
    108: _e("mbus_device_alarm", "meter", "YUK"),
    109: _e("mbus_alarm_match", "meter", "YUK"),
    110: _e("over_power_threshold", "meter", "YUK"),
    111: _e("dimmer_effect", "power_quality", "YUK"),
}

# Detail keys an entry's own fields already use: a decoder never returns these.
RESERVED_KEYS: Final = frozenset({"meter_time", "sequence", "event_id", "argument", "user", "event_type", "name"})

# ---- argument values, per the sources --------------------------------------------

PHASES: Final = ("L1", "L2", "L3")
_EXCEPTIONS: Final = {
    100: "miscellaneous_exception",
    101: "udi_exception",
    102: "overflow_exception",
    103: "brki_exception",
    104: "address_match_exception",
    105: "single_step_exception",
    106: "dbc_exception",
    107: "nmi_exception",
}
RESET_CAUSES: Final[dict[int, str]] = {  # 2: U31 3/4/5/8/11, EICT, YUK all
    3: "power_failure",
    4: "watchdog",
    5: "code_bank_switchover",
    6: "flash_refresh",
    7: "unknown",
    8: "brown_out",
    9: "id_code_set",
    10: "measurement_resync",
    11: "bootrom_switchover",
    12: "bad_stack",
    13: "nvm_locked",
    14: "clock_error_correction",
    15: "stack_corruption",
    **_EXCEPTIONS,
}
SYSTEM_RESETS: Final[dict[int, str]] = {  # 38: U31/EICT 0-2, YUK 3 and the exceptions
    0: "watchdog_timeout",
    1: "event_buffer_overflow",
    2: "abnormal_power_interrupt",
    3: "stack_overflow",
    **_EXCEPTIONS,
}
LISTS: Final = {2: "self_read", 3: "load_profile_1", 7: "load_profile_all", 8: "history_log", 255: "all"}
RAM_FAILURES: Final = {
    1: "load_profile_value",
    3: "relay_value",
    4: "ram_test",
    5: "rtc_code",
    6: "nvram_alarm_variable",
}
ROM_FAILURES: Final = {0: "bootrom_crc", 1: "system_image_crc"}
CLOCK_ERRORS: Final = {
    0: "clock_corrupted",
    1: "process_initialization",
    2: "stop_mode",
    3: "abnormal_wait_mode_reset",
    4: "vdet4_test_failure",
    5: "safe_image",
    6: "exception_in_watch_mode",
}
MEASUREMENT_ERRORS: Final = {
    9: "interrupts_missing",
    10: "gain_l1",
    11: "gain_l2",
    12: "gain_l3",
    13: "temperature",
}
TAMPERS: Final = {0: "cover_removed", 1: "pulse_input_1", 2: "pulse_input_2", 3: "tilt"}
SWITCH_STATES: Final = {1: "closed", 2: "open", 3: "locked_open"}
DISCONNECT_REASONS: Final = {  # 66, high byte: U31, YUK; EICT's examples agree
    1: "remote_command",  # MP02
    2: "maximum_power",
    3: "prepay",
    4: "prepay_maximum_power",
    5: "remote_reconnect",  # MP23
    6: "manual",
    7: "schedule",
    8: "resync_command",  # MP30
    9: "resync",
    10: "power_up_resync",
}
RELAY_REASONS: Final = {1: "remote_command", 2: "tariff", 3: "time"}
INVERSIONS: Final = {2: 120, 4: 180, 6: -120}  # 69: degrees
GENERAL_ERRORS: Final = {0: "power_down", 1: "display_readback"}
CHANNELS: Final = {0: "optical", 1: "plc"}
ROTATIONS: Final = {0: "L1L2L3", 1: "L3L2L1", 2: "unknown"}
MBUS_ALARMS: Final = {  # 81 bits 0-12: U31, EICT, YUK
    0: "billing_read_done",
    1: "read_with_application_errors",
    2: "status_alarm",
    3: "billing_read_overflow",
    4: "read_failed",
    5: "serial_mismatch",
}
MBUS_STATUSES: Final = {0: "paired", 1: "no_free_slot", 2: "no_communication", 3: "baud_rate_changed", 4: "removed"}
MFG_LOGS: Final = {0: "meter_one_time_read", 1: "mbus_one_time_read", 2: "configuration_id"}
LSV_STATUSES: Final = {
    0: "indeterminate",
    1: "present_phase_unknown",
    2: "present",
    3: "in_transition",
    4: "out_of_range",
}


def _phase_list(mask: int, shift: int = 0) -> list[str]:
    return [phase for bit, phase in enumerate(PHASES) if mask >> (shift + bit) & 1]


def _bits(value: int, names: dict[int, str]) -> list[str]:
    return [name for bit, name in names.items() if value >> bit & 1]


def _named(key: str, names: dict[int, str]) -> Callable[[int], Details]:
    def decode(argument: int) -> Details:
        return {key: names[argument]} if argument in names else {}

    return decode


def table_name(word: int) -> str:
    """Name a C12.19 table number as the guides write it: BT23, ET9 (bit 11), pending bit 12 aside."""
    number = word & 0x07FF
    return f"ET{number}" if word & 0x0800 else f"BT{number}"


def _table(argument: int) -> Details:
    details: Details = {"table": table_name(argument)}
    if argument & 0x1000:
        details["pending"] = True
    return details


def _procedure(argument: int) -> Details:
    number = argument & 0x07FF
    return {"procedure": f"MP{number}" if argument & 0x0800 else f"SP{number}"}


def _phase_value(key: str) -> Callable[[int], Details]:
    """Bits 0-1 the phase (0-2), the rest the value (98/99 in volts, 100-105 THD)."""

    def decode(argument: int) -> Details:
        phase = argument & 0x03
        if phase > 2:
            return {}
        return {"phase": PHASES[phase], key: argument >> 2}

    return decode


def _phase_mask(key: str = "phases") -> Callable[[int], Details]:
    def decode(argument: int) -> Details:
        phases = _phase_list(argument)
        return {key: phases} if phases else {}

    return decode


def _time_changed(argument: int) -> Details:
    return {"change": "absolute" if argument == 0 else "gradual"}


def _firmware(argument: int) -> Details:
    """36: the new firmware, bits 15-12 major, 11-5 minor, 4-0 build (YUK; as BT01's word)."""
    minor = (argument >> 5) & 0x7F
    if minor > 99:
        return {}
    return {"firmware": f"{argument >> 12 & 0x0F}.{minor:02d}.{argument & 0x1F:02d}"}


def _nvm_failure(argument: int) -> Details:
    """41: the failed table (bits 0-13), read-before-write (15) and read-after-write (14) checks."""
    if argument == 0xFFFF:
        return {"tables": "all"}
    if argument == 0xFFFE:
        return {"reason": "bootrom_nvm_crc"}
    if argument == 0xFFFD:
        return {"reason": "bootrom_flash_write"}
    return {
        "table": table_name(argument & 0x3FFF),
        "read_before_write": bool(argument & 0x8000),
        "read_after_write": bool(argument & 0x4000),
    }


def _measurement_error(argument: int) -> Details:
    details: Details = {"channel": argument & 0x01FF}
    if errors := _bits(argument, MEASUREMENT_ERRORS):
        details["errors"] = errors
    return details


def _tamper(argument: int) -> Details:
    tampers = _bits(argument, TAMPERS)
    return {"tamper": tampers} if tampers else {}


def _reverse_energy(argument: int) -> Details:
    """48: phases reversed (bits 0-2, EICT's 1-7 L1/L2/L3 mask), bit 3 the total (YUK)."""
    details: Details = {}
    if phases := _phase_list(argument):
        details["phases"] = phases
    if argument & 0x08:
        details["total"] = True
    return details


def _rms_bin(nibble: int) -> str:
    """Name a phase's RMS voltage bin: at most ``175 + 5 n`` V, or above 245 V (YUK)."""
    volts = 175 + 5 * nibble
    return f"<={volts}" if volts <= 245 else ">245"


def _disconnect_error(argument: int) -> Details:
    """50: four argument formats (U31 p.56-57, YUK); formats 2 and 4 carry the switch states."""
    if argument == 0:
        return {}
    if argument & 0x01:
        return {
            "format": 2,
            "state": SWITCH_STATES.get(argument >> 1 & 0x03, "invalid"),
            "external_state": "closed" if argument & 0x08 else "open",
            "voltage_bins_v": [_rms_bin(argument >> shift & 0x0F) for shift in (4, 8, 12)],
        }
    if argument & 0x03 == 0x02:
        return {"format": 3, "frequency_deviation_hz": (argument >> 2 & 0x07) - 3}
    if argument & 0x07 == 0x04:
        return {
            "format": 4,
            "state": SWITCH_STATES.get(argument >> 3 & 0x03, "invalid"),
            "disconnect_state": "closed" if argument & 0x20 else "open",
            "load_side_voltage": bool(argument & 0x40),
            "power_w": argument >> 7 & 0x01FF,
        }
    return {}


def _disconnect_changed(argument: int) -> Details:
    """66: bits 0-3 the state, bit 4 failed, high byte the reason; 6/7 the previous states."""
    details: Details = {}
    if (state := argument & 0x0F) in SWITCH_STATES:
        details["state"] = SWITCH_STATES[state]
    details["failed"] = bool(argument & 0x10)
    reason = argument >> 8 & 0xFF
    if reason in DISCONNECT_REASONS:
        details["reason"] = DISCONNECT_REASONS[reason]
    if reason in (8, 10):
        details["previous_internal_state"] = "closed" if argument & 0x40 else "open"
        details["previous_external_state"] = "closed" if argument & 0x80 else "open"
    return details


def _control_relay(argument: int) -> Details:
    details: Details = {}
    if (state := argument & 0xFF) in (1, 2):
        details["state"] = SWITCH_STATES[state]
    if (reason := argument >> 8 & 0xFF) in RELAY_REASONS:
        details["reason"] = RELAY_REASONS[reason]
    return details


def _inversion(argument: int) -> Details:
    return {"angle_deg": INVERSIONS[argument]} if argument in INVERSIONS else {}


def _device(number: int, mep: bool = False) -> str | None:
    """Bits 13-15 of an M-Bus event: 1-4 the M-Bus slot, 0 one not yet paired, 5 the MEP device."""
    if number == 5 and mep:
        return "mep"
    if number == 0:
        return "mbus_new"
    if number <= 4:
        return f"mbus_{number}"
    return None


def _mbus_alarm(argument: int) -> Details:
    """81: device in bits 13-15 (EICT: 8192 = device 1), what happened in bits 0-12."""
    details: Details = {}
    number = argument >> 13 & 0x07
    if number and (device := _device(number, mep=True)):
        details["device"] = device
    if (alarm := argument & 0x1FFF) in MBUS_ALARMS:
        details["alarm"] = MBUS_ALARMS[alarm]
    return details


def _mbus_status(argument: int) -> Details:
    """96: device 0-4 in bits 13-15 (0: before it got a slot), status in bits 0-12."""
    details: Details = {}
    if device := _device(argument >> 13 & 0x07):
        details["device"] = device
    if (status := argument & 0x1FFF) in MBUS_STATUSES:
        details["status"] = MBUS_STATUSES[status]
    return details


def _mbus_byte(key: str) -> Callable[[int], Details]:
    """107-109: device in bits 13-15, a data byte of the telegram in bits 0-7 (YUK)."""

    def decode(argument: int) -> Details:
        details: Details = {}
        if device := _device(argument >> 13 & 0x07):
            details["device"] = device
        details[key] = argument & 0xFF
        return details

    return decode


def _manufacturer_log(argument: int) -> Details:
    logs = _bits(argument, MFG_LOGS)
    return {"logs": logs} if logs else {}


def _power_quality(argument: int) -> Details:
    """91: bit mask, 0-2 sag, 3-5 swell, 6-8 over-current on L1-L3 (U31, YUK)."""
    details: Details = {}
    for key, shift in (("sag", 0), ("swell", 3), ("over_current", 6)):
        if phases := _phase_list(argument, shift):
            details[key] = phases
    return details


def _thd_changed(argument: int) -> Details:
    """93: bit mask, 0-2 voltage, 3-5 current, 6-8 apparent power THD on L1-L3 (YUK)."""
    details: Details = {}
    for key, shift in (("voltage_thd", 0), ("current_thd", 3), ("power_thd", 6)):
        if phases := _phase_list(argument, shift):
            details[key] = phases
    return details


def _load_side_voltage(argument: int) -> Details:
    """95: bits 0-2 the status, bits 3-5 the phases it is present on (YUK)."""
    details: Details = {}
    if (status := argument & 0x07) in LSV_STATUSES:
        details["status"] = LSV_STATUSES[status]
    if phases := _phase_list(argument, 3):
        details["phases"] = phases
    return details


def _disconnect_pulsed(argument: int) -> Details:
    """106: with a high byte, the desired state (bit 0) and power-down pending (bit 1); else a count."""
    if argument >> 8 & 0xFF:
        return {"desired_state": "closed" if argument & 0x01 else "open", "power_down_pending": bool(argument & 0x02)}
    return {"pulses": argument & 0xFF}


def _tier(argument: int) -> Details:
    return {"tier": argument + 1} if argument < 16 else {}


def _season(argument: int) -> Details:
    return {"season": argument + 1} if argument < 16 else {}


DECODERS: Final[dict[int, Callable[[int], Details]]] = {
    2: _named("reset_cause", RESET_CAUSES),
    3: _time_changed,
    7: _table,
    8: _table,
    9: _procedure,
    10: _table,
    14: _named("list", LISTS),
    15: _named("list", LISTS),
    24: _season,
    26: _named("schedule", {0: "A", 1: "B"}),
    27: _tier,
    28: _table,
    29: _table,
    36: _firmware,
    37: _named("reason", {0: "neuron_init_timeout"}),
    38: _named("reason", SYSTEM_RESETS),
    39: _named("reason", RAM_FAILURES),
    40: _named("reason", ROM_FAILURES),
    41: _nvm_failure,
    42: _named("reason", CLOCK_ERRORS),
    43: _measurement_error,
    47: _tamper,
    48: _reverse_energy,
    50: _disconnect_error,
    66: _disconnect_changed,
    67: _control_relay,
    68: _phase_mask(),
    69: _inversion,
    71: _named("reason", GENERAL_ERRORS),
    72: _named("channel", CHANNELS),
    74: _phase_mask(),
    77: _named("reason", {0: "crc_or_image_id", 1: "digest"}),
    78: _named("reason", {0: "commanded", 1: "unexpected"}),
    80: _named("state", {0: "installed", 1: "removed"}),
    81: _mbus_alarm,
    83: _named("rotation", ROTATIONS),
    87: _manufacturer_log,
    90: _named("state", {0: "cleared", 1: "detected"}),
    91: _power_quality,
    93: _thd_changed,
    95: _load_side_voltage,
    96: _mbus_status,
    97: _named("level", {0: "secondary", 1: "primary"}),
    98: _phase_value("voltage_v"),
    99: _phase_value("voltage_v"),
    **{event_id: _phase_value("thd") for event_id in range(100, 106)},
    106: _disconnect_pulsed,
    107: _mbus_byte("data_byte"),
    108: _mbus_byte("alarm_byte"),
    109: _mbus_byte("alarm_byte"),
    110: _named("state", {0: "exceeded", 1: "recovered"}),
    111: _phase_mask(),
}


def decode_argument(event_id: int, argument: int) -> Details:
    """Decode an entry's argument by name; ``{}`` when the id has none or no source names it.

    Arguments are two bytes on NES meters (BT71.3); a wider one is decoded from its low 16 bits.
    """
    decoder = DECODERS.get(event_id)
    if decoder is None:
        return {}
    return decoder(argument & 0xFFFF)
