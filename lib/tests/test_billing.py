"""Billing registers: decoders against hand-worked bytes from the guide's layouts, the reader against the simulator."""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import datetime, timedelta
from itertools import pairwise
import json
import random
import struct
from typing import Any

import pytest

from nesmeter import DecodeError
from nesmeter.cli.billing_cli import billing
from nesmeter.cli.cli import _parser
from nesmeter.client.billing_reader import BillingReader
from nesmeter.client.client import MeterClient, MeterIdentity
from nesmeter.sim.sim_billing import BIDN
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import SimServer, SimulatedMeter
from nesmeter.tables import tables
from nesmeter.tables.billing import (
    BT26,
    DemandSpan,
    SelfReadHeader,
    TierEnergy,
    TierSpan,
    decode_bt22_demands,
    decode_bt26_header,
    decode_bt55,
    decode_demands,
    decode_self_read,
    decode_stime_date,
    decode_tiers,
    demand_span,
    self_read_entry_size,
    self_read_span,
    tier_spans,
)
from reliability.fuzz import DEMAND_METER

from .conftest import KEY, KEY_TEXT
from .test_client import client_for

# The guide's demand-enabled BT21 (G p.49): flags 0x3F (season, date/time, reset counter,
# lock, cumulative, continuous cumulative), 12 self-reads, 15 summations, 8 demands,
# 0 coincident, 1 occurrence, 4 tiers, 8 present demands, 26 present values.
GUIDE_BT21 = tables.decode_bt21(bytes.fromhex("3F 0E 0C 0F 08 00 01 04 08 1A"))
# The community meters' BT21 (11 summations, no demand, 4 tiers) with 12 self-reads.
HOUSE_BT21 = tables.decode_bt21(bytes.fromhex("03 0c 0c 0b 00 00 00 04 00 37"))
# The same with 8 tiers (firmware 3.70 and later).
HOUSE_BT21_8_TIERS = tables.decode_bt21(bytes.fromhex("03 0c 0c 0b 00 00 00 08 00 37"))
MEP_READ = 465  # one MEP reply's table data
IR_READ = 2 * 108  # two optical exchanges of 108 bytes (the integration's optical read)


def identity_for(dims: tables.RegisterDimensions, energy_unit: int = 1) -> MeterIdentity:
    return dataclasses.replace(
        DEMAND_METER, dimensions=dims, summation_sources=tuple(range(dims.summations)), energy_unit=energy_unit
    )


# ---- decoders --------------------------------------------------------------------


def test_guide_layout_sizes() -> None:
    # G p.207-211: DmdRcd = 5 (time) + 4 (cumulative) + 4 (continuous) + 4 (demand) = 17,
    # block = 4 * 15 + 8 * 17 = 196, BT23 = 1 + 5 * 196 = 981; BT26 entry = 2 + 6 + 981.
    assert GUIDE_BT21.demand_record_size == 17
    assert GUIDE_BT21.register_block_size == 196
    assert GUIDE_BT21.bt23_size == 981
    assert self_read_entry_size(GUIDE_BT21) == 989
    assert self_read_entry_size(HOUSE_BT21) == 6 + 220  # no BIDN without demands


def test_bt55_by_hand() -> None:
    # 2026-11-21 14:45:07 local; byte 6: Saturday (6) | DST (0x08) | zone and DST applied
    # (0x20, 0x40); LE16 0x3142: tier 2, drive 1 (bits 6-7), special schedule 1, season 3.
    state = decode_bt55(bytes.fromhex("1a 0b 15 0e 2d 07 6e 42 31"))
    assert state.local_time == datetime(2026, 11, 21, 14, 45, 7)
    assert (state.tier, state.tier_drive, state.special_schedule, state.season, state.dst) == (2, "manual", 1, 3, True)
    # Drive 3 and tier 7 (fw >= 3.70 has 8 tiers); DST off.
    state = decode_bt55(bytes.fromhex("1a 01 01 00 00 00 20 c7 00"))
    assert (state.tier, state.tier_drive, state.dst) == (7, "override", False)


