"""The one place that knows which serialx versions the integration runs with.

manifest.json asks for ``serialx>=1.11.0``, not one exact version: Home Assistant installs a custom
integration's requirements under its own ``package_constraints.txt``, and since core's usb, serial
and zha integrations use serialx, newer Home Assistant releases pin it there (2026.10 pins
``serialx==1.11.0``); an exact pin of any other version would make the integration impossible to
install. Older releases (2025.4) do not pin serialx, so users get the newest one. The suite runs
with both ends (scripts/test: 1.11.0 next to HA 2026.10, 1.15.1 next to HA 2025.4).

What ``nesmeter/link/transport.py`` uses is the same in 1.11.0 and 1.15.1 (``create_serial_connection``
with ``exclusive=True``, the transports, ``SerialException``, ``UnsupportedSetting``, the errors a
failed open raises), except ``serialx.redact_uri``, which 1.11.0 lacks: ``redact_uri`` here gives
the same text on every version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final
from urllib.parse import unquote_plus

import serialx

# Query parameters whose values are secrets (serialx's esphome:// takes a key, a password or a
# noise_psk). Kept here so that the redaction does not depend on the installed serialx.
SECRET_QUERY_PARAMS: Final = frozenset({"key", "password", "noise_psk", "psk", "token", "secret"})
REDACTED: Final = "REDACTED"

# In newer serialx (1.15.1 has it, 1.11.0 does not); when present it runs after ours, so that secrets a newer serialx
# learns about are hidden as well.
_SERIALX_REDACT: Final[Callable[[str], str] | None] = getattr(serialx, "redact_uri", None)


def _is_secret(name: str) -> bool:
    # A URL parser drops tabs and newlines, so "pass\tword" would still reach the backend as password.
    cleaned = "".join(char for char in name if char not in "\t\r\n")
    return unquote_plus(cleaned).lower() in SECRET_QUERY_PARAMS


def redact_uri(uri: str) -> str:
    """``uri`` with the values of secret query parameters replaced; the rest as typed."""
    head, hash_mark, fragment = uri.partition("#")
    base, question_mark, query = head.partition("?")
    if query:
        fields = []
        for field in query.split("&"):
            name = field.partition("=")[0]
            fields.append(f"{name}={REDACTED}" if _is_secret(name) else field)
        uri = f"{base}{question_mark}{'&'.join(fields)}{hash_mark}{fragment}"
    if _SERIALX_REDACT is not None:
        uri = _SERIALX_REDACT(uri)
    return uri
