"""Constants for the NES meter integration."""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "nes_meter"

CONF_TRANSPORT: Final = "transport"
CONF_KEY: Final = "key"
CONF_KEY_FORMAT: Final = "key_format"
CONF_UPDATE_INTERVAL: Final = "update_interval"
CONF_ENCRYPT: Final = "encrypt"
CONF_ENABLE_LINE: Final = "enable_line"

TRANSPORT_MEP: Final = "mep"
TRANSPORT_IR: Final = "ir"

DEFAULT_UPDATE_INTERVAL: Final = 10
MIN_UPDATE_INTERVAL: Final = 2
MAX_UPDATE_INTERVAL: Final = 3600
DEFAULT_ENABLE_LINE: Final = "rts"

BACKOFF_MIN: Final = 1.0
BACKOFF_MAX: Final = 60.0
