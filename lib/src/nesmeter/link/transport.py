"""Byte link over ``serialx``: device paths and ``socket://`` / ``rfc2217://`` URLs.

A small buffered protocol instead of ``StreamReader`` so the sessions can peek, discard
stale input and wait with exact per-frame deadlines. Every OS/serialx failure becomes a
``PortError`` with a message that names the problem, never the key.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import logging
from typing import Final, Literal

import serialx

from nesmeter.errors import InvalidPortError, PortError
from nesmeter.link.serialx_compat import redact_uri

_LOGGER = logging.getLogger(__name__)

BAUDRATE: Final = 9600
BYTE_TIME: Final = 10 / BAUDRATE  # 8N1: ten bits per byte
ALLOWED_SCHEMES: Final = ("socket://", "rfc2217://")
EnableLine = Literal["rts", "dtr", "none"]


class LineTimeout(Exception):
    """Internal: nothing (or not enough) arrived before the deadline."""


_PAYLOAD_TYPES: Final = (bytes, bytearray, memoryview)
# True while serialx runs on behalf of one of our links: set around our calls into it, and
# inherited by the reader/writer callbacks serialx registers during them (asyncio copies the
# current context into every callback), so other serialx users' records (ZHA, core usb) pass.
_OUR_LINK: Final = contextvars.ContextVar("nes_meter_link", default=False)


class _NoPayloadFilter(logging.Filter):
    """Replaces raw bytes in serialx's DEBUG records by their length.

    serialx logs every chunk it reads and writes, and a C12.18 security request carries
    the password in clear: with debug logging on, the key would end up in the log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _OUR_LINK.get():
            return True
        if isinstance(record.args, tuple) and any(isinstance(arg, _PAYLOAD_TYPES) for arg in record.args):
            record.args = tuple(
                f"<{len(arg)} bytes>" if isinstance(arg, _PAYLOAD_TYPES) else arg for arg in record.args
            )
        return True


_NO_PAYLOAD: Final = _NoPayloadFilter()


def _hide_serialx_payloads() -> None:
    """Hide serialx's payloads on every serialx logger: a filter sits on the logger that creates a record."""
    for name in list(logging.root.manager.loggerDict):
        if name == "serialx" or name.startswith("serialx."):
            logger = logging.getLogger(name)
            if _NO_PAYLOAD not in logger.filters:
                logger.addFilter(_NO_PAYLOAD)


def validate_port(port: str) -> str:
    """Accept a device path or a ``socket://`` / ``rfc2217://`` URL, nothing else."""
    port = port.strip()
    if not port:
        raise InvalidPortError("no port given")
    if "://" in port:
        if not port.lower().startswith(ALLOWED_SCHEMES) or len(port.split("://", 1)[1]) == 0:
            raise InvalidPortError("only device paths and socket:// or rfc2217:// URLs are supported")
        return port
    if not port.startswith("/") and not port.upper().startswith("COM"):
        raise InvalidPortError("a device path must be absolute, like /dev/serial/by-id/...")
    return port


def describe_port(port: str) -> str:
    """Return the port without credentials (user:password@, secret query values), safe for logs and errors."""
    scheme, separator, rest = port.partition("://")
    # Everything up to the last "@" before the query: a password may contain "/" (and "@").
    authority_end = min((i for i in map(rest.find, "?#") if i >= 0), default=len(rest))
    if separator and "@" in rest[:authority_end]:
        after = rest[:authority_end].rsplit("@", 1)[1]
        port = f"{scheme}{separator}***@{after}{rest[authority_end:]}"
    return redact_uri(port)


def _port_error(port: str, err: BaseException) -> PortError:
    where = describe_port(port)
    if isinstance(err, FileNotFoundError):
        return PortError(f"{where}: no such port")
    if isinstance(err, PermissionError):
        return PortError(f"{where}: permission denied")
    if isinstance(err, ConnectionRefusedError):
        return PortError(f"{where}: connection refused")
    if isinstance(err, TimeoutError):
        return PortError(f"{where}: connection timed out")
    if isinstance(err, OSError) and err.errno in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
        return PortError(f"{where}: port is busy (in use by another program)")
    return PortError(f"{where}: {err.__class__.__name__}: {err}")


class _BufferProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.buffer.extend(data)
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        finally:
            self._waiter = None


