"""The simulated meter's power quality (ET04.53, ET09) and switching hardware (ET23, ET29).

ET09 tells the same story as the event log (``sim_events``): its outage records are the
log's power-down/power-up pairs (newest first, reset cause from the power-up argument),
and its sag and swell counts, times and voltages include the log's sags and swells
(argument = volts * 4 + phase, phase 0 = L1), on top of a few from before the log's
window so every phase has some history. A sag or swell logged at run time
(``SimEventLog.inject``) moves ET09 too, as a meter updates both. Layouts:
``nesmeter.tables.power_quality`` and ``nesmeter.tables.relay``.

By default the meter has no load disconnect contactor (ET29 bit 5 clear) and ET23.94
reads 0 (closed), as on a meter built without one. Variants: ``disconnect`` (a contactor
whose state a test changes with :meth:`SimPowerQuality.set_disconnect`), ``phase-loss``
(L3 lost now) and ``no-power-quality`` (ET09 refused).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import struct
from typing import TYPE_CHECKING, Final

from nesmeter.tables import tables
from nesmeter.tables.events import EVENTS
from nesmeter.tables.power_quality import (
    ET04,
    ET04_OUTAGE_RECORDS,
    ET09,
    OUTAGE_RECORD,
    OUTAGES_START,
    Outage,
    PhaseEvents,
    PowerQuality,
    outage_span,
)
from nesmeter.tables.relay import ET23, ET23_DISCONNECT_STATUS, ET29, RELAY_STATES

if TYPE_CHECKING:
    from nesmeter.sim.sim_host import ImageHost, LoggedEvent

TABLE_IDS: Final = frozenset({ET04, ET09, ET23, ET29})
VARIANTS: Final[dict[str, str]] = {
    "disconnect": "a load disconnect contactor (ET29 bit 5); its state in ET23.94",
    "phase-loss": "phase L3 lost now (ET09.P+86 bit 2), twice so far",
    "no-power-quality": "ET09 refused (inappropriate action)",
}
IAR: Final = 0x05
OUTAGE_RECORDS: Final = 10
ET04_SIZE: Final = 140  # up to ET04.138 UINT16 (fw 4.x)
ET23_SIZE: Final = 186  # fw 3.x
ET29_SIZE: Final = 54
ET09_TAIL: Final = 357 + 120  # P+357: THD records end; then 12 DRP/DRC records (fw >= 3.70)
CALENDAR_ID: Final = 20_240_101
# ET29.0: S0 output, cover tamper, MEP client 1 port enabled; no disconnect.
DEFAULT_OPTIONS: Final = (1 << 0) | (1 << 9) | (1 << 10)
# With a contactor: disconnect & buzzer, disconnect sensor, two-line disconnect.
DISCONNECT_OPTIONS: Final = (1 << 5) | (1 << 11) | (1 << 14)
PHASE_LOSS_COUNT: Final = 2
SHORT_OUTAGES: Final = 7


@dataclass(slots=True)
class SimPhase:
    """One phase's sag, swell or phase-loss statistics."""

    count: int = 0
    last: datetime | None = None
    millivolts: int = 0


