"""pytest plugin loaded by scripts/test: names the Home Assistant (and Python) under test.

The line comes right before pytest's short test summary and its closing line, so each run's
summary says which Home Assistant it is about.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
import platform
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _pytest.terminal import TerminalReporter


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    """Print ``homeassistant==X (Python Y)``."""
    try:
        homeassistant = version("homeassistant")
    except PackageNotFoundError:
        homeassistant = "(not installed)"
    terminalreporter.write_line(f"homeassistant=={homeassistant} (Python {platform.python_version()})")
