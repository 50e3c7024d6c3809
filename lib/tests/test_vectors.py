"""Every golden vector reproduces byte for byte: MEP digests/frames, the guide's examples, C12.18."""

from __future__ import annotations

import struct

import pytest

from nesmeter.c1218 import framing as c1218
from nesmeter.mep import framing as mep
from nesmeter.tables import tables
from nesmeter.tables.snapshot import STANDARD_PRESENT_ORDER

from .conftest import SHARED, VECTORS, load_vectors

MEP_VECTORS = load_vectors("mep_vectors.json")
OFFICIAL = load_vectors("mep_official_examples.json")
IR_VECTORS = load_vectors("ir_vectors.json")
DEFAULT_MAK = bytes([1] * 16)


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared/ not beside this clone")
@pytest.mark.parametrize("name", ["mep_vectors.json", "mep_official_examples.json", "ir_vectors.json"])
def test_vector_copies_match_shared(name: str) -> None:
    assert (VECTORS / name).read_bytes() == (SHARED / name).read_bytes()


@pytest.mark.parametrize("vector", MEP_VECTORS["vectors"], ids=lambda v: v["description"])
def test_mep_digest_and_frame(vector: dict) -> None:
    key = bytes.fromhex(vector["key_bytes_hex"])
    assert mep.digest(key, bytes.fromhex(vector["digest_input_hex"])).hex() == vector["digest_hex"]
    if vector["frame_hex"]:
        frame = mep.encode_request(bytes.fromhex(vector["apdu_hex"]), vector["sequence"], key)
        assert frame.hex() == vector["frame_hex"]


VERIFIABLE = [e for e in OFFICIAL["examples"] if e.get("verification", {}).get("digest_ok") is True]


def test_all_verifiable_official_examples_are_covered() -> None:
    assert len(VERIFIABLE) == 14


def _split(frame: bytes) -> tuple[int, bytes, bytes]:
    (length,) = struct.unpack_from(">H", frame)
    assert length == len(frame) - 2
    return length, frame[2:-8], frame[-8:]


@pytest.mark.parametrize("example", VERIFIABLE, ids=lambda e: e["id"])
def test_official_example(example: dict) -> None:
    """Requests: one-shot digest of code..seq. Replies: digest of request || reply."""
    frame = bytes.fromhex(example["frame_hex"])
    _, message, digest = _split(frame)
    assert message.hex() == example["verification"]["message_hex"]
    if example["direction"] == "client->meter":
        apdu, sequence = message[:-4], struct.unpack(">I", message[-4:])[0]
        assert mep.encode_request(apdu, sequence, DEFAULT_MAK) == frame
        return
    index = OFFICIAL["examples"].index(example)
    request = next(
        bytes.fromhex(e["frame_hex"])
        for e in reversed(OFFICIAL["examples"][:index])
        if e["direction"] == "client->meter" and e.get("frame_hex")
    )
    assert mep.digest(DEFAULT_MAK, _split(request)[1] + message) == digest
    code, data, sequence = mep.parse_response_body(message)
    if code == mep.MepResult.INVALID_SEQUENCE:
        assert sequence == struct.unpack(">I", message[1:5])[0]
    elif example["id"] == "RC4-EX1-RSP2":
        assert struct.unpack("<11i", data) == tuple(example["decoded"]["summations_sle32"])


def test_official_rc4_example_encrypts_and_decrypts() -> None:
    vector = OFFICIAL["derived_vectors_not_in_guide"][0]
    base = mep.rc4_base_key(DEFAULT_MAK)
    assert base.hex() == vector["mep_EncryptKey_hex"]
    plain = bytes.fromhex(vector["plain_request_frame"])
    _, message, digest = _split(plain)
    cipher = mep.rc4_packet_cipher(base, digest)
    encrypted = plain[:2] + cipher.update(message) + digest
    assert encrypted.hex() == vector["encrypted_request_frame"]
    reply = bytes.fromhex(vector["encrypted_response_frame_expected"])
    decrypted = cipher.update(reply[2:-8])
    assert reply[:2] + decrypted + reply[-8:] == bytes.fromhex(vector["plain_response_frame"])
    assert mep.digest(DEFAULT_MAK, message + decrypted) == reply[-8:]


def test_real_bt28_reply_decodes() -> None:
    example = MEP_VECTORS["response_examples"][0]
    frame = bytes.fromhex(example["response_hex"])
    code, data, _ = mep.parse_response_body(frame[2:-8])
    assert code == 0
    dims = tables.decode_bt21(bytes.fromhex("030c000b000000040037"))
    values = tables.decode_bt28(data, dims)
    assert list(values) == example["parsed"]["present_values_int32_le"]
    assert STANDARD_PRESENT_ORDER[11] == 19 and values[11] == 50000


