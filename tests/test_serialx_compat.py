"""The integration's own serialx use works with every serialx that manifest.json admits.

The library's (link/transport.py, link/serialx_compat.py) is checked in lib/tests/test_serialx_compat.py.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
import re

import serialx

INTEGRATION = Path(__file__).resolve().parents[1] / "custom_components" / "nes_meter"


def test_the_integration_uses_only_what_the_installed_serialx_has() -> None:
    """Every ``serialx.NAME`` the integration uses exists in the installed version (1.11.0 on latest);
    ``redact_uri``, which 1.11.0 lacks, is not used (the library's serialx_compat has it)."""
    used = {
        (path.name, name)
        for path in INTEGRATION.rglob("*.py")
        for name in re.findall(r"\bserialx\.(\w+)", path.read_text())
    }
    assert ("config_flow.py", "list_serial_ports") in used
    assert not [where for where in used if where[1] == "redact_uri"]
    missing = sorted(where for where in used if not hasattr(serialx, where[1]))
    assert not missing, f"serialx {importlib.metadata.version('serialx')} lacks {missing}"
