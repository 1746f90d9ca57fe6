"""Sample the memory of a process tree from ``/proc`` (Linux only).

Shared by the benchmarks: the peak proportional set size (PSS) of a pytest
process and all its descendants, summed, is what a run costs the machine,
with the pages that forked processes share counted once between them.
"""

from __future__ import annotations

import threading
from pathlib import Path

#: Seconds between two samples of the whole tree.
SAMPLE_EVERY = 0.025


class TreeSampler:
    """Sample the PSS of a process and all its descendants, keep the peak."""

    def __init__(self, every: float = SAMPLE_EVERY) -> None:
        self.peak = 0
        self._every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, pid: int) -> None:
        self._thread = threading.Thread(target=self._sample, args=(pid,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample(self, pid: int) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(map(pss, descendants(pid))))
            self._stop.wait(self._every)


def descendants(pid: int) -> list[int]:
    """Return ``pid`` and every process below it."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            # The process ended while the sampler walked the tree.
            continue
        for task in tasks:
            try:
                pending += map(int, (task / "children").read_text().split())
            except OSError:
                continue
    return found


def pss(pid: int) -> int:
    """Return the proportional set size of ``pid`` in bytes, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0
