"""The M-Bus reader: which devices sit behind the meter (ET14) and their newest reads (ET16, ET45).

The guide's way (MEP guide, "Reading M-Bus Scheduled Read Data"): ET29 says whether the
module is fitted, ET11 sizes the tables, ET14's occupancy bits and handles name the
devices, ET16 holds each one's first (and, with ET45 unconfigured, every) read, and
ET45, when ET36 gives it entries, logs the later ones, newest at its last entry element.
Decoders: ``nesmeter.tables.mbus`` and ``nesmeter.tables.mbus_telegram``.

:meth:`MbusReader.step` does one table read and says whether the pass needs more, so a
scheduler can spread a pass over live polls: ET14 first, then the ET16 record of each
device whose billing read length or answer count moved, then ET45's header and its new
entries, newest first, until every device has its newest read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
import logging
from typing import TYPE_CHECKING, Any

from nesmeter.errors import DecodeError
from nesmeter.tables import tables
from nesmeter.tables.mbus import (
    ET11_SPAN,
    ET14,
    ET16,
    ET36,
    ET45,
    ET45_ENTRY_HEADER,
    ET45_HEADER,
    LogDimensions,
    LogHeader,
    MbusDimensions,
    MbusRecord,
    MbusSlot,
    decode_et14,
    decode_et45_dimensions,
    decode_et45_entry,
    decode_et45_entry_head,
    decode_et45_header,
    decode_mbr,
    decode_mbus_dimensions,
    et14_size,
    et16_offset,
    et36_size,
    et45_entry_span,
    et45_offset,
    has_mbus_module,
)
from nesmeter.tables.mbus_telegram import HEADER as TELEGRAM_HEADER, MbusTelegram, decode_telegram
from nesmeter.tables.relay import ET29, ET29_OPTIONS_SIZE, decode_et29

if TYPE_CHECKING:
    from nesmeter.client.source import TableSource

_LOGGER = logging.getLogger(__name__)
SLACK = 2  # bytes read past ET14's billing read length, for a meter that counts it differently
# ET45 entries looked at per pass, newest first: enough for four devices read hourly over
# a few hours of downtime; a device that never logs does not make a pass walk the whole log.
MAX_LOG_WALK = 32


@dataclass(frozen=True, slots=True)
class MbusDevice:
    """One M-Bus device behind the meter and its newest read."""

    slot: int
    handle: int
    status: str  # ET14: "up", "down", ...
    primary_address: int | None
    read_attempts: int
    read_answers: int
    read_at: datetime | None = None  # the meter's local time of the read (naive)
    source: str | None = None  # "ET16" or "ET45"
    telegram: MbusTelegram | None = None  # None before the first read, or when not decodable
    error: str | None = None  # why the newest read gave no telegram

    def as_dict(self) -> dict[str, Any]:
        """Return the device as plain JSON types; ``read_at`` is the meter's local time (no zone)."""
        telegram = self.telegram
        return {
            "slot": self.slot,
            "handle": self.handle,
            "status": self.status,
            "primary_address": self.primary_address,
            "read_attempts": self.read_attempts,
            "read_answers": self.read_answers,
            "medium": telegram.medium if telegram else None,
            "manufacturer": telegram.manufacturer if telegram else None,
            "serial": telegram.serial if telegram else None,
            "version": telegram.version if telegram else None,
            "device_status": telegram.status if telegram else None,
            "read_at": self.read_at.isoformat() if self.read_at else None,
            "source": self.source,
            "values": dict(telegram.values) if telegram else {},
            "error": self.error,
        }


type Step = Callable[[], Awaitable[None]]


