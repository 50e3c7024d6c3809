"""The meter's billing registers, read rarely: tariff tier (BT55), tier energies, demands, self-reads.

What a meter has is learned once at setup (its dimension table and a first read of each
part), so sensors are created only for what it keeps: tier sensors only where tiers are
in use, demand sensors only when demands are configured, self-read sensors only when the
meter takes self-reads. Afterwards each part is one rare read (``rare_reads.py``): the
tier every minute, tier energies every five, demands every quarter of an hour, the
self-read header hourly and the newest self-read only when the header moved. Tier
energies whose blocks do not fit one read (a demand meter's, an 8-tier meter's on the
optical port) are a pass of one read per group, one group per live poll.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
import logging
import time
from typing import Any, Final

from homeassistant.util import dt as dt_util

from nesmeter import MeterClient
from nesmeter.client.billing_reader import BillingReader
from nesmeter.tables.billing import Demands, SelfRead, SelfReadHeader, TariffState, TierEnergy

from .guard import CounterGuard
from .rare_reads import RareRead, RareReadScheduler

_LOGGER = logging.getLogger(__name__)

TARIFF_INTERVAL: Final = 60.0  # BT55 is updated every minute
TARIFF_CHECK_INTERVAL: Final = 3600.0  # a single-tariff meter: is a calendar switched on, DST?
TIERS_INTERVAL: Final = 300.0
DEMANDS_INTERVAL: Final = 900.0  # the common demand interval
SELF_READ_INTERVAL: Final = 3600.0  # self-reads happen at most daily
READ_EXCHANGES: Final = {"mep": 1, "ir": 2}  # request/replies one billing read may take
MAX_TIERS: Final = 8  # BT21.7 is 4, or 8 from firmware 3.70
DIRECTIONS: Final = ("import", "export")
QUARTER_HOUR: Final = timedelta(minutes=15)


def tier_counter(tier: int, direction: str) -> str:
    """Return the counter guard's name of a tier register (``tier`` 0-based)."""
    return f"energy_{direction}_tier_{tier + 1}_wh"


TIER_COUNTERS: Final = tuple(tier_counter(tier, direction) for tier in range(MAX_TIERS) for direction in DIRECTIONS)


