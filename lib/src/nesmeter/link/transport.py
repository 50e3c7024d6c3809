"""Byte link over ``serialx``: device paths, ``socket://`` / ``rfc2217://`` URLs and ESPHome serial proxies.

An ESPHome serial proxy is a UART of an ESPHome device shared over its native API:
``esphome://HOST[:6053]?port_name=NAME[&key=NOISE_PSK]`` (serialx with aioesphomeapi, the
``nesmeter[esphome]`` extra) or, inside Home Assistant, ``esphome-hass://esphome/ENTRY_ID?port_name=NAME``
(the handler that Home Assistant's ESPHome integration registers with serialx). The modem lines
(RTS, DTR) cross the proxy too, so MEP's ENABLE line works as on a local port.

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
from urllib.parse import parse_qs, urlsplit

import serialx

from nesmeter.errors import (
    InvalidPortError,
    PortError,
    ProxyAuthError,
    ProxyOfflineError,
    ProxyPortNotFoundError,
)
from nesmeter.link.serialx_compat import redact_uri

_LOGGER = logging.getLogger(__name__)

BAUDRATE: Final = 9600
BYTE_TIME: Final = 10 / BAUDRATE  # 8N1: ten bits per byte
ESPHOME_SCHEMES: Final = ("esphome://", "esphome-hass://")
ALLOWED_SCHEMES: Final = ("socket://", "rfc2217://", *ESPHOME_SCHEMES)
# How serialx finds the proxy's port: by name, or by the device behind it (Home Assistant's
# port list names a USB adapter on a proxy by its udev id or serial number).
ESPHOME_PORT_PARAMS: Final = frozenset(
    {
        "port_name",
        "port_udev_id",
        "port_serial_number",
        "port_manufacturer",
        "port_product",
        "port_usb_vid",
        "port_usb_pid",
        "port_usb_bcd_device",
        "port_usb_interface_num",
    }
)
# aioesphomeapi's errors for a refused key or password (serialx keeps them as the cause).
_PROXY_KEY_ERRORS: Final = frozenset(
    {
        "InvalidEncryptionKeyAPIError",
        "EncryptionErrorAPIError",
        "RequiresEncryptionAPIError",
        "EncryptionPlaintextAPIError",
        "EncryptionHelloAPIError",
        "InvalidAuthAPIError",
    }
)
# aioesphomeapi's and the OS's errors for a device that does not answer (found among the causes).
_PROXY_UNREACHABLE: Final = frozenset({"SocketAPIError", "TimeoutAPIError", "ConnectionRefusedError"})
EnableLine = Literal["rts", "dtr", "none"]


class LineTimeout(Exception):
    """Internal: nothing (or not enough) arrived before the deadline."""


_PAYLOAD_TYPES: Final = (bytes, bytearray, memoryview)
# True while serialx runs on behalf of one of our links: set around our calls into it, and
# inherited by the reader/writer callbacks serialx registers during them (asyncio copies the
# current context into every callback), so other serialx users' records (ZHA, core usb) pass.
_OUR_LINK: Final = contextvars.ContextVar("nes_meter_link", default=False)


def _without_payload(arg: object, *, frame: bool) -> object:
    """``arg`` with the bytes it carries replaced by their length."""
    if isinstance(arg, _PAYLOAD_TYPES):
        return f"<{len(arg)} bytes>"
    data = getattr(arg, "data", None)  # aioesphomeapi's serial proxy messages (protobuf) carry the bytes
    if hasattr(arg, "SerializeToString") and isinstance(data, bytes):
        return f"<{type(arg).__name__} with {len(data)} bytes>"
    if frame and isinstance(arg, str) and len(arg) >= 8 and all(char in _HEX for char in arg):
        return f"<{len(arg) // 2} bytes>"  # aioesphomeapi's "Sending frame: [hex]"
    return arg


_HEX: Final = frozenset("0123456789abcdefABCDEF")


class _NoPayloadFilter(logging.Filter):
    """Replaces raw bytes in serialx's and aioesphomeapi's DEBUG records by their length.

    serialx logs every chunk it reads and writes, and aioesphomeapi every message and frame
    it sends or receives; a C12.18 security request carries the password in clear: with
    debug logging on, the key would end up in the log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _OUR_LINK.get() or not isinstance(record.args, tuple):
            return True
        frame = "frame" in str(record.msg)
        record.args = tuple(_without_payload(arg, frame=frame) for arg in record.args)
        return True


