"""The long fuzz run: every framer and decoder on a million and more inputs.

Inputs are real frames from the protocol vectors (every hex string in lib/tests/vectors)
mutated by bit flips, byte changes, insertions, deletions, truncation and splicing,
plus plain random bytes. Any exception other than the library's own ``MeterError`` is a
finding; the slowest single call is reported so a hang or a quadratic path would show.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import json
from pathlib import Path
import random
import re
import time
import traceback
from typing import Any

from nesmeter import MeterError, MeterIdentity, parse_key
from nesmeter.c1218 import framing as c1218
from nesmeter.mep import framing as mep
from nesmeter.tables import billing, event_ids, events, power_quality, relay, tables

VECTORS = Path(__file__).resolve().parents[1] / "lib" / "tests" / "vectors"
HEX = re.compile(r"^(?:[0-9a-fA-F]{2}[ ]?){4,}$")
DIMS = tables.decode_bt21(bytes.fromhex("030c000b000000040037"))
# The guide's demand meter (G p.49): tiers, demand records with times, self-reads with BIDN.
DEMAND_DIMS = tables.decode_bt21(bytes.fromhex("3f0e0c0f08000104081a"))
DEMAND_METER = MeterIdentity(
    manufacturer="NES",
    model="83334",
    firmware_version="4.02.05",
    hardware_version="3.00.00",
    utility_serial="5712345678",
    manufacturer_serial=None,
    dimensions=DEMAND_DIMS,
    present_sources=(),
    summation_sources=tuple(range(DEMAND_DIMS.summations)),
    energy_unit=1,
)
TIER_SPANS = billing.tier_spans(DEMAND_DIMS, DEMAND_METER.summation_sources, 216)
_demand_span = billing.demand_span(DEMAND_DIMS, 465)
assert _demand_span is not None  # the guide's meter has eight demands
DEMAND_SPAN: billing.DemandSpan = _demand_span
SELF_READ_HEADER = billing.SelfReadHeader(valid=1, last_element=0, last_sequence=1)


def _word(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 2], "little")


def _targets() -> list[tuple[str, Callable[[bytes], object]]]:
    def with_any_dims(data: bytes) -> None:
        try:
            dims = tables.decode_bt21(data[:10])
        except MeterError:
            return
        for decoder in (tables.decode_bt22, tables.decode_bt23_summations, tables.decode_bt27, tables.decode_bt28):
            with contextlib.suppress(MeterError):
                decoder(data[10:], dims)

    targets: list[tuple[str, Callable[[bytes], object]]] = [
        ("c1218.decode_packet", c1218.decode_packet),
        ("c1218.parse_read", c1218.parse_read),
        ("c1218.parse_negotiate", lambda data: c1218.parse_negotiate(data, c1218.NegotiatedLink(64, 2))),
        ("mep.parse_response_body", mep.parse_response_body),
        ("tables.decode_bt00", tables.decode_bt00),
        ("tables.decode_bt01", tables.decode_bt01),
        ("tables.decode_bt21", tables.decode_bt21),
        ("tables.decode_bt52", tables.decode_bt52),
        ("tables.decode_et03", tables.decode_et03),
        ("tables.decode_energy_register_unit", tables.decode_energy_register_unit),
        ("tables.decode_mep_client_index", tables.decode_mep_client_index),
        ("tables.decode_bt22", lambda data: tables.decode_bt22(data, DIMS)),
        ("tables.decode_bt23", lambda data: tables.decode_bt23_summations(data, DIMS)),
        ("tables.decode_bt27", lambda data: tables.decode_bt27(data, DIMS)),
        ("tables.decode_bt28", lambda data: tables.decode_bt28(data, DIMS)),
        ("tables.any_dimensions", with_any_dims),
        ("billing.decode_bt55", billing.decode_bt55),
        ("billing.decode_bt26_header", billing.decode_bt26_header),
        ("events.decode_bt03", events.decode_bt03),
        ("events.decode_bt71", events.decode_bt71),
        ("events.decode_bt74_header", events.decode_bt74_header),
        # An id (first two bytes) and its argument (the next two), as a BT74 record holds them.
        ("event_ids.decode_argument", lambda data: event_ids.decode_argument(_word(data, 0) & 0x0FFF, _word(data, 2))),
        ("power_quality.decode_power_quality", lambda data: power_quality.decode_power_quality(data, 1)),
        ("relay.decode_et29", relay.decode_et29),
        ("billing.decode_tiers", lambda data: billing.decode_tiers(data, DEMAND_DIMS, DEMAND_METER, TIER_SPANS[-1])),
        ("billing.decode_demands", lambda data: billing.decode_demands(data, DEMAND_DIMS, DEMAND_SPAN, None)),
        ("billing.decode_bt22_demands", lambda data: billing.decode_bt22_demands(data, DEMAND_DIMS)),
        (
            "billing.decode_self_read",
            lambda data: billing.decode_self_read(data, SELF_READ_HEADER, DEMAND_METER),
        ),
        ("relay.decode_disconnect_state", relay.decode_disconnect_state),
        ("keys.parse_key", lambda data: parse_key(data.decode("latin-1"), "auto")),
    ]
    return targets


def seeds() -> list[bytes]:
    found: list[bytes] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and HEX.match(node.strip()):
            found.append(bytes.fromhex(node.replace(" ", "")))

    for path in sorted(VECTORS.glob("*.json")):
        walk(json.loads(path.read_text()))
    return sorted(set(found))


def mutate(rng: random.Random, corpus: list[bytes]) -> bytes:
    data = bytearray(rng.choice(corpus))
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(7)
        if choice == 0 and data:
            index = rng.randrange(len(data))
            data[index] ^= 1 << rng.randrange(8)
        elif choice == 1 and data:
            data[rng.randrange(len(data))] = rng.choice((0, 0xFF, 0xEE, 0x7F, 0x80, rng.randrange(256)))
        elif choice == 2:
            data[rng.randint(0, len(data)) : rng.randint(0, len(data))] = rng.randbytes(rng.randint(1, 8))
        elif choice == 3 and data:
            start = rng.randrange(len(data))
            del data[start : start + rng.randint(1, 8)]
        elif choice == 4:
            del data[rng.randint(0, len(data)) :]
        elif choice == 5:
            data += rng.choice(corpus)[rng.randint(0, 8) :]
        else:
            data = bytearray(rng.randbytes(rng.randint(0, 600)))
    return bytes(data)


def run(inputs: int, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    corpus = seeds()
    targets = _targets()
    findings: dict[str, str] = {}
    slowest = 0.0
    started = time.perf_counter()
    for _ in range(inputs):
        data = mutate(rng, corpus)
        for name, target in targets:
            call = time.perf_counter()
            try:
                target(data)
            except MeterError:
                pass
            except Exception:  # a finding: anything but the library's own errors
                findings.setdefault(name, f"{data.hex()}\n{traceback.format_exc(limit=3)}")
            slowest = max(slowest, time.perf_counter() - call)
    return {
        "inputs": inputs,
        "calls": inputs * len(targets),
        "targets": len(targets),
        "seed_frames": len(corpus),
        "seconds": round(time.perf_counter() - started, 1),
        "slowest_call_ms": round(slowest * 1000, 3),
        "findings": findings,
    }