class MeterBillingTracker:
    """The newest billing values, for the billing sensors."""

    def __init__(self, client: MeterClient, scheduler: RareReadScheduler, guard: CounterGuard) -> None:
        """Read through ``client``; tier registers pass ``guard`` like the totals."""
        self._scheduler = scheduler
        self._guard = guard
        # One optical exchange carries 108 bytes, 3 of a house meter's 4 tier blocks: a
        # tier or demand read there may take two (one table read, a two-packet answer).
        self.reader = BillingReader(client, exchanges=READ_EXCHANGES[client.transport])
        self.tariff: TariffState | None = None
        self.tiers: dict[int, TierEnergy] = {}
        self.tiers_in_use: tuple[int, ...] = ()  # tiers with sensors enabled for a new user
        self._tier_group = 0  # the group the tiers pass reads next (``BillingReader.tier_spans``)
        self.demands: Demands | None = None
        self.self_read: SelfRead | None = None
        self._self_read_header: SelfReadHeader | None = None
        self._self_read_due = False  # the header moved: the entry is read next
        self.utc_offset: timedelta | None = None  # the meter's local time minus UTC (BT55 - now)
        self.tiers_appeared = False  # a single-tariff meter started switching tiers: reload

    @property
    def has_tiers(self) -> bool:
        """Whether tiers are in use: more than one tier block counts, or the tier is not the first."""
        return bool(self.tiers_in_use)

    async def async_setup(self) -> None:
        """Learn what the meter keeps and read each part once.

        At most five reads plus one per tier group: BT55, BT22's demand part, the BT26
        header, the tier blocks (one group on a house meter; 196-byte demand blocks go
        three to a MEP read and two to an optical one, so 4 tiers take two reads and 8 up
        to four), the demands and the newest self-read.
        """
        reader = self.reader
        await reader.setup()
        self._set_tariff(reader.tariff)
        if reader.tiers > 1:
            for group in range(len(reader.tier_spans())):
                self._set_tiers(await reader.read_tiers(group))
            counting = [tier.tier for tier in self.tiers.values() if tier.energy_import_wh or tier.energy_export_wh]
            current = self.tariff.tier if self.tariff else 0
            if len(counting) > 1 or current > 0:
                self.tiers_in_use = tuple(sorted({*counting, current} & self.tiers.keys()))
        if reader.has_demands:
            self.demands = await reader.read_demands()
        if reader.has_self_reads:
            self._keep_self_read(reader.self_read_header, await reader.read_newest_self_read())

    def rare_reads(self) -> list[RareRead]:
        """Return the parts this meter has (``async_setup`` just read each)."""
        reads = []
        if self.reader.has_tariff:
            interval = TARIFF_INTERVAL if self.has_tiers else TARIFF_CHECK_INTERVAL
            reads.append(RareRead("tariff", interval, self._tariff_step, just_read=True))
        if self.has_tiers:
            reads.append(RareRead("tiers", TIERS_INTERVAL, self._tiers_step, abort=self._abort_tiers, just_read=True))
        if self.demands is not None:
            reads.append(RareRead("demands", DEMANDS_INTERVAL, self._demands_step, just_read=True))
        if self.reader.has_self_reads:
            reads.append(
                RareRead(
                    "self_read", SELF_READ_INTERVAL, self._self_read_step, abort=self._abort_self_read, just_read=True
                )
            )
        return reads

    async def _tariff_step(self) -> bool:
        tariff = await self.reader.read_tariff()
        if tariff is not None:
            if self.tariff is not None and tariff.tier != self.tariff.tier:
                # The tier switched: the old tier's energy is final, the new one starts counting.
                self._scheduler.poll_soon("tiers")
            if not self.has_tiers and tariff.tier != 0 and tariff.tier in self.tiers:
                _LOGGER.info("the meter started switching tariff tiers; its tier sensors are added")
                self.tiers_appeared = True
            self._set_tariff(tariff)
        return False

    def _set_tariff(self, tariff: TariffState | None) -> None:
        """Keep BT55, and the meter's offset from UTC it shows (to the quarter hour)."""
        self.tariff = tariff
        if tariff is None or tariff.local_time is None:
            return
        offset = tariff.local_time - dt_util.utcnow().replace(tzinfo=None)
        quarters = round(offset / QUARTER_HOUR)
        if abs(quarters) <= 14 * 4:  # a real zone; a meter clock far off tells nothing
            self.utc_offset = quarters * QUARTER_HOUR

    async def _tiers_step(self) -> bool:
        """Read the next group of tier blocks; True while groups remain (one read per live poll).

        The groups are planned afresh each step: an optical session may negotiate another
        packet size than the one before, and with it another number of groups.
        """
        groups = len(self.reader.tier_spans())
        group = self._tier_group if self._tier_group < groups else 0
        self._tier_group = group + 1 if group + 1 < groups else 0
        self._set_tiers(await self.reader.read_tiers(group))
        return self._tier_group != 0

    def _abort_tiers(self) -> None:
        self._tier_group = 0  # the next pass starts from the first group

    def _set_tiers(self, tiers: tuple[TierEnergy, ...] | None) -> None:
        """Keep each tier's registers as the counter guard lets them through (Energy dashboard)."""
        now = time.monotonic()
        for tier in tiers or ():
            guarded = {direction: self._guarded(tier.tier, direction, tier, now) for direction in DIRECTIONS}
            self.tiers[tier.tier] = replace(
                tier, energy_import_wh=guarded["import"], energy_export_wh=guarded["export"]
            )

    def show_tier_counter(self, name: str, wh: float | None) -> None:
        """Show ``wh`` for tier counter ``name`` (the guard's verdict on a restored baseline)."""
        for tier, registers in self.tiers.items():
            if name == tier_counter(tier, "import"):
                self.tiers[tier] = replace(registers, energy_import_wh=wh)
            elif name == tier_counter(tier, "export"):
                self.tiers[tier] = replace(registers, energy_export_wh=wh)

    def _guarded(self, tier: int, direction: str, registers: TierEnergy, now: float) -> float | None:
        wh: float | None = getattr(registers, f"energy_{direction}_wh")
        name = tier_counter(tier, direction)
        if wh is None or (wh == 0 and name not in self._guard.last):
            return wh  # a tier never used reads 0: no glitch, unlike a total of 0
        return self._guard.check(name, wh, now)

    async def _demands_step(self) -> bool:
        demands = await self.reader.read_demands()
        if demands is not None:
            self.demands = demands
        return False

    async def _self_read_step(self) -> bool:
        """Read the header (6 bytes) first; the newest entry only when the header moved."""
        if not self._self_read_due:
            header = await self.reader.read_self_read_header()
            if header is None or header == self._self_read_header:
                return False
            self._self_read_header = header
            self._self_read_due = True
            return True
        self._self_read_due = False
        self._keep_self_read(self._self_read_header, await self.reader.read_newest_self_read())
        return False

    def _keep_self_read(self, header: SelfReadHeader | None, self_read: SelfRead | None) -> None:
        """Take the entry; remember its header only when the entry was read (or there is none).

        A refused entry read then comes again after the next header read, not only after
        the meter's next self-read, which may be a month away.
        """
        if self_read is not None:
            self.self_read = self_read
        read = self_read is not None or (header is not None and header.valid == 0)
        self._self_read_header = header if read else None

    def _abort_self_read(self) -> None:
        self._self_read_due = False
        self._self_read_header = None  # read the entry again after the next header

    def diagnostics(self) -> dict[str, Any]:
        """Return what the meter keeps and the newest values (no secrets in any of them)."""
        return {
            "tiers": self.reader.tiers,
            "tiers_in_use": list(self.tiers_in_use),
            "tariff": repr(self.tariff) if self.tariff else None,
            "demands": len(self.demands.values) if self.demands else None,
            "self_read": repr(self.self_read) if self.self_read else None,
        }