def test_real_bt23_prefix_decodes() -> None:
    example = MEP_VECTORS["response_examples"][1]
    data = bytes.fromhex(example["response_prefix_hex"])[5:]
    dims = tables.decode_bt21(bytes.fromhex("030c000b000000040037"))
    assert tables.decode_bt23_summations(data, dims, 2) == (65845342, 179)


def test_real_sequence_reply_parses() -> None:
    example = MEP_VECTORS["response_examples"][2]
    frame = bytes.fromhex(example["response_hex"])
    assert mep.parse_response_body(frame[2:-8]) == (0x0C, b"", 0xCEACE9E2)


@pytest.mark.parametrize("name", list(IR_VECTORS["crc16"]["vectors"]))
def test_crc16(name: str) -> None:
    vector = IR_VECTORS["crc16"]["vectors"][name]
    assert c1218.crc16(bytes.fromhex(vector["input_hex"])) == int(vector["crc16_value"], 16)


@pytest.mark.parametrize("name", list(IR_VECTORS["table_data_checksum"]["vectors"]))
def test_table_checksum(name: str) -> None:
    vector = IR_VECTORS["table_data_checksum"]["vectors"][name]
    assert c1218.table_checksum(bytes.fromhex(vector["data_hex"])) == int(vector["cksum_hex"], 16)


@pytest.mark.parametrize("name", list(IR_VECTORS["requests"]))
def test_request_frames(name: str) -> None:
    vector = IR_VECTORS["requests"][name]
    payload = bytes.fromhex(vector["payload_hex"])
    assert c1218.encode_packet(payload, toggle=False).hex() == vector["frame_toggle0_hex"]
    assert c1218.encode_packet(payload, toggle=True).hex() == vector["frame_toggle1_hex"]


def test_our_request_builders_match_vectors() -> None:
    requests = IR_VECTORS["requests"]
    assert c1218.identify_request().hex() == requests["identify"]["payload_hex"]
    assert c1218.negotiate_request(64, 2).hex() == requests["negotiate_pkt64_nbr2_9600"]["payload_hex"]
    assert c1218.logon_request(2, "nesmeter").hex() == requests["logon_uid2_nesmeter"]["payload_hex"]
    assert (
        c1218.security_request(b"a7941d85bce8a8fa2ab7").hex()
        == requests["security_ascii_20 (PASSWORD_HEX=False)"]["payload_hex"]
    )
    assert c1218.read_request(23, 0, 8).hex() == requests["read_partial_bt23_off0_cnt8"]["payload_hex"]
    assert c1218.full_read_request(2051).hex() == requests["read_full_et03_2051"]["payload_hex"]


@pytest.mark.parametrize("name", list(IR_VECTORS["responses"]))
def test_response_frames(name: str) -> None:
    vector = IR_VECTORS["responses"][name]
    packet = c1218.decode_packet(bytes.fromhex(vector["frame_hex"]))
    assert packet.data.hex() == vector["payload_hex"]
    assert packet.toggle == bool(vector["toggle"])
    if name.startswith("read_"):
        assert c1218.read_response(c1218.parse_read(packet.data)) == packet.data


def test_user_capture_decodes() -> None:
    capture = IR_VECTORS["user_capture_decoding"]
    dims = tables.decode_bt21(bytes.fromhex("030c000b000000040037"))
    energy = tables.decode_bt23_summations(bytes.fromhex(capture["bt23_hex"]), dims, 2)
    assert energy == (
        capture["bt23"]["fwd_active_energy_total_Wh"],
        capture["bt23"]["rev_active_energy_total_Wh"],
    )
    values = tables.decode_bt28(bytes.fromhex(capture["bt28_hex"]), dims, 10)
    assert values == tuple(capture["bt28"].values())


@pytest.mark.parametrize("session", IR_VECTORS["sessions"], ids=lambda s: s["description"][:40])
def test_session_transcripts_frame_cleanly(session: dict) -> None:
    """Every frame in termineter's transcripts parses, and reads decode to the logged data."""
    for step in session["wire"]:
        data = bytes.fromhex(step["hex"])
        while data[:1] in (b"\x06", b"\x15"):
            data = data[1:]
        while data:
            length = struct.unpack_from(">H", data, 4)[0]
            c1218.decode_packet(data[: length + 8])
            data = data[length + 8 :]


def test_identity_tables_decode() -> None:
    reads = IR_VECTORS["sessions"][1]["reads"]
    info = tables.decode_bt01(bytes.fromhex(reads["bt1"]))
    assert (info.manufacturer, info.model, info.firmware_version) == ("NES", "83334", "3.70.21")
    assert tables.decode_et03(bytes.fromhex(reads["bt2051"])) == "5712345678"
    config = tables.decode_bt00(bytes.fromhex(reads["bt0"]))
    assert config.little_endian and config.ni_format1 == 8 and config.device_class == "NES"
    assert tables.decode_bt52(bytes.fromhex(reads["bt52"])).isoformat() == "2024-05-17T12:30:15+00:00"