class SerialLink:
    """An open 9600 8N1 line to a meter with deadline-based reads."""

    def __init__(self, port: str, *, enable_line: EnableLine = "rts") -> None:
        """Prepare a link to ``port`` (checked now); ``enable_line`` is the MEP ENABLE line, if any."""
        self.port = validate_port(port)
        self.enable_line: EnableLine = enable_line
        self.bytes_sent = 0
        self.bytes_received = 0
        self._transport: serialx.BaseSerialTransport | None = None
        self._protocol = _BufferProtocol()

    @property
    def is_open(self) -> bool:
        """Whether the port is open and its connection alive."""
        return self._transport is not None and not self._protocol.closed

    async def open(self) -> None:
        """Open the port through serialx; any failure is a ``PortError``."""
        _hide_serialx_payloads()  # serialx loads its platform modules lazily: sweep at every open
        loop = asyncio.get_running_loop()
        self._protocol = _BufferProtocol()
        token = _OUR_LINK.set(True)
        try:
            transport, _ = await serialx.create_serial_connection(
                loop, lambda: self._protocol, self.port, baudrate=BAUDRATE, exclusive=True
            )
        except (OSError, TimeoutError, serialx.SerialException, ValueError) as err:
            raise _port_error(self.port, err) from None
        finally:
            _OUR_LINK.reset(token)
        _hide_serialx_payloads()
        self._transport = transport

    async def set_enable(self, asserted: bool) -> bool:
        """Drive the MEP ENABLE line; False when the port has no modem lines (sockets, ptys)."""
        if self.enable_line == "none" or self._transport is None or self.port.startswith("socket://"):
            return False
        try:
            if self.enable_line == "rts":
                await self._transport.set_modem_pins(rts=asserted)
            else:
                await self._transport.set_modem_pins(dtr=asserted)
        except (OSError, serialx.SerialException, NotImplementedError, serialx.UnsupportedSetting):
            return False
        return True

    def _require_open(self) -> serialx.BaseSerialTransport:
        if self._transport is None or self._protocol.closed:
            raise PortError(f"{describe_port(self.port)}: port closed or lost")
        return self._transport

    def write(self, data: bytes) -> None:
        """Queue bytes for the line; serialx logs them by length only."""
        transport = self._require_open()
        token = _OUR_LINK.set(True)
        try:
            transport.write(data)
        except (OSError, serialx.SerialException, RuntimeError) as err:
            raise _port_error(self.port, err) from None
        finally:
            _OUR_LINK.reset(token)
        self.bytes_sent += len(data)

    def peek(self) -> bytes:
        """Return the bytes received and not read yet, without taking them."""
        return bytes(self._protocol.buffer)

    def unread(self, data: bytes) -> None:
        """Put bytes back in front of the buffer (a frame start found while resyncing)."""
        self._protocol.buffer[:0] = data
        self.bytes_received -= len(data)

    def discard(self) -> bytes:
        """Drop and return what has arrived so far (stale replies, garbage, alert markers)."""
        dropped = bytes(self._protocol.buffer)
        self._protocol.buffer.clear()
        return dropped

    async def wait_for(self, size: int, timeout: float) -> None:
        """Wait until ``size`` bytes are buffered (left there), at most ``timeout`` seconds."""
        proto = self._protocol
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(proto.buffer) < size:
            self._require_open()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LineTimeout
            try:
                await proto.wait(remaining)
            except TimeoutError:
                raise LineTimeout from None

    async def read_exactly(self, size: int, timeout: float) -> bytes:
        """Wait until ``size`` bytes are buffered, at most ``timeout`` seconds, and take them."""
        await self.wait_for(size, timeout)
        proto = self._protocol
        data = bytes(proto.buffer[:size])
        del proto.buffer[:size]
        self.bytes_received += size
        return data

    async def wait_quiet(self, quiet: float, limit: float = 1.0) -> int:
        """Discard input until the line has been silent for ``quiet`` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        dropped = len(self.discard())
        while loop.time() < end and not self._protocol.closed:
            try:
                await self._protocol.wait(quiet)
            except TimeoutError:
                break
            dropped += len(self.discard())
        return dropped

    async def close(self) -> None:
        """Close the port (again is harmless)."""
        transport, self._transport = self._transport, None
        if transport is None:
            return
        transport.close()
        try:
            async with asyncio.timeout(2):
                await transport.wait_closed()
        except (TimeoutError, OSError, serialx.SerialException) as err:
            _LOGGER.debug("closing %s: %s", describe_port(self.port), err)
