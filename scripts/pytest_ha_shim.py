"""pytest plugin, loaded by scripts/test before the test package: bridges test package and release.

What the test package of a release line lacks for the Home Assistant it runs with. Each
bridge tests for the difference itself, so on a release whose test package matches its Home
Assistant it does nothing. Remove a bridge when no line needs it any more:

- 2026.11 under the 2026.10 test package (requirements/ha-2026.11.txt):
  * Home Assistant 2026.11 aliases httpx on import and refuses to if httpx came first; the test
    package's plugin imports respx (httpx) before Home Assistant. Importing it here, before the
    test package's plugin is loaded, keeps the order right.
  * the logger component's ``_clear_logger_overwrites`` moved to ``logger.helpers``;
  * the restore-state store keeps stored states by entity and registry id
    (``last_states_by_entity_id``, ``last_states_by_entity_registry_id``); the test package's
    ``mock_restore_cache*`` only fill the former ``last_states``, which 2026.11 no longer reads.
- 2025.10 and 2025.12 test packages: their sync autouse fixture ``enable_event_loop_debug``
  calls ``asyncio.get_event_loop()``, which raises once a sync test ran ``asyncio.run`` (it
  leaves no current loop): a test starting without a loop is given one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import functools
from typing import Any
import warnings

import homeassistant  # noqa: F401  (first: 2026.11's httpx alias)
import homeassistant.components.logger as ha_logger
import pytest

if not hasattr(ha_logger, "_clear_logger_overwrites"):
    from homeassistant.components.logger import helpers as ha_logger_helpers

    if hasattr(ha_logger_helpers, "_clear_logger_overwrites"):  # 2026.11 (older test packages need neither)
        ha_logger._clear_logger_overwrites = ha_logger_helpers._clear_logger_overwrites  # type: ignore[attr-defined]


def _feeding_the_store(mock: Callable[..., None]) -> Callable[..., None]:
    """Wrap a ``mock_restore_cache*`` so that it also fills the store 2026.11 reads."""

    @functools.wraps(mock)
    def mock_and_feed(hass: Any, states: Any) -> None:
        from homeassistant.helpers import restore_state

        mock(hass, states)
        data = hass.data[restore_state.DATA_RESTORE_STATE]
        data._async_load_stored_states(
            [
                {
                    "state": stored.state.as_dict(),
                    "extra_data": stored.extra_data.as_dict() if stored.extra_data else None,
                    "last_seen": stored.last_seen,
                }
                for stored in data.last_states.values()
            ]
        )

    return mock_and_feed


def pytest_configure(config: pytest.Config) -> None:
    """Wrap the restore-cache mocks once every plugin is loaded (before, the recorder must stay unimported)."""
    from homeassistant.helpers import restore_state
    from pytest_homeassistant_custom_component import common

    if hasattr(restore_state.RestoreStateData, "async_get_stored_state"):
        common.mock_restore_cache = _feeding_the_store(common.mock_restore_cache)
        common.mock_restore_cache_with_extra_data = _feeding_the_store(common.mock_restore_cache_with_extra_data)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Give a test that starts without a current event loop one (older test packages need it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            asyncio.get_event_loop()
        except RuntimeError:
            asyncio.set_event_loop(asyncio.new_event_loop())
