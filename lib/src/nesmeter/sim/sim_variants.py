"""Meter variants: the ways real NES meters may differ from the guides' tidy picture.

The simulator was written from the same notes as the client, so by default it shares the
client's reading of the spec. Each variant makes it behave the way some real meter (or
IR head) plausibly does where the guides or captures leave room, so the client is tested
against that too. Link variants are applied by ``SimulatedMeter``; table variants here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from nesmeter.sim.sim_billing import VARIANTS as BILLING_VARIANTS
from nesmeter.sim.sim_events import VARIANTS as EVENT_VARIANTS
from nesmeter.sim.sim_image import MeterImage
from nesmeter.sim.sim_load_profile import VARIANTS as LOAD_PROFILE_VARIANTS
from nesmeter.sim.sim_power_quality import VARIANTS as POWER_QUALITY_VARIANTS
from nesmeter.tables import tables
from nesmeter.tables.snapshot import STANDARD_PRESENT_ORDER

VARIANTS: Final[dict[str, str]] = {
    # optical port (C12.18)
    "fixed-toggle": "IR: the reply toggle bit never alternates",
    "mirror-toggle": "IR: the reply toggle bit mirrors the request's",
    "bare-negotiate": "IR: Negotiate is answered with a bare 00",
    "leftover-session": "IR: still in a session from before (Identify answered isss until Terminate)",
    "echo": "IR: the head echoes every byte the client sends",
    "fw2": "firmware 2.10: no BT21 (inappropriate action), BT20 instead, no BT27",
    # MEP
    "short-0b": "MEP: authentication failure sent as a bare 00 01 0B",
    "slow-reply": "MEP: every reply comes after the client's timeout",
    # both
    "clock-refused": "BT52 refused",
    "blank-et03": "ET03 never written by the utility (all zeros)",
    "ct": "CT meter: ratio 200/5 on BT28's raw sources, energy register unit 10",
    "demand": "firmware 4 with demands: a 981-byte BT23 and present demands in BT28",
    "single-phase": "a single-phase meter: BT27 lists L1 sources only",
    "mep2": "Gen 4: the client sits on the lower MEP port (ET70.142 = 2, alert flags in entry 5)",
    "big-endian-bt00": "BT00 says big-endian data (must be refused)",
    **LOAD_PROFILE_VARIANTS,
    **EVENT_VARIANTS,
    **BILLING_VARIANTS,
    **POWER_QUALITY_VARIANTS,
}
IR_ONLY: Final = frozenset({"fixed-toggle", "mirror-toggle", "bare-negotiate", "leftover-session", "echo", "fw2"})
MEP_ONLY: Final = frozenset({"short-0b", "slow-reply"})
# Meters the client must refuse rather than read.
REFUSED: Final = frozenset({"big-endian-bt00"})

ET70_SIZE: Final = 160
CT_RATIO: Final = 40  # 200/5
CT_ENERGY_UNIT: Final = 10
IAR: Final = 0x05  # C12.18 "inappropriate action requested"
ISC: Final = 0x03  # C12.18 "insufficient security clearance"
FW2_BT01_FIRMWARE: Final = bytes([0x21, 0x40])  # 2.10.00
FW4_BT01_FIRMWARE: Final = bytes([0x40, 0x45])  # 4.02.05
# Guide p.49's demand-enabled BT21 with 72 present values (fw 4.0x): 1 + 5 x 196 = 981-byte BT23.
DEMAND_BT21: Final = bytes.fromhex("3f0e0c0f080001040848")
SINGLE_PHASE_SOURCES: Final = (
    8, 9, 10, 11, 12, 15, 18, 19, 20, 23, 81, 82, 83, 84, 104, 105, 106, 107,
    185, 188, 191, 194, 197, 202, 205, 208, 209, 210, 213,
)  # fmt: skip


def applies(variant: str, transport: str) -> bool:
    """Whether a variant is about this transport (link quirks belong to one port)."""
    return variant not in (MEP_ONLY if transport == "ir" else IR_ONLY)


def parse_variants(names: Iterable[str] | str) -> frozenset[str]:
    """``fixed-toggle,ct`` or an iterable of names; unknown names are an error."""
    if isinstance(names, str):
        names = (name.strip() for name in names.split(","))
    chosen = frozenset(name for name in names if name)
    unknown = chosen - VARIANTS.keys()
    if unknown:
        raise ValueError(f"unknown meter variant(s): {', '.join(sorted(unknown))}; known: {', '.join(VARIANTS)}")
    return chosen


def apply_table_variants(image: MeterImage, variants: frozenset[str]) -> None:
    """Change the image's tables the way the chosen variants' meters have them."""
    if "fw2" in variants:
        image.tables[tables.BT01][14:16] = FW2_BT01_FIRMWARE
        image.tables[tables.BT20][:] = bytes.fromhex("030c000b000000040016")  # 22 present values
        image.refused[tables.BT21] = IAR
        for table_id in (tables.BT21, tables.BT27, tables.BT22, tables.ET55):
            image.tables.pop(table_id, None)
        image.tables[tables.BT28] = image.tables[tables.BT28][: 4 * 22]
    if "clock-refused" in variants:
        image.refused[tables.BT52] = ISC
    if "blank-et03" in variants:
        image.tables[tables.ET03][:] = bytes(len(image.tables[tables.ET03]))
    if "ct" in variants:
        image.ct_ratio = CT_RATIO
        image.energy_unit = CT_ENERGY_UNIT
        image.write_energy_unit()
    if "demand" in variants:
        image.tables[tables.BT01][14:16] = FW4_BT01_FIRMWARE
        image.write_et11()  # Gen 4: two MEP clients, fields 32-37
        image.set_layout(DEMAND_BT21, value_sources=STANDARD_PRESENT_ORDER[:72], demand_sources=tuple(range(88, 96)))
        image.write_energy_unit()
    if "single-phase" in variants:
        bt21 = bytes(image.tables[tables.BT21][:9]) + bytes([len(SINGLE_PHASE_SOURCES)])
        image.set_layout(bt21, value_sources=SINGLE_PHASE_SOURCES)
    if "mep2" in variants:
        image.tables[tables.BT01][14:16] = FW4_BT01_FIRMWARE
        image.write_et11()  # Gen 4: two MEP clients, fields 32-37
        image.tables[tables.ET70] = bytearray(ET70_SIZE)
        image.tables[tables.ET70][142] = 2
        image.write_energy_unit()
    if "big-endian-bt00" in variants:
        image.tables[tables.BT00][0] |= 0x01
    image.load_profile.configure(variants)
    image.events.configure(variants)
    image.billing.configure(variants)
    image.power_quality.configure(variants)
    image.update()
