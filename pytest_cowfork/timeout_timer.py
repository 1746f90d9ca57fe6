"""Start pytest-timeout's timer in the clone that runs the test (both).

pytest-timeout starts its timer from a wrapper around the whole protocol,
which for a forked test runs in the template, while it waits for the clone:
a signal would interrupt the template, and its thread method would end the
whole run. The template holds the timer back, and the clone starts it, so
that it covers the test's own setup, call and teardown, as without cowfork.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# The clone module imports this one; its attribute is read at call time.
from pytest_cowfork import clone

#: The name pytest-timeout is registered under.
PLUGIN_NAME = "timeout"
#: pytest-timeout's settings for an item whose timer the template held back.
_held_key = pytest.StashKey[Any]()


class TimerInClone:
    """Implement pytest-timeout's hooks to hold its timer back for clones."""

    def __init__(self, forks: Callable[[pytest.Item], bool]) -> None:
        """:param forks: True for an item that is to run in a clone."""
        self._forks = forks

    @pytest.hookimpl(tryfirst=True, optionalhook=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> bool | None:
        """Hold back the timer of a whole protocol that runs in a clone."""
        if clone.current_id() is not None or _held_key in item.stash:
            return None
        if item in item.session._setupstate.stack or not self._forks(item):
            # A timer for the call alone (func_only) runs where the call does.
            return None
        item.stash[_held_key] = settings
        return True


def may_time(item: pytest.Item) -> bool:
    """Return True if pytest-timeout may set a timer for ``item``.

    A clone can only start a timer the template held back before the fork,
    so such an item gets no standby clone, forked ahead of its protocol.
    """
    module: Any = item.config.pluginmanager.get_plugin(PLUGIN_NAME)
    if module is None:
        return False
    if item.get_closest_marker("timeout") is not None:
        return True
    try:
        timeout = module.get_env_settings(item.config).timeout
    except Exception:
        return True
    return bool(timeout)


def start(item: pytest.Item) -> None:
    """Start the timer the template held back for ``item``, if any."""
    settings = item.stash.get(_held_key, None)
    if settings is not None:
        item.config.hook.pytest_timeout_set_timer(item=item, settings=settings)


def cancel(item: pytest.Item) -> None:
    """Cancel the timer :func:`start` started."""
    if _held_key in item.stash:
        item.config.hook.pytest_timeout_cancel_timer(item=item)


@contextlib.contextmanager
def running(item: pytest.Item) -> Iterator[None]:
    """Run the held-back timer around a protocol run in this process."""
    start(item)
    try:
        yield
    finally:
        cancel(item)
