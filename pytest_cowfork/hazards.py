"""Notice template state that makes forking risky, and warn (template)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

import pytest


class PytestCowforkWarning(pytest.PytestWarning):
    """A risk cowfork noticed in the template that may make clones misbehave."""

    __module__ = "pytest_cowfork"


class ThreadWatch:
    """Warn, once per run, that the template forks while other threads run.

    Only the forking thread survives in a clone: a lock another thread held
    at fork time stays locked there forever, so a clone may hang.
    """

    def __init__(self, harmless: Callable[[threading.Thread], bool]) -> None:
        """:param harmless: True for a thread known to hold nothing a clone
        needs, which the warning leaves out."""
        self._warned = False
        self._harmless = harmless

    def others(self) -> list[threading.Thread]:
        """Return the live threads other than this one, harmless ones left out."""
        if threading.active_count() == 1:
            return []
        current = threading.current_thread()
        return [
            thread
            for thread in threading.enumerate()
            if thread is not current and not self._harmless(thread)
        ]

    def check(self, item: pytest.Item) -> None:
        """Warn, at ``item``, if threads other than the calling one are alive."""
        if self._warned:
            return
        names = sorted(thread.name for thread in self.others())
        if not names:
            return
        self._warned = True
        # Not issue_config_time_warning: threads usually appear while wide
        # fixtures are set up, long after configure.
        lineno = item.location[1]
        warnings.warn_explicit(
            PytestCowforkWarning(
                f"the template is forking while {len(names)} other thread(s) "
                f"run ({', '.join(names)}); clones get none of them and may "
                "hang on a lock one held. Start threads in function-scoped "
                "fixtures, or stop them before the first test."
            ),
            category=PytestCowforkWarning,
            filename=str(item.path),
            lineno=(lineno or 0) + 1,
        )
