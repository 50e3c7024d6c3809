"""A test ESPHome device: the native API's serial proxy in front of simulated meters.

What an ESP32 running stock ESPHome with ``serial_proxy`` is to Home Assistant, on 127.0.0.1:
it speaks ESPHome's native API, plaintext or Noise (``Noise_NNpsk0_25519_ChaChaPoly_SHA256``,
the ``api: encryption: key:`` of the YAML), with aioesphomeapi's own protobuf messages, and
carries each serial proxy port's bytes to and from a :class:`SimulatedMeter` as a UART wired to
the meter would. It answers what serialx's ESPHome backend asks (hello, device info, subscribe,
configure, mode, modem pins, identity, ping) the way ESPHome 2026.10's ``api_connection.cpp``
does, and records the modem lines each port saw, so that a test can tell whether MEP's ENABLE
line (RTS or DTR) was asserted before the first request.

Needs aioesphomeapi (``nesmeter[esphome]``); the client never imports this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import dataclass, field
import logging
from typing import Any, Final
from urllib.parse import quote

from aioesphomeapi import api_pb2
from aioesphomeapi.core import MESSAGE_TYPE_TO_PROTO
from cryptography.exceptions import InvalidTag
from noise.connection import NoiseConnection

from nesmeter.sim.simulator import SimulatedMeter

_LOGGER = logging.getLogger(__name__)

API_VERSION: Final = (1, 19)  # what ESPHome 2026.10 answers
NOISE_PROTOCOL: Final = b"Noise_NNpsk0_25519_ChaChaPoly_SHA256"
NOISE_PROLOGUE: Final = b"NoiseAPIInit\x00\x00"
RTS: Final = 1  # SerialProxySetModemPinsRequest.line_states bits
DTR: Final = 2
_TYPE_OF: Final[dict[type[Any], int]] = {cls: number for number, cls in MESSAGE_TYPE_TO_PROTO.items()}


@dataclass(slots=True)
class ProxyPort:
    """One ``serial_proxy:`` entry: a UART wired to a simulated meter's MEP or optical port."""

    name: str
    meter: SimulatedMeter
    transport: str = "mep"  # which meter port the UART is wired to: "mep" or "ir"
    port_type: int = api_pb2.SERIAL_PROXY_PORT_TYPE_RS232
    line_states: int = 0  # RTS/DTR as last set by a client
    baudrate: int | None = None  # as the client configured the UART
    pins_at_first_write: int | None = None  # the modem lines when the first request byte arrived
    pin_changes: list[int] = field(default_factory=list)
    bytes_written: int = 0
    subscriber: _ApiConnection | None = None
    _feed: Callable[[bytes], None] | None = None
    _task: asyncio.Task[None] | None = None


class _FrameError(Exception):
    """The peer broke the framing or the handshake: the device drops the connection."""