class MbusReader:
    """The devices of ET14 with their newest reads, one table read per :meth:`step`."""

    def __init__(self, client: TableSource) -> None:
        """Read through ``client``; nothing is known before :meth:`setup`."""
        self._client = client
        self.available: bool | None = None  # None before setup; False without a module
        self.dimensions: MbusDimensions | None = None
        self.log: LogDimensions | None = None
        self.devices: dict[int, MbusDevice] = {}  # by slot
        self._queue: list[Step] = []
        # slot -> (billing read length, last billing read attempt) of the ET16 record read
        self._seen: dict[int, tuple[int, datetime | None]] = {}
        self._log_sequence: int | None = None  # ET45's last sequence once all its new entries were read
        self._walked_sequence: int | None = None  # the one a walk under way will have read
        self._said: set[str] = set()

    async def setup(self, hardware_options: int | None = None) -> None:
        """Learn whether there is a module and how big its tables are (ET29, ET11, ET36).

        ``hardware_options``: ET29.0 when the caller has read it already (the relay reader
        does), which saves the read.
        """
        options = hardware_options
        if options is None:
            options = await self._client.read_optional(
                "hardware configuration (ET29)", ET29, 0, ET29_OPTIONS_SIZE, lambda data: decode_et29(data).options
            )
        if options is None or not has_mbus_module(options):
            self.available = False
            return
        self.dimensions = await self._client.read_optional(
            "M-Bus dimensions (ET11)", tables.ET11, 0, ET11_SPAN, decode_mbus_dimensions
        )
        if self.dimensions is None:
            self.available = False
            return
        log = await self._client.read_optional("log dimensions (ET36)", ET36, 0, et36_size(), decode_et45_dimensions)
        self.log = log if log is not None and log.current_entries and log.entry_size > ET45_HEADER else None
        self.available = True

    async def read_all(self) -> dict[int, MbusDevice]:
        """Set up if not yet, then one whole pass: every device with its newest read."""
        if self.available is None:
            await self.setup()
        while await self.step():
            pass
        return self.devices

    async def step(self) -> bool:
        """Do one table read of the pass (starting one if none is under way); whether more follow."""
        if not self.available:
            return False
        if not self._queue:
            self._queue.append(self._read_et14)
        try:
            await self._queue.pop(0)()
        except BaseException:
            self.abort()
            raise
        if not self._queue and self._walked_sequence is not None:  # the log's new entries are all read
            self._log_sequence, self._walked_sequence = self._walked_sequence, None
        return bool(self._queue)

    def abort(self) -> None:
        """Forget a pass cut short (the next step starts from ET14, a log walk from its start)."""
        self._queue.clear()
        self._walked_sequence = None

    async def _read_et14(self) -> None:
        dims = self.dimensions
        assert dims is not None
        slots = await self._client.read_optional(
            "M-Bus device status (ET14)", ET14, 0, et14_size(dims), lambda data: decode_et14(data, dims)
        )
        if slots is None:
            return
        self.devices = {slot.slot: self._with_status(slot) for slot in slots}
        for slot in slots:
            if slot.billing_read_length and self._seen.get(slot.slot) != (slot.billing_read_length, slot.last_attempt):
                self._queue.append(self._et16_step(slot))
        if self.log is not None:
            self._queue.append(self._read_log_header)

    def _with_status(self, slot: MbusSlot) -> MbusDevice:
        """ET14's news of a device, with the newest read already known of it."""
        status = MbusDevice(
            slot.slot, slot.handle, slot.status, slot.primary_address, slot.read_attempts, slot.read_answers
        )
        known = self.devices.get(slot.slot)
        if known is None or known.handle != slot.handle:  # a new device in the slot: its reads start over
            self._seen.pop(slot.slot, None)
            return status
        return replace(status, read_at=known.read_at, source=known.source, telegram=known.telegram, error=known.error)

    def _et16_step(self, slot: MbusSlot) -> Step:
        async def read() -> None:
            dims = self.dimensions
            assert dims is not None
            count = min(dims.data_entry, slot.billing_read_length + SLACK)
            record = await self._client.read_optional(
                f"M-Bus read of slot {slot.slot} (ET16)", ET16, et16_offset(dims, slot.slot), count, decode_mbr
            )
            if record is not None:
                self._seen[slot.slot] = (slot.billing_read_length, slot.last_attempt)
                self._take(slot.slot, record, "ET16")

        return read

    async def _read_log_header(self) -> None:
        header = await self._client.read_optional("M-Bus read log (ET45)", ET45, 0, ET45_HEADER, decode_et45_header)
        if header is None or not header.valid or header.last_sequence == self._log_sequence:
            return
        new = header.valid if self._log_sequence is None else (header.last_sequence - self._log_sequence) & 0xFFFF
        self._walked_sequence = header.last_sequence
        self._queue.append(self._log_head_step(header, 0, min(new, header.valid, MAX_LOG_WALK), set()))

    def _log_head_step(self, header: LogHeader, back: int, new: int, found: set[int]) -> Step:
        """Read the head of the entry ``back`` places before the newest (8 bytes: whose, how long).

        The guide's step 6: the whole entry is read only for a device that has no newer
        one yet; the walk ends when every device has one or the new entries are done.
        """

        async def read() -> None:
            log = self.log
            assert log is not None
            element = (header.last_element - back) % log.current_entries
            offset = et45_offset(log, element)
            head = await self._client.read_optional(
                "M-Bus read log entry (ET45)", ET45, offset, ET45_ENTRY_HEADER, decode_et45_entry_head
            )
            slot = self._slot_of(head.handle) if head is not None and head.usable else None
            if head is not None and slot is not None and head.handle not in found:
                found.add(head.handle)
                self._queue.append(self._log_entry_step(offset, et45_entry_span(head, log), slot))
            if back + 1 < new and not {device.handle for device in self.devices.values()} <= found:
                self._queue.append(self._log_head_step(header, back + 1, new, found))

        return read

    def _log_entry_step(self, offset: int, count: int, slot: int) -> Step:
        async def read() -> None:
            entry = await self._client.read_optional(
                "M-Bus read log entry (ET45)", ET45, offset, count, decode_et45_entry
            )
            if entry is not None:
                self._take(slot, entry.record, "ET45")

        return read

    def _slot_of(self, handle: int) -> int | None:
        return next((device.slot for device in self.devices.values() if device.handle == handle), None)

    def _take(self, slot: int, record: MbusRecord, source: str) -> None:
        """Keep ``record`` for the device in ``slot`` unless it already has a newer read."""
        device = self.devices.get(slot)
        if device is None:
            return
        if device.read_at is not None and record.read_at is not None and record.read_at < device.read_at:
            return
        telegram, error = None, None
        if not record.telegrams:
            error = "no complete telegram"
        else:
            try:
                telegram = decode_telegram(record.telegrams[0], record)
            except DecodeError as err:
                error = str(err)
        for more in record.telegrams[1:] if telegram is not None else ():
            assert telegram is not None
            # a device that sends its records in several telegrams; bytes read past the
            # data can look like a short one, which is no telegram (a header is 12 bytes)
            if len(more) < TELEGRAM_HEADER:
                break
            try:
                values = decode_telegram(more, record).values
            except DecodeError as err:
                _LOGGER.debug("M-Bus device in slot %d: a further telegram skipped: %s", slot, err)
                break
            for key, value in values.items():
                telegram.values.setdefault(key, value)
        if error is not None and error not in self._said:
            self._said.add(error)
            _LOGGER.debug("M-Bus device in slot %d: %s (%s)", slot, error, source)
        self.devices[slot] = replace(device, read_at=record.read_at, source=source, telegram=telegram, error=error)
