"""Run one item's protocol in a freshly forked clone, then exit (clone).

Nothing here returns to the caller: the clone ends in ``os._exit``, so no
atexit handler, buffered output or pytest teardown of the template runs
twice. A clone does not write to the terminal on its own behalf; its reports
go to the template over the channel and its file descriptors 1 and 2 are
pipes the template reads, until a debugger borrows the terminal (see
:mod:`pytest_cowfork.terminal`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import pytest
from _pytest.capture import EncodedFile, FDCapture
from _pytest.runner import CallInfo, check_interactive_exception, show_test_item

from pytest_cowfork import memory, reruns, terminal, timeout_timer, wire
from pytest_cowfork.coverage import CloneCoverage

if TYPE_CHECKING:
    from coverage import Coverage

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

#: The environment variable, and fixture, that tell a test its clone slot.
CLONE_ID = "CLONE_ID"
#: The template sends this to ask a clone for its threads' stacks.
DUMP_SIGNAL = signal.SIGUSR1
# Bound now, so a test that replaces them cannot stop its clone reporting.
_exit = os._exit
_write = os.write
_getpid = os.getpid
#: This process's clone id once it is a clone: its slot, 0 to jobs - 1,
#: offset by jobs times the xdist worker number under xdist.
slot: int | None = None
#: What coverage.py measures in this clone, when it measures.
_coverage: CloneCoverage | None = None


def current_id() -> int | None:
    """Return this process's clone id, or None in the template."""
    return slot


@dataclasses.dataclass(frozen=True)
class CloneFds:
    """What a clone inherits to talk to the template: descriptors, as numbers
    valid in the clone, and the files behind its captured output.
    """

    channel: int
    stdout: int
    stderr: int
    diag: int
    #: Template-owned files that back pytest's fd capture in the clone, so
    #: the template can still read what was captured if the clone dies.
    capture_stdout: EncodedFile
    capture_stderr: EncodedFile
    #: A standby clone waits for a byte on this pipe before it runs its
    #: item, and exits quietly at end of file; None to run at once.
    go: int | None = None
    #: Where the template answers a request for the terminal; None if the
    #: clone may not borrow it.
    answers: int | None = None
    #: Why a debugger may not start in the clone, when it may not.
    debugger_refusal: str | None = None


