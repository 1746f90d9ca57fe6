"""Notice template state that makes forking risky, and warn (template).

Three hazards are looked for before a fork: other threads, open sockets and
open asyncio event loops (or bare epoll selectors). Each is warned about at
most once per run, at the item about to be forked.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import stat
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import pytest

#: Where the open descriptors are listed: Linux, then macOS and the BSDs.
_FD_DIRS = ("/proc/self/fd", "/dev/fd")


class PytestCowforkWarning(pytest.PytestWarning):
    """A risk cowfork noticed in the template that may make clones misbehave."""

    __module__ = "pytest_cowfork"


class Hazards:
    """Look for each hazard before a fork; warn about each once per run.

    Threads are counted before every fork, which costs nothing. Descriptors
    are listed only after the template has set something up since they were
    last listed (:attr:`changed`), since only then can new ones be open.
    """

    def __init__(
        self,
        config: pytest.Config,
        harmless: Callable[[threading.Thread], bool] = lambda thread: False,
        own_fds: Callable[[], Iterable[int]] = tuple,
    ) -> None:
        """:param harmless: True for a thread known to hold nothing a clone
            needs, which the thread warning leaves out.
        :param own_fds: return the descriptors cowfork and the plugins it
            works with hold open, not counted; asked only when the
            descriptors are listed.
        """
        self._config = config
        self._harmless = harmless
        self._own_fds = own_fds
        self._warned: set[str] = set()
        #: The template may hold descriptors the last check did not see.
        self.changed = True

    def check(self, item: pytest.Item) -> None:
        """Warn, at ``item``, about each hazard not warned about yet.

        :raises PytestCowforkWarning: when warnings are errors; a later call
            goes on with the checks this one did not reach.
        """
        if "threads" not in self._warned:
            names = sorted(thread.name for thread in self.other_threads())
            if names:
                self._warn(item, "threads", _threads_message(names))
        if not self.changed or {"sockets", "loops"} <= self._warned:
            return
        own_fds = set(self._own_fds())
        sockets, selectors = _open_descriptors(own_fds, self._owned(own_fds))
        loops = _open_loops(selectors)
        if "loops" not in self._warned and (loops or selectors):
            self._warn(item, "loops", _loops_message(loops, selectors))
        pipes = {fd for loop in loops for fd in _self_pipe(loop)}
        sockets = [fd for fd in sockets if fd not in pipes]
        if "sockets" not in self._warned and sockets:
            self._warn(item, "sockets", _sockets_message(sockets))
        self.changed = False

    def other_threads(self) -> list[threading.Thread]:
        """Return the live threads but this one, harmless ones left out."""
        if threading.active_count() == 1:
            return []
        current = threading.current_thread()
        return [
            thread
            for thread in threading.enumerate()
            if thread is not current and not self._harmless(thread)
        ]

    def _warn(self, item: pytest.Item, hazard: str, message: str) -> None:
        self._warned.add(hazard)
        # Not issue_config_time_warning: hazards usually appear while wide
        # fixtures are set up, long after configure.
        lineno = item.location[1]
        warnings.warn_explicit(
            PytestCowforkWarning(message),
            category=PytestCowforkWarning,
            filename=str(item.path),
            lineno=(lineno or 0) + 1,
        )

    def _owned(self, own_fds: Iterable[int]) -> set[tuple[int, int]]:
        """Return the identities of descriptors pytest, xdist and cowfork hold.

        By identity, not number: pytest's capture keeps duplicates of the
        standard streams, which may themselves be sockets.
        """
        fds = {0, 1, 2, *own_fds, *_capture_fds(self._config)}
        fds |= _xdist_channel_fds(self._config)
        owned = set()
        for fd in fds:
            with contextlib.suppress(OSError):
                owned.add(_identity(os.fstat(fd)))
        return owned


def _threads_message(names: list[str]) -> str:
    return (
        f"the template is forking while {len(names)} other thread(s) "
        f"run ({', '.join(names)}); clones get none of them and may "
        "hang on a lock one held. Start threads in function-scoped "
        "fixtures, or stop them before the first test."
    )


def _sockets_message(fds: list[int]) -> str:
    described = "; ".join(_describe_socket(fd) for fd in fds)
    return (
        f"the template holds {len(fds)} open socket(s) at fork time ({described}); "
        "every clone shares each of them with the template and the other clones, "
        "so their bytes interleave, and a clone that closes or shuts one down "
        "breaks it for all. Open connections in function-scoped fixtures, or "
        "reopen them in each clone with os.register_at_fork(after_in_child=...)."
    )


def _loops_message(loops: list[Any], selectors: list[int]) -> str:
    if loops:
        what = "; ".join(_describe_loop(loop) for loop in loops)
        held = f"an open asyncio event loop ({what})"
    else:
        fds = ", ".join(map(str, selectors))
        held = f"an open selector (epoll fd {fds}), as an asyncio event loop has"
    return (
        f"the template holds {held} at fork time; a clone that runs it shares "
        "its selector and self-pipe with the template and the other clones, so "
        "wakeups and I/O readiness can reach the wrong process. Use "
        'function-scoped event loops (pytest-asyncio: loop_scope="function", its '
        "default), or close the loop before the first test."
    )


def _open_descriptors(
    own_fds: set[int], owned: set[tuple[int, int]]
) -> tuple[list[int], list[int]]:
    """Return the sockets and epoll selectors open here, except owned ones.

    :param own_fds: cowfork's own descriptors, by number.
    :param owned: sockets pytest or xdist hold, by identity.
    """
    sockets: list[int] = []
    selectors: list[int] = []
    for fd in _fd_numbers():
        if fd in own_fds:
            continue
        try:
            info = os.fstat(fd)
        except OSError:
            # The listing's own descriptor, closed by now.
            continue
        if stat.S_ISSOCK(info.st_mode):
            if _identity(info) not in owned:
                sockets.append(fd)
        # Every epoll shares one anonymous inode: only its number tells it.
        elif stat.S_IFMT(info.st_mode) == 0 and _is_epoll(fd):
            selectors.append(fd)
    return sockets, selectors


def _fd_numbers() -> list[int]:
    for directory in _FD_DIRS:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        return sorted(int(name) for name in names if name.isdigit())
    # TODO: without a listing of descriptors, sockets go unnoticed.
    return []


def _is_epoll(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"
    except OSError:
        return False


def _identity(info: os.stat_result) -> tuple[int, int]:
    return (info.st_dev, info.st_ino)


def _capture_fds(config: pytest.Config) -> list[int]:
    """Return the descriptors pytest's fd capture saved the streams in."""
    capman = config.pluginmanager.getplugin("capturemanager")
    multi = getattr(capman, "_global_capturing", None)
    captures = [getattr(multi, name, None) for name in ("in_", "out", "err")]
    saved = [getattr(capture, "targetfd_save", None) for capture in captures]
    return [fd for fd in saved if isinstance(fd, int)]


