"""Errors raised by the meter library.

Every failure the library can produce is a ``MeterError`` so callers (the Home Assistant
integration, the CLI) can catch one type and still tell the user what went wrong. No
message ever contains key material.
"""

from __future__ import annotations

from typing import Final


class MeterError(Exception):
    """Base class of every error this library raises."""


class KeyFormatError(MeterError, ValueError):
    """The text given as a key is not a valid key in the chosen (or detected) form."""


class FrameError(MeterError):
    """Bytes on the line do not form a valid frame (bad length, CRC, digest, layout)."""


class ShortReadError(FrameError):
    """A valid reply carried fewer table bytes than asked for (a table shorter than expected)."""


class DecodeError(MeterError):
    """Table data is too short or inconsistent with the meter's dimension tables."""


class UnsupportedMeterError(DecodeError):
    """The meter's tables use formats this library does not decode (e.g. big-endian data)."""


class PortError(MeterError):
    """The serial port or URL cannot be opened or was lost (missing, busy, unplugged)."""


class InvalidPortError(PortError, ValueError):
    """The port text is neither a device path nor a supported URL scheme."""


class NoResponseError(MeterError):
    """The port is open but the meter does not answer (wrong transport, probe, disabled port)."""


class AuthenticationError(MeterError):
    """The meter rejected the key."""


class ResponseError(MeterError):
    """The meter answered a request with an error code."""

    def __init__(self, code: int, name: str, message: str) -> None:
        """Keep the meter's response ``code`` and its ``name`` beside the message."""
        super().__init__(f"{message} (code 0x{code:02X} {name})")
        self.code = code
        self.name = name


class RefusedError(ResponseError):
    """The meter refused this one request (a table it lacks or this key may not read).

    Unlike :class:`TlsRequiredError`, which refuses every plain request on the port, it
    says nothing about the next table: readers take it as "not there".
    """


class WriteRefusedError(MeterError):
    """A write service was requested; this client is strictly read-only."""


class TlsError(MeterError):
    """MEP TLS mode failed: a malformed or unexpected TLS message, an alert, a failed check.

    ``alert`` is the TLS alert description that fits the failure (sent or received).
    """

    def __init__(self, message: str, *, alert: int | None = None) -> None:
        """Keep the TLS alert ``alert`` to send (or that was received), if any."""
        super().__init__(message)
        self.alert = alert


class TlsRequiredError(ResponseError):
    """The meter refuses plain and RC4 messages on this port: it is configured to require TLS."""


# What a meter that lacks a table (or part of one) answers: refused, short or nonsense.
# Not TLS required: that is the port, for every table, and must reach the coordinator.
ABSENT: Final = (RefusedError, ShortReadError, DecodeError)
