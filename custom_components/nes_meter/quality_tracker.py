"""Power quality (ET09) and the disconnect relay (ET29, ET23), read rarely.

ET09's counters move only with sags, swells and outages, so one read every five minutes
is plenty; the relay's commanded state is read every half minute, and only on a meter
whose hardware table says it has a disconnect. Both are learned and read once at setup
so their sensors exist only for a meter that has them, and start with a value.
"""

from __future__ import annotations

from typing import Any, Final

from nesmeter import MeterClient
from nesmeter.client.power_quality_reader import PowerQualityReader
from nesmeter.client.relay_reader import RelayReader
from nesmeter.tables.power_quality import PowerQuality

from .rare_reads import Misses, RareRead

POWER_QUALITY_INTERVAL: Final = 300.0
RELAY_INTERVAL: Final = 30.0


class PowerQualityTracker:
    """The newest power-quality record and relay state, for their sensors."""

    def __init__(self, client: MeterClient) -> None:
        """Read through ``client``; nothing is known before ``async_setup``."""
        self._quality_reader = PowerQualityReader(client)
        self._relay_reader = RelayReader(client)
        self.quality: PowerQuality | None = None
        self.relay: str | None = None
        self._misses = Misses()  # power quality reads in a row the meter did not answer
        self._has_power_quality = False

    @property
    def has_power_quality(self) -> bool:
        """Whether the meter answers ET09 (set at setup: its sensors exist from then on)."""
        return self._has_power_quality

    @property
    def has_disconnect(self) -> bool:
        """Whether ET29 says the meter has a load-disconnect switch."""
        return self._relay_reader.has_disconnect

    async def async_setup(self) -> None:
        """Learn what the meter has and read it once (at most four reads)."""
        await self._quality_reader.setup()
        if self._quality_reader.available:
            self.quality = self._quality_reader.latest or await self._quality_reader.read()
        self._has_power_quality = self.quality is not None
        await self._relay_reader.setup()
        if self.has_disconnect:
            self.relay = await self._relay_reader.read()

    def rare_reads(self) -> list[RareRead]:
        """Return the parts this meter has (``async_setup`` just read each)."""
        reads = []
        if self.has_power_quality:
            reads.append(RareRead("power_quality", POWER_QUALITY_INTERVAL, self._quality_step, just_read=True))
        if self.has_disconnect:
            reads.append(RareRead("relay", RELAY_INTERVAL, self._relay_step, just_read=True))
        return reads

    async def _quality_step(self) -> bool:
        quality = await self._quality_reader.read()
        if self._misses.stale(quality is not None) or quality is not None:
            self.quality = quality  # "phase lost" must not stay on from a read long ago
        return False

    async def _relay_step(self) -> bool:
        self.relay = await self._relay_reader.read()
        return False

    def diagnostics(self) -> dict[str, Any]:
        """Return what the meter has and the newest values."""
        return {
            "quality": repr(self.quality) if self.quality else None,
            "disconnect": self.has_disconnect,
            "relay": self.relay,
        }
