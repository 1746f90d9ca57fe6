"""Measure what clones cost: fork time and the memory each one copied.

A clone shares every page of the template until it writes to it; what it
has written is its *private dirty* memory, the true price of isolating its
test. The clone reads its own figure just before it ends; the template
collects the figures and summarizes them.
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import sys

#: A clone that wrote at least this share of the template's size is named.
LARGE_SHARE = 0.25
#: At most this many such clones are named in the summary.
_NAMED = 3
_MIB = 1024 * 1024


def private_dirty() -> int | None:
    """Return the bytes this process has written since it was forked.

    None where the kernel does not say (no ``/proc/self/smaps_rollup``).
    Reading it walks the whole address space, so it costs time in
    proportion to the template's size: clones do it only when asked.
    """
    try:
        with open("/proc/self/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Private_Dirty:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_resident() -> int:
    """Return this process's peak resident size in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux counts kilobytes, macOS bytes.
    return peak if sys.platform == "darwin" else peak * 1024


@dataclasses.dataclass
class CostLog:
    """Fork times and copied memory of the clones of one run (template)."""

    fork_times: list[float] = dataclasses.field(default_factory=list)
    #: (bytes, nodeid) for each clone that measured its private memory.
    copied: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    def add(self, nodeid: str, fork_time: float, private: int | None) -> None:
        self.fork_times.append(fork_time)
        if private is not None:
            self.copied.append((private, nodeid))

    def summary(self, template_size: int) -> list[str]:
        """Return the summary lines for a template of ``template_size`` bytes."""
        if not self.fork_times:
            return []
        lines = [
            f"cowfork: template peak size {_mib(template_size)}, "
            f"median fork {statistics.median(self.fork_times) * 1000:.2f} ms"
        ]
        if not self.copied:
            return lines
        sizes = [size for size, _ in self.copied]
        worst, worst_id = max(self.copied)
        lines.append(
            f"cowfork: clone private memory median {_mib(statistics.median(sizes))}, "
            f"worst {_mib(worst)} ({worst_id})"
        )
        large = sorted(
            (entry for entry in self.copied if entry[0] >= LARGE_SHARE * template_size),
            reverse=True,
        )
        for size, nodeid in large[:_NAMED]:
            share = size / template_size
            lines.append(
                f"cowfork: {nodeid} wrote {_mib(size)} of its own, "
                f"{share:.0%} of the template's size"
            )
        if len(large) > _NAMED:
            lines.append(
                f"cowfork: and {len(large) - _NAMED} more clones wrote over "
                f"{LARGE_SHARE:.0%} of the template's size"
            )
        return lines


def _mib(size: float) -> str:
    return f"{size / _MIB:.1f} MiB"
