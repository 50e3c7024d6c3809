"""What a meter says about itself (BT01, ET03) and its register layout (BT21, BT22, BT27, ET55)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from nesmeter.tables import tables


@dataclass(frozen=True, slots=True)
class MeterIdentity:
    """What the meter says about itself (BT01, ET03) and its register layout (BT21/22/27, ET55)."""

    manufacturer: str
    model: str
    firmware_version: str
    hardware_version: str
    utility_serial: str
    manufacturer_serial: str | None
    dimensions: tables.RegisterDimensions
    present_sources: tuple[int, ...]
    summation_sources: tuple[int, ...] = ()
    energy_unit: int = 1  # Wh (varh) per BT23 count: ET55's Energy Register Unit
    mep_client: int = 1  # which MEP port this is (2 = the lower port of a Gen 4 meter)

    def as_dict(self) -> dict[str, Any]:
        """Return the identity as plain JSON types."""
        data = asdict(self)
        data["present_sources"] = list(self.present_sources)
        data["summation_sources"] = list(self.summation_sources)
        return data
