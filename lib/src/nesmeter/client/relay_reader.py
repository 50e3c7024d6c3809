"""The disconnect relay reader: ET29 (the hardware, once), then ET23's status byte.

The decoders are in ``nesmeter.tables.relay``; the reader takes a ``TableSource`` (the client).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from nesmeter.errors import ABSENT
from nesmeter.tables.relay import (
    ET23,
    ET23_DISCONNECT_STATUS,
    ET29,
    ET29_OPTIONS_SIZE,
    RelayHardware,
    decode_disconnect_state,
    decode_et29,
)

if TYPE_CHECKING:
    from nesmeter.client.source import TableSource

_LOGGER = logging.getLogger(__name__)


class RelayReader:
    """The contactor's state, one 1-byte read per :meth:`read` on a meter that has one.

    :meth:`setup` reads ET29 once; a meter refusing it is treated as having no contactor
    (``hardware`` None), so nothing is polled that the meter cannot answer.
    """

    def __init__(self, client: TableSource) -> None:
        """Read the relay through ``client``; ET29 (the hardware) comes with :meth:`setup`."""
        self._client = client
        self.hardware: RelayHardware | None = None
        self.state: str | None = None
        self._set_up = False
        self._said = False

    @property
    def has_disconnect(self) -> bool:
        """Whether the meter has a disconnect contactor (ET29)."""
        return self.hardware is not None and self.hardware.disconnect

    async def setup(self) -> None:
        """Read ET29's hardware options (once; again only after a link error cut it short)."""
        try:
            self.hardware = decode_et29(await self._client.read_table(ET29, 0, ET29_OPTIONS_SIZE))
        except ABSENT as err:
            _LOGGER.debug("no hardware configuration (ET29: %s); assuming no disconnect", err)
            self.hardware = None
        self._set_up = True

    async def read(self) -> str | None:
        """Read the contactor's commanded state; None without a contactor or when ET23 is refused."""
        if not self._set_up:
            await self.setup()
        if not self.has_disconnect:
            return None
        try:
            raw = await self._client.read_table(ET23, ET23_DISCONNECT_STATUS, 1)
            state = decode_disconnect_state(raw)
        except ABSENT as err:
            if not self._said:
                self._said = True
                _LOGGER.debug("no disconnect state (ET23: %s)", err)
            self.state = None
            return None
        if state is None and not self._said:
            self._said = True
            _LOGGER.debug("unknown disconnect state %d (ET23.94)", raw[0])
        self.state = state
        return state
