"""``MeterClient``: one facade over both transports for the integration and the CLI.

It knows which tables to read and how to size the reads from the meter's dimension
tables (BT21, BT27), so a poll reads only the bytes that are decoded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
import logging
import time
from typing import Any, Final, Literal

from nesmeter.c1218.session import C1218Session, C1218Timing
from nesmeter.client.events_reader import EventLogReader
from nesmeter.client.load_profile_reader import LoadProfileReader, ProgressCallback
from nesmeter.client.read_plan import (
    LinkModel,
    PresentChoice,
    RatioGroup,
    ReadSchedule,
    TableRead,
    choose_present,
    judge_ratio,
    plan_ranges,
    present_choices,
    table_reads,
)
from nesmeter.errors import (
    ABSENT,
    AuthenticationError,
    DecodeError,
    FrameError,
    MeterError,
    NoResponseError,
    RefusedError,
    TlsRequiredError,
)
from nesmeter.keys import MeterKey
from nesmeter.link.trace import Trace
from nesmeter.link.transport import EnableLine, SerialLink
from nesmeter.mep import framing as mep
from nesmeter.mep.framing import MAX_READ_DATA
from nesmeter.mep.session import MepSession, MepTiming
from nesmeter.mep.tls import KeyId
from nesmeter.mep.tls_session import MepTlsSession
from nesmeter.stats import FrameLog, LinkStats
from nesmeter.tables import tables
from nesmeter.tables.identity import MeterIdentity
from nesmeter.tables.load_profile import LoadProfile, LoadProfileLayout
from nesmeter.tables.snapshot import SNAPSHOT_FIELDS, MeterSnapshot, present_sources, summation_plan, summation_sources

_LOGGER = logging.getLogger(__name__)

Transport = Literal["mep", "ir"]
MepSecurity = Literal["plain", "rc4", "tls"]
TRANSPORTS: Final[tuple[Transport, ...]] = ("mep", "ir")
ET03_SERIAL_SIZE: Final = 30
BT01_SIZE: Final = 24
BT00_SIZE: Final = 13
ENERGY_UNIT_FIRMWARE: Final = (3 << 12) | (70 << 5)  # 3.70.00 as BT01 packs it (x.yy.zz in 4/7/5 bits)
MEP_CLIENT_INDEX_OFFSET: Final = 142  # ET70.142 (Gen 4)
# Errors that mean "this table is not there (for this key) or shorter than documented".
_warned_serial_fallback: set[str] = set()
# Fields a caller can ask for: every value field, the clock, and the derived net power.
WANTABLE_FIELDS: Final = (SNAPSHOT_FIELDS - {"alert_flags"}) | {"power_net_w"}
DERIVED_FIELDS: Final[dict[str, frozenset[str]]] = {"power_net_w": frozenset({"power_import_w", "power_export_w"})}
MEP_READS_PER_SECOND: Final = 1.0  # the guide's average (p.51, p.259)


@dataclass(frozen=True, slots=True)
class PollPlan:
    """The reads of one poll and the twin pairs it compares (see ``read_plan``)."""

    reads: tuple[TableRead, ...]
    pairs: tuple[tuple[str, int, int], ...]
    registers: bool


class MeterClient:
    """Reads an NES/Echelon meter over MEP or the optical port.

    MEP security: plain (digest only), ``encrypt`` (RC4) or ``tls`` (MEP TLS mode, a TLS
    1.2 PSK session keyed by the MBK or, with ``tls_key_id=KeyId.MAK``, the MAK).
    """

    def __init__(
        self,
        port: str,
        transport: Transport,
        key: MeterKey,
        *,
        encrypt: bool = False,
        tls: bool = False,
        tls_key_id: KeyId = KeyId.MBK,
        enable_line: EnableLine = "rts",
        mep_timing: MepTiming | None = None,
        ir_timing: C1218Timing | None = None,
    ) -> None:
        """Prepare a client for ``port``; nothing is opened until :meth:`open` (or ``async with``)."""
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {transport!r}")
        if tls and transport != "mep":
            raise ValueError("TLS is a mode of the MEP port; the optical port has no TLS")
        if tls and encrypt:
            raise ValueError("choose TLS or RC4 encryption, not both: TLS encrypts the reads itself")
        self.transport: Transport = transport
        self.mep_security: MepSecurity | None = (
            None if transport != "mep" else "tls" if tls else "rc4" if encrypt else "plain"
        )
        self.stats = LinkStats()
        self.frames = FrameLog()
        self._link = SerialLink(port, enable_line=enable_line if transport == "mep" else "none")
        self._session: MepSession | MepTlsSession | C1218Session
        if tls:
            self._session = MepTlsSession(
                self._link, key, key_id=tls_key_id, timing=mep_timing, stats=self.stats, frames=self.frames
            )
        elif transport == "mep":
            self._session = MepSession(
                self._link, key, encrypt=encrypt, timing=mep_timing, stats=self.stats, frames=self.frames
            )
        else:
            self._session = C1218Session(self._link, key, timing=ir_timing, stats=self.stats, frames=self.frames)
        self.identity: MeterIdentity | None = None
        self._clock: tuple[datetime, float] | None = None  # (meter UTC time, monotonic when read)
        self._alert_offset: int | None = None  # ET13 offset of our Alert Flags (ET11 read once)
        self._absent: set[str] = set()  # optional tables this meter did not give us
        self.trace: Trace | None = None  # the running trace (start_trace), if any
        self.load_profile_layout: LoadProfileLayout | None = None  # the load profile reader caches it here
        self.load_profile_said: set[str] = set()  # why there is no load profile, logged once
        self.schedule = ReadSchedule()
        self._wanted: frozenset[str] | None = None  # None: every field
        self._registers_read_at: float | None = None
        self._ratio_one: dict[RatioGroup, bool] = {}  # learned per connection (identify)
        self._choices: dict[str, PresentChoice] = {}
        self._plans: dict[tuple[object, ...], PollPlan] = {}

    @property
    def port(self) -> str:
        """The port as given (validated), for messages and diagnostics."""
        return self._link.port

    @property
    def is_open(self) -> bool:
        """Whether the port is open."""
        return self._link.is_open

    @property
    def bytes_exchanged(self) -> int:
        """Bytes on the line in both directions since the client was created."""
        return self._link.bytes_sent + self._link.bytes_received

    async def open(self) -> None:
        """Open the port and start the transport's session; closes again on failure."""
        await self._link.open()
        try:
            await self._session.start()
        except BaseException:
            await self._link.close()
            raise

    async def close(self) -> None:
        """End the session (best effort: a meter that is gone cannot be told) and close the port."""
        try:
            if self._link.is_open:
                await self._session.stop()
        except MeterError as err:
            _LOGGER.debug("ending session: %s", err)
        finally:
            await self._link.close()

    async def __aenter__(self) -> MeterClient:
        """Open the port and start the session."""
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the session and the port, also when the block raised."""
        await self.close()

    async def read_table(self, table_id: int, offset: int, count: int) -> bytes:
        """Read ``count`` bytes of a table from ``offset``, in as many exchanges as the transport needs."""
        return await self._session.read(table_id, offset, count)

    @property
    def max_read_size(self) -> int:
        """The largest table read one request/reply carries on this transport."""
        return self._session.max_read if isinstance(self._session, C1218Session) else mep.MAX_READ_DATA

    async def read_load_profile(
        self, since: datetime | None = None, *, progress: ProgressCallback | None = None
    ) -> LoadProfile:
        """Read the load-profile intervals ending after ``since`` (see ``load_profile_reader``)."""
        return await LoadProfileReader(self, since, progress=progress).run()

    def load_profile_reader(
        self, since: datetime | None = None, *, progress: ProgressCallback | None = None
    ) -> LoadProfileReader:
        """Return a reader of the same, one table read per ``step()``, to interleave with live polls."""
        return LoadProfileReader(self, since, progress=progress)

    def event_log_reader(self, after_sequence: int | None = None) -> EventLogReader:
        """Return a reader of new event log entries after ``after_sequence``, one read per step."""
        return EventLogReader(self, after_sequence)

    async def _optional[T](self, what: str, read: Callable[[], Awaitable[T]]) -> T | None:
        """Read something a meter may refuse or lack: ``None`` then, said once at debug."""
        try:
            return await read()
        except ABSENT as err:
            if what not in self._absent:
                self._absent.add(what)
                _LOGGER.debug("%s not available (%s); carrying on without it", what, err)
            return None

    async def read_optional[T](
        self, what: str, table_id: int, offset: int, count: int, decode: Callable[[bytes], T]
    ) -> T | None:
        """Read a table range a meter may lack and decode it; None when the meter lacks it.

        None (said once per connection at debug) when the meter refuses the read, sends less
        than asked or sends what ``decode`` rejects: the caller carries on without the value.
        """
        return await self._optional(what, lambda: self._decoded(table_id, offset, count, decode))

    async def _decoded[T](self, table_id: int, offset: int, count: int, decode: Callable[[bytes], T]) -> T:
        return decode(await self.read_table(table_id, offset, count))

    async def identify(self) -> MeterIdentity:
        """Learn the meter's formats and layout (once per connection).

        Required: BT01 and BT21 (BT20 on firmware 2.x). Everything else has a documented
        default a real meter may leave us with.
        """
        self._absent.clear()
        self._alert_offset = None
        self._registers_read_at = None
        self._ratio_one.clear()
        self._plans.clear()
        config = await self._optional("BT00", lambda: self._decoded(tables.BT00, 0, BT00_SIZE, tables.decode_bt00))
        if config is not None:
            tables.check_data_format(config)
        info = tables.decode_bt01(await self.read_table(tables.BT01, 0, BT01_SIZE))
        serial = await self._optional(
            "ET03", lambda: self._decoded(tables.ET03, 0, ET03_SERIAL_SIZE, tables.decode_et03)
        ) or self._serial_fallback(info)
        dims = await self._dimensions()
        firmware_major = info.firmware_word >> 12
        present = await self._optional(
            "BT27",
            lambda: self._decoded(tables.BT27, 0, dims.bt27_size, lambda data: tables.decode_bt27(data, dims)),
        )
        selected = await self._optional(
            "BT22",
            lambda: self._decoded(
                tables.BT22, 0, dims.summations + dims.demands, lambda data: tables.decode_bt22(data, dims)
            ),
        )
        self.identity = MeterIdentity(
            manufacturer=info.manufacturer,
            model=info.model,
            firmware_version=info.firmware_version,
            hardware_version=info.hardware_version,
            utility_serial=serial,
            manufacturer_serial=info.manufacturer_serial,
            dimensions=dims,
            present_sources=present_sources(dims, present.value_sources if present and dims.bt27_size else None),
            summation_sources=summation_sources(dims, selected.summation_sources if selected else None),
            energy_unit=await self._energy_unit(info.firmware_word) or 1,
            mep_client=(
                await self._optional(
                    "ET70",
                    lambda: self._decoded(tables.ET70, MEP_CLIENT_INDEX_OFFSET, 1, tables.decode_mep_client_index),
                )
                if self.transport == "mep" and firmware_major >= 4
                else None
            )
            or 1,
        )
        self._choices = present_choices(self.identity.present_sources)
        return self.identity

    async def _dimensions(self) -> tables.RegisterDimensions:
        """BT21; firmware 2.0/2.10 answers it with "inappropriate action": BT20 then (OPG p.19, p.53)."""
        try:
            return tables.decode_bt21(await self.read_table(tables.BT21, 0, 10))
        except RefusedError as err:
            _LOGGER.debug("BT21 refused (%s); reading BT20 as firmware 2.x meters need", err)
            return tables.decode_bt21(await self.read_table(tables.BT20, 0, 10))

    async def _energy_unit(self, firmware_word: int) -> int | None:
        """ET55's Energy Register Unit; it exists from firmware 3.70 (guide p.207)."""
        if firmware_word < ENERGY_UNIT_FIRMWARE:
            return 1
        limits = await self._optional("BT20", lambda: self._decoded(tables.BT20, 0, 10, tables.decode_bt21))
        if limits is None:
            return None
        offset = tables.energy_register_unit_offset(limits.tiers, firmware_word >> 12)
        return await self._optional(
            "ET55", lambda: self._decoded(tables.ET55, offset, 1, tables.decode_energy_register_unit)
        )

    @staticmethod
    def _serial_fallback(info: tables.ManufacturerInfo) -> str:
        """ET03 is the utility's to fill and starts as zeros: use BT01's serial then."""
        if not info.manufacturer_serial:
            raise DecodeError("the meter has neither a utility serial (ET03) nor a manufacturer serial (BT01)")
        serial = f"mfg-{info.manufacturer_serial}"
        if serial not in _warned_serial_fallback:
            _warned_serial_fallback.add(serial)
            _LOGGER.warning("the meter's utility serial (ET03) is blank; identifying it as %s from BT01", serial)
        return serial

    def set_wanted(self, fields: Iterable[str] | None) -> None:
        """Read only what these snapshot fields need, from the next poll on (no reconnect).

        ``fields``: names of ``MeterSnapshot`` fields (``"meter_time"`` for the clock,
        ``"power_net_w"`` for import and export); ``None`` reads everything (the default).
        Fields not wanted stay ``None`` in the snapshots. Unknown names are a ``ValueError``.
        """
        if fields is None:
            self._wanted = None
            return
        names = frozenset(fields)
        if unknown := names - WANTABLE_FIELDS:
            raise ValueError(f"unknown snapshot field(s): {', '.join(sorted(unknown))}")
        self._wanted = frozenset().union(*(DERIVED_FIELDS.get(name, {name}) for name in names))

    def set_schedule(self, schedule: ReadSchedule) -> None:
        """How often slowly changing values are read (takes effect on the next poll)."""
        self.schedule = schedule

    @property
    def wanted(self) -> frozenset[str] | None:
        """The fields the next poll reads (``None``: all), as ``set_wanted`` expanded them."""
        return self._wanted

    @property
    def available_fields(self) -> frozenset[str]:
        """Fields this meter's layout provides (after ``identify``); others stay ``None`` always."""
        if self.identity is None:
            return frozenset()
        names = {name for _index, name, _scale in summation_plan(self.identity.summation_sources)}
        names |= self._choices.keys()
        if "BT52" not in self._absent:
            names.add("meter_time")
        if {"power_import_w", "power_export_w"} <= names:
            names.add("power_net_w")
        return frozenset(names)

    def _wants(self, name: str) -> bool:
        return self._wanted is None or name in self._wanted

    def _link_model(self) -> LinkModel:
        if isinstance(self._session, C1218Session):
            return LinkModel("ir", self._session.max_read, self._session.packet_size)
        return LinkModel("mep", MAX_READ_DATA)

    def _poll_plan(self, identity: MeterIdentity, registers: bool, interval: float | None) -> PollPlan:
        link = self._link_model()
        undecided = {"power", "current"} - self._ratio_one.keys()
        ratios = tuple(sorted(self._ratio_one.items()))
        key = (self._wanted, registers, bool(undecided), ratios, link, interval, self.schedule)
        if (cached := self._plans.get(key)) is not None:
            return cached
        dims = identity.dimensions
        summations = tuple(
            entry for entry in summation_plan(identity.summation_sources, identity.energy_unit) if self._wants(entry[1])
        )
        reads: list[TableRead] = []
        if registers:
            ranges = plan_ranges([index for index, _name, _scale in summations], link)
            reads += table_reads(tables.BT23, dims.summations_offset, summations, ranges)
        wanted = self._wanted if self._wanted is not None else self._choices.keys()
        present, pairs = choose_present(self._choices, wanted, self._ratio_one, calibrate=registers)
        indices = [index for index, _name, _scale in present]
        indices += [index for _name, raw, post in pairs for index in (raw, post)]
        ranges = plan_ranges(indices, link)
        if link.transport == "mep" and interval:
            # Keep the average within the guide's table reads per second: fewer ranges if need be.
            slow = 1 / max(interval, self.schedule.registers_interval) if summations else 0.0
            if self._wants("meter_time"):
                slow += 1 / max(interval, self.schedule.clock_interval)
            tries = (ranges, *(plan_ranges(indices, link, max_ranges=most) for most in (2, 1)))
            # The first that fits; failing that the last, one range, is the best there is.
            for ranges in tries:
                live = len(link.exchanges(4 * (last - first + 1) for first, last in ranges))
                if live / interval + slow <= MEP_READS_PER_SECOND:
                    break
        reads += table_reads(tables.BT28, dims.present_values_offset, present, ranges)
        if link.transport == "mep":
            reads.sort(key=lambda read: read.count, reverse=True)  # the 100 ms spacing is free after the last
        plan = PollPlan(tuple(reads), pairs, registers)
        if len(self._plans) >= 64:  # callers that keep changing their wishes
            self._plans.clear()
        self._plans[key] = plan
        return plan

    async def read_snapshot(self, *, hold_for: float | None = None) -> MeterSnapshot:
        """Read the wanted energies (BT23), present values (BT28) and the clock (BT52).

        ``hold_for``: seconds until the next poll; on the optical port the session is
        kept open that long, and BT23 is read only when ``schedule`` says it is due.
        Fields not read this poll are ``None``: not wanted (``set_wanted``), not due
        (``schedule``) or not on this meter (``available_fields``); the snapshot's
        ``read_fields`` names those that were read.
        """
        identity = self.identity or await self.identify()
        now = time.monotonic()
        registers = (
            hold_for is None
            or self._registers_read_at is None
            or now - self._registers_read_at >= self.schedule.registers_interval - hold_for / 2
        )
        plan = self._poll_plan(identity, registers, hold_for)
        values: dict[str, float] = {}
        twins: dict[int, int] = {}
        for read in plan.reads:
            decoded = read.decode(await self.read_table(read.table_id, read.offset, read.count))
            read.apply(decoded, values)
            if plan.pairs and read.table_id == tables.BT28:
                twins.update(zip(range(read.first, read.last + 1), decoded, strict=True))
        if plan.registers:
            self._registers_read_at = now
        if plan.pairs:
            for group, one in judge_ratio(plan.pairs, twins).items():
                self._ratio_one[group] = one
                _LOGGER.debug("%s ratio %s", group, "is 1: raw sources read" if one else "is not 1 (CT meter)")
        snapshot = MeterSnapshot(**values)  # type: ignore[arg-type]
        if self._wants("meter_time"):
            snapshot.meter_time = await self._optional("BT52", self._meter_time)
        if snapshot.meter_time is not None:
            values["meter_time"] = 0
        snapshot.read_fields = frozenset(values)
        if self._session.alert_pending:
            snapshot.alert_flags = await self._read_alert_flags()
        if hold_for is not None and isinstance(self._session, C1218Session):
            await self._session.hold(hold_for)
        return snapshot

    async def _meter_time(self) -> datetime:
        """Return the meter clock, read once a minute and carried forward in between.

        Keeps a fast poll within the guide's average of one table read per second.
        """
        now = time.monotonic()
        if self._clock is None or now - self._clock[1] >= self.schedule.clock_interval:
            self._clock = (tables.decode_bt52(await self.read_table(tables.BT52, 0, 7)), now)
        meter_time, read_at = self._clock
        return meter_time + timedelta(seconds=round(now - read_at))

    async def _read_alert_flags(self) -> tuple[str, ...]:
        """Read and report the alert flags: the guide's read-only reaction to alert markers.

        ET11 (the entry size) is read once per connection; the flags sit in this port's
        entry (MEP1 or MEP2).
        """
        self._session.alert_pending = False
        if self._alert_offset is None:
            mep_client = self.identity.mep_client if self.identity else 1
            self._alert_offset = await self._optional(
                "ET11",
                lambda: self._decoded(tables.ET11, 0, 2, lambda et11: tables.alert_flags_offset(et11, mep_client)),
            )
            if self._alert_offset is None:
                return ()
        offset = self._alert_offset
        flags = await self._optional("ET13", lambda: self.read_table(tables.ET13, offset, 1))
        return tables.decode_alert_flags(flags[0]) if flags else ()

    def start_trace(self, *, max_frames: int | None = None) -> Trace:
        """Record every frame from now on, with the key material masked (see ``nesmeter.link.trace``).

        ``recording.record_reading(client)`` traces a whole reading from a fresh session.
        """
        if self.trace is not None:
            self.trace.detach(self._session)
        self.trace = Trace(self.transport, port=self.port, max_frames=max_frames)
        self.trace.attach(self._session)
        return self.trace

    def stop_trace(self) -> Trace | None:
        """Stop recording; the trace (``trace.document()`` for its contents)."""
        trace, self.trace = self.trace, None
        if trace is not None:
            trace.detach(self._session)
        return trace

    def diagnostics(self) -> dict[str, Any]:
        """Counters, dimensions and the last frames (security password already masked)."""
        return {
            "transport": self.transport,
            "mep_security": self.mep_security,
            "stats": self.stats.as_dict(),
            "bytes_sent": self._link.bytes_sent,
            "bytes_received": self._link.bytes_received,
            "identity": self.identity.as_dict() if self.identity else None,
            "last_frames": self.frames.as_list(),
        }


async def probe_transport(port: str) -> Transport | None:
    """Which transport answers on ``port``: MEP replies even to a wrong key, IR to identify."""
    probe_key = MeterKey(b"nes-meter-probe!")
    for transport in TRANSPORTS:
        client = MeterClient(port, transport, probe_key)
        try:
            await client.open()
            await client.read_table(tables.BT01, 0, 4)
        except (AuthenticationError, TlsRequiredError):
            return transport
        except (NoResponseError, FrameError):
            continue
        else:
            return transport
        finally:
            await client.close()
    return None
