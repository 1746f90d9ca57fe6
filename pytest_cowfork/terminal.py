"""Lend the template's terminal to a clone whose debugger needs it (both sides).

A clone starts with ``/dev/null`` as its standard input, in a process group
of its own, so that nothing it does can read the terminal or take Ctrl-C
from the template. With one job, a clone about to enter a debugger asks
the template for the terminal and waits. The template logs the reports it
has received, makes the clone's process group the terminal's foreground
group (so the clone may read it, and Ctrl-C reaches the clone, as it
reaches pytest without the plugin) and answers; the clone then points its
standard input, output and error at the template's. The template takes
the terminal back when the clone ends. With several jobs, or under
pytest-xdist, there is no one clone to lend it to: a debugger fails its
test instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pdb
import signal
import sys
import termios
from collections.abc import Callable
from typing import Any

import pytest
from _pytest.capture import FDCapture

#: The clone's answer byte: the terminal is its own now.
LENT = b"y"
#: The clone's answer byte: no terminal; its standard input stays /dev/null.
NOT_LENT = b"n"


def standard_fds(config: pytest.Config) -> tuple[int, int, int]:
    """Return descriptors for the template's real stdin, stdout and stderr.

    pytest's fd capture keeps copies of the originals while it captures.
    """
    capman = config.pluginmanager.getplugin("capturemanager")
    multi = getattr(capman, "_global_capturing", None)
    fds = [0, 1, 2]
    if multi is not None:
        for index, capture in enumerate((multi.in_, multi.out, multi.err)):
            if isinstance(capture, FDCapture):
                fds[index] = capture.targetfd_save
    return fds[0], fds[1], fds[2]


# The template's side.


@dataclasses.dataclass
class _Loan:
    fd: int
    attributes: list[Any]
    sigttou: Any


class Lender:
    """The template's terminal, and the clone that holds it, if any."""

    def __init__(self, config: pytest.Config, refusal: str | None) -> None:
        """:param refusal: why no clone may borrow the terminal in this run."""
        self._config = config
        self.refusal = refusal
        self._loan: _Loan | None = None

    def lend(self, pgid: int) -> bool:
        """Give the terminal to the process group ``pgid``; False if it can't.

        Standard input that is not a terminal (a pipe, a file) is lent as
        it is. A terminal is lent only while this process is in its
        foreground: taking it from a shell that runs pytest in the
        background would steal it from the shell.
        """
        if self.refusal is not None:
            return False
        fd = standard_fds(self._config)[0]
        if not os.isatty(fd):
            return True
        try:
            if os.tcgetpgrp(fd) != os.getpgrp():
                return False
            attributes = termios.tcgetattr(fd)
            # A background process that changes the terminal gets SIGTTOU,
            # and so does one that writes to it with ``stty tostop``: the
            # template does both until it has the terminal back.
            sigttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                os.tcsetpgrp(fd, pgid)
            except OSError:
                signal.signal(signal.SIGTTOU, sigttou)
                raise
        except (OSError, termios.error):
            return False
        self._loan = _Loan(fd, attributes, sigttou)
        return True

    def reclaim(self) -> None:
        """Take the terminal back, as it was, from the clone that had it."""
        loan, self._loan = self._loan, None
        if loan is None:
            return
        try:
            os.tcsetpgrp(loan.fd, os.getpgrp())
            # A debugger killed while it read a line may leave raw mode on.
            termios.tcsetattr(loan.fd, termios.TCSADRAIN, loan.attributes)
        except (OSError, termios.error):
            pass
        finally:
            signal.signal(signal.SIGTTOU, loan.sigttou)


# The clone's side.


@dataclasses.dataclass
class _Borrower:
    config: pytest.Config
    #: Sends the request to the template.
    ask: Callable[[], None]
    #: Where the template's answer arrives.
    answers: int
    #: Copies of the template's stdin, stdout and stderr.
    originals: tuple[int, int, int]
    asked: bool = False


#: In a clone that may borrow the terminal, how to ask for it.
_borrower: _Borrower | None = None
#: In a clone that may not, why not, and its config.
_refusal: tuple[pytest.Config, str] | None = None


def keep_originals(config: pytest.Config) -> tuple[int, int, int]:
    """Return copies of the template's standard fds, before they change."""
    first, second, third = (os.dup(fd) for fd in standard_fds(config))
    return first, second, third


def may_borrow(
    config: pytest.Config,
    ask: Callable[[], None],
    answers: int,
    originals: tuple[int, int, int],
) -> None:
    """Let this clone's debuggers ask the template for the terminal."""
    global _borrower
    _borrower = _Borrower(config, ask, answers, originals)


def may_not_borrow(config: pytest.Config, reason: str) -> None:
    """Make every debugger in this clone fail its test, saying ``reason``."""
    global _refusal
    _refusal = (config, reason)
    # These fail before pytest writes its debugger heading; a debugger
    # started another way fails when pytest announces it.
    if os.environ.get("PYTHONBREAKPOINT") != "0":
        sys.breakpointhook = _refuse_debugger
    pdb.set_trace = _refuse_debugger
    pytest.set_trace = _refuse_debugger


def borrow(capture_suspended: bool = True) -> None:
    """Make sure a debugger about to start in this clone can use the terminal.

    In the template, and in a clone that already has the terminal, this
    does nothing. If the template cannot lend it (it runs in the
    background), standard input stays ``/dev/null`` and the debugger reads
    end of file, as pytest's own does with such an input.

    :param capture_suspended: pytest suspended capture for the debugger;
        it is resumed if the debugger may not start.
    :raises pytest.fail.Exception: no clone may borrow the terminal in
        this run.
    """
    __tracebackhide__ = True
    if _refusal is not None:
        config, reason = _refusal
        if capture_suspended:
            _resume_capture(config)
        pytest.fail(reason)
    borrower = _borrower
    if borrower is None or borrower.asked:
        return
    borrower.asked = True
    _flush_stdio()
    borrower.ask()
    if os.read(borrower.answers, 1) != LENT:
        return
    _use_originals(borrower.config, borrower.originals)
    # Ctrl-Z would stop this clone alone, while the shell waits for the
    # template, which waits for the clone: nothing could resume it.
    signal.signal(signal.SIGTSTP, signal.SIG_IGN)


def _refuse_debugger(*args: object, **kwargs: object) -> None:
    __tracebackhide__ = True
    assert _refusal is not None
    pytest.fail(_refusal[1])


def _use_originals(config: pytest.Config, originals: tuple[int, int, int]) -> None:
    """Point fds 0, 1 and 2, and the copies fd capture restores, at the terminal."""
    for original, fd, saved in zip(
        originals, (0, 1, 2), standard_fds(config), strict=True
    ):
        os.dup2(original, fd)
        if saved != fd:
            os.dup2(original, saved)


def _resume_capture(config: pytest.Config) -> None:
    """Undo the suspension pytest made for a debugger that will not start."""
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with contextlib.suppress(Exception):
            capman.resume()


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
