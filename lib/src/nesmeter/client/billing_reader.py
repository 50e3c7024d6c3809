"""The billing reader: tariff state, tier energies, demands and self-reads, a read at a time.

The decoders are in ``nesmeter.tables.billing``; the reader takes a ``TableSource`` (the client).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from nesmeter.tables import tables
from nesmeter.tables.billing import (
    BT26,
    BT26_HEADER,
    BT55_SIZE,
    Demands,
    DemandSelection,
    SelfRead,
    SelfReadHeader,
    TariffState,
    TierEnergy,
    TierSpan,
    bt22_demand_span,
    decode_bt22_demands,
    decode_bt26_header,
    decode_bt55,
    decode_demands,
    decode_self_read,
    decode_tiers,
    demand_span,
    self_read_span,
    tier_spans,
)

if TYPE_CHECKING:
    from nesmeter.client.source import TableSource
    from nesmeter.tables.identity import MeterIdentity


class BillingReader:
    """One table read per ``read_*`` call: the caller (HA) schedules them rarely.

    ``setup`` (after ``client.identify()``) learns what the meter has with BT55, BT22's
    demand part (meters with demands: the identity keeps only the summation sources) and
    the BT26 header (meters with self-reads). A table the meter refuses makes that part
    unavailable (``has_*`` False, ``read_*`` None), logged once at debug; a link failure
    is the caller's as for every other read.
    """

    def __init__(self, client: TableSource, *, exchanges: int = 1) -> None:
        """``exchanges``: how many request/replies one read may take (default: one).

        On the optical port one exchange carries 108 bytes: 3 of a house meter's 4 tier
        blocks, so its tiers take two reads. A caller that accepts two exchanges per read
        passes ``exchanges=2`` (one read for them all).
        """
        self._client = client
        self._exchanges = exchanges
        self.has_tariff = False
        self.tiers = 0
        self.has_demands = False
        self.has_self_reads = False
        self.tariff: TariffState | None = None
        self.self_read_header: SelfReadHeader | None = None
        self.demand_selection: DemandSelection | None = None
        self.reads = 0

    @property
    def max_read(self) -> int:
        """The bytes one read may ask for: the exchanges it may take times what one carries."""
        return self._exchanges * self._client.max_read_size

    def _identity(self) -> MeterIdentity:
        identity = self._client.identity
        if identity is None:
            raise RuntimeError("BillingReader needs client.identify() first")
        return identity

    async def _read[T](
        self, what: str, table_id: int, offset: int, count: int, decode: Callable[[bytes], T]
    ) -> T | None:
        """One read, counted (the bench and the tests count them); see ``MeterClient.read_optional``."""
        self.reads += 1
        return await self._client.read_optional(what, table_id, offset, count, decode)

    async def setup(self) -> None:
        """Learn what the meter has (tariff state, demand selection, self-reads) after ``identify()``."""
        dims = self._identity().dimensions
        self.tiers = dims.tiers
        self.tariff = await self.read_tariff()
        self.has_tariff = self.tariff is not None
        self.has_demands = dims.demands > 0 and dims.occurrences > 0
        if self.has_demands:
            offset, count = bt22_demand_span(dims)
            self.demand_selection = await self._read(
                "BT22 demand selection", tables.BT22, offset, count, lambda data: decode_bt22_demands(data, dims)
            )
        self.has_self_reads = False
        if dims.self_reads:
            self.has_self_reads = await self.read_self_read_header() is not None

    async def read_tariff(self) -> TariffState | None:
        """BT55: the current tier, its drive, season and local time."""
        state = await self._read("BT55", tables.BT55, 0, BT55_SIZE, decode_bt55)
        if state is not None:
            self.tariff = state
        return state

    def tier_spans(self) -> tuple[TierSpan, ...]:
        """Return the tier block groups, one read each (``read_tiers(group)``); one group on most meters."""
        identity = self._identity()
        return tier_spans(identity.dimensions, identity.summation_sources, self.max_read)

    async def read_tiers(self, group: int = 0) -> tuple[TierEnergy, ...] | None:
        """Import/export energy of the tiers in ``tier_spans()[group]``: one partial BT23 read.

        Read every group (``range(len(tier_spans()))``) for every tier; a meter whose tier
        blocks fit one read has just group 0. None when there is nothing to read, no such
        group (the plan follows the session's packet size, which a new optical session may
        negotiate differently), or the meter refused.
        """
        identity = self._identity()
        dims = identity.dimensions
        spans = self.tier_spans()
        if not 0 <= group < len(spans):
            return None
        span = spans[group]
        return await self._read(
            "BT23 tier blocks",
            tables.BT23,
            span.offset,
            span.count,
            lambda data: decode_tiers(data, dims, identity, span),
        )

    async def read_demands(self) -> Demands | None:
        """Read the demand-reset count and the total block's demand registers (one partial BT23 read)."""
        dims = self._identity().dimensions
        span = demand_span(dims, self.max_read)
        if span is None:
            return None
        selection = self.demand_selection
        return await self._read(
            "BT23 demands",
            tables.BT23,
            span.offset,
            span.count,
            lambda data: decode_demands(data, dims, span, selection),
        )

    async def read_self_read_header(self) -> SelfReadHeader | None:
        """BT26's 6-byte header (poll it to see whether a new self-read happened)."""
        header = await self._read("BT26", BT26, 0, BT26_HEADER, decode_bt26_header)
        if header is not None:
            self.self_read_header = header
        return header

    async def read_newest_self_read(self) -> SelfRead | None:
        """Read the newest entry's time, season and total import/export (not the whole entry).

        Uses the last header read (reads it first only if none was); None when the meter
        has made no self-read yet.
        """
        identity = self._identity()
        dims = identity.dimensions
        header = self.self_read_header or await self.read_self_read_header()
        if header is None or header.valid == 0 or not dims.self_reads or header.last_element >= dims.self_reads:
            return None
        offset, count = self_read_span(header, dims, identity.summation_sources)
        return await self._read(
            "BT26 entry", BT26, offset, count, lambda data: decode_self_read(data, header, identity)
        )