_NO_PAYLOAD: Final = _NoPayloadFilter()
_PAYLOAD_LOGGERS: Final = ("serialx", "aioesphomeapi")


def _hide_serialx_payloads() -> None:
    """Hide the payloads on every serialx and aioesphomeapi logger (a filter acts on its own logger's records)."""
    for name in list(logging.root.manager.loggerDict):
        if name.partition(".")[0] in _PAYLOAD_LOGGERS:
            logger = logging.getLogger(name)
            if _NO_PAYLOAD not in logger.filters:
                logger.addFilter(_NO_PAYLOAD)


def is_esphome_proxy(port: str) -> bool:
    """Whether ``port`` names an ESPHome serial proxy (``esphome://`` or ``esphome-hass://``)."""
    return port.lower().startswith(ESPHOME_SCHEMES)


def _validate_esphome(port: str) -> None:
    parts = urlsplit(port)
    if parts.scheme.lower() == "esphome" and not parts.hostname:
        raise InvalidPortError("an esphome:// URL needs the device's host name or address")
    if parts.scheme.lower() == "esphome-hass" and not parts.path.strip("/"):
        raise InvalidPortError("an esphome-hass:// URL needs the ESPHome config entry id")
    if not ESPHOME_PORT_PARAMS & parse_qs(parts.query).keys() and not parts.path.strip("/").isdigit():
        raise InvalidPortError("an ESPHome serial proxy URL needs the proxy's port, as ?port_name=NAME")


def validate_port(port: str) -> str:
    """Accept a device path, a ``socket://`` / ``rfc2217://`` URL or an ESPHome serial proxy URL."""
    port = port.strip()
    if not port:
        raise InvalidPortError("no port given")
    if "://" in port:
        if not port.lower().startswith(ALLOWED_SCHEMES) or len(port.split("://", 1)[1]) == 0:
            raise InvalidPortError(
                "only device paths and socket://, rfc2217://, esphome:// or esphome-hass:// URLs are supported"
            )
        if is_esphome_proxy(port):
            _validate_esphome(port)
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


def _causes(err: BaseException) -> list[str]:
    """Return the class names of ``err`` and of every error it was raised from (serialx wraps aioesphomeapi's)."""
    names: list[str] = []
    seen: BaseException | None = err
    while seen is not None and len(names) < 200:
        names.extend(cls.__name__ for cls in type(seen).__mro__)
        seen = seen.__cause__ or seen.__context__
    return names


def _proxy_error(port: str, where: str, err: BaseException) -> PortError | None:
    """Tell a failed ESPHome serial proxy apart as the user can fix it; None: report it as any port."""
    names = _causes(err)
    if _PROXY_KEY_ERRORS.intersection(names):
        return ProxyAuthError(f"{where}: the ESPHome device refused the connection: wrong or missing encryption key")
    if "UnknownUriScheme" in names:
        if port.lower().startswith("esphome-hass://"):
            return ProxyOfflineError(f"{where}: only Home Assistant's ESPHome integration opens esphome-hass:// ports")
        return PortError(f"{where}: esphome:// needs aioesphomeapi (pip install 'nesmeter[esphome]')")
    text = str(err)
    if (isinstance(err, ValueError) and "does not exist" in text) or "No serial proxy has" in text:
        return ProxyPortNotFoundError(f"{where}: the ESPHome device has no such serial proxy port")
    if "No device is attached" in text or (isinstance(err, OSError) and err.errno == errno.ENXIO):
        return ProxyPortNotFoundError(f"{where}: nothing is attached to that serial proxy port")
    if isinstance(err, OSError) and err.errno == errno.EBUSY:
        return PortError(f"{where}: the serial proxy port is in use by another client")
    if "is not loaded" in text or "has not registered" in text or "No ESPHome config entry" in text:
        return ProxyOfflineError(f"{where}: the ESPHome device is not connected to Home Assistant")
    if (
        isinstance(err, OSError | TimeoutError)
        or _PROXY_UNREACHABLE.intersection(names)
        or "Error connecting to" in text
    ):
        # older serialx/aioesphomeapi (HA 2026.10's) wrap a refused or timed-out connect in SerialException
        return ProxyOfflineError(f"{where}: the ESPHome device cannot be reached ({err.__class__.__name__})")
    return None


def _port_error(port: str, err: BaseException) -> PortError:
    where = describe_port(port)
    if is_esphome_proxy(port) and (proxy := _proxy_error(port, where, err)) is not None:
        return proxy
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
