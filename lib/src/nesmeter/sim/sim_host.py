"""What the simulated meter's parts see of the image they belong to.

``MeterImage`` composes its parts (event log, billing, load profile, power quality): it
creates them and calls them. The parts need the image back (its tables, its energy model,
the event log that others write into), but importing ``sim_image`` would close a circle.
They are typed against :class:`ImageHost` instead, which ``MeterImage`` satisfies; the
small vocabulary that several parts share lives here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from nesmeter.tables.tables import RegisterDimensions

USER_NONE: Final = 0xFFFF  # an event no user caused (the meter itself)
# Summation sources that count energy, stored in units of the energy register unit.
ENERGY_SUMMATIONS: Final = frozenset({0, 1, 2, 3, 6, 7, 11, 12, 13, 14})


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """What the simulator logged (for tests to compare with what the client read)."""

    sequence: int
    time: datetime
    event_id: int
    argument: int
    user_id: int = USER_NONE


class EventJournal(Protocol):
    """The image's event log as other parts use it: they log events and hear of them."""

    logged: list[LoggedEvent]
    listeners: list[Callable[[LoggedEvent], None]]

    def inject(self, name: str | int, argument: int = 0, when: datetime | None = None) -> LoggedEvent:
        """Log an event now (or at ``when``) and tell the listeners."""


class TariffCalendar(Protocol):
    """Whether the billing part drives tier switches from its calendar (``tou``)."""

    calendar: bool


class ImageHost(Protocol):
    """The table image and load model, as the parts read and write them."""

    tables: dict[int, bytearray]
    refused: dict[int, int]
    energy_unit: int
    import_wh: float
    export_wh: float
    reactive_import_varh: float
    reactive_export_varh: float

    @property
    def dimensions(self) -> RegisterDimensions:
        """BT21 as it stands (BT20 on a meter without BT21)."""

    @property
    def elapsed(self) -> float:
        """Model seconds from the image's start to its last update."""

    @property
    def events(self) -> EventJournal:
        """The event log part."""

    @property
    def billing(self) -> TariffCalendar:
        """The billing part."""

    def set_layout(self, bt21: bytes, *, value_sources: tuple[int, ...], demand_sources: tuple[int, ...] = ()) -> None:
        """Give the meter another register layout (BT21, BT27) and size BT23/BT28 to it."""

    def write_energy_unit(self) -> None:
        """Write the energy register unit into ET55 at the offset BT20 and the firmware give."""

    def power_w(self, elapsed: float) -> tuple[float, float]:
        """(import, export) W of the load model ``elapsed`` model seconds in."""

    def update(self, now: float | None = None) -> None:
        """Advance the model to ``now`` (monotonic seconds) and rewrite the live tables."""

    def skip(self, seconds: float) -> None:
        """Let ``seconds`` of model time pass at once at the next update."""