class _Channel:
    """Send framed messages to the template, only from the clone itself.

    A test that forks would otherwise let its own child send a second copy
    of every report.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pid = _getpid()

    def send(self, kind: wire.Kind, payload: Any) -> None:
        if _getpid() != self._pid:
            return
        view = memoryview(wire.encode(kind, payload))
        while view:
            view = view[_write(self._fd, view) :]


def run(
    item: pytest.Item,
    clone_id: int,
    template_top: pytest.Collector,
    fds: CloneFds,
    template_pid: int,
    measure_memory: bool = False,
    cov: Coverage | None = None,
) -> NoReturn:
    """Run ``item`` in this clone and exit; called right after the fork."""
    global slot, _coverage
    status = 70
    channel = _Channel(fds.channel)
    try:
        _detach(template_pid)
        config = item.config
        if fds.answers is not None:
            originals = terminal.keep_originals(config)
            terminal.may_borrow(
                config,
                lambda: channel.send(wire.Kind.TERMINAL, None),
                fds.answers,
                originals,
            )
        elif fds.debugger_refusal is not None:
            terminal.may_not_borrow(config, fds.debugger_refusal)
        _redirect(config, fds)
        slot = clone_id
        os.environ[CLONE_ID] = str(clone_id)
        if cov is not None:
            _coverage = CloneCoverage.start(
                cov, lambda payload: channel.send(wire.Kind.COVERAGE, payload)
            )
        if fds.go is not None:
            if not os.read(fds.go, 1):
                # The template discarded this standby clone.
                _exit(0)
            os.close(fds.go)
        # Caught here, inside the filters pytest set for the item, so that
        # -W error still turns a warning into a failure in the clone.
        with warnings.catch_warnings(record=True) as caught:
            try:
                _run_protocol(item, template_top, channel)
                state = reruns.attempt_state(item)
                if state is not None:
                    channel.send(wire.Kind.RERUN_STATE, state)
                last: tuple[wire.Kind, Any] = (
                    wire.Kind.DONE,
                    _costs(measure_memory),
                )
            except pytest.exit.Exception as exc:
                _quiet_teardown(item, template_top)
                _send_coverage()
                last = (
                    wire.Kind.EXIT,
                    {"msg": str(exc.msg), "returncode": exc.returncode},
                )
            except KeyboardInterrupt as exc:
                _quiet_teardown(item, template_top)
                _send_coverage()
                last = (wire.Kind.INTERRUPT, {"msg": str(exc)})
        for warning in caught:
            channel.send(wire.Kind.WARNING, _warning_payload(warning))
        # The template kills the clone as soon as the last message arrives.
        _flush_stdio()
        channel.send(*last)
        status = 0
    except BaseException:
        _flush_stdio()
        with contextlib.suppress(BaseException):
            channel.send(wire.Kind.ERROR, {"traceback": traceback.format_exc()})
    finally:
        _exit(status)


def _warning_payload(warning: warnings.WarningMessage) -> dict[str, Any]:
    category = warning.category
    return {
        "message": str(warning.message),
        "category": f"{category.__module__}:{category.__qualname__}",
        "filename": str(warning.filename),
        "lineno": warning.lineno,
    }


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()


def _run_protocol(
    item: pytest.Item, template_top: pytest.Collector, channel: _Channel
) -> None:
    """Run setup, call and teardown like pytest's runtestprotocol.

    Teardown stops at ``template_top``: what the template set up is the
    template's to tear down, once, after every clone that uses it is done.
    """
    if hasattr(item, "_request") and not item._request:
        # A rerun (pytest-rerunfailures) of an item whose request was dropped.
        item._initrequest()  # type: ignore[attr-defined]
    inherited = _finalizer_counts(item.session)
    # pytest-timeout's timer, if the template held it back for the clone.
    with timeout_timer.running(item):
        _run_phases(item, template_top, channel, inherited)


def _run_phases(
    item: pytest.Item,
    template_top: pytest.Collector,
    channel: _Channel,
    inherited: dict[Any, int],
) -> None:
    config, ihook = item.config, item.ihook
    report = _run_phase(
        item, "setup", lambda: ihook.pytest_runtest_setup(item=item), channel
    )
    if report.passed:
        setup_only = config.getoption("setuponly", False)
        if config.getoption("setupshow", False):
            _show_test_item(item, add_space=not setup_only)
        if not setup_only:
            _run_phase(
                item, "call", lambda: ihook.pytest_runtest_call(item=item), channel
            )
    _run_phase(
        item, "teardown", lambda: _teardown(item, template_top, inherited), channel
    )


def _run_phase(
    item: pytest.Item,
    when: Literal["setup", "call", "teardown"],
    run: Callable[[], object],
    channel: _Channel,
) -> pytest.TestReport:
    """Run one phase and send its report before any debugger takes over."""
    call = CallInfo.from_call(run, when=when, reraise=_reraised(item.config))
    report: pytest.TestReport = item.ihook.pytest_runtest_makereport(
        item=item, call=call
    )
    interactive = check_interactive_exception(call, report)
    debugging = interactive and item.config.getoption("usepdb", False)
    if debugging:
        # The debugger shows this failure; the summary must not again.
        report._pdbshown = True  # type: ignore[attr-defined]
    # A crash in a later phase loses only what that phase measured.
    _send_coverage()
    # Sent first, so that a debugger quitting the session cannot lose it.
    channel.send(wire.Kind.REPORT, _serialize(item.config, report))
    if debugging:
        # Asked now, so the template logs the failure before the debugger
        # writes to the terminal, as pytest does.
        terminal.borrow(capture_suspended=False)
    if interactive:
        item.ihook.pytest_exception_interact(node=item, call=call, report=report)
    return report


def _reraised(config: pytest.Config) -> tuple[type[BaseException], ...]:
    """Return the exceptions that end the session instead of failing a test."""
    if config.getoption("usepdb", False):
        # The debugger handles Ctrl-C itself.
        return (pytest.exit.Exception,)
    return (pytest.exit.Exception, KeyboardInterrupt)


def _send_coverage() -> None:
    if _coverage is not None:
        _coverage.send()


def _costs(measure_memory: bool) -> dict[str, int | None]:
    """Return what this clone cost, for its final message."""
    return {
        "max_rss": memory.peak_resident(),
        "private_dirty": memory.private_dirty() if measure_memory else None,
    }


def _teardown(
    item: pytest.Item, template_top: pytest.Collector, inherited: dict[Any, int]
) -> None:
    """Tear down what this clone set up, and nothing the template did."""
    try:
        item.ihook.pytest_runtest_teardown(item=item, nextitem=template_top)
    finally:
        capman = item.config.pluginmanager.getplugin("capturemanager")
        capturing = capman.item_capture("teardown", item) if capman else None
        with capturing or contextlib.nullcontext():
            _finish_late_wide_fixtures(item.session, inherited)


def _finalizer_counts(session: pytest.Session) -> dict[Any, int]:
    return {node: len(entry[0]) for node, entry in session._setupstate.stack.items()}


def _finish_late_wide_fixtures(
    session: pytest.Session, inherited: dict[Any, int]
) -> None:
    """Run finalizers this clone added to nodes the template owns.

    A wide fixture first requested inside the test (``getfixturevalue``) is
    set up in the clone; it dies with the clone, so it is torn down here.
    """
    errors: list[BaseException] = []
    for node, (finalizers, _) in reversed(session._setupstate.stack.items()):
        count = inherited.get(node, 0)
        # pytest before 8.1 registers a fixture's finish again each time a
        # test requests it; those belong to fixtures the template set up.
        template_owned = {_finalizer_owner(fin) for fin in finalizers[:count]}
        while len(finalizers) > count:
            finalizer = finalizers.pop()
            if _finalizer_owner(finalizer) in template_owned:
                continue
            try:
                finalizer()
            except Exception as exc:
                errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise BaseExceptionGroup("errors while tearing down wide fixtures", errors)


def _finalizer_owner(finalizer: Callable[[], object]) -> object:
    """Return the FixtureDef a fixture's finalizer finishes, or the finalizer."""
    method = getattr(finalizer, "func", None)
    return getattr(method, "__self__", finalizer)


