"""Constants for the NES meter integration."""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "nes_meter"

CONF_TRANSPORT: Final = "transport"
CONF_KEY: Final = "key"
CONF_KEY_FORMAT: Final = "key_format"
CONF_UPDATE_INTERVAL: Final = "update_interval"
CONF_ENCRYPT: Final = "encrypt"  # before MEP security became a choice: True meant RC4
CONF_ENABLE_LINE: Final = "enable_line"
CONF_MEP_SECURITY: Final = "mep_security"
CONF_TLS_KEY_ID: Final = "tls_key_id"
CONF_IMPORT_PRICE: Final = "import_price"  # per kWh, in the installation's currency
CONF_IMPORT_PRICE_ENTITY: Final = "import_price_entity"  # its hourly mean is the price
CONF_EXPORT_PRICE: Final = "export_price"
CONF_EXPORT_PRICE_ENTITY: Final = "export_price_entity"

TRANSPORT_MEP: Final = "mep"
TRANSPORT_IR: Final = "ir"

DEFAULT_UPDATE_INTERVAL: Final = 10
MIN_UPDATE_INTERVAL: Final = 2
MAX_UPDATE_INTERVAL: Final = 3600
DEFAULT_ENABLE_LINE: Final = "rts"
MEP_SECURITY_PLAIN: Final = "plain"
MEP_SECURITY_RC4: Final = "rc4"
MEP_SECURITY_TLS: Final = "tls"
MEP_SECURITY_MODES: Final = (MEP_SECURITY_PLAIN, MEP_SECURITY_RC4, MEP_SECURITY_TLS)
TLS_KEY_IDS: Final = ("mbk", "mak")

BACKOFF_MIN: Final = 1.0
BACKOFF_MAX: Final = 60.0
