"""Tests that change os.environ without undoing it."""

from __future__ import annotations

import os


def mode() -> str:
    return os.environ.get("EXAMPLE_MODE", "online")


def test_offline_mode():
    os.environ["EXAMPLE_MODE"] = "offline"
    assert mode() == "offline"


def test_default_mode():
    assert mode() == "online"


def test_slot_resources():
    # In a clone, CLONE_ID holds its slot, 0 to jobs - 1: use it to give
    # clones that run at once their own port, database or scratch dir.
    slot = os.environ.get("CLONE_ID")
    port = 8000 + int(slot or 0)
    assert 8000 <= port < 8100
