"""The default poll the library's read-plan tests and the benchmark measure is what the integration enables."""

from __future__ import annotations

from benchmarks.common import DEFAULT_FIELDS
from custom_components.nes_meter.sensor import SENSORS


def test_the_benchmarked_default_is_what_a_new_installation_enables() -> None:
    """scripts/bench measures the default poll: the fields of the sensors enabled by default."""
    enabled = {field for d in SENSORS if d.entity_registry_enabled_default for field in d.reads}
    assert set(DEFAULT_FIELDS) - {"power_net_w"} == enabled
