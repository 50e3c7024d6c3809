"""Parsing of the utility's meter key in the forms people receive it.

Utilities hand out the MEP basic key (MBK) or the optical read key as a 20-character
ASCII string. People also pass it on as 40 hex digits (hex of the ASCII codes) or as the
"decimal form" (the decimal character codes written one after another). The key bytes
are what both transports need: MEP signs with the first 16, the optical port sends all
of them as the security password.

The ``auto`` rule, documented in the README:
  * up to 20 characters: ASCII;
  * otherwise the text, with spaces, ``:`` and ``-`` removed, is tried as 40 hex digits
    and as the decimal form; exactly one must fit, or both must give the same key.
    When both fit with different results the caller is told to pick a format.
"""

from __future__ import annotations

import string
from typing import Final

from nesmeter.errors import KeyFormatError

KEY_FORMATS: Final = ("auto", "ascii", "hex", "decimal")
MAX_KEY_BYTES: Final = 20
MEP_KEY_BYTES: Final = 16
_SEPARATORS: Final = str.maketrans("", "", " :-\t")
_PRINTABLE: Final = frozenset(range(0x20, 0x7F))


def _parse_ascii(text: str) -> bytes:
    if not text:
        raise KeyFormatError("the key is empty")
    if len(text) > MAX_KEY_BYTES:
        raise KeyFormatError(f"{len(text)} characters, expected at most {MAX_KEY_BYTES}")
    if any(ord(ch) not in _PRINTABLE for ch in text):
        raise KeyFormatError("the key contains characters that are not printable ASCII")
    return text.encode("ascii")


def _parse_hex(text: str) -> bytes:
    digits = text.translate(_SEPARATORS)
    if not digits:
        raise KeyFormatError("the key is empty")
    if any(ch not in string.hexdigits for ch in digits):
        raise KeyFormatError("the key contains characters that are not hex digits")
    if len(digits) != 2 * MAX_KEY_BYTES:
        raise KeyFormatError(f"{len(digits)} hex digits, expected {2 * MAX_KEY_BYTES}")
    return bytes.fromhex(digits)


def _parse_decimal(text: str) -> bytes:
    """Split concatenated character codes: ``1xx`` has three digits, ``32``..``99`` two."""
    digits = text.translate(_SEPARATORS)
    if not digits:
        raise KeyFormatError("the key is empty")
    if not digits.isdigit():
        raise KeyFormatError("the decimal form may only contain digits")
    codes: list[int] = []
    pos = 0
    while pos < len(digits):
        width = 3 if digits[pos] == "1" else 2
        chunk = digits[pos : pos + width]
        if len(chunk) < width:
            raise KeyFormatError("the decimal form ends in the middle of a character code")
        code = int(chunk)
        if code not in _PRINTABLE:
            raise KeyFormatError(f"the decimal form has a code outside 32..126 at digit {pos + 1}")
        codes.append(code)
        pos += width
    if len(codes) > MAX_KEY_BYTES:
        raise KeyFormatError(f"the decimal form gives {len(codes)} characters, expected at most 20")
    return bytes(codes)


_PARSERS: Final = {"ascii": _parse_ascii, "hex": _parse_hex, "decimal": _parse_decimal}


def _parse_auto(text: str) -> bytes:
    if len(text) <= MAX_KEY_BYTES:
        return _parse_ascii(text)
    results: dict[str, bytes] = {}
    problems: list[str] = []
    for name in ("hex", "decimal"):
        try:
            results[name] = _PARSERS[name](text)
        except KeyFormatError as err:
            problems.append(f"as {name}: {err}")
    if len(set(results.values())) == 1:
        return next(iter(results.values()))
    if len(results) > 1:
        raise KeyFormatError(
            "the key reads both as 40 hex digits and as the decimal form; choose the key format 'hex' or 'decimal'"
        )
    raise KeyFormatError(
        f"{len(text)} characters: not 20 ASCII characters, 40 hex digits or the decimal form ({'; '.join(problems)})"
    )


def parse_key(text: str, key_format: str = "auto") -> bytes:
    """Return the key bytes (1 to 20) for ``text`` in ``key_format``.

    Raises ``KeyFormatError`` with a message that says what is wrong and never echoes
    the key.
    """
    if key_format not in KEY_FORMATS:
        raise KeyFormatError(f"unknown key format {key_format!r}; use one of {', '.join(KEY_FORMATS)}")
    text = text.strip()
    if key_format == "auto":
        return _parse_auto(text)
    return _PARSERS[key_format](text)


class MeterKey:
    """Key bytes that never show up in ``repr``, ``str`` or tracebacks' locals dumps."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        """Hold ``secret``, 1 to 20 bytes; it never appears in repr, str or logs."""
        if not 1 <= len(secret) <= MAX_KEY_BYTES:
            raise KeyFormatError(f"{len(secret)} key bytes, expected 1 to {MAX_KEY_BYTES}")
        self._secret = bytes(secret)

    @classmethod
    def parse(cls, text: str, key_format: str = "auto") -> MeterKey:
        """Parse user text (see ``parse_key``)."""
        return cls(parse_key(text, key_format))

    @property
    def mep_key(self) -> bytes:
        """The digest/RC4 key: the first 16 bytes, as the MEP guide prescribes."""
        return self._secret[:MEP_KEY_BYTES]

    @property
    def password(self) -> bytes:
        """The 20-byte C12.18 security password: the key, NUL-padded like working clients do."""
        return self._secret.ljust(MAX_KEY_BYTES, b"\x00")

    def forms(self) -> tuple[str, ...]:
        """Every text form of this key, for tests and log scrubbing."""
        ascii_form = self._secret.decode("latin-1")
        return (
            ascii_form,
            self._secret.hex(),
            self._secret.hex().upper(),
            "".join(str(b) for b in self._secret),
        )

    def __eq__(self, other: object) -> bool:
        """Compare by the secret, so a key parsed twice is the same key."""
        return isinstance(other, MeterKey) and other._secret == self._secret

    def __hash__(self) -> int:
        """Hash the secret, consistent with equality."""
        return hash(self._secret)

    def __repr__(self) -> str:
        """Show no key material: keys end up in logs and tracebacks otherwise."""
        return "MeterKey(<redacted>)"

    __str__ = __repr__
