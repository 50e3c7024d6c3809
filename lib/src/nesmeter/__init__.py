"""Read NES/Echelon (OSGP) electricity meters over MEP or the optical port.

No Home Assistant imports: this package can be published on its own.
"""

from nesmeter.client.client import MeterClient, Transport, probe_transport
from nesmeter.client.read_plan import ReadSchedule
from nesmeter.errors import (
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
from nesmeter.keys import KEY_FORMATS, MeterKey, parse_key
from nesmeter.link.transport import validate_port
from nesmeter.mep.tls import KeyId
from nesmeter.tables.identity import MeterIdentity
from nesmeter.tables.snapshot import MeterSnapshot

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
