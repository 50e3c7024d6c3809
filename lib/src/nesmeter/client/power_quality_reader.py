"""The power quality reader: ET04's outage record count, then ET09.

The decoders are in ``nesmeter.tables.power_quality``; the reader takes a ``TableSource`` (the client).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from nesmeter.errors import ABSENT
from nesmeter.tables.power_quality import (
    DEFAULT_OUTAGE_RECORDS,
    ET04,
    ET04_OUTAGE_RECORDS,
    ET09,
    PowerQuality,
    decode_power_quality,
    read_range,
)

if TYPE_CHECKING:
    from nesmeter.client.source import TableSource

_LOGGER = logging.getLogger(__name__)


class PowerQualityReader:
    """ET09, one table read per :meth:`read`; ``available`` False for a meter that refuses it.

    :meth:`setup` learns ET09's layout from ET04.53 (once: it only changes with a new
    meter program) and probes ET09 with the same read a poll makes. A refusal there is a
    meter without power quality data (``available`` False, no exception); a refusal
    later is taken as passing (None this time, said once at debug).
    """

    def __init__(self, client: TableSource, *, with_outage: bool = True) -> None:
        """Read through ``client``; ``with_outage`` also reads the newest outage records."""
        self._client = client
        self.with_outage = with_outage
        self.available: bool | None = None
        self.latest: PowerQuality | None = None
        self.outage_records: int | None = None
        self._range: tuple[int, int] | None = None
        self._said = False

    async def setup(self) -> None:
        """Read ET04.53 and probe ET09 (both once)."""
        try:
            self.outage_records = (await self._client.read_table(ET04, ET04_OUTAGE_RECORDS, 1))[0]
        except ABSENT as err:
            _LOGGER.debug("ET04 not available (%s); assuming %d outage records", err, DEFAULT_OUTAGE_RECORDS)
            self.outage_records = DEFAULT_OUTAGE_RECORDS
        self._range = read_range(self.outage_records, with_outage=self.with_outage)
        self.available = await self._read() is not None

    async def read(self) -> PowerQuality | None:
        """Read the power quality data; None when the meter refuses ET09 or answers short."""
        if self._range is None or self.available is None:
            await self.setup()  # not yet, or cut short by a link error: learn it all again
            return self.latest if self.available else None
        if self.available is False:
            return None
        return await self._read()

    async def _read(self) -> PowerQuality | None:
        assert self._range is not None
        assert self.outage_records is not None
        offset, count = self._range
        try:
            data = await self._client.read_table(ET09, offset, count)
            quality = decode_power_quality(data, self.outage_records, start=offset)
        except ABSENT as err:
            if not self._said:
                self._said = True
                _LOGGER.debug("no power quality data (ET09: %s)", err)
            return None
        self.latest = quality
        return quality
