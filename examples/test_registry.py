"""Tests that register into a module-level registry."""

from __future__ import annotations

HANDLERS: list[str] = []


def register(name: str) -> None:
    HANDLERS.append(name)


def test_register_csv():
    register("csv")
    assert HANDLERS == ["csv"]


def test_register_json():
    register("json")
    assert HANDLERS == ["json"]