class SimPowerQuality:
    """ET04.53, ET09, ET23 and ET29 of the simulated meter."""

    def __init__(self, image: ImageHost) -> None:
        """Add ET04, ET09, ET23 and ET29 to ``image``; ET09 follows the event log."""
        self.image = image
        self.outage_records = OUTAGE_RECORDS
        self.options = DEFAULT_OPTIONS
        self.disconnect_state = 0
        self.sags: list[SimPhase] = []
        self.swells: list[SimPhase] = []
        self.phase_losses: list[SimPhase] = []
        self.phase_lost = [False, False, False]
        self.over_current = [0, 1, 0]
        self.short_outages = SHORT_OUTAGES
        self.outages: list[Outage] = []  # newest first
        self._power_down: datetime | None = None  # a logged power-down still waiting for its power-up
        now = datetime.now(UTC).replace(microsecond=0)
        self.min_frequency = (49_912, now - timedelta(days=9, hours=3))
        self.max_frequency = (50_087, now - timedelta(days=2, hours=17))
        et04 = bytearray(ET04_SIZE)
        et04[13] = 50  # rated frequency (Hz)
        struct.pack_into("<H", et04, 60, 230)  # rated voltage (V)
        et04[ET04_OUTAGE_RECORDS] = self.outage_records
        image.tables[ET04] = et04
        et23 = bytearray(ET23_SIZE)
        struct.pack_into("<I", et23, ET23_DISCONNECT_STATUS + 1, CALENDAR_ID)
        image.tables[ET23] = et23
        image.tables[ET29] = bytearray(ET29_SIZE)
        image.tables[ET09] = bytearray(outage_span(self.outage_records) + ET09_TAIL)
        self.from_log()
        image.events.listeners.append(self.logged)

    def from_log(self) -> None:
        """Statistics from before the log's window, then everything the event log holds."""
        now = datetime.now(UTC).replace(microsecond=0)
        self.sags = [
            SimPhase(2, now - timedelta(days=35), 211_400),
            SimPhase(),
            SimPhase(1, now - timedelta(days=50), 208_900),
        ]
        self.swells = [SimPhase(1, now - timedelta(days=40), 252_300), SimPhase(), SimPhase()]
        self.phase_losses = [SimPhase(), SimPhase(), SimPhase()]
        self.outages = []
        self._power_down = None
        for entry in self.image.events.logged:
            self._apply(entry)
        self.write()

    def configure(self, variants: Iterable[str]) -> None:
        """Apply the power quality and relay variants (before the first read)."""
        chosen = set(variants)
        self.from_log()  # the log may have been written again (event-gaps)
        if "disconnect" in chosen:
            self.options |= DISCONNECT_OPTIONS
        if "phase-loss" in chosen:
            self.phase_lost[2] = True
            self.phase_losses[2] = SimPhase(
                PHASE_LOSS_COUNT, datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
            )
        if "no-power-quality" in chosen:
            self.image.refused[ET09] = IAR
        self.write()

    # ---- run time ----

    def logged(self, entry: LoggedEvent) -> None:
        """Listen to the event log: a sag, swell or outage logged now shows in ET09 too."""
        if self._apply(entry):
            self.write()

    def _apply(self, entry: LoggedEvent) -> bool:
        name = EVENTS.get(entry.event_id, ("", ""))[0]
        if name in ("voltage_sag", "voltage_swell"):
            phase, volts = entry.argument & 0x03, entry.argument >> 2
            if phase > 2:
                return False
            phases = self.sags if name == "voltage_sag" else self.swells
            phases[phase] = self._bumped(phases[phase], entry.time, volts * 1000)
            return True
        if name == "power_down":
            self._power_down = entry.time
            return False
        if name == "power_up" and self._power_down is not None:
            duration = int((entry.time - self._power_down).total_seconds())
            outage = Outage(self._power_down, entry.time, duration, entry.argument & 0xFF)
            self.outages = [outage, *self.outages][: self.outage_records]
            self._power_down = None
            return True
        return False

    @staticmethod
    def _bumped(phase: SimPhase, when: datetime, millivolts: int) -> SimPhase:
        return SimPhase(phase.count + 1, when.replace(microsecond=0), millivolts)

    def sag(self, phase: int, voltage_v: float, when: datetime | None = None) -> None:
        """Record a sag on ``phase`` (0 = L1) that went down to ``voltage_v``, without an event log entry."""
        self.sags[phase] = self._bumped(self.sags[phase], when or datetime.now(UTC), round(voltage_v * 1000))
        self.write()

    def swell(self, phase: int, voltage_v: float, when: datetime | None = None) -> None:
        """Record a swell on ``phase`` (0 = L1) that went up to ``voltage_v``."""
        self.swells[phase] = self._bumped(self.swells[phase], when or datetime.now(UTC), round(voltage_v * 1000))
        self.write()

    def set_outage_records(self, count: int) -> None:
        """Another ET04.53: ET09's outage array (and everything after it) resized."""
        self.outage_records = count
        self.image.tables[ET04][ET04_OUTAGE_RECORDS] = count
        if self.image.tables.get(ET09) is not None:
            self.image.tables[ET09] = bytearray(outage_span(count) + ET09_TAIL)
        self.outages = self.outages[:count]
        self.write()

    def set_disconnect(self, state: str | int) -> None:
        """Set the contactor's commanded state (ET23.94): a name from ``RELAY_STATES`` or a raw byte."""
        self.disconnect_state = RELAY_STATES.index(state) if isinstance(state, str) else state
        self.write()

    def set_phase_loss(self, phase: int, lost: bool) -> None:
        """Phase ``phase`` (0 = L1) lost now (a new loss counts) or back."""
        if lost and not self.phase_lost[phase]:
            self.phase_losses[phase] = self._bumped(self.phase_losses[phase], datetime.now(UTC), 0)
        self.phase_lost[phase] = lost
        self.write()

    # ---- tables ----

    def expected(self) -> PowerQuality:
        """Return what a client should decode from ET09 (for tests)."""

        def events(phases: list[SimPhase]) -> tuple[PhaseEvents, PhaseEvents, PhaseEvents]:
            a, b, c = (PhaseEvents(p.count, p.last, p.millivolts / 1000 if p.millivolts else None) for p in phases)
            return a, b, c

        lost = self.phase_lost
        losses = self.phase_losses
        return PowerQuality(
            sags=events(self.sags),
            swells=events(self.swells),
            min_frequency_hz=self.min_frequency[0] / 1000,
            min_frequency_time=self.min_frequency[1],
            max_frequency_hz=self.max_frequency[0] / 1000,
            max_frequency_time=self.max_frequency[1],
            phase_loss=(lost[0], lost[1], lost[2]),
            phase_loss_counts=(losses[0].count, losses[1].count, losses[2].count),
            short_outages=self.short_outages,
            last_outage=self.outages[0] if self.outages else None,
            phase_loss_last=(losses[0].last, losses[1].last, losses[2].last),
            over_current_counts=(self.over_current[0], self.over_current[1], self.over_current[2]),
        )

    def write(self) -> None:
        """Render the state into the tables (ET09 wholly; ET23.94; ET29.0)."""
        et29 = self.image.tables.get(ET29)
        if et29 is not None:
            et29[0:3] = self.options.to_bytes(3, "little")
        et23 = self.image.tables.get(ET23)
        if et23 is not None:
            et23[ET23_DISCONNECT_STATUS] = self.disconnect_state
        et09 = self.image.tables.get(ET09)
        if et09 is None:
            return
        p = outage_span(self.outage_records)
        struct.pack_into("<HBBBB", et09, 0, 60, 0, 10, 10, 20)  # thresholds: 60 s, 0 min, 10 %, 10 %, 20 %
        et09[OUTAGES_START : OUTAGES_START + p] = bytes(p)
        for index, outage in enumerate(self.outages[: self.outage_records]):
            at = OUTAGES_START + index * OUTAGE_RECORD
            et09[at : at + 6] = tables.encode_time_date(outage.power_on)
            et09[at + 6] = outage.reset_cause
            et09[at + 8 : at + 14] = tables.encode_time_date(outage.power_off)
            struct.pack_into("<I", et09, at + 14, outage.duration_s)
        base = p
        for k in range(3):
            for at, phase in ((base + 6 + 8 * k, self.sags[k]), (base + 30 + 8 * k, self.swells[k])):
                et09[at : at + 6] = tables.encode_time_date(phase.last)
                struct.pack_into("<H", et09, at + 6, phase.count)
            struct.pack_into("<i", et09, base + 111 + 4 * k, self.sags[k].millivolts)
            struct.pack_into("<i", et09, base + 123 + 4 * k, self.swells[k].millivolts)
            struct.pack_into("<I", et09, base + 74 + 4 * k, self.over_current[k])
            at = base + 87 + 8 * k
            et09[at : at + 6] = tables.encode_time_date(self.phase_losses[k].last)
            struct.pack_into("<H", et09, at + 6, self.phase_losses[k].count)
        for at, (millihertz, when) in ((base + 54, self.min_frequency), (base + 64, self.max_frequency)):
            struct.pack_into("<i", et09, at, millihertz)
            et09[at + 4 : at + 10] = tables.encode_time_date(when)
        et09[base + 86] = sum(1 << k for k in range(3) if self.phase_lost[k])
        struct.pack_into("<I", et09, base + 135, self.short_outages)
        struct.pack_into("<I", et09, base + 139, 3)  # PQ configuration id
        et09[base + 144] = 2  # power-up quality hold time (s)
