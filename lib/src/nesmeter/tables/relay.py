"""The load disconnect contactor and control relays: which exist (ET29), and the contactor's state (ET23).

Layouts (MEP guide "G"):

* ET29 Hardware Configuration (G p.99-104), 0 UINT24 LE hardware options: bit 5
  disconnect & buzzer, bit 6 control relay 1, bit 7 control relay 2 (fw 4.30), bit 10
  MEP client 1 port enabled, bit 11 disconnect sensor, bit 14 two-line disconnect, ...
  The table is fixed at manufacture, so it is read once.
* ET23 Miscellaneous (G p.98-99), 94 UINT8 "Disconnect Internal Status": the commanded
  state of the contactor, 0 closed, 1 closing, 2 opened, 3 opening (closing and opening
  are the moments of pulsing). "Only meaningful for OSGP meters"; the guide recommends
  reading it every few seconds, and it is one byte.

The library never writes: opening or closing the contactor is the utility's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from nesmeter.errors import DecodeError

ET23: Final = 0x0800 + 23
ET29: Final = 0x0800 + 29
ET23_DISCONNECT_STATUS: Final = 94
ET29_OPTIONS_SIZE: Final = 3
RELAY_STATES: Final = ("closed", "closing", "open", "opening")  # ET23.94 0..3
DISCONNECT_BIT: Final = 5
CONTROL_RELAY_1_BIT: Final = 6
CONTROL_RELAY_2_BIT: Final = 7


@dataclass(frozen=True, slots=True)
class RelayHardware:
    """Which switching hardware the meter has (ET29.0)."""

    disconnect: bool  # bit 5 disconnect & buzzer
    control_relay_1: bool  # bit 6
    control_relay_2: bool  # bit 7
    options: int = 0  # the whole UINT24, for diagnostics


def decode_et29(data: bytes) -> RelayHardware:
    """ET29.0's hardware options (3 bytes, little-endian)."""
    if len(data) < ET29_OPTIONS_SIZE:
        raise DecodeError(f"ET29: {len(data)} bytes, need {ET29_OPTIONS_SIZE}")
    options = int.from_bytes(data[:ET29_OPTIONS_SIZE], "little")
    return RelayHardware(
        disconnect=bool(options >> DISCONNECT_BIT & 1),
        control_relay_1=bool(options >> CONTROL_RELAY_1_BIT & 1),
        control_relay_2=bool(options >> CONTROL_RELAY_2_BIT & 1),
        options=options,
    )


def decode_disconnect_state(data: bytes) -> str | None:
    """ET23.94 (the byte itself): ``closed``/``closing``/``open``/``opening``; None for a value the guide lacks."""
    if not data:
        raise DecodeError("ET23.94: no data")
    return RELAY_STATES[data[0]] if data[0] < len(RELAY_STATES) else None