def test_bt55_blank_or_impossible_clock_is_none_not_an_error() -> None:
    state = decode_bt55(bytes(9))
    assert state.local_time is None
    assert (state.tier, state.tier_drive, state.season) == (0, "calendar", 0)
    assert decode_bt55(bytes.fromhex("1a 0d 20 19 3c 00 00 01 00")).local_time is None  # month 13, 25:60
    assert decode_bt55(bytes.fromhex("1a 0d 20 19 3c 00 00 01 00")).tier == 1


def test_stime_date() -> None:
    assert decode_stime_date(bytes.fromhex("1a 0b 14 12 0f")) == datetime(2026, 11, 20, 18, 15)
    assert decode_stime_date(bytes(5)) is None
    assert decode_stime_date(bytes.fromhex("1a 02 1e 00 00")) is None  # 30 February
    assert decode_stime_date(bytes.fromhex("00 00 00 00 00 1a 0b 14 12 0f"), 5) == datetime(2026, 11, 20, 18, 15)


def test_tier_blocks_of_the_guide_layout_by_hand() -> None:
    # Tier t's block starts at A + 196 * (t + 1) = 197 + 196 t; import and export are
    # summations 0 and 1 of each block. One MEP reply (465 bytes) carries 3 tiers' worth.
    span = tier_spans(GUIDE_BT21, tuple(range(15)), MEP_READ)[0]
    assert span == TierSpan(offset=197, count=2 * 196 + 8, tiers=3, first_index=0)
    (span,) = tier_spans(GUIDE_BT21, tuple(range(15)), 1000)
    assert span == TierSpan(offset=197, count=3 * 196 + 8, tiers=4, first_index=0)
    data = bytearray(span.count)
    for tier, (imp, exp) in enumerate([(1000, 20), (2000, 0), (300, 5), (0, 0)]):
        struct.pack_into("<ii", data, 196 * tier, imp, exp)
    tiers = decode_tiers(bytes(data), GUIDE_BT21, identity_for(GUIDE_BT21, energy_unit=10), span)
    assert [(t.tier, t.energy_import_wh, t.energy_export_wh) for t in tiers] == [
        (0, 10000.0, 200.0),
        (1, 20000.0, 0.0),
        (2, 3000.0, 50.0),
        (3, 0.0, 0.0),
    ]


def test_tier_blocks_follow_bt22_and_may_lack_export() -> None:
    # A meter whose BT22 lists export (1) at index 3 and no import at all.
    sources = (2, 3, 6, 1, 7)
    dims = tables.decode_bt21(bytes.fromhex("03 0c 00 05 00 00 00 02 00 01"))
    (span,) = tier_spans(dims, sources, MEP_READ)
    assert span == TierSpan(offset=20 + 12, count=20 + 4, tiers=2, first_index=3)
    data = struct.pack("<i", 77) + bytes(16) + struct.pack("<i", 88)
    identity = dataclasses.replace(identity_for(dims), summation_sources=sources)
    tiers = decode_tiers(data, dims, identity, span)
    assert [(t.energy_import_wh, t.energy_export_wh) for t in tiers] == [(None, 77.0), (None, 88.0)]
    assert tier_spans(dims, (2, 3, 6, 7, 4), MEP_READ) == ()  # neither import nor export: nothing to read


def assert_covers_every_tier(spans: tuple[TierSpan, ...], dims: tables.RegisterDimensions, max_read: int) -> None:
    """Consecutive groups from tier 0 to the last, each one read that fits ``max_read``.

    (Import and export are summations 0 and 1: 8 bytes of the last block in a group.)
    """
    block = dims.register_block_size
    assert [span.first_tier for span in spans] == [sum(span.tiers for span in spans[:k]) for k in range(len(spans))]
    assert sum(span.tiers for span in spans) == dims.tiers
    for span in spans:
        assert span.count <= max_read
        assert span.offset == dims.summations_offset + block * (span.first_tier + 1) + 4 * span.first_index
        assert span.count == block * (span.tiers - 1) + 8


