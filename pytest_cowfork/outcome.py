"""Turn what one clone sent into the reports and warnings pytest logs (template).

A :class:`Job` collects a clone's messages as they arrive. Reports come
back through pytest's own ``pytest_report_from_serializable``; a clone that
ended without reporting every phase gets failed reports for what is missing.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from collections.abc import Iterator
from typing import Any, Literal

import pytest

from pytest_cowfork import crash, wire
from pytest_cowfork.scheduler import Running

When = Literal["setup", "call", "teardown"]
#: How much captured output of a dead clone's last phase goes in its report.
_CAPTURE_TAIL = 1 << 20


@dataclasses.dataclass
class Job:
    """One item running in a clone, and what the template has logged of it."""

    item: pytest.Item
    nextitem: pytest.Item | None
    clone: Running
    #: Log reports as they arrive (one job at a time) or all at the end.
    live: bool
    #: This item's teardown also tears down template state; the template
    #: does that after every clone forked from that state has ended.
    owns_teardown: bool = False
    #: Seconds the template spent setting up wide fixtures for this item,
    #: added to its setup duration.
    warm_time: float = 0.0
    reports: list[pytest.TestReport] = dataclasses.field(default_factory=list)
    decoded: int = 0
    logged: int = 0
    #: The clone asked for the terminal and was answered.
    terminal_answered: bool = False

    def decode(self) -> None:
        """Turn newly arrived report messages into TestReports."""
        config = self.item.config
        messages = self.clone.messages
        for kind, payload in messages[self.decoded :]:
            if kind is wire.Kind.REPORT:
                report = config.hook.pytest_report_from_serializable(
                    config=config, data=_restore_tuples(payload)
                )
                if report.when == "setup":
                    report.duration += self.warm_time
                self.reports.append(report)
        self.decoded = len(messages)

    def stop_request(self) -> BaseException | None:
        """Return the exception that ends the session, if the test asked."""
        for kind, payload in self.clone.messages:
            if kind is wire.Kind.EXIT:
                return pytest.exit.Exception(payload["msg"], payload["returncode"])
            if kind is wire.Kind.INTERRUPT:
                return KeyboardInterrupt(payload["msg"])
        return None

    def missing_phase(self) -> When | None:
        """Return the first phase the clone did not report, or None."""
        whens = [report.when for report in self.reports]
        if "setup" not in whens:
            return "setup"
        setup = self.reports[whens.index("setup")]
        setup_only = self.item.config.getoption("setuponly", False)
        if setup.passed and not setup_only and "call" not in whens:
            return "call"
        if "teardown" not in whens:
            return "teardown"
        return None

    def add_crash_reports(self, when: When) -> crash.Ending:
        """Fail ``when`` and stand in for the phases after it; say how it ended."""
        clone = self.clone
        problem = clone.wire_error
        for kind, payload in clone.messages:
            if kind is wire.Kind.ERROR:
                problem = "cowfork failed inside the clone:\n" + payload["traceback"]
            elif kind is wire.Kind.DONE and problem is None:
                problem = "it reported done without reporting this phase"
        ending = crash.Ending(
            pid=clone.pid,
            slot=clone.handle.slot,
            status=clone.status or 0,
            wall_time=clone.wall_time,
            timeout=clone.timeout if clone.timed_out else None,
            problem=problem,
            stacks=clone.diag.decode("utf-8", "replace"),
        )
        out, err = clone.handle.capture.read(_CAPTURE_TAIL)
        captured = [
            (f"Captured {key} {when}", text)
            for key, text in (("stdout", out), ("stderr", err))
            if text
        ]
        earlier = self.reports[-1].sections if self.reports else None
        self.reports += crash.crash_reports(self.item, when, ending, earlier, captured)
        return ending

    def rerun_state(self) -> dict[str, Any] | None:
        """Return what pytest-rerunfailures recorded in the clone, if sent."""
        return next(self._payloads(wire.Kind.RERUN_STATE), None)

    def private_dirty(self) -> int | None:
        """Return the memory the clone copied, if it measured it."""
        done = self._done()
        return None if done is None else done.get("private_dirty")

    def _done(self) -> dict[str, Any] | None:
        return next(self._payloads(wire.Kind.DONE), None)

    def coverage_payloads(self) -> Iterator[dict[str, Any]]:
        """Yield what the clone sent of its coverage measurements."""
        return self._payloads(wire.Kind.COVERAGE)

    def _payloads(self, wanted: wire.Kind) -> Iterator[Any]:
        """Yield the payloads of the clone's messages of one kind, in order."""
        return (payload for kind, payload in self.clone.messages if kind is wanted)

    def report_finished(self) -> None:
        """Call the hook that tells plugins how the clone ended."""
        clone = self.clone
        done = self._done()
        self.item.config.hook.pytest_cowfork_clone_finished(
            item=self.item,
            pid=clone.pid,
            clone_id=clone.handle.clone_id,
            exit_status=None if clone.finished else clone.status,
            wall_time=clone.wall_time,
            max_rss=None if done is None else done.get("max_rss"),
            private_dirty=self.private_dirty(),
            fork_time=clone.handle.fork_time,
        )

    def record_warnings(self) -> None:
        """Hand the warnings the clone caught to pytest, as if caught here."""
        item = self.item
        for payload in self._payloads(wire.Kind.WARNING):
            item.ihook.pytest_warning_recorded.call_historic(
                kwargs=dict(
                    warning_message=_warning_message(payload),
                    nodeid=item.nodeid,
                    when="runtest",
                    location=None,
                )
            )


def _warning_message(payload: dict[str, Any]) -> warnings.WarningMessage:
    category = _find_category(payload["category"])
    try:
        message = category(payload["message"])
    except Exception:
        message = UserWarning(payload["message"])
        category = UserWarning
    return warnings.WarningMessage(
        message, category, payload["filename"], payload["lineno"]
    )


def _find_category(name: str) -> type[Warning]:
    """Return the warning class named ``module:qualname``, or UserWarning.

    The template imported everything the clone had at fork time, so only a
    class created inside the test itself is missing here.
    """
    module_name, _, qualname = name.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError):
        return UserWarning
    if isinstance(found, type) and issubclass(found, Warning):
        return found
    return UserWarning


def _restore_tuples(data: dict[str, Any]) -> dict[str, Any]:
    """Give back the tuples JSON turned into lists where pytest checks for them.

    A skip's ``longrepr`` must be a (path, lineno, message) tuple for the
    terminal's folded summary; ``location``, ``sections`` and
    ``user_properties`` are documented as tuples.
    """
    for name in ("longrepr", "location"):
        if isinstance(data.get(name), list):
            data[name] = tuple(data[name])
    for name in ("user_properties", "sections"):
        if isinstance(data.get(name), list):
            data[name] = [tuple(pair) for pair in data[name]]
    return data
