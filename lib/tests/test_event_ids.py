"""Event ids and their arguments, decoded by hand from the layouts the sources give."""

from __future__ import annotations

import pytest

from nesmeter.tables.event_ids import EVENT_IDS, RESERVED_KEYS, decode_argument, table_name
from nesmeter.tables.events import EVENTS, FAMILIES

TAGS = {"U31", "YUK", "EICT", "C1219", "BT03"}


def test_every_id_names_its_sources_and_a_family() -> None:
    names = [known.name for known in EVENT_IDS.values()]
    assert len(names) == len(set(names))
    for event_id, known in EVENT_IDS.items():
        assert known.sources and set(known.sources.split()) <= TAGS, event_id
        assert known.family in FAMILIES, event_id
    assert {event_id: (known.name, known.family) for event_id, known in EVENT_IDS.items()} == EVENTS


def test_the_ids_the_issue_found_missing_are_named() -> None:
    missing = {14, 15, 18, 19, 38, 49, 65, 73, 75, 76, 86, 92, 93, 95, 97, *range(100, 107), *range(108, 112)}
    assert missing <= set(EVENT_IDS)


@pytest.mark.parametrize(
    ("event_id", "name", "other_meaning"),
    [
        (30, "metering_mode_started", "test_mode_started"),  # C12.19, YUK, BT03 byte 0 against U31
        (31, "metering_mode_stopped", "test_mode_stopped"),
        (32, "test_mode_started", None),
        (33, "test_mode_stopped", None),
        (81, "mbus_alarm", "mep_alarm"),  # EICT, BT03 bit 17 against U31
        (82, "mbus_discovery_complete", "mep_discovery_complete"),
        (96, "mbus_status_changed", "mep_status_changed"),
        (95, "load_side_voltage", None),  # BT03 bit 31 (firmware 3.30), YUK
        (107, "mbus_sniffer_match", "load_side_voltage"),  # YUK against U31
    ],
)
def test_disputed_ids_take_the_osgp_name_and_keep_the_other(event_id: int, name: str, other_meaning: str) -> None:
    assert (EVENT_IDS[event_id].name, EVENT_IDS[event_id].other_meaning) == (name, other_meaning)


@pytest.mark.parametrize(
    ("event_id", "argument", "details"),
    [
        # 98/99: bits 0-1 the phase (0 = A = L1), the rest volts (U31: "divide by 4").
        (98, 829, {"phase": "L2", "voltage_v": 207}),
        (98, 231 * 4, {"phase": "L1", "voltage_v": 231}),
        (99, 251 * 4 + 2, {"phase": "L3", "voltage_v": 251}),
        (99, 251 * 4 + 3, {}),  # no fourth phase
        (100, 9 * 4 + 1, {"phase": "L2", "thd": 9}),
        (2, 3, {"reset_cause": "power_failure"}),
        (2, 8, {"reset_cause": "brown_out"}),
        (2, 11, {"reset_cause": "bootrom_switchover"}),
        (2, 107, {"reset_cause": "nmi_exception"}),
        (2, 2, {}),  # "unused"
        (36, 0x38D5, {"firmware": "3.70.21"}),  # bits 15-12, 11-5, 4-0, as BT01's word
        (36, 0x4045, {"firmware": "4.02.05"}),
        (36, 0x0FFF, {}),  # minor 127: no version
        (41, 0x8000 | 23, {"table": "BT23", "read_before_write": True, "read_after_write": False}),
        (41, 0x4000 | 0x0800 | 9, {"table": "ET9", "read_before_write": False, "read_after_write": True}),
        (41, 0xFFFF, {"tables": "all"}),
        (41, 0xFFFE, {"reason": "bootrom_nvm_crc"}),
        (47, 0x01, {"tamper": ["cover_removed"]}),  # EICT: 1 = cover removed
        (47, 0x0A, {"tamper": ["pulse_input_1", "tilt"]}),
        (48, 0x05, {"phases": ["L1", "L3"]}),  # EICT's 5 = L1 & L3
        (48, 0x08, {"total": True}),
        (66, 258, {"state": "open", "failed": False, "reason": "remote_command"}),  # EICT's examples
        (66, 259, {"state": "locked_open", "failed": False, "reason": "remote_command"}),
        (66, 514, {"state": "open", "failed": False, "reason": "maximum_power"}),
        (66, 1026, {"state": "open", "failed": False, "reason": "prepay_maximum_power"}),
        (66, 1281, {"state": "closed", "failed": False, "reason": "remote_reconnect"}),
        (66, 1538, {"state": "open", "failed": False, "reason": "manual"}),
        (
            66,
            0x0A00 | 0x80 | 0x10 | 1,
            {
                "state": "closed",
                "failed": True,
                "reason": "power_up_resync",
                "previous_internal_state": "open",
                "previous_external_state": "closed",
            },
        ),
        (69, 4, {"angle_deg": 180}),
        (69, 6, {"angle_deg": -120}),
        (68, 6, {"phases": ["L2", "L3"]}),
        (81, 8192, {"device": "mbus_1", "alarm": "billing_read_done"}),  # EICT's examples
        (81, 32773, {"device": "mbus_4", "alarm": "serial_mismatch"}),
        (81, (5 << 13) | 4, {"device": "mep", "alarm": "read_failed"}),  # U31: 101 = MEP device
        (96, 0, {"device": "mbus_new", "status": "paired"}),  # EICT: device 0 commissioned
        (96, 16388, {"device": "mbus_2", "status": "removed"}),
        (95, 2 | 0x10 | 0x20, {"status": "present", "phases": ["L2", "L3"]}),
        (107, (3 << 13) | 0x7A, {"device": "mbus_3", "data_byte": 0x7A}),
        (50, 0, {}),
        (
            50,
            0x1 | (2 << 1) | 0x08 | (6 << 4) | (15 << 8),
            {"format": 2, "state": "open", "external_state": "closed", "voltage_bins_v": ["<=205", ">245", "<=175"]},
        ),
        (
            50,
            0x4 | (1 << 3) | 0x20 | 0x40 | (300 << 7),
            {"format": 4, "state": "closed", "disconnect_state": "closed", "load_side_voltage": True, "power_w": 300},
        ),
        (14, 8, {"list": "history_log"}),
        (27, 0, {"tier": 1}),
        (9, 0x0800 | 6, {"procedure": "MP6"}),
        (28, 4150, {"table": "BT54", "pending": True}),  # U31: preset TOU changeover
        (91, 0b100_000_010, {"sag": ["L2"], "over_current": ["L3"]}),
        (83, 1, {"rotation": "L3L2L1"}),
        (110, 1, {"state": "recovered"}),
        (111, 0x05, {"phases": ["L1", "L3"]}),
        (1, 1234, {}),  # power down carries nothing
        (200, 5, {}),  # an unknown id
    ],
)
def test_arguments_decoded(event_id: int, argument: int, details: dict[str, object]) -> None:
    assert decode_argument(event_id, argument) == details
    assert not set(details) & RESERVED_KEYS


def test_table_names() -> None:
    assert (table_name(23), table_name(0x0800 | 29), table_name(0x1000 | 54)) == ("BT23", "ET29", "BT54")
