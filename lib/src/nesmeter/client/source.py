"""What a reader needs from the client: table reads, not the whole ``MeterClient``.

The readers of the longer tables (load profile, event log, billing, power quality, relay)
take a :class:`TableSource`, which ``MeterClient`` satisfies. So they never import the
client, the client can import them, and a test can hand them any object that reads tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from nesmeter.tables.identity import MeterIdentity
    from nesmeter.tables.load_profile import LoadProfileLayout


class TableSource(Protocol):
    """A connected meter whose tables can be read, with what the readers keep on it.

    ``load_profile_layout`` and ``load_profile_said`` live on the source, not the reader,
    because they belong to the connection: the layout is read once per connection and
    each reason for "no load profile" is logged once, however many readers come and go.
    """

    load_profile_layout: LoadProfileLayout | None
    load_profile_said: set[str]

    @property
    def identity(self) -> MeterIdentity | None:
        """The identity read by ``identify()``; None before it."""

    @property
    def max_read_size(self) -> int:
        """The largest table read one request/reply carries on this transport."""

    async def read_table(self, table_id: int, offset: int, count: int) -> bytes:
        """``count`` bytes of table ``table_id`` from ``offset``; raises the library's errors."""

    async def read_optional[T](
        self, what: str, table_id: int, offset: int, count: int, decode: Callable[[bytes], T]
    ) -> T | None:
        """One read, decoded; None when the meter refuses it, sends less or sends nonsense."""
