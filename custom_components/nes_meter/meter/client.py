"""``MeterClient``: one facade over both transports for the integration and the CLI.

It knows which tables to read and how to size the reads from the meter's dimension
tables (BT21, BT27), so a poll reads only the bytes that are decoded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
import logging
import time
from typing import Any, Final, Literal

from . import tables
from .c1218_session import C1218Session, C1218Timing
from .errors import AuthenticationError, FrameError, MeterError, NoResponseError, ResponseError
from .keys import MeterKey
from .mep_session import MepSession, MepTiming
from .snapshot import (
    SUMMATIONS,
    MeterSnapshot,
    apply_present_values,
    apply_summations,
    present_sources,
    present_value_count,
)
from .stats import FrameLog, LinkStats
from .transport import EnableLine, SerialLink

_LOGGER = logging.getLogger(__name__)

Transport = Literal["mep", "ir"]
TRANSPORTS: Final[tuple[Transport, ...]] = ("mep", "ir")
ET03_SERIAL_SIZE: Final = 30
BT01_SIZE: Final = 24
CLOCK_READ_INTERVAL: Final = 60.0


@dataclass(frozen=True, slots=True)
class MeterIdentity:
    """What the meter says about itself (BT01, ET03) and its register layout (BT21, BT27)."""

    manufacturer: str
    model: str
    firmware_version: str
    hardware_version: str
    utility_serial: str
    manufacturer_serial: str | None
    dimensions: tables.RegisterDimensions
    present_sources: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["present_sources"] = list(self.present_sources)
        return data


class MeterClient:
    """Reads an NES/Echelon meter over MEP or the optical port."""

    def __init__(
        self,
        port: str,
        transport: Transport,
        key: MeterKey,
        *,
        encrypt: bool = False,
        enable_line: EnableLine = "rts",
        mep_timing: MepTiming | None = None,
        ir_timing: C1218Timing | None = None,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {transport!r}")
        self.transport: Transport = transport
        self.stats = LinkStats()
        self.frames = FrameLog()
        self._link = SerialLink(port, enable_line=enable_line if transport == "mep" else "none")
        self._session: MepSession | C1218Session
        if transport == "mep":
            self._session = MepSession(
                self._link, key, encrypt=encrypt, timing=mep_timing, stats=self.stats, frames=self.frames
            )
        else:
            self._session = C1218Session(self._link, key, timing=ir_timing, stats=self.stats, frames=self.frames)
        self.identity: MeterIdentity | None = None
        self._clock: tuple[datetime, float] | None = None  # (meter UTC time, monotonic when read)

    @property
    def port(self) -> str:
        return self._link.port

    @property
    def is_open(self) -> bool:
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
        try:
            if self._link.is_open:
                await self._session.stop()
        except MeterError as err:
            _LOGGER.debug("ending session: %s", err)
        finally:
            await self._link.close()

    async def __aenter__(self) -> MeterClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def read_table(self, table_id: int, offset: int, count: int) -> bytes:
        return await self._session.read(table_id, offset, count)

    async def identify(self) -> MeterIdentity:
        """Read BT01, ET03, BT21 and BT27 (once per connection)."""
        info = tables.decode_bt01(await self.read_table(tables.BT01, 0, BT01_SIZE))
        serial = tables.decode_et03(await self.read_table(tables.ET03, 0, ET03_SERIAL_SIZE))
        dims = tables.decode_bt21(await self.read_table(tables.BT21, 0, 10))
        selection: tuple[int, ...] | None = None
        if dims.bt27_size:
            try:
                selection = tables.decode_bt27(
                    await self.read_table(tables.BT27, 0, dims.bt27_size), dims
                ).value_sources
            except ResponseError as err:
                _LOGGER.debug("BT27 not readable (%s); using the documented BT28 order", err)
        self.identity = MeterIdentity(
            manufacturer=info.manufacturer,
            model=info.model,
            firmware_version=info.firmware_version,
            hardware_version=info.hardware_version,
            utility_serial=serial,
            manufacturer_serial=info.manufacturer_serial,
            dimensions=dims,
            present_sources=present_sources(dims, selection),
        )
        return self.identity

    async def read_snapshot(self, *, hold_for: float | None = None) -> MeterSnapshot:
        """Read energies (BT23), present values (BT28) and the clock (BT52).

        ``hold_for``: seconds until the next poll; on the optical port the session is
        kept open that long.
        """
        identity = self.identity or await self.identify()
        dims = identity.dimensions
        snapshot = MeterSnapshot()
        summations = min(dims.summations, len(SUMMATIONS))
        if summations:
            data = await self.read_table(tables.BT23, 0, dims.summations_offset + 4 * summations)
            apply_summations(snapshot, tables.decode_bt23_summations(data, dims, summations))
        values = present_value_count(identity.present_sources)
        if values:
            data = await self.read_table(tables.BT28, 0, dims.present_values_offset + 4 * values)
            apply_present_values(snapshot, tables.decode_bt28(data, dims, values), identity.present_sources)
        snapshot.meter_time = await self._meter_time()
        if self._session.alert_pending:
            snapshot.alert_flags = await self._read_alert_flags()
        if hold_for is not None and isinstance(self._session, C1218Session):
            await self._session.hold(hold_for)
        return snapshot

    async def _meter_time(self) -> datetime:
        """The meter clock, read once a minute and carried forward in between.

        Keeps a fast poll within the guide's average of one table read per second.
        """
        now = time.monotonic()
        if self._clock is None or now - self._clock[1] >= CLOCK_READ_INTERVAL:
            self._clock = (tables.decode_bt52(await self.read_table(tables.BT52, 0, 7)), now)
        meter_time, read_at = self._clock
        return meter_time + timedelta(seconds=round(now - read_at))

    async def _read_alert_flags(self) -> tuple[str, ...]:
        """The guide's read-only reaction to alert markers: read and report the flags."""
        self._session.alert_pending = False
        try:
            et11 = await self.read_table(tables.ET11, 0, 2)
            flags = await self.read_table(tables.ET13, tables.alert_flags_offset(et11), 1)
        except ResponseError as err:
            _LOGGER.debug("alert flags not readable: %s", err)
            return ()
        return tables.decode_alert_flags(flags[0])

    def diagnostics(self) -> dict[str, Any]:
        """Counters, dimensions and the last frames (security password already masked)."""
        return {
            "transport": self.transport,
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
        except AuthenticationError:
            return transport
        except (NoResponseError, FrameError):
            continue
        else:
            return transport
        finally:
            await client.close()
    return None
