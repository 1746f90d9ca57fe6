"""Read cowfork's options, ini keys and markers into plain values (template).

Everything here is a pure function of the config or of one item, so bad
input is caught at configure time (or before an item forks) with a message
that names the value and the fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Callable
from typing import TypeVar

import pytest

_T = TypeVar("_T")

#: Scopes the template can own, widest first; the default owns the most.
SCOPES = ("session", "package", "module", "class")
DEFAULT_SCOPE = "class"
HUGEPAGES_MODES = ("auto", "on", "off")

ENABLE_HELP = "Run every test in its own copy-on-write clone of this process"
DISABLE_HELP = (
    "Run every test in this process, even tests marked cowfork, keeping the "
    "markers and the clone_id fixture known"
)
JOBS_HELP = (
    "How many clones may run at once: a number, or 'auto' for one per CPU (default: 1)"
)
SCOPE_HELP = (
    "Narrowest fixture scope set up once in the template; narrower ones are set "
    "up in each clone (default: class)"
)
TIMEOUT_HELP = (
    "Kill a clone that runs longer than this many seconds and fail its test "
    "(default: no limit)"
)
HUGEPAGES_HELP = (
    "On Linux 6.1+, move the template's memory onto huge pages so that forks "
    "copy fewer page-table entries: 'auto' once it holds 256 MiB or more, 'on' "
    "from the first fork, or 'off' (default: auto)"
)
MEMORY_HELP = (
    "Have each clone measure the memory it copied from the template, and "
    "summarize it; each measurement walks the clone's memory map, so it costs "
    "more the larger the template (default: off)"
)
FORK_MARKER = (
    "cowfork(timeout=None): run this test in its own clone, even without "
    "--cowfork; timeout= limits its clone in seconds"
)
NO_FORK_MARKER = (
    "no_cowfork: run this test inside the template process even with --cowfork"
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the user asked of cowfork for this run."""

    #: Fork every test (--cowfork or the ini key), not only marked ones.
    fork_all: bool
    #: Fork no test at all, marked or not (--no-cowfork).
    disabled: bool
    jobs: int
    scope: str
    #: Seconds, or None for no limit.
    timeout: float | None
    #: Clones measure the memory they copied (--cowfork-memory).
    memory: bool = False
    #: When to move the template onto huge pages: auto, on or off.
    hugepages: str = "auto"


@dataclasses.dataclass(frozen=True)
class ItemChoice:
    """How one item runs: in a clone or in the template, and its limit."""

    fork: bool
    timeout: float | None


def parse_jobs(value: str) -> int:
    """Return the clone count ``value`` names; raise ArgumentTypeError."""
    if value == "auto":
        return _cpu_count()
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of clones: give a whole number of 1 or "
            "more, or 'auto'"
        )
    return jobs


def parse_timeout(value: str) -> float:
    """Return seconds from ``value``, 0 for no limit; raise on nonsense."""
    if value.strip().lower() in ("", "none"):
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0 or math.isinf(seconds):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a timeout: give a number of seconds above 0, "
            "or 0 for no limit"
        )
    return seconds


def parse_scope(value: str) -> str:
    """Return ``value`` if it names a scope the template can own."""
    if value not in SCOPES:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a scope: choose one of {', '.join(SCOPES)}"
        )
    return value


def parse_hugepages(value: str) -> str:
    """Return ``value`` if it names a huge pages mode."""
    if value not in HUGEPAGES_MODES:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a huge pages mode: choose one of "
            f"{', '.join(HUGEPAGES_MODES)}"
        )
    return value


def read_settings(config: pytest.Config) -> Settings:
    """Return the run's settings; raise UsageError naming any bad value."""
    enabled = _flag(config, "cowfork")
    timeout = _option_or_ini(config, "cowfork_timeout", parse_timeout, 0.0)
    return Settings(
        fork_all=enabled,
        disabled=config.getoption("cowfork") is False,
        jobs=_option_or_ini(config, "cowfork_jobs", parse_jobs, 1),
        scope=_option_or_ini(config, "cowfork_scope", parse_scope, DEFAULT_SCOPE),
        timeout=timeout or None,
        memory=_flag(config, "cowfork_memory"),
        hugepages=_option_or_ini(config, "cowfork_hugepages", parse_hugepages, "auto"),
    )


def choose(item: pytest.Item, settings: Settings) -> ItemChoice:
    """Return whether ``item`` forks and its time limit, from its markers.

    :raises ValueError: the cowfork marker is used wrongly; the message
        says how to write it.
    """
    if settings.disabled or item.get_closest_marker("no_cowfork") is not None:
        return ItemChoice(fork=False, timeout=None)
    marker = item.get_closest_marker("cowfork")
    if marker is None:
        return ItemChoice(fork=settings.fork_all, timeout=settings.timeout)
    unknown = set(marker.kwargs) - {"timeout"}
    if marker.args or unknown:
        given = ", ".join([*map(repr, marker.args), *sorted(unknown)])
        raise ValueError(
            f"@pytest.mark.cowfork takes only timeout=SECONDS, not {given}; "
            "use @pytest.mark.no_cowfork to keep a test out of clones"
        )
    timeout = settings.timeout
    if "timeout" in marker.kwargs:
        timeout = _marker_timeout(marker.kwargs["timeout"])
    return ItemChoice(fork=True, timeout=timeout)


def _marker_timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == 0:
            return None
        if value > 0 and not math.isinf(value):
            return float(value)
    raise ValueError(
        f"@pytest.mark.cowfork(timeout={value!r}) needs a number of seconds "
        "above 0, or None (or 0) for no limit"
    )


def _flag(config: pytest.Config, name: str) -> bool:
    """Return a true/false setting: the option if given, else the ini key."""
    given: bool | None = config.getoption(name)
    if given is not None:
        return given
    try:
        return bool(config.getini(name))
    # pytest 9.2 wraps the ValueError of older versions in a UsageError.
    except (ValueError, pytest.UsageError) as exc:
        raise pytest.UsageError(
            f"ini option {name}: {exc}; write true or false"
        ) from None


def _option_or_ini(
    config: pytest.Config, name: str, parse: Callable[[str], _T], default: _T
) -> _T:
    value: _T | None = config.getoption(name)
    if value is not None:
        return value
    raw = config.getini(name)
    if not raw:
        return default
    try:
        return parse(str(raw).strip())
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini option {name}: {exc}") from None


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