def _show_test_item(item: pytest.Item, add_space: bool) -> None:
    try:
        show_test_item(item, add_space=add_space)  # type: ignore[call-arg,unused-ignore]
    except TypeError:
        # pytest before 9.1 takes no add_space.
        show_test_item(item)  # type: ignore[call-arg,unused-ignore]


def _serialize(config: pytest.Config, report: pytest.TestReport) -> Any:
    return config.hook.pytest_report_to_serializable(config=config, report=report)


def _quiet_teardown(item: pytest.Item, template_top: pytest.Collector) -> None:
    """Run the clone's own finalizers after pytest.exit, as a session would."""
    with contextlib.suppress(BaseException):
        item.session._setupstate.teardown_exact(template_top)  # type: ignore[arg-type]


def _detach(template_pid: int) -> None:
    """Leave the template's process group and die with the template."""
    # The template sets the group too; doing it on both sides closes the
    # race where the template signals the group before the clone joined it.
    os.setpgid(0, 0)
    if _set_parent_death_signal is not None:
        _set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != template_pid:
            # The template died before the signal was armed.
            _exit(70)


def _redirect(config: pytest.Config, fds: CloneFds) -> None:
    """Point stdin at /dev/null and stdout, stderr and capture at the template."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(fds.stdout, 1)
    os.dup2(fds.stderr, 2)
    capman = config.pluginmanager.getplugin("capturemanager")
    multi = getattr(capman, "_global_capturing", None)
    if multi is not None:
        # pytest's fd capture restores its saved copy of each fd whenever it
        # suspends; the saved copies must point where the clone's fds do.
        for capture, target, backing in (
            (multi.in_, devnull, None),
            (multi.out, fds.stdout, fds.capture_stdout),
            (multi.err, fds.stderr, fds.capture_stderr),
        ):
            if isinstance(capture, FDCapture):
                os.dup2(target, capture.targetfd_save)
                if backing is not None:
                    _adopt_capture_file(capture, backing)
    os.close(devnull)
    faulthandler.enable(file=fds.diag, all_threads=True)
    faulthandler.register(DUMP_SIGNAL, file=fds.diag, all_threads=True)


def _adopt_capture_file(capture: FDCapture, backing: EncodedFile) -> None:
    """Make ``capture`` write into ``backing`` instead of the template's file.

    The template's capture file is shared with every clone after a fork, and
    two processes capturing into one file would read each other's output.
    """
    inherited = capture.tmpfile
    capture.tmpfile = backing
    capture.syscapture.tmpfile = backing  # type: ignore[attr-defined]
    inherited.close()


def _load_parent_death_signal() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_parent_death_signal(signum: int) -> None:
        prctl(pr_set_pdeathsig, int(signum), 0, 0, 0)

    return set_parent_death_signal


# Loaded in the template, once, so a clone does not pay for ctypes.
_set_parent_death_signal = _load_parent_death_signal()
