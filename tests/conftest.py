"""Shared fixtures for cowfork's own tests."""

from __future__ import annotations

import os

import pytest

#: Tests that fork need a platform with os.fork().
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")

#: Inner runs that fork, crash or hang run in a subprocess with this limit.
INNER_TIMEOUT = 120


@pytest.fixture(autouse=True)
def _no_inherited_cowfork_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep an outer clone's CLONE_ID out of inner runs."""
    monkeypatch.delenv("CLONE_ID", raising=False)
