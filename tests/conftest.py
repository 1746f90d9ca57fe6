"""Shared fixtures for cowfork's own tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

#: Tests that fork need a platform with os.fork().
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")

#: Inner runs that fork, crash or hang run in a subprocess with this limit.
INNER_TIMEOUT = 120


@pytest.fixture(autouse=True)
def _no_inherited_cowfork_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep an outer clone's CLONE_ID out of inner runs."""
    monkeypatch.delenv("CLONE_ID", raising=False)


@pytest.fixture(autouse=True)
def _plain_inner_runs(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run inner sessions without pytest-randomly and pytest-asyncio.

    Inner runs find no ini file, and many tests here rely on the order of
    the tests they write; pytest-asyncio would warn about its unset loop
    scope in every inner run. The tests of those plugins ask for them again
    (``-p asyncio``, or without this variable).
    """
    if "pytester" in request.fixturenames:
        # After pytester, which clears PYTEST_ADDOPTS when it starts.
        request.getfixturevalue("pytester")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:asyncio -p no:randomly")


def is_gone(pid: int) -> bool:
    """Return True if ``pid`` no longer runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_until_gone(pid: int, within: float = 10.0) -> bool:
    """Return True once ``pid`` is gone; False if it outlives ``within`` s.

    A killed process needs a moment to be reaped by whoever inherited it.
    """
    deadline = time.monotonic() + within
    while not is_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def interrupt_when(
    pytester: pytest.Pytester,
    started: Sequence[Path],
    args: Sequence[str],
    before_interrupt: Callable[[], None] = lambda: None,
) -> tuple[int, str]:
    """Run pytest, send it SIGINT once all ``started`` files exist.

    Return its exit code and output. SIGINT is what a terminal's Ctrl-C
    sends to pytest; clones, in process groups of their own, get it only
    from the template.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + INNER_TIMEOUT
        while not all(path.exists() for path in started):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the tests never started"
            time.sleep(0.05)
        before_interrupt()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=INNER_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, output
