"""Move a large template's memory onto huge pages (template, Linux 6.1+).

A fork copies the template's page tables: one entry per 4 KiB page, about
a quarter of a million for 1 GiB. Backed by 2 MiB pages, the same memory
needs 512 times fewer entries, so forks and clone exits get several times
cheaper. ``madvise(MADV_COLLAPSE)`` moves memory already in use onto huge
pages. Copy-on-write stays 4 KiB-grained afterwards: a clone still copies
only the small pages it writes to.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import mmap
import sys
import time
from collections.abc import Callable, Iterator

from pytest_cowfork.memory import peak_resident

#: In auto mode, the template's size from which its memory is collapsed;
#: in both modes, how much it must grow before it is collapsed again. A
#: collapse takes about a second per GiB here, which a few hundred forks
#: made cheaper by it pay back only from about this size.
THRESHOLD = 256 * 1024 * 1024
#: The madvise advice, from the kernel headers (Linux 6.1+).
_MADV_COLLAPSE = 25
_HUGE_PAGE = 2 * 1024 * 1024

_Madvise = Callable[[int, int, int], int]


@dataclasses.dataclass
class HugePages:
    """Decide when to collapse the template's memory, and keep count."""

    mode: str
    #: Bytes moved onto huge pages, and the seconds that took.
    collapsed: int = 0
    seconds: float = 0.0
    #: The template's peak size at the last collapse, None before the first.
    _size_then: int | None = None

    _refusal: str | None = dataclasses.field(default=None, init=False)
    _probed: bool = dataclasses.field(default=False, init=False)

    def refusal(self) -> str | None:
        """Return why huge pages cannot be used here, or None if they can.

        The kernel is asked once, the first time it matters.
        """
        if self.mode == "off":
            return None
        if not self._probed:
            self._refusal = probe()
            self._probed = True
        return self._refusal

    def known_refusal(self) -> str | None:
        """Return the refusal if the kernel was asked and refused, else None."""
        return self._refusal if self._probed else None

    def before_fork(self) -> None:
        """Collapse the template's memory if it has grown enough to pay off."""
        if self.mode == "off":
            return
        size = peak_resident()
        if self._size_then is None:
            due = self.mode == "on" or size >= THRESHOLD
        else:
            due = size - self._size_then >= THRESHOLD
        if not due or self.refusal() is not None:
            return
        self._size_then = size
        started = time.perf_counter()
        self.collapsed += collapse()
        self.seconds += time.perf_counter() - started


def probe() -> str | None:
    """Return why this process cannot collapse memory, or None if it can."""
    if not sys.platform.startswith("linux"):
        return "only Linux moves memory onto huge pages"
    madvise = _madvise()
    if madvise is None:
        return "the C library has no madvise()"
    # Two huge pages' worth, so that one aligned huge page lies inside;
    # only that one is touched, since the kernel collapses only used memory.
    region = mmap.mmap(-1, 2 * _HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        aligned = _align_up(ctypes.addressof(ctypes.c_char.from_buffer(region)))
        ctypes.memset(aligned, 1, _HUGE_PAGE)
        if madvise(aligned, _HUGE_PAGE, _MADV_COLLAPSE) != 0:
            code = ctypes.get_errno()
            name = errno.errorcode.get(code, str(code))
            return f"the kernel refused MADV_COLLAPSE ({name})"
        return None
    finally:
        region.close()


def collapse() -> int:
    """Move this process's anonymous memory onto huge pages; return the bytes.

    Regions the kernel refuses stay on small pages.
    """
    madvise = _madvise()
    if madvise is None:
        return 0
    moved = 0
    for start, end in _anonymous_regions():
        first, last = _align_up(start), end // _HUGE_PAGE * _HUGE_PAGE
        if (
            last - first >= _HUGE_PAGE
            and madvise(first, last - first, _MADV_COLLAPSE) == 0
        ):
            moved += last - first
    return moved


def _anonymous_regions() -> Iterator[tuple[int, int]]:
    """Yield (start, end) of this process's private writable anonymous maps."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            permissions = fields[1]
            name = fields[5] if len(fields) > 5 else ""
            if (
                permissions[:2] == "rw"
                and permissions[3] == "p"
                and name in ("", "[heap]")
            ):
                start, end = fields[0].split("-")
                yield int(start, 16), int(end, 16)


def _align_up(address: int) -> int:
    return -(-address // _HUGE_PAGE) * _HUGE_PAGE


def _madvise() -> _Madvise | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function