def test_tier_spans_split_the_guide_demand_layout_into_reads_that_fit() -> None:
    # 196-byte blocks: one MEP reply carries tiers 0-2 (2 * 196 + 8 bytes), the rest is a
    # second read; two optical exchanges carry two tiers, so two reads of two.
    sources = tuple(range(15))
    assert tier_spans(GUIDE_BT21, sources, MEP_READ) == (
        TierSpan(offset=197, count=2 * 196 + 8, tiers=3, first_index=0, first_tier=0),
        TierSpan(offset=197 + 3 * 196, count=8, tiers=1, first_index=0, first_tier=3),
    )
    assert tier_spans(GUIDE_BT21, sources, IR_READ) == (
        TierSpan(offset=197, count=196 + 8, tiers=2, first_index=0, first_tier=0),
        TierSpan(offset=197 + 2 * 196, count=196 + 8, tiers=2, first_index=0, first_tier=2),
    )
    # One optical exchange (108 bytes) carries one tier's summations only.
    one = tier_spans(GUIDE_BT21, sources, 108)
    assert [(span.first_tier, span.tiers, span.count) for span in one] == [(tier, 1, 8) for tier in range(4)]
    for max_read in (MEP_READ, IR_READ, 108, 8, 1000):
        assert_covers_every_tier(tier_spans(GUIDE_BT21, sources, max_read), GUIDE_BT21, max_read)


def test_tier_spans_split_an_8_tier_meter_on_the_optical_port() -> None:
    # 44-byte blocks, no reset counter: tier t's block at 44 (t + 1). Eight tiers span
    # 7 * 44 + 8 = 316 bytes: one MEP read, two optical reads (five tiers, then three).
    sources = tuple(range(11))
    assert tier_spans(HOUSE_BT21_8_TIERS, sources, MEP_READ) == (TierSpan(44, 7 * 44 + 8, 8, 0, 0),)
    assert tier_spans(HOUSE_BT21_8_TIERS, sources, IR_READ) == (
        TierSpan(offset=44, count=4 * 44 + 8, tiers=5, first_index=0, first_tier=0),
        TierSpan(offset=44 + 5 * 44, count=2 * 44 + 8, tiers=3, first_index=0, first_tier=5),
    )
    for max_read in (MEP_READ, IR_READ, 108, 52, 51, 8):
        assert_covers_every_tier(tier_spans(HOUSE_BT21_8_TIERS, sources, max_read), HOUSE_BT21_8_TIERS, max_read)
    # The common case costs what it did: a house meter's 4 tiers are one read on either port.
    for max_read in (MEP_READ, IR_READ):
        assert tier_spans(HOUSE_BT21, sources, max_read) == (TierSpan(44, 3 * 44 + 8, 4, 0, 0),)
    assert tier_spans(HOUSE_BT21, sources, 7) == ()  # not even one tier's import and export fit
    assert tier_spans(HOUSE_BT21, (2, 3, 4), MEP_READ) == ()  # neither import nor export: nothing to read


def test_a_later_group_decodes_to_its_own_tier_numbers() -> None:
    span = tier_spans(GUIDE_BT21, tuple(range(15)), IR_READ)[1]
    data = bytearray(span.count)
    struct.pack_into("<ii", data, 0, 300, 5)
    struct.pack_into("<ii", data, 196, 44, 0)
    tiers = decode_tiers(bytes(data), GUIDE_BT21, identity_for(GUIDE_BT21, energy_unit=10), span)
    assert [(t.tier, t.energy_import_wh, t.energy_export_wh) for t in tiers] == [(2, 3000.0, 50.0), (3, 440.0, 0.0)]


# BT23 of the guide layout from offset 0 over the total block's demand records: the reset
# counter (3), 15 summations, then DmdRcd = STIME_DATE, INT32 cumulative, INT32
# continuous cumulative, INT32 demand (G p.210: offsets B, B+5, B+9, B+13).
DEMAND_HEAD = bytes([3]) + bytes(60)
DEMAND_RECORD_0 = bytes.fromhex("1a0b14120f 0e1f0000 68290000 5a0a0000")  # 2026-11-20 18:15, 7950, 10600, 2650
DEMAND_RECORD_1 = bytes.fromhex("0000000000 00000000 00000000 e4ffffff")  # never: no time, -28
BT22_DEMANDS = bytes.fromhex("08 09 0a 0b 68 69 6a 6b fd")  # 8, 9, 10, 11, 104-107; demand 1 a minimum


