"""What every benchmark shares: the meter key, the simulated meter's pacing and the poll rhythm."""

from __future__ import annotations

from typing import Final

from nesmeter import MeterKey
from nesmeter.client.read_plan import ReadSchedule

KEY_TEXT: Final = "a7941d85bce8a8fa2ab7"
KEY: Final = MeterKey.parse(KEY_TEXT)
TURNAROUND: Final = 0.020  # the meter's reply delay; C12.18 adapters wait 20 ms (IR.md)
POLL_INTERVAL: Final = 2.0  # what the coordinator passes as hold_for at the fastest setting
IDLE_BETWEEN_POLLS: Final = 0.15  # keeps MEP's 100 ms throttle from reaching across polls
# The entities a new user has enabled: energy import/export, power import/export/net, V and I L1.
DEFAULT_FIELDS: Final = (
    "energy_import_wh",
    "energy_export_wh",
    "power_import_w",
    "power_export_w",
    "power_net_w",
    "voltage_l1_v",
    "current_l1_a",
)
# The "live only" default poll: energy registers at most every 30 s, live values every poll.
LIVE_SCHEDULE: Final = ReadSchedule(registers_interval=30.0)


# The configuration.yaml core block of the benches that run a real Home Assistant (each adds
# its own recorder and logger settings).
HA_CORE_CONFIGURATION = """\
homeassistant:
  name: bench
  latitude: 55.7
  longitude: 12.6
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: DKK
  country: DK
"""
