"""Key parsing: every accepted form, clear errors, and the key never shows up in text."""

from __future__ import annotations

import pytest

from nesmeter import KeyFormatError, MeterKey, parse_key

K3 = "`!Vp2;,qDoU2BlLS2tPH"
K3_HEX = "60215670323B2C71446F5532426C4C5332745048"
K3_DECIMAL = "963386112505944113681118550661087683501168072"


@pytest.mark.parametrize(
    ("text", "key_format"),
    [
        (K3, "auto"),
        (K3, "ascii"),
        (K3_HEX, "auto"),
        (K3_HEX.lower(), "hex"),
        (K3_DECIMAL, "auto"),
        (K3_DECIMAL, "decimal"),
    ],
)
def test_forms_give_the_same_bytes(text: str, key_format: str) -> None:
    assert parse_key(text, key_format) == K3.encode()


def test_hex_accepts_separators_and_whitespace() -> None:
    spaced = " ".join(K3_HEX[i : i + 2] for i in range(0, 40, 2))
    assert parse_key(f"  {spaced} ", "hex") == K3.encode()


@pytest.mark.parametrize(
    ("text", "key_format", "message"),
    [
        (K3_HEX[:-1], "hex", "39 hex digits, expected 40"),
        ("zz" + K3_HEX[2:], "hex", "not hex digits"),
        ("", "auto", "empty"),
        ("x" * 21, "ascii", "21 characters, expected at most 20"),
        ("2" + K3_DECIMAL, "decimal", "outside 32..126"),
        (K3_DECIMAL[:-1], "decimal", "ends in the middle"),
        ("abc", "bogus", "unknown key format"),
        ("é" * 5, "ascii", "not printable ASCII"),
        ("x" * 25, "auto", "not 20 ASCII characters, 40 hex digits or the decimal form"),
    ],
)
def test_errors_say_what_is_wrong(text: str, key_format: str, message: str) -> None:
    with pytest.raises(KeyFormatError, match=message) as err:
        parse_key(text, key_format)
    if len(text) > 6:
        assert text not in str(err.value)


def test_ambiguous_auto_is_rejected_with_advice() -> None:
    # "33" x 20 is the hex form of "3" x 20 and the decimal form of "!" x 20.
    text = "33" * 20
    with pytest.raises(KeyFormatError, match="choose the key format 'hex' or 'decimal'"):
        parse_key(text)
    assert parse_key(text, "hex") == b"3" * 20
    assert parse_key(text, "decimal") == b"!" * 20


def test_twenty_hex_looking_characters_are_ascii() -> None:
    assert parse_key("a7941d85bce8a8fa2ab7") == b"a7941d85bce8a8fa2ab7"


def test_meter_key_hides_its_bytes() -> None:
    key = MeterKey.parse(K3)
    for form in key.forms():
        assert form not in repr(key) and form not in str(key)
    assert key.mep_key == K3.encode()[:16]
    assert key.password == K3.encode()
    assert MeterKey.parse("SHORTKEY12").password == b"SHORTKEY12" + bytes(10)
    assert key == MeterKey.parse(K3_HEX) and hash(key) == hash(MeterKey.parse(K3_DECIMAL))


def test_meter_key_length_is_checked() -> None:
    with pytest.raises(KeyFormatError):
        MeterKey(b"")
    with pytest.raises(KeyFormatError):
        MeterKey(bytes(21))