def test_demand_records_of_the_guide_layout_by_hand() -> None:
    span = demand_span(GUIDE_BT21, 465)
    assert span == DemandSpan(offset=0, count=1 + 60 + 8 * 17, demands=8)
    selection = decode_bt22_demands(BT22_DEMANDS, GUIDE_BT21)
    assert selection.sources == (8, 9, 10, 11, 104, 105, 106, 107)
    assert selection.maximum == (True, False, True, True, True, True, True, True)
    data = DEMAND_HEAD + DEMAND_RECORD_0 + DEMAND_RECORD_1 + bytes(6 * 17)
    demands = decode_demands(data, GUIDE_BT21, span, selection)
    assert demands.resets == 3
    first, second = demands.values[:2]
    assert (first.index, first.source, first.name, first.unit) == (0, 8, "power_import", "W")
    assert (first.value, first.time, first.maximum, first.cumulative) == (
        2650.0,
        datetime(2026, 11, 20, 18, 15),
        True,
        7950.0,
    )
    assert (second.name, second.value, second.time, second.maximum) == ("power_export", -28.0, None, False)
    assert [value.name for value in demands.values[4:]] == [f"reactive_power_q{q}" for q in range(1, 5)]
    assert {value.unit for value in demands.values[2:]} == {"var"}


def test_demand_records_without_bt22_and_with_unknown_sources() -> None:
    span = demand_span(GUIDE_BT21, 465)
    assert span is not None
    data = DEMAND_HEAD + DEMAND_RECORD_0 + bytes(7 * 17)
    unnamed = decode_demands(data, GUIDE_BT21, span, None)
    assert (unnamed.values[0].source, unnamed.values[0].name, unnamed.values[0].value) == (-1, "demand_0", 2650.0)
    other = decode_bt22_demands(bytes([88, 9, 200, 11, 104, 105, 106, 107, 0xFF]), GUIDE_BT21)
    values = decode_demands(data, GUIDE_BT21, span, other).values
    assert (values[0].name, values[0].unit) == ("source_88", "")


def test_a_demand_register_left_at_an_int32_limit_holds_no_demand() -> None:
    """A reset leaves a minimum demand at INT32 max (and a maximum may sit at INT32 min)."""
    span = demand_span(GUIDE_BT21, 465)
    assert span is not None
    reset_min = bytes.fromhex("1a0b14120f 0e1f0000 68290000 ffffff7f")
    reset_max = bytes.fromhex("0000000000 00000080 00000000 00000080")
    data = DEMAND_HEAD + reset_min + reset_max + DEMAND_RECORD_0 + bytes(5 * 17)
    post_ct = decode_bt22_demands(bytes([81, 82, 83, 84, 104, 105, 106, 107, 0xFE]), GUIDE_BT21)
    first, second, third = decode_demands(data, GUIDE_BT21, span, post_ct).values[:3]
    assert (first.value, first.time, first.maximum) == (None, None, False)
    assert (second.value, second.cumulative) == (None, None)
    assert (third.value, third.name, third.unit) == (2650.0, "reactive_power_import_post_ct", "var")
    assert (first.name, first.unit) == ("power_import_post_ct", "W")


def test_demand_span_shrinks_to_what_one_read_carries() -> None:
    assert demand_span(GUIDE_BT21, 100) == DemandSpan(offset=0, count=61 + 2 * 17, demands=2)
    assert demand_span(GUIDE_BT21, 60) is None
    assert demand_span(HOUSE_BT21, 465) is None  # no demands configured
    # Without date/time (flags1 bit 1) and without cumulative demands: a record is the value alone.
    bare = tables.decode_bt21(bytes.fromhex("04 00 00 02 01 00 01 00 00 01"))
    span = demand_span(bare, 465)
    assert span == DemandSpan(offset=0, count=1 + 8 + 4, demands=1)
    demands = decode_demands(bytes([9]) + bytes(8) + struct.pack("<i", 512), bare, span, None)
    assert (demands.resets, demands.values[0].value, demands.values[0].time) == (9, 512.0, None)


