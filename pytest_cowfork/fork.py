"""Fork a clone for one item and hand the template its ends of the pipes.

This is the only place that calls ``os.fork()``. The parent side returns a
:class:`ForkedClone`; the child side never returns (see :mod:`clone`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import sys
import tempfile
import time
import warnings
from typing import IO, TYPE_CHECKING

import pytest
from _pytest.capture import EncodedFile

from pytest_cowfork import clone, terminal

if TYPE_CHECKING:
    from coverage import Coverage


@dataclasses.dataclass
class CaptureFiles:
    """Two files, kept for one slot, that back a clone's captured output.

    They outlive every clone of the slot, so the template can read what a
    clone captured in the phase it died in.
    """

    stdout: IO[bytes]
    stderr: IO[bytes]
    #: The same files, wrapped as pytest's fd capture writes to them. Built
    #: once here and never used by the template, so every clone inherits
    #: them unused instead of spending time building its own.
    stdout_text: EncodedFile
    stderr_text: EncodedFile

    @classmethod
    def create(cls) -> CaptureFiles:
        # Closed by close(), when the template is done with the slot.
        stdout = tempfile.TemporaryFile(prefix="cowfork-stdout-")  # noqa: SIM115
        stderr = tempfile.TemporaryFile(prefix="cowfork-stderr-")  # noqa: SIM115
        return cls(stdout, stderr, _capture_text(stdout), _capture_text(stderr))

    def reset(self) -> None:
        # The offset is shared with the clone that used the files last: a
        # clone killed between writes would leave it past the new end.
        for file in (self.stdout, self.stderr):
            os.ftruncate(file.fileno(), 0)
            os.lseek(file.fileno(), 0, os.SEEK_SET)

    def read(self, limit: int) -> tuple[str, str]:
        """Return the last ``limit`` bytes of each file, decoded."""
        return _tail(self.stdout, limit), _tail(self.stderr, limit)

    def close(self) -> None:
        for file in (self.stdout_text, self.stderr_text, self.stdout, self.stderr):
            file.close()


@dataclasses.dataclass
class ForkedClone:
    """The template's handle on a running clone: its pid and pipe ends."""

    pid: int
    slot: int
    #: What the clone finds in CLONE_ID.
    clone_id: int
    #: Read ends, non-blocking: reports, stdout, stderr, fault dumps.
    channel: int
    stdout: int
    stderr: int
    diag: int
    #: A descriptor that becomes readable when the clone exits, or None
    #: where the platform has no pidfd.
    pidfd: int | None
    #: The files that back the clone's captured output.
    capture: CaptureFiles
    #: For a standby clone, the write end of the pipe that starts it.
    go: int | None = None
    #: Seconds the template spent in ``os.fork()`` for this clone.
    fork_time: float = 0.0
    #: The write end of the pipe that answers the clone's request for the
    #: terminal, or None if it may not borrow it.
    answers: int | None = None

    def start(self) -> None:
        """Let a standby clone run its item."""
        assert self.go is not None
        os.write(self.go, b"g")
        os.close(self.go)
        self.go = None

    def discard(self) -> None:
        """Make a standby clone exit without running its item."""
        assert self.go is not None
        os.close(self.go)
        self.go = None
        self.close_answers()

    def answer(self, lent: bool) -> None:
        """Tell the clone whether the terminal is its own now."""
        assert self.answers is not None
        with contextlib.suppress(OSError):  # The clone died meanwhile.
            os.write(self.answers, terminal.LENT if lent else terminal.NOT_LENT)

    def close_answers(self) -> None:
        if self.answers is not None:
            os.close(self.answers)
            self.answers = None


def fork_clone(
    item: pytest.Item,
    slot: int,
    template_top: pytest.Collector,
    capture: CaptureFiles,
    standby: bool = False,
    clone_id: int | None = None,
    measure_memory: bool = False,
    debugger_refusal: str | None = None,
    cov: Coverage | None = None,
) -> ForkedClone:
    """Fork a clone that runs ``item``; return the template's handle on it.

    :param standby: the clone prepares, then waits for :meth:`ForkedClone.start`
        before it runs ``item``, so forking it can overlap another clone's run.
    :param clone_id: what the clone finds in ``CLONE_ID``; ``slot`` if None.
    :param measure_memory: the clone reports the memory it copied.
    :param debugger_refusal: why a debugger may not start in the clone; if
        None, the clone may ask for the terminal.
    :param cov: the coverage.py instance measuring the template, which the
        clone goes on measuring with; None when coverage is not measured.
    """
    clone_id = slot if clone_id is None else clone_id
    # The template reports the location in any case: computed here, once,
    # it is not computed again in each clone's copy of the item.
    _ = item.location
    item.config.hook.pytest_cowfork_before_fork(item=item, clone_id=clone_id)
    pipes = [os.pipe() for _ in range(4)]
    go_read, go_write = os.pipe() if standby else (None, None)
    lendable = debugger_refusal is None
    answers_read, answers_write = os.pipe() if lendable else (None, None)
    capture.reset()
    # Buffered output would otherwise be written once by each process.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    template_pid = os.getpid()
    # A frozen heap keeps a collection in the clone from writing to, and so
    # copying, every page that holds a template object.
    gc.freeze()
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns when a multi-threaded process forks; the
            # thread check has already told the user, with names.
            warnings.simplefilter("ignore", DeprecationWarning)
            forking = time.perf_counter()
            pid = os.fork()
            fork_time = time.perf_counter() - forking
        if pid == 0:
            for read_end, _ in pipes:
                os.close(read_end)
            for unused in (go_write, answers_write):
                if unused is not None:
                    os.close(unused)
            channel, stdout, stderr, diag = (write_end for _, write_end in pipes)
            fds = clone.CloneFds(
                channel=channel,
                stdout=stdout,
                stderr=stderr,
                diag=diag,
                capture_stdout=capture.stdout_text,
                capture_stderr=capture.stderr_text,
                go=go_read,
                answers=answers_read,
                debugger_refusal=debugger_refusal,
            )
            clone.run(
                item,
                clone_id,
                template_top,
                fds,
                template_pid,
                measure_memory=measure_memory,
                cov=cov,
            )
    finally:
        if os.getpid() == template_pid:
            gc.unfreeze()
        else:  # pragma: no cover - clone.run never returns
            os._exit(70)
    # The clone makes its own group too; whichever runs first wins, and
    # this call fails harmlessly if the clone has already exited.
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    for read_end, write_end in pipes:
        os.close(write_end)
        os.set_blocking(read_end, False)
    for unused in (go_read, answers_read):
        if unused is not None:
            os.close(unused)
    channel, stdout, stderr, diag = (read_end for read_end, _ in pipes)
    return ForkedClone(
        pid=pid,
        slot=slot,
        channel=channel,
        stdout=stdout,
        stderr=stderr,
        diag=diag,
        pidfd=_open_pidfd(pid),
        clone_id=clone_id,
        capture=capture,
        go=go_write,
        fork_time=fork_time,
        answers=answers_write,
    )


def _open_pidfd(pid: int) -> int | None:
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _capture_text(file: IO[bytes]) -> EncodedFile:
    """Wrap ``file`` the way pytest wraps the file behind an fd capture."""
    return EncodedFile(
        open(os.dup(file.fileno()), "wb+", buffering=0),
        encoding="utf-8",
        errors="replace",
        newline="",
        write_through=True,
    )


def _tail(file: IO[bytes], limit: int) -> str:
    size = os.fstat(file.fileno()).st_size
    start = max(0, size - limit)
    data = os.pread(file.fileno(), size - start, start)
    return data.decode("utf-8", "replace")
