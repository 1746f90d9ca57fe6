"""Count the lines that clones run in coverage.py's data (template and clone).

A clone inherits the template's running :class:`coverage.Coverage`, tracer
and all, but must not write its measurements where the template's data
goes: that data file is the template's, and without parallel mode
coverage.py would even erase it in a forked process. So each clone gives the
inherited ``Coverage`` a data object of its own, in memory, and after each
phase sends what it measured to the template, which adds it to its own data
before pytest-cov (or ``coverage run``) saves, combines and reports.

Nothing here runs, in either process, unless coverage.py is measuring: this
module does not even import ``coverage`` until then.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from coverage import Coverage, CoverageData

#: Sends one coverage message's payload to the template.
Send = Callable[[dict[str, Any]], None]

# --- Template side -----------------------------------------------------------


class TemplateCoverage:
    """The plugin that gathers what clones measured into the template's data."""

    def __init__(self) -> None:
        #: The Coverage that measured when the template last forked.
        self._cov: Coverage | None = None
        #: What clones sent and the template has not merged yet.
        self._received: CoverageData | None = None
        #: Why lines run in clones are not counted, once that is known.
        self.problem: str | None = None

    def before_fork(self) -> Coverage | None:
        """Return the Coverage a clone forked now must measure with, or None.

        Saves what the template measured so far first, so that clones do not
        each inherit, and send back, the template's unsaved measurements.
        """
        cov = _measuring()
        if cov is None:
            return None
        if not _divert(cov, None):
            self.problem = _unknown_coverage()
            return None
        try:
            with _quiet():
                cov.get_data()
            if self._cov is None:
                _warm_up()
                self.problem = _old_pytest_cov()
        except Exception as exc:
            self.problem = f"coverage.py failed to save the template's data: {exc!r}"
            return None
        self._cov = cov
        return cov

    def receive(self, payloads: Iterator[dict[str, Any]]) -> None:
        """Take in the coverage messages of one clone.

        Each message holds all the clone measured until it was sent, so
        only the last one counts.
        """
        last = None
        for payload in payloads:
            if "problem" in payload:
                self.problem = self.problem or str(payload["problem"])
            else:
                last = payload
        if last is None:
            return
        part = _new_data()
        try:
            part.loads(base64.b64decode(last["data"]))
            if self._received is None:
                self._received = _new_data()
            self._received.update(part)
        except Exception as exc:
            self.problem = f"a clone's coverage data was unreadable: {exc!r}"
        finally:
            _discard(part)

    def merge(self) -> None:
        """Add what clones sent to the data of the Coverage that measured."""
        received, self._received = self._received, None
        if received is None or self._cov is None:
            return
        try:
            with _quiet():
                self._cov.get_data().update(received)
        except Exception as exc:
            self.problem = f"coverage.py could not take the clones' data: {exc!r}"
        finally:
            _discard(received)

    # trylast makes this the innermost wrapper: its merge is done before the
    # wrappers of pytest-cov finish, save and report.
    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Iterator[None]:
        try:
            return (yield)
        finally:
            self.merge()

    @pytest.hookimpl
    def pytest_terminal_summary(
        self, terminalreporter: pytest.TerminalReporter
    ) -> None:
        if self.problem is not None:
            terminalreporter.write_line(
                f"cowfork: warning: lines run in clones are not all in the "
                f"coverage data: {self.problem}",
                yellow=True,
            )


def _warm_up() -> None:
    """Do once here what each clone would otherwise do first, and pay for.

    Serializing data imports a module, and the first in-memory database of
    a process costs several times what the next ones do.
    """
    data = _new_data()
    data.add_lines({"": [1]})
    data.dumps()
    _discard(data)


def _old_pytest_cov() -> str | None:
    """Return why an old pytest-cov loses lines that clones run, or None."""
    embed = sys.modules.get("pytest_cov.embed")
    if embed is None:
        return None
    # Made for pytest-forked, it measures each forked test with a coverage
    # of its own from setup to the start of teardown, saved to a file.
    version = getattr(sys.modules.get("pytest_cov"), "__version__", "?")
    return (
        f"pytest-cov {version} measures each clone itself, which misses the "
        "lines of teardowns and of clones that crash; upgrade to pytest-cov 7"
    )


