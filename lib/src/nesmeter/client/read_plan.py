"""Which table bytes a poll reads: the fewest line seconds that cover the wanted values.

A poll reads BT28 present values (and, when due, BT23 summations) as partial reads. Each
read costs its data plus a fixed overhead that depends on the transport:

* MEP: request ``LEN(2) + APDU(8) + SEQ(4) + DIGEST(8)``, reply ``LEN(2) + code(1) +
  count(2) + data + DIGEST(8)``, 25 ms after each 117-byte reply segment, and at most one
  request per 100 ms (guide p.20-21), so a short read followed by another costs 100 ms.
* C12.18: a request packet (8 bytes framing + 8 service) and its ACK, a reply payload
  ``00 COUNT(2) data CKSUM`` split into packets of the negotiated size, 8 bytes framing
  and one ACK each.

Both wait a reply turnaround per reply (per reply packet on C12.18); ``REPLY_TURNAROUND``
is what C12.18 adapters use, the guides give none. The wanted values of a table are split
into contiguous ranges wherever the skipped bytes cost more than another read (bytes as
the tie-break); on MEP, where a read costs at least 100 ms and the guide asks for no more
than one table read per second on average, that is one range or two.

CT meters: BT28's raw power and current sources (8-14, 185-190) do not include the CT/VT
ratios, their post-ratio twins (81-84, 191-199) do (guide p.215). Post-ratio sources are
used until a poll that read both twins has shown the ratio to be 1 (a direct-connected
meter); from then on, for that connection, the raw twin may be read instead where it is
cheaper to reach, which on the common layouts it is (it sits next to the voltages).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
import struct
from typing import Final, Literal

from nesmeter.c1218 import framing as c1218
from nesmeter.link.transport import BYTE_TIME
from nesmeter.mep import framing as mep
from nesmeter.tables.snapshot import POST_RATIO_SOURCES, PRESENT_SOURCES, ValuePlan, scaled

REPLY_TURNAROUND: Final = 0.020
MEP_REQUEST_BYTES: Final = 2 + 8 + mep.SEQUENCE_SIZE + mep.DIGEST_SIZE
MEP_REPLY_OVERHEAD: Final = 2 + 1 + 2 + mep.DIGEST_SIZE
MEP_SEGMENT: Final = 117
MEP_SEGMENT_GAP: Final = 0.025
MEP_MIN_SPACING: Final = 0.1
IR_REQUEST_BYTES: Final = c1218.OVERHEAD + 8 + 1  # read request packet + the meter's ACK
IR_REPLY_OVERHEAD: Final = 4  # 00, COUNT(2), CKSUM
VALUE_SIZE: Final = 4

# Ratio groups: the raw twin of a post-ratio source may stand in for it once the group's
# ratio is known to be 1. Powers carry CT x VT, currents CT only.
RatioGroup = Literal["power", "current"]
CURRENT_FIELDS: Final = frozenset({"current_l1_a", "current_l2_a", "current_l3_a"})
# Below these a ratio cannot be told from rounding (W or var, mA as read).
CALIBRATION_FLOOR: Final[dict[str, int]] = {"power": 50, "current": 200}
RATIO_ONE_TOLERANCE: Final = 0.1


def ratio_group(name: str) -> RatioGroup:
    """Return the CT-ratio group of a field: the currents, or the powers."""
    return "current" if name in CURRENT_FIELDS else "power"


@dataclass(frozen=True, slots=True)
class ReadSchedule:
    """How often the slowly changing values are read when the caller polls fast.

    ``registers_interval``: BT23 (energies, outage counters) at most this often, in
    seconds (0: every poll). It applies when ``read_snapshot`` is told the poll interval
    (``hold_for``); a poll without it reads everything wanted. The clock (BT52) is read
    every ``clock_interval`` seconds and carried forward in between.
    """

    registers_interval: float = 0.0
    clock_interval: float = 60.0


@dataclass(frozen=True, slots=True)
class LinkModel:
    """Line time of reads on one transport; ``max_read`` is the session's largest read."""

    transport: str
    max_read: int
    packet_size: int = 64

    def _chunks(self, count: int) -> list[int]:
        full, rest = divmod(count, self.max_read)
        return [self.max_read] * full + ([rest] if rest else [])

    def exchange(self, count: int) -> tuple[int, float]:
        """(bytes on the line, seconds) of one request/reply for ``count`` data bytes."""
        if self.transport == "mep":
            reply = MEP_REPLY_OVERHEAD + count
            size = MEP_REQUEST_BYTES + reply
            return size, size * BYTE_TIME + REPLY_TURNAROUND + (reply - 1) // MEP_SEGMENT * MEP_SEGMENT_GAP
        payload = count + IR_REPLY_OVERHEAD
        packets = -(-payload // (self.packet_size - c1218.OVERHEAD))
        size = IR_REQUEST_BYTES + payload + packets * (c1218.OVERHEAD + 1)
        return size, size * BYTE_TIME + packets * REPLY_TURNAROUND

    def exchanges(self, counts: Iterable[int]) -> list[tuple[int, float]]:
        """Return each exchange's (bytes, seconds) for reads of ``counts`` bytes, split as the link must."""
        return [self.exchange(chunk) for count in counts for chunk in self._chunks(count)]

    def cost(self, counts: Iterable[int], *, spaced_last: bool = True) -> tuple[float, int]:
        """(seconds, bytes) of reads done back to back.

        On MEP every request but the last waits out the 100 ms spacing; ``spaced_last``
        counts it for the last too (the read is followed by others in the poll).
        """
        exchanges = self.exchanges(counts)
        seconds = 0.0
        for number, (_size, duration) in enumerate(exchanges):
            spaced = self.transport == "mep" and (spaced_last or number < len(exchanges) - 1)
            seconds += max(duration, MEP_MIN_SPACING) if spaced else duration
        return seconds, sum(size for size, _ in exchanges)


@dataclass(frozen=True, slots=True)
class TableRead:
    """A partial read of values ``first..last`` of a table, and what they feed."""

    table_id: int
    base: int  # byte offset of value 0 in the table
    first: int
    last: int
    plan: ValuePlan  # (absolute value index, field, scale)

    @property
    def offset(self) -> int:
        """The byte offset of the first value in the table."""
        return self.base + VALUE_SIZE * self.first

    @property
    def count(self) -> int:
        """The bytes the values ``first..last`` take."""
        return VALUE_SIZE * (self.last - self.first + 1)

    def decode(self, data: bytes) -> tuple[int, ...]:
        """Decode the values ``first..last`` as signed 32-bit little-endian integers."""
        return struct.unpack_from(f"<{self.last - self.first + 1}i", data)

    def apply(self, values: Sequence[int], out: dict[str, float]) -> None:
        """Put the planned fields of ``values`` into ``out`` at their register's resolution."""
        for index, name, scale in self.plan:
            raw = values[index - self.first]
            out[name] = scaled(raw, scale)


def plan_ranges(
    indices: Sequence[int], link: LinkModel, *, max_ranges: int | None = None, spaced_last: bool = True
) -> list[tuple[int, int]]:
    """Return the value ranges (first, last) covering ``indices`` in the least line time.

    Without ``max_ranges`` any split at a gap may pay (each range costs a read's overhead,
    the gap's bytes are saved); ``max_ranges=1`` or ``2``: one range, or two split at a gap.
    """
    wanted = sorted(set(indices))
    if not wanted:
        return []

    def cost(first: int, last: int) -> tuple[float, int]:
        return link.cost([VALUE_SIZE * (last - first + 1)], spaced_last=spaced_last)

    if max_ranges is None:
        # best[j]: cheapest cover of wanted[:j]; cut[j]: where its last range starts
        best: list[tuple[float, int]] = [(0.0, 0)]
        cut = [0]
        for end in range(1, len(wanted) + 1):
            options = []
            for begin in range(end):
                seconds, size = cost(wanted[begin], wanted[end - 1])
                options.append(((best[begin][0] + seconds, best[begin][1] + size), begin))
            total, begin = min(options)
            best.append(total)
            cut.append(begin)
        ranges = []
        end = len(wanted)
        while end:
            ranges.append((wanted[cut[end]], wanted[end - 1]))
            end = cut[end]
        return ranges[::-1]
    chosen = [(wanted[0], wanted[-1])]
    chosen_cost = cost(wanted[0], wanted[-1])
    if max_ranges >= 2:
        for split in range(1, len(wanted)):
            ranges = [(wanted[0], wanted[split - 1]), (wanted[split], wanted[-1])]
            first, second = cost(*ranges[0]), cost(*ranges[1])
            total = (first[0] + second[0], first[1] + second[1])
            if total < chosen_cost:
                chosen, chosen_cost = ranges, total
    return chosen


def table_reads(table_id: int, base: int, plan: ValuePlan, ranges: Sequence[tuple[int, int]]) -> list[TableRead]:
    """One ``TableRead`` per range, each with the plan entries that fall in it."""
    return [
        TableRead(table_id, base, first, last, tuple(entry for entry in plan if first <= entry[0] <= last))
        for first, last in ranges
    ]


@dataclass(frozen=True, slots=True)
class PresentChoice:
    """Where a present-value field can be read: the post-ratio index and/or the raw one."""

    name: str
    scale: float
    post: int | None
    raw: int | None


def present_choices(sources: Sequence[int]) -> dict[str, PresentChoice]:
    """Per snapshot field, the first BT28 index of its post-ratio and of its raw source."""
    post: dict[str, tuple[int, float]] = {}
    raw: dict[str, tuple[int, float]] = {}
    for index, source in enumerate(sources):
        if source in POST_RATIO_SOURCES:
            name, scale = POST_RATIO_SOURCES[source]
            post.setdefault(name, (index, scale))
        elif source in PRESENT_SOURCES:
            name, scale = PRESENT_SOURCES[source]
            raw.setdefault(name, (index, scale))
    return {
        name: PresentChoice(
            name,
            (post.get(name) or raw[name])[1],
            post[name][0] if name in post else None,
            raw[name][0] if name in raw else None,
        )
        for name in post.keys() | raw.keys()
    }


def choose_present(
    choices: Mapping[str, PresentChoice],
    wanted: Iterable[str],
    ratio_one: Mapping[RatioGroup, bool | None],
    *,
    calibrate: bool,
) -> tuple[ValuePlan, tuple[tuple[str, int, int], ...]]:
    """Plan the BT28 values for ``wanted`` and the twin pairs (field, raw, post) to compare.

    A raw twin replaces its post-ratio source only when the group's ratio is known to be 1.
    With ``calibrate``, undecided groups read both twins so that the ratio can be learned.
    """
    plan: list[tuple[int, str, float]] = []
    pairs: list[tuple[str, int, int]] = []
    for name in sorted(set(wanted) & choices.keys()):
        choice = choices[name]
        if choice.post is None or choice.raw is None:
            index = choice.post if choice.post is not None else choice.raw
            assert index is not None
            plan.append((index, name, choice.scale))
            continue
        known = ratio_one.get(ratio_group(name))
        plan.append((choice.raw if known else choice.post, name, choice.scale))
        if known is None and calibrate:
            pairs.append((name, choice.raw, choice.post))
    return tuple(sorted(plan)), tuple(pairs)


def judge_ratio(pairs: Iterable[tuple[str, int, int]], values: Mapping[int, int]) -> dict[RatioGroup, bool]:
    """Judge what the twins read in one poll say about each group's ratio.

    A group is "ratio 1" when a pair above the floor agrees within 10 %, "not 1" when any
    pair above the floor does not; pairs below the floor say nothing.
    """
    verdict: dict[RatioGroup, bool] = {}
    for name, raw_index, post_index in pairs:
        if raw_index not in values or post_index not in values:
            continue
        group = ratio_group(name)
        raw, post = values[raw_index], values[post_index]
        if max(abs(raw), abs(post)) < CALIBRATION_FLOOR[group]:
            continue
        one = raw != 0 and abs(post / raw - 1) <= RATIO_ONE_TOLERANCE
        verdict[group] = verdict.get(group, True) and one
    return verdict
