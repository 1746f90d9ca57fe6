"""Notice template state that makes forking risky, and warn (template)."""

from __future__ import annotations

import threading
import warnings

import pytest


class PytestCowforkWarning(pytest.PytestWarning):
    """A risk cowfork noticed in the template that may make clones misbehave."""

    __module__ = "pytest_cowfork"


class ThreadWatch:
    """Warn, once per run, that the template forks while other threads run.

    Only the forking thread survives in a clone: a lock another thread held
    at fork time stays locked there forever, so a clone may hang.
    """

    def __init__(self) -> None:
        self._warned = False

    def check(self, item: pytest.Item) -> None:
        """Warn, at ``item``, if threads other than the calling one are alive."""
        if self._warned or threading.active_count() == 1:
            return
        current = threading.current_thread()
        names = sorted(t.name for t in threading.enumerate() if t is not current)
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
