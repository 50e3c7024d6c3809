"""Which load-profile channels become history statistics, and what those are called.

A load profile records up to eight channels, each a source the meter's BT62 lists
(``nesmeter.tables.load_profile.channel_names`` names them like the snapshot fields). The
channels that snapshot an energy register become statistics: active energy in kWh
(``energy_import``, ``energy_export``: the ids the Energy dashboard has been given since the
first release), reactive energy in kvarh (``reactive_energy_import``/``_export``). A source
recorded twice gets the channel's number (``energy_import_channel_3``). Every other channel
(outage time and count, present values such as voltage or power) is no energy counter: it
is named in the diagnostics and not imported.
"""

from __future__ import annotations

from dataclasses import dataclass
import re
from typing import Final

from homeassistant.const import UnitOfEnergy

from .compat import REACTIVE_ENERGY_UNIT, REACTIVE_ENERGY_UNIT_CLASS

ENERGY_UNIT_CLASS: Final = "energy"


@dataclass(frozen=True, slots=True)
class HistoryChannel:
    """One energy channel's statistic: id suffix, name, unit (the channel's Wh or varh / 1000)."""

    channel: str
    suffix: str
    name: str
    unit: str
    unit_class: str | None


# The library's channel name -> (suffix, name, unit, unit class).
ENERGY: Final[dict[str, tuple[str, str, str, str | None]]] = {
    "energy_import_wh": ("energy_import", "energy import", UnitOfEnergy.KILO_WATT_HOUR, ENERGY_UNIT_CLASS),
    "energy_export_wh": ("energy_export", "energy export", UnitOfEnergy.KILO_WATT_HOUR, ENERGY_UNIT_CLASS),
    "reactive_energy_import_varh": (
        "reactive_energy_import",
        "reactive energy import",
        REACTIVE_ENERGY_UNIT,
        REACTIVE_ENERGY_UNIT_CLASS,
    ),
    "reactive_energy_export_varh": (
        "reactive_energy_export",
        "reactive energy export",
        REACTIVE_ENERGY_UNIT,
        REACTIVE_ENERGY_UNIT_CLASS,
    ),
}
_REPEAT = re.compile(r"^(?P<base>.+)_(?P<index>\d+)$")  # channel_names: a source recorded again


def history_channel(channel: str) -> HistoryChannel | None:
    """Return the statistic of the load-profile channel ``channel``, None when it is no energy counter."""
    if channel in ENERGY:
        return HistoryChannel(channel, *ENERGY[channel])
    if (repeat := _REPEAT.match(channel)) and repeat["base"] in ENERGY:
        suffix, name, unit, unit_class = ENERGY[repeat["base"]]
        number = int(repeat["index"]) + 1
        return HistoryChannel(channel, f"{suffix}_channel_{number}", f"{name} (channel {number})", unit, unit_class)
    return None


def history_channels(channels: tuple[str, ...] | None) -> tuple[HistoryChannel, ...]:
    """Return the statistics of a load profile's channels (None, layout not known yet: the usual two)."""
    if channels is None:
        channels = ("energy_import_wh", "energy_export_wh")
    return tuple(known for channel in channels if (known := history_channel(channel)) is not None)


def known_suffixes() -> tuple[str, ...]:
    """Return every suffix a channel of a known energy source has (not those of a repeated source)."""
    return tuple(suffix for suffix, _name, _unit, _class in ENERGY.values())


def skipped_channels(channels: tuple[str, ...]) -> list[str]:
    """Return the channels that are not imported: no energy counter (for the diagnostics)."""
    return [channel for channel in channels if history_channel(channel) is None]
