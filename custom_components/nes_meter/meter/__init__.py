"""Read NES/Echelon (OSGP) electricity meters over MEP or the optical port.

No Home Assistant imports: this package can be published on its own.
"""

from .client import MeterClient, MeterIdentity, Transport, probe_transport
from .errors import (
    AuthenticationError,
    DecodeError,
    FrameError,
    InvalidPortError,
    KeyFormatError,
    MeterError,
    NoResponseError,
    PortError,
    RefusedError,
    ResponseError,
    TlsError,
    TlsRequiredError,
    UnsupportedMeterError,
    WriteRefusedError,
)
from .keys import KEY_FORMATS, MeterKey, parse_key
from .read_plan import ReadSchedule
from .snapshot import MeterSnapshot
from .tls import KeyId
from .transport import validate_port

__all__ = [
    "KEY_FORMATS",
    "AuthenticationError",
    "DecodeError",
    "FrameError",
    "InvalidPortError",
    "KeyFormatError",
    "KeyId",
    "MeterClient",
    "MeterError",
    "MeterIdentity",
    "MeterKey",
    "MeterSnapshot",
    "NoResponseError",
    "PortError",
    "ReadSchedule",
    "RefusedError",
    "ResponseError",
    "TlsError",
    "TlsRequiredError",
    "Transport",
    "UnsupportedMeterError",
    "WriteRefusedError",
    "parse_key",
    "probe_transport",
    "validate_port",
]
