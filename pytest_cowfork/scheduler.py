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
import weakref
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
#: Messages after which a clone only exits.
_FINAL = frozenset(
    {wire.Kind.DONE, wire.Kind.EXIT, wire.Kind.INTERRUPT, wire.Kind.ERROR}
)
#: How long clones get to tear down after Ctrl-C before they are killed.
_INTERRUPT_GRACE = 5.0
#: Without pidfds, how often to poll for exits.
_POLL_INTERVAL = 0.01


@dataclasses.dataclass
class Running:
    """A clone the loop watches, and what it has heard from it so far."""

    handle: ForkedClone
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
    def finished(self) -> bool:
        """Return True once the clone sent a message that ends its run."""
        return any(kind in _FINAL for kind, _ in self.messages[-1:])

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
        _schedulers.add(self)
        #: Clones whose outcome is not known yet.
        self.running: dict[int, Running] = {}
        #: Clones whose outcome is known, not yet reaped.
        self._exiting: dict[int, Running] = {}

    def add(self, clone: Running) -> None:
        """Start watching ``clone``."""
        self.running[clone.pid] = clone
        for fd, what in _pipes(clone.handle):
            self._selector.register(fd, selectors.EVENT_READ, (clone, what))
        if clone.handle.pidfd is not None:
            self._selector.register(
                clone.handle.pidfd, selectors.EVENT_READ, (clone, "exit")
            )

    def poll(self, limit: float | None = None) -> list[Running]:
        """Wait for the next events; return the clones that ended meanwhile.

        A clone has ended when it sent its last message, or when it exited
        without one. One that sent its last message is killed with its
        process group right away instead of being waited for: its address
        space is torn down while the template already runs the next item.
        """
        ended: list[Running] = []
        wakeup = self._next_wakeup(monotonic())
        if limit is not None:
            wakeup = limit if wakeup is None else min(wakeup, limit)
        for key, _ in self._selector.select(wakeup):
            clone, what = key.data
            if what == "exit":
                self._reap(clone, ended)
            elif clone.pid in self.running:
                self._read(clone, key.fd, what)
                if what == "channel" and clone.finished:
                    self._end(clone, ended)
        now = monotonic()
        for clone in [*self.running.values(), *self._exiting.values()]:
            if clone.handle.pidfd is None:
                self._reap(clone, ended, block=False)
        for clone in list(self.running.values()):
            self._enforce_deadline(clone, now)
        return ended

    def abandon(self, handle: ForkedClone) -> None:
        """Kill a clone that never ran, and reap it when it has exited."""
        for fd, _ in _pipes(handle):
            os.close(fd)
        handle.close_answers()
        _killpg(handle.pid)
        clone = Running(handle=handle, timeout=None)
        self._exiting[handle.pid] = clone
        if handle.pidfd is not None:
            self._selector.register(handle.pidfd, selectors.EVENT_READ, (clone, "exit"))

    def interrupt_all(self, grace: float = _INTERRUPT_GRACE) -> None:
        """Pass Ctrl-C on to every running clone, then kill what remains.

        A clone that gets SIGINT tears down its own fixtures, as pytest
        does when interrupted, if it manages to within ``grace`` seconds.
        """
        for clone in self.running.values():
            _killpg(clone.pid, signal.SIGINT)
        give_up = monotonic() + grace
        try:
            while self.running and (left := give_up - monotonic()) > 0:
                self.poll(limit=left)
        finally:
            self.kill_all()

    def kill(self, clone: Running) -> None:
        """Kill a running clone whose outcome no longer matters."""
        _killpg(clone.pid)
        if clone.pid in self.running:
            self._end(clone, [])

    def kill_all(self) -> None:
        """Kill every clone not yet reaped, with its process group; reap them."""
        clones = [*self.running.values(), *self._exiting.values()]
        for clone in clones:
            _killpg(clone.pid)
        for clone in clones:
            self._reap(clone, [])

    def _next_wakeup(self, now: float) -> float | None:
        wakeups = []
        for clone in self._exiting.values():
            if clone.handle.pidfd is None:
                wakeups.append(now + _POLL_INTERVAL)
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
        return True

    def _reap(self, clone: Running, ended: list[Running], block: bool = True) -> None:
        pid, status = os.waitpid(clone.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return
        clone.status = status
        if clone.pid in self.running:
            self._end(clone, ended)
        del self._exiting[clone.pid]
        if clone.handle.pidfd is not None:
            self._selector.unregister(clone.handle.pidfd)
            os.close(clone.handle.pidfd)

    def _end(self, clone: Running, ended: list[Running]) -> None:
        """Take the last of ``clone``'s output and stop watching its pipes."""
        clone.ended = monotonic()
        for fd, what in _pipes(clone.handle):
            while self._has(fd) and self._read(clone, fd, what):
                pass
            if self._has(fd):
                self._selector.unregister(fd)
            os.close(fd)
        clone.handle.close_answers()
        # Whatever the test left running in the clone's group goes with it.
        _killpg(clone.pid)
        del self.running[clone.pid]
        self._exiting[clone.pid] = clone
        ended.append(clone)

    def _has(self, fd: int) -> bool:
        try:
            self._selector.get_key(fd)
        except KeyError:
            return False
        return True

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


#: Every scheduler of this process: an inner pytest session (pytester) has
#: its own, beside the outer session's.
_schedulers: weakref.WeakSet[Scheduler] = weakref.WeakSet()


def selector_fds() -> list[int]:
    """Return the descriptors every scheduler of this process holds open."""
    fds = []
    for scheduler in list(_schedulers):
        fileno = getattr(scheduler._selector, "fileno", None)
        if fileno is not None:
            fds.append(fileno())
    return fds


def _pipes(handle: ForkedClone) -> tuple[tuple[int, Any], ...]:
    return (
        (handle.channel, "channel"),
        (handle.stdout, 1),
        (handle.stderr, 2),
        (handle.diag, "diag"),
    )


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _killpg(pgid: int, signum: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, signum)
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
