"""Run each pytest test in its own copy-on-write clone of a warm template."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from pytest_cowfork.hazards import PytestCowforkWarning

try:
    __version__ = version("pytest-cowfork")
except PackageNotFoundError:  # pragma: no cover - only in an uninstalled checkout
    __version__ = "0+unknown"

__all__ = ["PytestCowforkWarning", "__version__"]