def test_bt26_header_and_newest_entry_without_bidn() -> None:
    # flags 06 (overflow, circular), 12 valid, last element 1, last sequence 100, 2 unread.
    header = decode_bt26_header(bytes.fromhex("06 0c 01 6400 02"))
    assert header == SelfReadHeader(valid=12, last_element=1, last_sequence=100)
    # No demands: no BIDN; entry = 6 + 220 bytes; newest at 6 + 1 * 226. Read: time,
    # season, then (A = 0) import and export.
    assert self_read_span(header, HOUSE_BT21, tuple(range(11))) == (232, 6 + 8)
    entry = bytes.fromhex("1a0b150000 01 74400500 9f1d0000")
    read = decode_self_read(entry, header, identity_for(HOUSE_BT21))
    assert (read.sequence, read.time, read.season, read.bidn) == (100, datetime(2026, 11, 21), 1, None)
    assert (read.energy_import_wh, read.energy_export_wh) == (344180.0, 7583.0)


def test_bt26_entry_with_bidn_on_a_demand_meter() -> None:
    # G p.213-214: BIDN at 6, time at 8, season at 13, BT23 image at 14 (reset counter first).
    header = SelfReadHeader(valid=3, last_element=2, last_sequence=7)
    assert self_read_span(header, GUIDE_BT21, tuple(range(15))) == (6 + 2 * 989, 2 + 6 + 1 + 8)
    entry = bytes.fromhex("0701 1a0b150000 00 03 74400500 9f1d0000")
    read = decode_self_read(entry, header, identity_for(GUIDE_BT21, energy_unit=100))
    assert (read.bidn, read.time, read.season) == (0x0107, datetime(2026, 11, 21), 0)
    assert (read.energy_import_wh, read.energy_export_wh) == (34418000.0, 758300.0)
    zero_time = decode_self_read(bytes(2) + bytes(5) + entry[7:], header, identity_for(GUIDE_BT21))
    assert zero_time.time is None


def test_short_or_garbage_input_is_a_decode_error_only() -> None:
    identity = identity_for(GUIDE_BT21)
    first_tiers, last_tiers = tier_spans(GUIDE_BT21, tuple(range(15)), MEP_READ)
    demands = demand_span(GUIDE_BT21, 465)
    assert demands is not None
    header = SelfReadHeader(1, 0, 1)
    decoders = [
        decode_bt55,
        decode_bt26_header,
        decode_stime_date,
        lambda data: decode_bt22_demands(data, GUIDE_BT21),
        lambda data: decode_tiers(data, GUIDE_BT21, identity, first_tiers),
        lambda data: decode_tiers(data, GUIDE_BT21, identity, last_tiers),
        lambda data: decode_demands(data, GUIDE_BT21, demands, None),
        lambda data: decode_self_read(data, header, identity),
    ]
    rng = random.Random(7)
    for decode in decoders:
        with pytest.raises(DecodeError):
            decode(b"\x01\x02")
        for length in (0, 1, 4, 5, 6, 8, 9, 17, 200, 400, 500):
            for _ in range(20):
                data = bytes(rng.randrange(256) for _ in range(length))
                with contextlib.suppress(DecodeError):
                    decode(data)


# ---- the reader against the simulator --------------------------------------------

VARIANT_NAMES = ["default", "tou", "self-reads", "demand"]


def frozen(variant: str, **kwargs: Any) -> SimulatedMeter:
    variants = () if variant == "default" else (variant,)
    return SimulatedMeter(KEY, image=MeterImage(speed=0), variants=variants, **kwargs)


async def serve(meter: SimulatedMeter, transport: str, listen: str) -> SimServer:
    return await (meter.serve_tcp(transport) if listen == "tcp" else meter.serve_pty(transport))


