"""Copy the pages clones write into a standby clone before its test starts (both).

Most of a small test's time in a clone goes to copy-on-write faults: the
first write to each page the clone shares with the template traps into the
kernel, which copies that page. Clones forked from one template write much
the same pages (the interpreter's static data, the allocator's busiest
pools, the stack), so now and then a clone reports which pages it alone
maps when it ends, and a standby clone, while it waits for its item, asks
the kernel to copy those pages in one call per run of pages
(``MADV_POPULATE_WRITE``, Linux 5.14+). The faults then happen while the
previous test runs, not during this one.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from typing import Any

#: A run of pages: its start address and its length, in bytes.
Run = tuple[int, int]

#: Every this many clones, one is forked without copying ahead, to learn
#: afresh which pages clones write as the template changes.
LEARN_EVERY = 16
#: A clone that wrote more than this learned nothing usable: copying that
#: much ahead into every standby would cost more than the faults it saves.
MAX_LEARNED = 16 * 1024 * 1024
_MADV_POPULATE_WRITE = 23
#: In a pagemap entry's top byte: page present (bit 63) and mapped by this
#: process only (bit 56).
_PRESENT_EXCLUSIVE = 0x81
_ONLY_MINE = bytes(
    1 if value & _PRESENT_EXCLUSIVE == _PRESENT_EXCLUSIVE else 0 for value in range(256)
)
_RUNS = re.compile(rb"\x01+")


class Learner:
    """Keep the pages clones were last seen writing (template).

    The template decides, at each fork, whether the clone copies the known
    pages ahead or, being one in :data:`LEARN_EVERY`, measures afresh.
    """

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled and _populate is not None
        self._forks = 0
        self.runs: tuple[Run, ...] = ()

    def next_clone(self) -> tuple[bool, tuple[Run, ...]]:
        """Return whether the next clone learns, and the runs it copies ahead."""
        if not self._enabled:
            return False, ()
        learns = self._forks % LEARN_EVERY == 0
        self._forks += 1
        return learns, () if learns else self.runs

    def learn(self, runs: Any) -> None:
        """Take the runs a learning clone reported, if they look sane."""
        if not isinstance(runs, list):
            return
        try:
            learned = tuple((int(start), int(length)) for start, length in runs)
        except (TypeError, ValueError):
            return
        if sum(length for _, length in learned) <= MAX_LEARNED:
            self.runs = learned


def written_runs() -> list[Run] | None:
    """Return the runs of pages only this process maps (clone).

    In a clone, those are the pages it has copied since the fork. None if
    the kernel does not say, or if there are too many to be worth copying.
    """
    page = os.sysconf("SC_PAGE_SIZE")
    runs: list[Run] = []
    total = 0
    try:
        with open("/proc/self/maps", "rb") as maps:
            regions = [_writable_region(line) for line in maps]
        pagemap = os.open("/proc/self/pagemap", os.O_RDONLY)
    except OSError:
        return None
    try:
        for region in regions:
            if region is None:
                continue
            start, end = region
            entries = os.pread(pagemap, (end - start) // page * 8, start // page * 8)
            for match in _RUNS.finditer(entries[7::8].translate(_ONLY_MINE)):
                length = (match.end() - match.start()) * page
                runs.append((start + match.start() * page, length))
                total += length
            if total > MAX_LEARNED:
                return None
    except OSError:
        return None
    finally:
        os.close(pagemap)
    return runs


def copy_ahead(runs: Sequence[Run]) -> None:
    """Have the kernel copy ``runs`` into this process now (clone).

    A run that is no longer mapped writable is skipped: the template may
    have changed its memory since the runs were learned.
    """
    if _populate is None:
        return
    for start, length in runs:
        _populate(start, length, _MADV_POPULATE_WRITE)


def _writable_region(line: bytes) -> tuple[int, int] | None:
    """Return (start, end) of a private writable mapping in /proc/self/maps."""
    fields = line.split()
    if len(fields) < 2 or fields[1] != b"rw-p":
        return None
    start, _, end = fields[0].partition(b"-")
    return int(start, 16), int(end, 16)


def _load_madvise() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    # Kernels before 5.14 refuse the advice; then there is nothing to gain.
    probe = ctypes.create_string_buffer(1)
    page_start = ctypes.addressof(probe) & ~(os.sysconf("SC_PAGE_SIZE") - 1)
    if madvise(page_start, 1, _MADV_POPULATE_WRITE) != 0:
        return None
    return madvise


# Loaded in the template, once, so that clones pay nothing for ctypes.
_populate = _load_madvise()
