"""The rare-read scheduler: one read per call, passes continued, failures backed off."""

from __future__ import annotations

import pytest

from custom_components.nes_meter.rare_reads import RETRY_MIN, RareRead, RareReadScheduler
from nesmeter import MeterError, NoResponseError


class Part:
    """A part that records its reads; ``reads_per_pass`` reads make one pass."""

    def __init__(self, name: str, interval: float = 300.0, reads_per_pass: int = 1) -> None:
        self.name = name
        self.interval = interval
        self.reads_per_pass = reads_per_pass
        self.reads = 0
        self.aborted = 0
        self.fail_with: BaseException | None = None

    async def step(self) -> bool:
        self.reads += 1
        if self.fail_with is not None:
            raise self.fail_with
        return self.reads % self.reads_per_pass != 0

    def abort(self) -> None:
        self.aborted += 1

    def read(self, **kwargs: object) -> RareRead:
        return RareRead(self.name, self.interval, self.step, abort=self.abort, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def link_errors() -> list[MeterError]:
    return []


@pytest.fixture
def scheduler(link_errors: list[MeterError]) -> RareReadScheduler:
    async def heard(err: MeterError) -> None:
        link_errors.append(err)

    return RareReadScheduler(heard)


async def test_due_parts_read_in_order_one_per_step_then_wait_their_interval(scheduler: RareReadScheduler) -> None:
    first, second, later = Part("first"), Part("second"), Part("later")
    scheduler.add(first.read(), second.read(), later.read(just_read=True))
    assert scheduler.pending
    assert await scheduler.step()
    assert (first.reads, second.reads, later.reads) == (1, 0, 0)
    assert await scheduler.step()
    assert (first.reads, second.reads, later.reads) == (1, 1, 0)
    assert not scheduler.pending
    assert not await scheduler.step()  # nothing due: the line is free for the history
    scheduler.poll_soon("later")
    assert await scheduler.step()
    assert later.reads == 1


async def test_a_pass_of_several_reads_is_finished_before_another_part(scheduler: RareReadScheduler) -> None:
    log, alarms = Part("events", reads_per_pass=3), Part("status")
    scheduler.add(log.read(), alarms.read())
    for _ in range(3):
        await scheduler.step()
    assert (log.reads, alarms.reads) == (3, 0)
    await scheduler.step()
    assert alarms.reads == 1


async def test_a_failing_part_backs_off_and_its_link_error_is_reported(
    scheduler: RareReadScheduler, link_errors: list[MeterError]
) -> None:
    failing, healthy = Part("tiers", interval=3600.0), Part("relay", interval=30.0)
    failing.fail_with = NoResponseError("silent")
    scheduler.add(failing.read(), healthy.read())
    assert await scheduler.step()  # the line was used, though the read failed
    assert failing.aborted == 1
    assert [str(err) for err in link_errors] == ["silent"]
    # The failed part waits (30 s, then 60 s, ...); the healthy part is read meanwhile.
    assert await scheduler.step()
    assert healthy.reads == 1
    assert not await scheduler.step()
    assert failing.reads == 1
    reads = {read.name: read for read in scheduler._reads.values()}
    first_pause = reads["tiers"].due
    scheduler.poll_soon("tiers")
    await scheduler.step()
    assert reads["tiers"].failures == 2
    assert reads["tiers"].due - first_pause >= RETRY_MIN  # the second pause is twice the first


async def test_a_decoder_bug_costs_the_pass_not_the_poll(
    scheduler: RareReadScheduler, link_errors: list[MeterError], caplog: pytest.LogCaptureFixture
) -> None:
    buggy = Part("power_quality")
    buggy.fail_with = IndexError("decoder bug")
    scheduler.add(buggy.read())
    with caplog.at_level("DEBUG"):
        assert await scheduler.step()
    assert link_errors == []  # not the link's fault: the port stays open
    assert not scheduler.pending
    assert "power_quality read failed" in caplog.text
