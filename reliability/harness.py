"""The polling loop shared by the fault matrix and the soak.

It does what the coordinator does with a client, minus Home Assistant: poll, put the
energy counters through the integration's own ``CounterGuard``, close the port on an
error and open it again on the next poll. Every value that would be written is checked
against the simulated meter's true registers, so a wrong number cannot go unnoticed.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
import os
import time
from typing import Any

from benchmarks.wire import KEY
from custom_components.nes_meter.guard import CounterGuard
from nesmeter import MeterClient, MeterError, MeterKey
from nesmeter.c1218.session import C1218Timing
from nesmeter.client.client import Transport
from nesmeter.mep.session import MepTiming
from nesmeter.mep.tls_session import TlsTiming
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.simulator import Faults, SimServer, SimulatedMeter
from nesmeter.sim.tls_server import TlsSimulatedMeter

# The guide's timeouts scaled down 10x: the simulator answers at once, so only lost or
# delayed replies ever wait, and thousands of faulty polls fit in minutes.
FAST_MEP = MepTiming(response_timeout=0.05, byte_slack=0.05, min_spacing=0, enable_settle=0, enable_reset_off=0)
FAST_TLS = TlsTiming(
    response_timeout=0.05, handshake_timeout=0.1, byte_slack=0.05, min_spacing=0, enable_settle=0, enable_reset_off=0
)
FAST_IR = C1218Timing(ack_timeout=0.1, byte_slack=0.05, busy_delay=0.01)
TIMEOUT = {"mep": FAST_MEP.response_timeout, "ir": FAST_IR.ack_timeout}
ENERGY_SPEED = 60.0  # the simulated clock runs fast so counters move, below the guard's 250 kW limit


@dataclass(slots=True)
class Tally:
    attempted: int = 0
    succeeded: int = 0
    failed: int = 0
    absorbed: int = 0  # polls that met a fault and still succeeded (retries inside the poll)
    recovered: int = 0  # failed polls followed by a good one
    wrong_values: int = 0  # written energy outside the meter's true register during the poll
    decreases: int = 0  # written energy lower than the previous written value
    guard_dropped: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def other_tasks() -> int:
    return len(asyncio.all_tasks() - {asyncio.current_task()})


class Poller:
    """One client polling one simulated meter, with the coordinator's error handling."""

    def __init__(
        self, meter: SimulatedMeter, url: str, transport: Transport, key: MeterKey = KEY, *, tls: bool = False
    ) -> None:
        self.meter = meter
        self.client = MeterClient(
            url,
            transport,
            key,
            tls=tls,
            enable_line="none",
            mep_timing=FAST_TLS if tls else FAST_MEP,
            ir_timing=FAST_IR,
        )
        self.guard = CounterGuard()
        self.tally = Tally()
        self._failing = False
        self.first_written: float | None = None
        self.written: float | None = None

    async def poll(self) -> bool:
        tally = self.tally
        tally.attempted += 1
        retries = self.client.stats.retries + self.client.stats.sequence_resyncs
        unit = self.meter.image.energy_unit  # the meter counts whole units of it (ET55)
        self.meter.image.update()
        truth_before = int(self.meter.image.import_wh) // unit * unit
        try:
            if not self.client.is_open:
                await self.client.open()
            snapshot = await self.client.read_snapshot(hold_for=2)
        except MeterError as err:
            await self.client.close()
            tally.failed += 1
            name = type(err).__name__
            tally.errors[name] = tally.errors.get(name, 0) + 1
            self._failing = True
            return False
        self.meter.image.update()
        truth_after = int(self.meter.image.import_wh) // unit * unit
        written = self.guard.apply(snapshot, time.monotonic()).energy_import_wh
        tally.succeeded += 1
        if self._failing:
            tally.recovered += 1
            self._failing = False
        if self.client.stats.retries + self.client.stats.sequence_resyncs > retries:
            tally.absorbed += 1
        if written is not None:
            held = written == self.written
            if not held and not truth_before <= written <= truth_after:
                tally.wrong_values += 1
            if self.written is not None and written < self.written:
                tally.decreases += 1
            self.written = written
            if self.first_written is None:
                self.first_written = written
        tally.guard_dropped = sum(self.guard.dropped.values())
        return True

    async def close(self) -> None:
        await self.client.close()


def meter_with(faults: Faults, variant: str | None = None, *, tls: bool = False) -> SimulatedMeter:
    """A fast-running meter of a variant; ``slow-reply`` answers 1.6 timeouts late, as it does at
    full scale; ``tls``: one that requires MEP TLS mode.
    """
    meter_class = TlsSimulatedMeter if tls else SimulatedMeter
    return meter_class(
        KEY,
        image=MeterImage(speed=ENERGY_SPEED),
        faults=faults,
        variants=variant or (),
        reply_latency=FAST_MEP.response_timeout * 1.6 if variant == "slow-reply" else None,
    )


async def serve(meter: SimulatedMeter, transport: Transport, link: str, port: int = 0) -> SimServer:
    return await (meter.serve_pty(transport) if link == "pty" else meter.serve_tcp(transport, port=port))
