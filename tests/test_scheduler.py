"""Unit tests for the event loop that watches clones.

Each test forks a small child by hand (no pytest inside it) that plays a
clone: it writes frames and output to its pipes, then exits or hangs.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import needs_fork, wait_until_gone

from pytest_cowfork import wire
from pytest_cowfork.clone import DUMP_SIGNAL
from pytest_cowfork.fork import CaptureFiles, ForkedClone
from pytest_cowfork.scheduler import Running, Scheduler

pytestmark = needs_fork

_Fds = dict[str, int]
#: The event loop never touches a clone's capture files; one pair serves all.
_CAPTURE = CaptureFiles.create()


def _fork(body: Callable[[_Fds], None]) -> ForkedClone:
    """Fork a child that runs ``body`` with its write ends, then exits 0."""
    pipes = {name: os.pipe() for name in ("channel", "stdout", "stderr", "diag")}
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.setpgid(0, 0)
            body({name: write for name, (_, write) in pipes.items()})
        finally:
            os._exit(0)
    for read, write in pipes.values():
        os.close(write)
        os.set_blocking(read, False)
    return ForkedClone(
        pid=pid,
        slot=0,
        clone_id=0,
        pidfd=os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None,
        capture=_CAPTURE,
        **{name: read for name, (read, _) in pipes.items()},
    )


class _Relay:
    def __init__(self) -> None:
        self.chunks: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}

    def __call__(self, fd: int, data: bytes) -> None:
        self.chunks[fd] += data


@pytest.fixture
def relay() -> _Relay:
    return _Relay()


@pytest.fixture
def scheduler(relay: _Relay) -> Iterator[Scheduler]:
    scheduler = Scheduler(relay=relay)
    yield scheduler
    scheduler.kill_all()


def _run_until_ended(scheduler: Scheduler, limit: float = 60.0) -> list[Running]:
    ended: list[Running] = []
    give_up = time.monotonic() + limit
    while scheduler.running and time.monotonic() < give_up:
        ended += scheduler.poll()
    assert not scheduler.running, "clones still running after the limit"
    return ended


def _send(fd: int, kind: wire.Kind, payload: object) -> None:
    os.write(fd, wire.encode(kind, payload))


def test_a_clone_ends_at_its_last_message_without_waiting_for_exit(
    scheduler: Scheduler,
) -> None:
    def body(fds: _Fds) -> None:
        _send(fds["channel"], wire.Kind.REPORT, {"when": "setup"})
        _send(fds["channel"], wire.Kind.DONE, {})
        time.sleep(60)

    scheduler.add(Running(handle=_fork(body), timeout=None))
    [clone] = _run_until_ended(scheduler)

    assert clone.messages == [
        (wire.Kind.REPORT, {"when": "setup"}),
        (wire.Kind.DONE, {}),
    ]
    assert clone.wire_error is None
    scheduler.kill_all()
    assert os.WTERMSIG(clone.status or 0) == signal.SIGKILL


def test_a_clone_that_exits_without_a_last_message_gives_its_status(
    scheduler: Scheduler,
) -> None:
    def body(fds: _Fds) -> None:
        _send(fds["channel"], wire.Kind.REPORT, {"when": "setup"})
        os._exit(5)

    scheduler.add(Running(handle=_fork(body), timeout=None))
    [clone] = _run_until_ended(scheduler)

    assert clone.messages == [(wire.Kind.REPORT, {"when": "setup"})]
    assert os.waitstatus_to_exitcode(clone.status or 0) == 5


def test_a_killed_clone_reports_its_signal(scheduler: Scheduler) -> None:
    def body(fds: _Fds) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    scheduler.add(Running(handle=_fork(body), timeout=None))
    [clone] = _run_until_ended(scheduler)

    assert os.WIFSIGNALED(clone.status or 0)
    assert os.WTERMSIG(clone.status or 0) == signal.SIGKILL


def test_output_outside_capture_is_relayed_by_stream(
    scheduler: Scheduler, relay: _Relay
) -> None:
    def body(fds: _Fds) -> None:
        os.write(fds["stdout"], b"to stdout\n")
        os.write(fds["stderr"], b"to stderr\n")

    scheduler.add(Running(handle=_fork(body), timeout=None))
    _run_until_ended(scheduler)

    assert bytes(relay.chunks[1]) == b"to stdout\n"
    assert bytes(relay.chunks[2]) == b"to stderr\n"


def test_megabytes_of_output_and_a_large_report_do_not_deadlock(
    scheduler: Scheduler, relay: _Relay
) -> None:
    """Pipes hold 64 KiB; the loop must read all pipes while it waits."""
    big = "x" * (3 << 20)

    def body(fds: _Fds) -> None:
        chunk = b"y" * 65536
        for _ in range(64):
            os.write(fds["stdout"], chunk)
            os.write(fds["stderr"], chunk)
        _send(fds["channel"], wire.Kind.REPORT, {"longrepr": big})

    scheduler.add(Running(handle=_fork(body), timeout=None))
    [clone] = _run_until_ended(scheduler)

    assert len(relay.chunks[1]) == len(relay.chunks[2]) == 64 * 65536
    assert clone.messages == [(wire.Kind.REPORT, {"longrepr": big})]


def test_garbage_on_the_channel_is_recorded_not_raised(scheduler: Scheduler) -> None:
    def body(fds: _Fds) -> None:
        os.write(fds["channel"], b"\x00\x00\x00\x02\x63{}")

    scheduler.add(Running(handle=_fork(body), timeout=None))
    [clone] = _run_until_ended(scheduler)

    assert clone.wire_error == "unknown message kind 99"


def test_a_clone_past_its_deadline_dumps_its_stacks_and_is_killed(
    scheduler: Scheduler,
) -> None:
    def body(fds: _Fds) -> None:
        faulthandler.register(DUMP_SIGNAL, file=fds["diag"], all_threads=True)
        while True:
            time.sleep(0.05)

    scheduler.add(Running(handle=_fork(body), timeout=0.2))
    [clone] = _run_until_ended(scheduler)

    assert clone.timed_out
    assert os.WTERMSIG(clone.status or 0) == signal.SIGKILL
    assert b"in body" in clone.diag


def test_a_clone_that_ignores_the_dump_signal_is_still_killed(
    scheduler: Scheduler,
) -> None:
    def body(fds: _Fds) -> None:
        signal.signal(DUMP_SIGNAL, signal.SIG_IGN)
        while True:
            time.sleep(0.05)

    scheduler.add(Running(handle=_fork(body), timeout=0.1))
    [clone] = _run_until_ended(scheduler)

    assert clone.timed_out
    assert clone.diag == b""


def test_what_a_clone_left_running_in_its_group_is_killed(
    scheduler: Scheduler, tmp_path: Path
) -> None:
    pid_file = tmp_path / "grandchild"

    def body(fds: _Fds) -> None:
        grandchild = os.fork()
        if grandchild == 0:
            while True:
                time.sleep(1)
        pid_file.write_text(str(grandchild))

    scheduler.add(Running(handle=_fork(body), timeout=None))
    _run_until_ended(scheduler)

    grandchild = int(pid_file.read_text())
    # Orphaned, it was re-parented to init, which reaps it once killed.
    assert wait_until_gone(grandchild)


def test_several_clones_are_watched_at_once(scheduler: Scheduler) -> None:
    def body(fds: _Fds) -> None:
        _send(fds["channel"], wire.Kind.DONE, {"pid": os.getpid()})

    handles = [_fork(body) for _ in range(3)]
    for handle in handles:
        scheduler.add(Running(handle=handle, timeout=None))
    ended = _run_until_ended(scheduler)

    assert sorted(clone.pid for clone in ended) == sorted(h.pid for h in handles)
    assert all(clone.messages[0][1]["pid"] == clone.pid for clone in ended)
