"""Turn a clone that ended without a complete report into failed reports (template).

A clone that dies never passes its test: whatever phase it was in fails,
with a message naming the cause, the phase, the clone's pid and a way to
run the test without a clone, and with the output captured up to the end.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
from collections.abc import Callable
from typing import Literal

import pytest
from _pytest.runner import CallInfo

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


@dataclasses.dataclass(frozen=True)
class Ending:
    """How a clone ended, as far as the template could see."""

    pid: int
    slot: int
    #: The wait status from waitpid.
    status: int
    wall_time: float
    #: Seconds of the limit it ran over, or None if it did not time out.
    timeout: float | None = None
    #: What went wrong on the channel or inside the clone's own machinery.
    problem: str | None = None
    #: faulthandler's dump of the clone's threads, if one arrived.
    stacks: str = ""


def describe(ending: Ending, when: str) -> str:
    """Return the first line of the failure: what happened and when."""
    clone = f"the clone running this test (pid {ending.pid})"
    if ending.timeout is not None:
        return (
            f"{clone} timed out after {ending.timeout:g} s during {when} and was "
            "killed (limit set by --cowfork-timeout, the cowfork_timeout ini "
            "key or @pytest.mark.cowfork(timeout=...))"
        )
    if ending.problem is not None:
        return f"{clone} failed during {when}: {ending.problem}"
    status = ending.status
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        text = f"{clone} was killed by signal {_signal_name(signum)} during {when}"
        if signum == signal.SIGKILL:
            text += " (the kernel's out-of-memory killer sends SIGKILL)"
        return text
    code = os.waitstatus_to_exitcode(status)
    return (
        f"{clone} exited with status {code} during {when} before reporting "
        "(os._exit(), or a closed channel?)"
    )


def crash_reports(
    item: pytest.Item,
    when: Literal["setup", "call", "teardown"],
    ending: Ending,
    earlier: list[tuple[str, str]] | None,
    captured: list[tuple[str, str]],
) -> list[pytest.TestReport]:
    """Return the reports that stand in for the phases a clone did not finish.

    :param when: the phase the clone was in: its report fails. A teardown
        report follows a setup or call failure, as pytest always gives one.
    :param earlier: the sections of the clone's last report, if any; they
        hold everything captured before ``when``.
    :param captured: what was captured during ``when`` itself.
    """
    lines = [describe(ending, when)]
    if ending.stacks:
        stacks = trim_stacks(ending.stacks)
        lines += ["", "Stacks of the clone's threads at the end:", stacks]
    lines += [
        "",
        f"To run it without a clone: pytest --no-cowfork {shlex.quote(item.nodeid)}",
    ]
    message = "\n".join(lines).rstrip("\n")
    failed = _make_report(item, when, lambda: pytest.fail(message, pytrace=False))
    failed.sections = [*(failed.sections if earlier is None else earlier), *captured]
    failed.duration = ending.wall_time
    reports = [failed]
    if when != "teardown":
        reports.append(_make_report(item, "teardown", lambda: None))
    return reports


def trim_stacks(dump: str) -> str:
    """Cut each thread of a faulthandler dump at cowfork's own frames.

    Below them lie the frames the clone inherited from the template, which
    say nothing about the test.
    """
    kept: list[str] = []
    cutting = False
    for line in dump.splitlines():
        if not line.startswith("  "):
            # A thread's heading or the blank line between threads.
            cutting = False
            kept.append(line)
        elif cutting:
            continue
        elif _PACKAGE_DIR in line:
            cutting = True
            kept.append("  (then the template's frames, from before the fork)")
        else:
            kept.append(line)
    return "\n".join(kept)


def _make_report(
    item: pytest.Item,
    when: Literal["setup", "call", "teardown"],
    func: Callable[[], object],
) -> pytest.TestReport:
    call = CallInfo.from_call(func, when=when)
    report: pytest.TestReport = item.ihook.pytest_runtest_makereport(
        item=item, call=call
    )
    return report


def _signal_name(signum: int) -> str:
    try:
        return f"{signal.Signals(signum).name} ({signum})"
    except ValueError:
        return str(signum)
