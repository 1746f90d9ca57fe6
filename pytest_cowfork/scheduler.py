"""Watch running clones with one event loop (template).

The loop reads every clone's channel, stdout, stderr and fault-dump pipes,
notices exits, and enforces deadlines; reading all pipes while waiting is
what keeps a chatty clone from blocking on a full pipe. It knows nothing of
pytest reports: it hands back decoded messages and how each clone ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import selectors
import signal
import sys
from collections.abc import Callable
from time import monotonic
from typing import Any

from pytest_cowfork import wire
from pytest_cowfork.clone import DUMP_SIGNAL
from pytest_cowfork.fork import ForkedClone

_READ_SIZE = 1 << 20
#: How much of a clone's fault dump is kept for its report.
_DIAG_LIMIT = 256 * 1024
#: After asking a timed-out clone for its stacks, how long to wait for them,
#: and how long the dump must stay quiet before the clone is killed.
_DUMP_GRACE = 2.0
_DUMP_QUIET = 0.1
#: Without pidfds, how often to poll for exits.
_POLL_INTERVAL = 0.01


@dataclasses.dataclass
class Running:
    """A clone the loop watches, and what it has heard from it so far."""

    handle: ForkedClone
    item: Any
    timeout: float | None
    started: float = dataclasses.field(default_factory=monotonic)
    messages: list[tuple[wire.Kind, Any]] = dataclasses.field(default_factory=list)
    #: Why the channel went bad, if it did.
    wire_error: str | None = None
    diag: bytearray = dataclasses.field(default_factory=bytearray)
    timed_out: bool = False
    kill_at: float | None = None
    last_diag: float | None = None
    #: The wait status, once the clone has exited.
    status: int | None = None
    ended: float | None = None
    reader: wire.FrameReader = dataclasses.field(default_factory=wire.FrameReader)

    @property
    def pid(self) -> int:
        return self.handle.pid

    @property
    def deadline(self) -> float | None:
        if self.timeout is None:
            return None
        return self.started + self.timeout

    @property
    def wall_time(self) -> float:
        return (self.ended or monotonic()) - self.started


class Scheduler:
    """Run the event loop over every running clone."""

    def __init__(self, relay: Callable[[int, bytes], None]) -> None:
        """:param relay: called with (1 or 2, data) for each chunk a clone
        writes to its stdout or stderr outside pytest's capture."""
        self._relay = relay
        self._selector = selectors.DefaultSelector()
        self.running: dict[int, Running] = {}

    def add(self, clone: Running) -> None:
        """Start watching ``clone``."""
        handle = clone.handle
        self.running[handle.pid] = clone
        for fd, what in (
            (handle.channel, "channel"),
            (handle.stdout, 1),
            (handle.stderr, 2),
            (handle.diag, "diag"),
        ):
            self._selector.register(fd, selectors.EVENT_READ, (clone, what))
        if handle.pidfd is not None:
            self._selector.register(handle.pidfd, selectors.EVENT_READ, (clone, "exit"))

    def poll(self) -> list[Running]:
        """Wait for the next events; return the clones that ended meanwhile."""
        now = monotonic()
        timeout = self._next_wakeup(now)
        ended: list[Running] = []
        for key, _ in self._selector.select(timeout):
            clone, what = key.data
            if clone.status is not None:
                continue
            if what == "exit":
                self._reap(clone, ended)
            else:
                self._read(clone, key.fd, what)
        now = monotonic()
        for clone in list(self.running.values()):
            if clone.status is None and clone.handle.pidfd is None:
                self._reap(clone, ended, block=False)
            if clone.status is None:
                self._enforce_deadline(clone, now)
        return ended

    def kill_all(self) -> None:
        """Kill every running clone and its process group, and reap them."""
        for clone in list(self.running.values()):
            _killpg(clone.pid)
        for clone in list(self.running.values()):
            self._reap(clone, [])

    def _next_wakeup(self, now: float) -> float | None:
        wakeups = []
        for clone in self.running.values():
            if clone.handle.pidfd is None:
                wakeups.append(now + _POLL_INTERVAL)
            if clone.kill_at is not None:
                wakeups.append(clone.kill_at)
                if clone.last_diag is not None:
                    wakeups.append(clone.last_diag + _DUMP_QUIET)
            elif clone.deadline is not None:
                wakeups.append(clone.deadline)
        if not wakeups:
            return None
        return max(0.0, min(wakeups) - now)

    def _read(self, clone: Running, fd: int, what: Any) -> bool:
        """Read what ``fd`` holds now; return False when it has nothing more."""
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            # Empty for now; after an exit, a grandchild still holds it open.
            return False
        if not data:
            self._selector.unregister(fd)
            return False
        self._feed(clone, what, data)
        return True

    def _reap(self, clone: Running, ended: list[Running], block: bool = True) -> None:
        pid, status = os.waitpid(clone.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return
        clone.status = status
        clone.ended = monotonic()
        # What the clone wrote before it exited is all in the pipes now.
        handle = clone.handle
        for fd, what in (
            (handle.channel, "channel"),
            (handle.stdout, 1),
            (handle.stderr, 2),
            (handle.diag, "diag"),
        ):
            while self._has(fd) and self._read(clone, fd, what):
                pass
        # Whatever the test left running in the clone's group goes with it.
        _killpg(clone.pid)
        self._close(clone)
        del self.running[clone.pid]
        ended.append(clone)

    def _has(self, fd: int) -> bool:
        try:
            self._selector.get_key(fd)
        except KeyError:
            return False
        return True

    def _feed(self, clone: Running, what: Any, data: bytes) -> None:
        if what == "channel":
            if clone.wire_error is None:
                try:
                    clone.messages.extend(clone.reader.feed(data))
                except wire.WireError as exc:
                    clone.wire_error = str(exc)
        elif what == "diag":
            if len(clone.diag) < _DIAG_LIMIT:
                clone.diag += data[: _DIAG_LIMIT - len(clone.diag)]
            clone.last_diag = monotonic()
        else:
            self._relay(what, data)

    def _close(self, clone: Running) -> None:
        handle = clone.handle
        for fd in (handle.channel, handle.stdout, handle.stderr, handle.diag):
            if self._has(fd):
                self._selector.unregister(fd)
            os.close(fd)
        if handle.pidfd is not None:
            if self._has(handle.pidfd):
                self._selector.unregister(handle.pidfd)
            os.close(handle.pidfd)

    def _enforce_deadline(self, clone: Running, now: float) -> None:
        deadline = clone.deadline
        if deadline is None or now < deadline:
            return
        if not clone.timed_out:
            clone.timed_out = True
            clone.kill_at = now + _DUMP_GRACE
            clone.last_diag = None
            _signal(clone.pid, DUMP_SIGNAL)
            return
        assert clone.kill_at is not None
        quiet = clone.last_diag is not None and now >= clone.last_diag + _DUMP_QUIET
        if now >= clone.kill_at or quiet:
            _killpg(clone.pid)
            clone.kill_at = now + _DUMP_GRACE


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError as exc:
        # ESRCH: the group is gone. EPERM: macOS refuses a group of zombies.
        if exc.errno not in (errno.ESRCH, errno.EPERM):
            raise


def relay_to_terminal(fd: int, data: bytes) -> None:
    """Write a clone's uncaptured output where the template's would go."""
    stream = sys.stdout if fd == 1 else sys.stderr
    stream.flush()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue
