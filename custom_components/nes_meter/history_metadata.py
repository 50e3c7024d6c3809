"""The ids and metadata of the statistics the meter history is written to."""

from __future__ import annotations

import re
from typing import Any, cast

from homeassistant.components.recorder.models import StatisticMeanType, StatisticMetaData

from .compat import STATISTICS_UNIT_CLASS
from .const import DOMAIN


def statistic_id(serial: str, suffix: str) -> str:
    """``nes_meter:<serial>_<suffix>``, with the serial reduced to what the recorder accepts.

    The recorder takes ``[a-z0-9_]`` with no ``__`` and no ``_`` at either end.
    """
    object_id = re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", serial.lower())).strip("_") or "meter"
    return f"{DOMAIN}:{object_id}_{suffix}"


def sum_metadata(stat_id: str, name: str, unit: str, unit_class: str | None) -> StatisticMetaData:
    """Metadata of a statistic with a sum and no mean (``unit_class``, None for none, where the recorder knows it)."""
    metadata: StatisticMetaData = {
        "mean_type": StatisticMeanType.NONE,
        "has_sum": True,
        "name": name,
        "source": DOMAIN,
        "statistic_id": stat_id,
        "unit_of_measurement": unit,
    }
    if STATISTICS_UNIT_CLASS:  # None too: newer releases refuse metadata that leaves it out
        cast(dict[str, Any], metadata)["unit_class"] = unit_class
    return metadata