# --- Clone side --------------------------------------------------------------


class CloneCoverage:
    """What a clone measures, kept apart from the template's data and sent."""

    def __init__(self, cov: Coverage, data: CoverageData, send: Send) -> None:
        self._cov = cov
        self._data = data
        self._send = send
        self._failed = False

    @classmethod
    def start(cls, cov: Coverage, send: Send) -> CloneCoverage | None:
        """Keep ``cov``'s measurements in this clone; None if that failed."""
        data = _new_data()
        try:
            _take_over_from_fork_patch(cov)
            problem = None if _divert(cov, data) else _unknown_coverage()
        except Exception as exc:
            problem = f"a clone could not keep its data apart: {exc!r}"
        if problem is not None:
            # Measuring on would write into the template's data: stop.
            with contextlib.suppress(Exception):
                cov.stop()
            send({"problem": problem})
            return None
        measured = cls(cov, data, send)
        measured._send_before_exit()
        return measured

    def send(self) -> None:
        """Send all this clone has measured so far.

        Sending all, not what is new, costs the template one merge per clone
        instead of one per message.

        A failure is sent as a problem, once, and never fails the test.
        """
        if self._failed:
            return
        try:
            with _quiet():
                self._cov.get_data()
            if not self._data.measured_files():
                return
            payload = base64.b64encode(self._data.dumps()).decode("ascii")
        except Exception as exc:
            self._failed = True
            payload = None
            problem = f"a clone could not save its data: {exc!r}"
        if payload is None:
            self._send({"problem": problem})
        else:
            self._send({"data": payload})

    def _send_before_exit(self) -> None:
        """Make a test's own ``os._exit()`` send what was measured first.

        The clone itself leaves through the ``os._exit`` it bound at import.
        """
        leave = os._exit

        def _exit(status: int) -> NoReturn:
            with contextlib.suppress(BaseException):
                self.send()
            leave(status)

        os._exit = _exit


def _take_over_from_fork_patch(cov: Coverage) -> None:
    """Measure with ``cov`` again if ``[run] patch = fork`` replaced it.

    That patch stops the template's Coverage in every forked process and
    starts another, which would save to the template's data file, while
    pytest-cov goes on switching contexts on the one it stopped.
    """
    started = _measuring()
    if started is None or started is cov:
        return
    _divert(started, _new_data())
    started.stop()
    cov.start()


# --- Both sides --------------------------------------------------------------


def _measuring() -> Coverage | None:
    """Return the Coverage that is measuring this process, if one is."""
    module = sys.modules.get("coverage")
    if module is None:
        # Not imported, so not measuring; and this stays cheap.
        return None
    current: Coverage | None = module.Coverage.current()
    return current


def _divert(cov: Coverage, data: CoverageData | None) -> bool:
    """Make ``cov`` record into ``data`` from now on; False if it cannot.

    coverage.py has no public way to give a running Coverage another data
    object, so this sets the two private attributes that coverage.py sets
    itself when it starts measuring. Without it, a clone's first save would
    write through the template's data file. With ``data`` None, only check.
    """
    collector = getattr(cov, "_collector", None)
    use_data = getattr(collector, "use_data", None)
    if use_data is None or not hasattr(cov, "_data"):
        return False
    if data is not None:
        context = cov.get_option("run:context")
        use_data(data, context if isinstance(context, str) else None)
        cov._data = data
    return True


def _unknown_coverage() -> str:
    version = getattr(sys.modules.get("coverage"), "__version__", "?")
    return (
        f"coverage.py {version} has changed in a way cowfork does not know; "
        "run with --no-cowfork to measure every line"
    )


def _new_data() -> CoverageData:
    from coverage import CoverageData

    return CoverageData(no_disk=True)


def _discard(data: CoverageData) -> None:
    """Close ``data``'s database now, not when it is garbage (a ResourceWarning)."""
    with contextlib.suppress(Exception):
        data.erase()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep coverage.py's warnings about the whole run out of a test's warnings.

    Saving midway makes coverage.py warn about packages not imported yet;
    the warnings that matter come again when the run's data is saved.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