class _ApiConnection:
    """One API client: framing (plaintext or Noise), then the messages."""

    def __init__(self, device: EsphomeProxyDevice, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.device = device
        self.reader = reader
        self.writer = writer
        self._noise: Any = None  # the NoiseConnection once the handshake is done

    # ---- framing ----

    async def _read_varint(self) -> int:
        value = shift = 0
        while True:
            byte = (await self.reader.readexactly(1))[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 35:
                raise _FrameError("varint too long")

    async def _read_noise_frame(self) -> bytes:
        header = await self.reader.readexactly(3)
        if header[0] != 0x01:
            raise _FrameError("not a noise frame")
        return await self.reader.readexactly(header[1] << 8 | header[2])

    def _write_noise_frame(self, payload: bytes) -> None:
        self.writer.write(bytes((0x01, len(payload) >> 8, len(payload) & 0xFF)) + payload)

    @staticmethod
    def _varint(value: int) -> bytes:
        out = bytearray()
        while True:
            byte = value & 0x7F
            value >>= 7
            if value:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                return bytes(out)

    async def _handshake(self, first: int) -> bool:
        """Agree on the framing the device is configured for; False: the client was turned away."""
        psk = self.device.noise_psk
        if psk is None:
            if first != 0x00:  # an encrypting client on a plaintext device: a plaintext frame says so
                self.writer.write(b"\x00\x00" + self._varint(_TYPE_OF[api_pb2.DisconnectRequest]))
                return False
            return True
        if first != 0x01:  # a plaintext client on an encrypting device
            self._write_noise_frame(b"\x01Bad indicator byte")
            return False
        rest = await self.reader.readexactly(2)  # the client's hello: 01 00 00
        if rest != b"\x00\x00":
            raise _FrameError("bad noise hello")
        handshake = await self._read_noise_frame()
        mac = self.device.mac.encode()
        self._write_noise_frame(b"\x01" + self.device.name.encode() + b"\x00" + mac + b"\x00")
        proto = NoiseConnection.from_name(NOISE_PROTOCOL)
        proto.set_as_responder()
        proto.set_psks(psk)
        proto.set_prologue(NOISE_PROLOGUE)
        proto.start_handshake()
        try:
            if not handshake or handshake[0] != 0x00:
                raise _FrameError("bad handshake frame")
            proto.read_message(handshake[1:])
        except InvalidTag:  # the client's key is not ours
            self._write_noise_frame(b"\x01Handshake MAC failure")
            return False
        self._write_noise_frame(b"\x00" + bytes(proto.write_message()))
        self._noise = proto
        return True

    async def _read_message(self, first: int | None) -> tuple[int, bytes]:
        if self._noise is None:
            if first is None:
                first = (await self.reader.readexactly(1))[0]
            if first != 0x00:
                raise _FrameError("bad plaintext preamble")
            size = await self._read_varint()
            kind = await self._read_varint()
            return kind, await self.reader.readexactly(size)
        plain = bytes(self._noise.decrypt(await self._read_noise_frame()))
        kind, size = plain[0] << 8 | plain[1], plain[2] << 8 | plain[3]
        return kind, plain[4 : 4 + size]

    def send(self, message: Any) -> None:
        """Send one protobuf message in the connection's framing (dropped once it is closing)."""
        if self.writer.is_closing():
            return
        kind = _TYPE_OF[type(message)]
        data = message.SerializeToString()
        if self._noise is None:
            self.writer.write(b"\x00" + self._varint(len(data)) + self._varint(kind) + data)
            return
        header = bytes((kind >> 8, kind & 0xFF, len(data) >> 8, len(data) & 0xFF))
        self._write_noise_frame(bytes(self._noise.encrypt(header + data)))

    # ---- messages ----

    async def run(self) -> None:
        first = (await self.reader.readexactly(1))[0]
        if not await self._handshake(first):
            await self.writer.drain()
            return
        pending: int | None = first if self._noise is None else None
        while True:
            kind, data = await self._read_message(pending)
            pending = None
            message_class = MESSAGE_TYPE_TO_PROTO.get(kind)
            if message_class is None:
                continue
            message = message_class()
            message.ParseFromString(data)
            if isinstance(message, api_pb2.DisconnectRequest):
                self.send(api_pb2.DisconnectResponse())
                await self.writer.drain()
                return
            self.device.handle(self, message)
            await self.writer.drain()


class EsphomeProxyDevice:
    """An ESPHome device with serial proxies, listening on 127.0.0.1 (see the module text)."""

    def __init__(
        self,
        ports: list[ProxyPort],
        *,
        noise_psk: bytes | None = None,
        password: str | None = None,
        name: str = "meter-proxy",
        mac: str = "98:35:69:AB:F6:79",
    ) -> None:
        """Serve ``ports`` (instance numbers in list order); ``noise_psk``: 32 bytes, or plaintext."""
        self.ports = ports
        self.noise_psk = noise_psk
        self.password = password
        self.name = name
        self.mac = mac
        self.connections = 0  # API clients accepted so far
        self._server: asyncio.Server | None = None
        self._clients: set[_ApiConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.host = "127.0.0.1"
        self.port = 0

    def url(self, port_name: str, *, key: str | None = None) -> str:
        """Return the ``esphome://`` URL of one of the device's ports; ``key``: the base64 noise key to send."""
        query = f"port_name={quote(port_name)}"
        if key is not None:
            query += f"&key={quote(key, safe='')}"
        return f"esphome://{self.host}:{self.port}?{query}"

    async def start(self, port: int = 0) -> None:
        """Listen (on an ephemeral port unless one is given) and wire every proxy port to its meter."""
        for proxy in self.ports:
            if proxy._task is None:
                proxy._feed, proxy._task = proxy.meter.attach(proxy.transport, self._uart_writer(proxy))
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    def _uart_writer(self, proxy: ProxyPort) -> Callable[[bytes], None]:
        def write(data: bytes) -> None:  # the meter's reply: to the subscribed client, if any
            if proxy.subscriber is not None:
                proxy.subscriber.send(
                    api_pb2.SerialProxyDataReceived(instance=self.ports.index(proxy), data=bytes(data))
                )

        return write

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        connection = _ApiConnection(self, reader, writer)
        self._clients.add(connection)
        self.connections += 1
        try:
            await connection.run()
        except (asyncio.IncompleteReadError, ConnectionError, _FrameError, InvalidTag) as err:
            _LOGGER.debug("API client left: %r", err)
        finally:
            self._clients.discard(connection)
            self._tasks.discard(task)
            for proxy in self.ports:
                if proxy.subscriber is connection:
                    proxy.subscriber = None
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def drop_clients(self) -> None:
        """Cut every API connection, as a reboot or a Wi-Fi loss does; the device keeps listening."""
        for connection in list(self._clients):
            connection.writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)

    async def stop_listening(self) -> None:
        """Go offline: stop accepting and cut every connection (the meters stay wired)."""
        if self._server is not None:
            self._server.close()
            await self.drop_clients()
            await self._server.wait_closed()
            self._server = None

    async def close(self) -> None:
        """Go offline and unwire the meters."""
        await self.stop_listening()
        for proxy in self.ports:
            if proxy._task is not None:
                proxy._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await proxy._task
                proxy._task = proxy._feed = None

    async def __aenter__(self) -> EsphomeProxyDevice:
        """Start listening."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop everything."""
        await self.close()

    # ---- what the device answers ----

    def _status(self, connection: _ApiConnection, instance: int, kind: int, status: int) -> None:
        connection.send(api_pb2.SerialProxyRequestResponse(instance=instance, type=kind, status=status))

    def handle(self, connection: _ApiConnection, message: Any) -> None:
        """Answer one request as ESPHome's API connection does."""
        if isinstance(message, api_pb2.HelloRequest):
            connection.send(
                api_pb2.HelloResponse(
                    api_version_major=API_VERSION[0],
                    api_version_minor=API_VERSION[1],
                    server_info=f"{self.name} (esphome v2026.10.0)",
                    name=self.name,
                )
            )
        elif isinstance(message, api_pb2.AuthenticationRequest):
            if self.password is not None and message.password != self.password:
                connection.send(api_pb2.AuthenticationResponse(invalid_password=True))
        elif isinstance(message, api_pb2.PingRequest):
            connection.send(api_pb2.PingResponse())
        elif isinstance(message, api_pb2.DeviceInfoRequest):
            connection.send(
                api_pb2.DeviceInfoResponse(
                    name=self.name,
                    friendly_name="Meter cabinet",
                    mac_address=self.mac,
                    esphome_version="2026.10.0",
                    model="esp32dev",
                    manufacturer="Espressif",
                    api_encryption_supported=self.noise_psk is not None,
                    serial_proxies=[
                        api_pb2.SerialProxyInfo(name=proxy.name, port_type=proxy.port_type) for proxy in self.ports
                    ],
                )
            )
        elif isinstance(message, api_pb2.ListEntitiesRequest):
            connection.send(api_pb2.ListEntitiesDoneResponse())
        elif isinstance(message, api_pb2.SubscribeSerialProxyIdentityRequest):
            for instance in range(len(self.ports)):  # a UART: no USB descriptors, configured identity
                connection.send(
                    api_pb2.SerialProxyIdentity(
                        instance=instance,
                        source=api_pb2.SERIAL_PROXY_IDENTITY_SOURCE_NONE,
                        flags=api_pb2.SERIAL_PROXY_IDENTITY_FLAG_CONNECTED,
                    )
                )
        elif hasattr(message, "instance"):
            self._handle_port(connection, message)

    def _handle_port(self, connection: _ApiConnection, message: Any) -> None:
        instance = int(message.instance)
        if instance >= len(self.ports):
            kind = getattr(message, "type", api_pb2.SERIAL_PROXY_REQUEST_TYPE_CONFIGURE)
            self._status(connection, instance, kind, api_pb2.SERIAL_PROXY_STATUS_INVALID_ARGUMENT)
            return
        proxy = self.ports[instance]
        owner = proxy.subscriber in (None, connection)
        if isinstance(message, api_pb2.SerialProxyRequest):
            kind = message.type
            if kind == api_pb2.SERIAL_PROXY_REQUEST_TYPE_SUBSCRIBE:
                if not owner:
                    self._status(connection, instance, kind, api_pb2.SERIAL_PROXY_STATUS_PORT_IN_USE)
                    return
                proxy.subscriber = connection
            elif kind == api_pb2.SERIAL_PROXY_REQUEST_TYPE_UNSUBSCRIBE and proxy.subscriber is connection:
                proxy.subscriber = None
            self._status(connection, instance, kind, api_pb2.SERIAL_PROXY_STATUS_OK)
        elif isinstance(message, api_pb2.SerialProxyConfigureRequest):
            kind = api_pb2.SERIAL_PROXY_REQUEST_TYPE_CONFIGURE
            if proxy.subscriber is not connection:
                self._status(connection, instance, kind, api_pb2.SERIAL_PROXY_STATUS_PORT_IN_USE)
                return
            proxy.baudrate = message.baudrate
            self._status(connection, instance, kind, api_pb2.SERIAL_PROXY_STATUS_OK)
        elif isinstance(message, api_pb2.SerialProxySetModeRequest):
            kind = api_pb2.SERIAL_PROXY_REQUEST_TYPE_SET_MODE
            raw = message.mode == api_pb2.SERIAL_PROXY_MODE_RAW
            status = api_pb2.SERIAL_PROXY_STATUS_OK if raw else api_pb2.SERIAL_PROXY_STATUS_NOT_SUPPORTED
            self._status(connection, instance, kind, status)
        elif isinstance(message, api_pb2.SerialProxySetModemPinsRequest):
            kind = api_pb2.SERIAL_PROXY_REQUEST_TYPE_SET_MODEM_PINS
            if not owner:
                self._status(connection, instance, kind, api_pb2.SERIAL_PROXY_STATUS_PORT_IN_USE)
                return
            proxy.line_states = message.line_states
            proxy.pin_changes.append(message.line_states)
            self._status(connection, instance, kind, api_pb2.SERIAL_PROXY_STATUS_OK)
        elif isinstance(message, api_pb2.SerialProxyGetModemPinsRequest):
            connection.send(
                api_pb2.SerialProxyGetModemPinsResponse(
                    instance=instance, line_states=proxy.line_states, status=api_pb2.SERIAL_PROXY_STATUS_OK
                )
            )
        elif isinstance(message, api_pb2.SerialProxyWriteRequest):
            if proxy.subscriber is connection and proxy._feed is not None and message.data:
                if proxy.pins_at_first_write is None:
                    proxy.pins_at_first_write = proxy.line_states
                proxy.bytes_written += len(message.data)
                proxy._feed(bytes(message.data))