def truth_tiers(image: MeterImage, count: int) -> list[tuple[float, float]]:
    unit = image.energy_unit
    return [(int(t[0]) // unit * unit, int(t[1]) // unit * unit) for t in image.billing.tier_energies()[:count]]


@pytest.mark.parametrize("transport", ["mep", "ir"])
@pytest.mark.parametrize("listen", ["tcp", "pty"])
@pytest.mark.parametrize("variant", VARIANT_NAMES)
async def test_reader_reads_what_the_simulated_meter_holds(variant: str, listen: str, transport: str) -> None:
    meter = frozen(variant)
    image = meter.image
    server = await serve(meter, transport, listen)
    try:
        async with client_for(server, transport) as client:
            identity = await client.identify()
            reader = BillingReader(client)
            await reader.setup()
            setup_reads = reader.reads
            reads = []
            tiers: list[TierEnergy] = []
            for group in range(len(reader.tier_spans())):  # several on the optical port (one exchange)
                before = reader.reads
                tiers += await reader.read_tiers(group) or ()
                assert reader.reads - before == 1
            for read in (
                reader.read_tariff,
                reader.read_demands,
                reader.read_self_read_header,
                reader.read_newest_self_read,
            ):
                before = reader.reads
                reads.append(await read())
                assert reader.reads - before <= 1
            max_read = client.max_read_size
    finally:
        await server.close()
    tariff, demands, header, newest = reads
    dims = identity.dimensions
    # Setup: BT55, BT22's demand part on a demand meter, the BT26 header on a meter with self-reads.
    assert setup_reads == 1 + (dims.demands > 0) + (dims.self_reads > 0)
    billing_model = image.billing
    assert reader.has_tariff and tariff is not None and tariff == reader.tariff
    assert tariff.local_time == billing_model.local_time()
    assert (tariff.tier, tariff.tier_drive, tariff.season) == (billing_model.tier, "calendar", billing_model.season)
    assert reader.tiers == 4
    assert [t.tier for t in tiers] == [0, 1, 2, 3]  # every tier, whatever one read carries
    assert [(t.energy_import_wh, t.energy_export_wh) for t in tiers] == truth_tiers(image, 4)
    if variant in {"default", "self-reads"}:
        assert tiers[0].energy_import_wh == int(image.import_wh)  # tier 0 carries everything
        assert all(t.energy_import_wh == 0 for t in tiers[1:])
    if variant == "demand":
        assert reader.has_demands and demands is not None
        assert demands.resets == 3
        expected = [(d.source, float(d.value), d.time) for d in billing_model.demands()]
        fit = demand_span(dims, max_read)
        assert fit is not None and len(demands.values) == fit.demands == (8 if transport == "mep" else 2)
        assert [(v.source, v.value, v.time) for v in demands.values] == expected[: fit.demands]
        assert demands.values[0].name == "power_import" and demands.values[0].unit == "W"
        assert demands.values[0].time is not None
        assert all(v.maximum for v in demands.values)
    else:
        assert not reader.has_demands and demands is None
    if variant in ("self-reads", "demand"):
        assert reader.has_self_reads and header is not None and newest is not None
        last = billing_model.self_reads[-1]
        assert header == SelfReadHeader(valid=12, last_element=last.element, last_sequence=last.sequence)
        assert (newest.sequence, newest.time, newest.season) == (last.sequence, last.time, last.season)
        assert (newest.energy_import_wh, newest.energy_export_wh) == (last.energy_import_wh, last.energy_export_wh)
        assert newest.bidn == (BIDN if variant == "demand" else None)
    else:
        assert not reader.has_self_reads and header is None and newest is None


# (variants, transport, exchanges per read, tier groups): a demand meter's 196-byte blocks
# and an 8-tier meter's 8 blocks do not fit one read; each group must.
EVERY_TIER_CASES = [
    ("tou,demand", "mep", 1, 2),
    ("tou,demand", "ir", 2, 2),
    ("tou,demand", "ir", 1, 4),
    ("8-tiers", "mep", 1, 1),
    ("8-tiers", "ir", 2, 2),
    ("tou,demand,8-tiers", "mep", 1, 3),
    ("tou,demand,8-tiers", "ir", 2, 4),
]


@pytest.mark.parametrize("listen", ["tcp", "pty"])
@pytest.mark.parametrize(("variants", "transport", "exchanges", "groups"), EVERY_TIER_CASES)
async def test_reader_reads_every_tier_one_group_per_read(
    variants: str, transport: str, exchanges: int, groups: int, listen: str
) -> None:
    """Every tier block's import and export, as the simulated meter holds them, over real bytes."""
    meter = SimulatedMeter(KEY, image=MeterImage(speed=0), variants=variants)
    image = meter.image
    server = await serve(meter, transport, listen)
    try:
        async with client_for(server, transport) as client:
            identity = await client.identify()
            reader = BillingReader(client, exchanges=exchanges)
            await reader.setup()
            spans = reader.tier_spans()
            read: list[TierEnergy] = []
            for group, span in enumerate(spans):
                assert span.count <= exchanges * client.max_read_size
                before, requests = reader.reads, sum(meter.stats.table_reads.values())
                tiers = await reader.read_tiers(group)
                assert reader.reads - before == 1  # one table read per group
                assert sum(meter.stats.table_reads.values()) - requests <= exchanges
                assert tiers is not None and [t.tier for t in tiers] == list(
                    range(span.first_tier, span.first_tier + span.tiers)
                )
                read.extend(tiers)
            before = reader.reads
            assert await reader.read_tiers(len(spans)) is None  # a group the plan no longer has
            assert reader.reads == before
    finally:
        await server.close()
    dims = identity.dimensions
    assert len(spans) == groups
    assert reader.tiers == dims.tiers == len(read) == (8 if "8-tiers" in variants else 4)
    assert [t.tier for t in read] == list(range(dims.tiers))
    truth = truth_tiers(image, dims.tiers)
    assert [(t.energy_import_wh, t.energy_export_wh) for t in read] == truth
    assert len({imported for imported, _exported in truth}) >= 3  # the tiers hold different values


async def test_tou_tiers_sum_to_the_total_and_a_switch_is_seen() -> None:
    meter = SimulatedMeter(KEY, image=MeterImage(speed=1), variants="tou")
    image = meter.image
    image.power_w = lambda elapsed: (1000.0, 0.0)  # type: ignore[method-assign]  # a steady 1 kW
    logged = len(image.events.logged)
    async with await meter.serve_tcp("mep") as server, client_for(server, "mep") as client:
        await client.identify()
        reader = BillingReader(client)
        await reader.setup()
        target = 3  # the calendar uses tiers 0-2
        image.billing.switch_tier(target, hold=True)
        tariff = await reader.read_tariff()
        assert tariff is not None and (tariff.tier, tariff.tier_drive) == (target, "manual_hold")
        before = await reader.read_tiers()
        image.skip(3600)  # an hour of model time (about 1 kWh) in the new tier
        after = await reader.read_tiers()
        snapshot = await client.read_snapshot()
    assert before is not None and after is not None
    assert snapshot.energy_import_wh is not None
    gained = [(a.energy_import_wh or 0) - (b.energy_import_wh or 0) for a, b in zip(after, before, strict=True)]
    assert 1000 <= gained[target] <= 1010  # the hour at 1 kW, and the wall-clock seconds of the reads
    assert all(abs(gain) <= 1 for tier, gain in enumerate(gained) if tier != target)
    total = sum(t.energy_import_wh or 0 for t in after)
    assert abs(total - snapshot.energy_import_wh) <= len(after)  # tiers sum to the total within rounding
    switches = [e for e in image.events.logged[logged:] if e.event_id == 27]
    assert switches and switches[-1].argument == target


def test_tou_calendar_follows_model_local_time() -> None:
    image = MeterImage(speed=0)
    SimulatedMeter(KEY, image=image, variants="tou")
    billing_model = image.billing
    hour = billing_model.local_time().hour
    expected = 0 if hour < 7 or hour >= 21 else (1 if hour < 17 else 2)
    assert billing_model.tier == expected
    assert bytes(image.tables[tables.BT55])[7] & 0x07 == expected


async def test_self_read_taken_at_run_time_is_the_newest() -> None:
    meter = frozen("self-reads")
    async with await meter.serve_tcp("ir") as server, client_for(server, "ir") as client:
        await client.identify()
        reader = BillingReader(client)
        await reader.setup()
        first = await reader.read_newest_self_read()
        taken = meter.image.billing.self_read()
        header = await reader.read_self_read_header()
        newest = await reader.read_newest_self_read()
    assert first is not None and header is not None and newest is not None
    assert header.last_sequence == first.sequence + 1 == taken.sequence
    assert header.last_element == taken.element == (meter.image.billing.self_reads[-2].element + 1) % 12
    assert (newest.time, newest.energy_import_wh) == (taken.time, taken.energy_import_wh)
    assert meter.image.events.logged[-1].event_id == 21  # self_read


def test_simulated_self_read_history_is_daily_and_consistent() -> None:
    image = MeterImage(speed=0)
    SimulatedMeter(KEY, image=image, variants="self-reads")
    reads = image.billing.self_reads
    assert len(reads) == 14
    assert {b.time - a.time for a, b in pairwise(reads)} == {timedelta(days=1)}
    assert all(a.energy_import_wh <= b.energy_import_wh for a, b in pairwise(reads))
    header = decode_bt26_header(bytes(image.tables[BT26][:6]))
    assert header == SelfReadHeader(12, reads[-1].element, reads[-1].sequence)


@pytest.mark.parametrize("transport", ["mep", "ir"])
async def test_refused_tables_make_billing_unavailable(transport: str) -> None:
    meter = frozen("demand")
    for table_id in (tables.BT55, BT26):
        meter.image.refused[table_id] = 0x05
    async with await meter.serve_tcp(transport) as server, client_for(server, transport) as client:
        await client.identify()
        reader = BillingReader(client)
        await reader.setup()
        assert not reader.has_tariff and not reader.has_self_reads
        assert reader.tariff is None and reader.self_read_header is None
        assert await reader.read_tariff() is None
        assert await reader.read_self_read_header() is None
        assert await reader.read_newest_self_read() is None
        meter.image.refused[tables.BT23] = 0x05
        assert await reader.read_tiers() is None
        assert await reader.read_demands() is None
        assert reader.has_demands  # the layout has them; this read was refused


async def test_default_meter_without_bt55() -> None:
    meter = frozen("default")
    meter.image.tables.pop(tables.BT55)
    async with await meter.serve_tcp("mep") as server, client_for(server, "mep") as client:
        await client.identify()
        reader = BillingReader(client)
        await reader.setup()
        tiers = await reader.read_tiers()
    assert not reader.has_tariff and reader.reads == 2
    assert tiers is not None and len(tiers) == 4


async def test_reader_needs_an_identified_client() -> None:
    client = MeterClient("socket://127.0.0.1:1", "mep", KEY)
    with pytest.raises(RuntimeError, match="identify"):
        await BillingReader(client).read_tiers()


@pytest.mark.parametrize("variant", ["demand", "self-reads"])
async def test_cli_billing_json(variant: str, capsys: pytest.CaptureFixture[str]) -> None:
    meter = frozen(variant)
    async with await meter.serve_tcp("mep") as server:
        args = _parser().parse_args(
            ["billing", "--transport", "mep", "--port", server.url, "--key", KEY_TEXT, "--json"]
        )
        assert await billing(args) == 0
        result = json.loads(capsys.readouterr().out)
        args.json = False
        assert await billing(args) == 0
        text = capsys.readouterr().out
    assert result["tariff"]["tier"] == meter.image.billing.tier
    assert [tier["tier"] for tier in result["tiers"]] == [0, 1, 2, 3]  # the demand meter's in two reads
    assert result["newest_self_read"]["sequence"] == meter.image.billing.self_reads[-1].sequence
    assert result["newest_self_read"]["time"] == meter.image.billing.self_reads[-1].time.isoformat()
    assert (result["demands"] is not None) == (variant == "demand")
    assert "tariff       tier" in text and "self-read    #" in text