def _xdist_channel_fds(config: pytest.Config) -> set[int]:
    """Return the descriptors of an xdist worker's channel to its controller.

    It is a pair of pipes for the usual local workers (``-n``) and a socket
    for ``--tx socket=...`` workers.
    """
    if not hasattr(config, "workerinput"):
        return set()
    fds = set()
    for plugin in config.pluginmanager.get_plugins():
        io = getattr(
            getattr(getattr(plugin, "channel", None), "gateway", None), "_io", None
        )
        for name in ("sock", "infile", "outfile"):
            with contextlib.suppress(Exception):
                fds.add(getattr(io, name).fileno())
    return fds


def _describe_socket(fd: int) -> str:
    """Name the socket open at ``fd``: its kind and addresses."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return f"fd {fd}"
    with sock:
        family, kind = sock.family, sock.type
        if family == socket.AF_UNIX:
            name = "Unix socket"
        elif kind == socket.SOCK_STREAM:
            name = "TCP"
        elif kind == socket.SOCK_DGRAM:
            name = "UDP"
        else:
            name = "socket"
        try:
            local = _address(sock.getsockname())
        except OSError:
            local = ""
        try:
            peer: str | None = _address(sock.getpeername())
        except OSError:
            peer = None
        listening = _is_listening(sock)
    if listening:
        return f"fd {fd}, {name} listening on {local}"
    if peer is not None:
        return f"fd {fd}, {name} connected to {peer}"
    return f"fd {fd}, {name} on {local}" if local else f"fd {fd}, {name}"


def _is_listening(sock: socket.socket) -> bool:
    option = getattr(socket, "SO_ACCEPTCONN", None)
    if option is None:
        return False
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, option))
    except OSError:
        return False


def _address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, bytes):
        # A Linux abstract socket name starts with a NUL byte.
        address = address.decode("utf-8", "replace").replace("\0", "@")
    return str(address) or "an unnamed address"


def _open_loops(selectors: list[int]) -> list[Any]:
    """Return the asyncio event loops the template holds open.

    The main thread's current loop is checked always; all objects are
    searched only when an epoll selector open here belongs to no loop found
    so far, which happens at most once per run since a warning follows.
    """
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return []
    policy = getattr(asyncio.events, "_event_loop_policy", None)
    current = getattr(getattr(policy, "_local", None), "_loop", None)
    loops = [current] if current is not None else []
    if set(selectors) - {_selector_fd(loop) for loop in loops}:
        loops += [
            obj
            for obj in gc.get_objects()
            if isinstance(obj, asyncio.AbstractEventLoop)
        ]
    unique = {id(loop): loop for loop in loops if not loop.is_closed()}
    return list(unique.values())


def _selector_fd(loop: Any) -> int | None:
    try:
        return int(loop._selector.fileno())
    except Exception:
        return None


def _self_pipe(loop: Any) -> list[int]:
    """Return the socket pair a loop wakes itself with, which it owns."""
    fds = []
    for name in ("_ssock", "_csock"):
        with contextlib.suppress(Exception):
            fds.append(int(getattr(loop, name).fileno()))
    return fds


def _describe_loop(loop: Any) -> str:
    fd = _selector_fd(loop)
    selector = "" if fd is None or fd < 0 else f", selector fd {fd}"
    return f"{type(loop).__name__}{selector}"
