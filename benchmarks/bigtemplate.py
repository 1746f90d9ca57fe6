"""Measure what cowfork costs with a big template: time per test and memory.

For templates holding about 250 MiB and 1 GiB of Python objects (a session
fixture builds them), on tests that each read a little of them:

1. Per-test overhead: the test loop of ``pytest --cowfork`` (huge pages on
   their default, ``auto``) minus that of plain pytest, per test, next to a
   bare fork cycle timed in the template on normal pages
   (``--cowfork-hugepages=off``). The one-time collapse onto huge pages is
   shown apart and amortized over the suite. Target at 1 GiB: 12 ms.
2. Clone memory: the private dirty memory of each clone
   (``--cowfork-memory``), for tests that read one object and for a test
   that runs ``gc.collect()``. Targets: 1.5 MiB, and at most 2 MiB more.
3. Peak memory of the process tree: the proportional set size (PSS) of the
   pytest process and all its descendants, sampled from ``/proc`` every
   25 ms, for ``--cowfork-jobs 2``, for ``pytest-xdist -n 2`` and for the
   template alone (plain pytest). Target: jobs 2 at most 1.15x alone.

Commands are interleaved round by round, as in ``engine.py``, whose helpers
this script uses; every figure is a median. Run it from the repository
root, in the environment of ``pip install -e '.[bench]'``::

    python benchmarks/bigtemplate.py            # 250 MiB and 1 GiB, 3 rounds
    python benchmarks/bigtemplate.py --quick    # 250 MiB only, fewer tests

The table is printed and written to ``benchmarks/results/bigtemplate.md``.
Linux only: it reads ``/proc``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import engine
from processtree import TreeSampler

RESULTS = engine.REPO / "benchmarks" / "results" / "bigtemplate.md"
#: Objects of the fixture's class per MiB of resident memory, measured.
OBJECTS_PER_MIB = 6_800
MEMORY_LOG = "COWFORK_BENCH_MEMORY_LOG"
COLLAPSE_LOG = "COWFORK_BENCH_COLLAPSE_LOG"
PAUSE = "COWFORK_BENCH_PAUSE"
CYCLES = "COWFORK_BENCH_CYCLES"
CYCLE_LOG = "COWFORK_BENCH_CYCLE_LOG"
#: Seconds each test sleeps in the runs that sample memory, so that clones
#: overlap and the sampler sees them.
PAUSE_SECONDS = 0.05
MIB = 1024 * 1024

OVERHEAD_TARGET_MS = 12.0
IDLE_CLONE_TARGET = 1.5 * MIB
COLLECT_EXTRA_TARGET = 2 * MIB
PSS_TARGET = 1.15

CONFTEST = """\
import json
import os
import time

import pytest


class Record:
    __slots__ = ("number", "name")

    def __init__(self, number):
        self.number = number
        self.name = str(number)


@pytest.fixture(scope="session")
def big():
    records = [Record(i) for i in range({objects})]
    yield records
    # Timed here, in the template, while it still holds the records.
    cycles = int(os.environ.get("{cycles}", "0"))
    if cycles:
        with open(os.environ["{cycle_log}"], "w") as out:
            json.dump(sorted(bare_cycle() for _ in range(cycles))[cycles // 2], out)


def bare_cycle():
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return time.perf_counter() - start


@pytest.hookimpl(optionalhook=True)
def pytest_cowfork_clone_finished(item, private_dirty):
    log = os.environ.get("{memory_log}")
    if log and private_dirty is not None:
        with open(log, "a") as out:
            out.write(json.dumps([item.name, private_dirty]) + "\\n")


def pytest_sessionfinish(session):
    log = os.environ.get("{collapse_log}")
    template = session.config.pluginmanager.get_plugin("cowfork-template")
    if log and template is not None:
        with open(log, "w") as out:
            json.dump(template.hugepages.seconds, out)
"""

TEST_MODULE_HEAD = """\
import gc
import os
import time

PAUSE = float(os.environ.get("{pause}", "0"))


def test_collect(big):
    gc.collect()
    time.sleep(PAUSE)

"""

TEST_READ = """
def test_read_{index}(big):
    assert big[{position}].number == {position}
    time.sleep(PAUSE)
"""


@dataclasses.dataclass(frozen=True)
class Sizes:
    rounds: int
    mib: tuple[int, ...]
    tests: int
    fork_cycles: int


FULL = Sizes(rounds=3, mib=(250, 1000), tests=100, fork_cycles=10)
QUICK = Sizes(rounds=2, mib=(250,), tests=30, fork_cycles=5)


@dataclasses.dataclass
class Measured:
    """What the rounds measured for one command on one template size."""

    loop: list[float] = dataclasses.field(default_factory=list)
    cycle: list[float] = dataclasses.field(default_factory=list)
    collapse: list[float] = dataclasses.field(default_factory=list)
    peak_pss: list[int] = dataclasses.field(default_factory=list)
    #: (test name, private dirty bytes) of every clone of every round.
    private: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    failure: str | None = None


@dataclasses.dataclass(frozen=True)
class Run:
    key: str
    args: tuple[str, ...]
    #: Time bare fork cycles in the template while it holds the records.
    cycles: bool = False
    #: Log each clone's private memory.
    memory: bool = False
    #: Sample the process tree's PSS; the tests then pause.
    sample: bool = False


COWFORK = ("--cowfork",)
RUNS = (
    Run("plain", ("-p", "no:cowfork")),
    Run("cowfork", COWFORK),
    Run("normal pages", (*COWFORK, "--cowfork-hugepages=off"), cycles=True),
    Run("memory", (*COWFORK, "--cowfork-memory"), memory=True),
    Run("alone", ("-p", "no:cowfork"), sample=True),
    Run("jobs 2", (*COWFORK, "--cowfork-jobs", "2"), sample=True),
    Run("xdist -n 2", ("-p", "no:cowfork", "-n", "2"), sample=True),
)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    sizes = QUICK if options.quick else FULL
    if options.rounds:
        sizes = dataclasses.replace(sizes, rounds=options.rounds)
    runs = [
        run
        for run in RUNS
        if "-n" not in run.args or importlib.util.find_spec("xdist") is not None
    ]
    started = time.monotonic()
    results: dict[int, dict[str, Measured]] = {}
    with tempfile.TemporaryDirectory(prefix="cowfork-big-") as tmp:
        root = Path(tmp)
        write_plugins(root)
        for mib in sizes.mib:
            write_suite(root, mib, sizes.tests)
            results[mib] = measure(root, mib, sizes, runs, options.timeout)
    report = render(sizes, results, time.monotonic() - started)
    sys.stdout.write(report)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(report, encoding="utf-8")
    sys.stdout.write(f"\nwritten to {options.output}\n")
    failed = any(m.failure for per in results.values() for m in per.values())
    return 1 if failed else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="250 MiB only")
    parser.add_argument("--rounds", type=engine.positive_int)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def write_plugins(root: Path) -> None:
    plugins = root / "plugins"
    plugins.mkdir()
    probe = plugins / f"{engine.PROBE_PLUGIN}.py"
    probe.write_text(engine.PROBE_SOURCE, encoding="utf-8")


def write_suite(root: Path, mib: int, tests: int) -> None:
    """Write the suite for a template of about ``mib`` MiB to ``root/big<mib>``."""
    objects = mib * OBJECTS_PER_MIB
    stride = objects // tests
    body = TEST_MODULE_HEAD.format(pause=PAUSE) + "".join(
        TEST_READ.format(index=index, position=index * stride)
        for index in range(tests - 1)
    )
    engine.write_suite(
        root / f"big{mib}",
        {
            "conftest.py": CONFTEST.format(
                objects=objects,
                memory_log=MEMORY_LOG,
                collapse_log=COLLAPSE_LOG,
                cycles=CYCLES,
                cycle_log=CYCLE_LOG,
            ),
            "test_big.py": body,
        },
    )


def measure(
    root: Path, mib: int, sizes: Sizes, runs: list[Run], timeout: float
) -> dict[str, Measured]:
    measured = {run.key: Measured() for run in runs}
    for number, order in enumerate(engine.rotations(runs, sizes.rounds)):
        for run in order:
            if measured[run.key].failure is None:
                run_once(root, mib, sizes, run, timeout, measured[run.key])
        engine.log(f"{mib} MiB: round {number + 1}/{sizes.rounds} done")
    return measured


def run_once(
    root: Path, mib: int, sizes: Sizes, run: Run, timeout: float, into: Measured
) -> None:
    names = ("probe", "memory", "collapse", "cycle")
    files = {name: root / f"{name}.out" for name in names}
    for path in files.values():
        path.unlink(missing_ok=True)
    env = {
        engine.PROBE_OUT: str(files["probe"]),
        MEMORY_LOG: str(files["memory"]) if run.memory else "",
        COLLAPSE_LOG: str(files["collapse"]),
        CYCLE_LOG: str(files["cycle"]),
        PAUSE: str(PAUSE_SECONDS if run.sample else 0),
    }
    if run.cycles:
        env[CYCLES] = str(sizes.fork_cycles)
    args = (*run.args, "-p", engine.PROBE_PLUGIN)
    sampler = TreeSampler() if run.sample else None
    try:
        engine.run_pytest(
            root,
            f"big{mib}",
            args,
            sizes.tests,
            timeout,
            env,
            on_start=None if sampler is None else sampler.start,
        )
        probed = engine.read_probe(files["probe"], cycles=False)
        if run.cycles:
            probed["cycle"] = json.loads(files["cycle"].read_text())
    except engine.SuiteFailed as exc:
        into.failure = str(exc)
        engine.log(f"{mib} MiB {run.key} FAILED: {exc}\n{exc.output}")
        return
    finally:
        if sampler is not None:
            sampler.stop()
    into.loop.append(probed["loop"])
    if run.cycles:
        into.cycle.append(probed["cycle"])
    if files["collapse"].exists():
        into.collapse.append(json.loads(files["collapse"].read_text()))
    if sampler is not None:
        into.peak_pss.append(sampler.peak)
    if run.memory:
        for line in files["memory"].read_text().splitlines():
            name, size = json.loads(line)
            into.private.append((name, size))


def render(sizes: Sizes, results: dict[int, dict[str, Measured]], took: float) -> str:
    lines = [
        "# pytest-cowfork big-template benchmark",
        "",
        f"- when: {time.strftime('%Y-%m-%d %H:%M:%S %z')}, took {took:.0f} s",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, pytest "
        f"{engine.package_version('pytest')}, pytest-xdist "
        f"{engine.package_version('pytest-xdist')}",
        f"- checkout: {engine.describe_checkout()}",
        f"- rounds: {sizes.rounds}, interleaved; {sizes.tests} tests per suite, "
        "each reading one object of the template (one runs gc.collect())",
        "",
    ]
    header = ("Template", "Measure", "Result", "Target", "Met")
    lines += [engine.table_line(header), engine.table_line(("---",) * len(header))]
    for mib, measured in results.items():
        for row in rows(mib, sizes, measured):
            lines.append(engine.table_line(row))
    lines += ["", NOTES, ""]
    return "\n".join(lines)


NOTES = (
    "Overhead is (loop of `pytest --cowfork` - loop of plain pytest) / tests, "
    "the collapse onto huge pages taken out and shown apart (it happens once, "
    "before the first fork). Plain pytest pays for something cowfork does "
    "not: its garbage collector walks the template's objects, which cowfork "
    "freezes before forking; with a template of millions of objects that can "
    "outweigh the forks. The bare fork cycle is timed in the template of the "
    "`--cowfork-hugepages=off` runs, at the session fixture's teardown, while "
    "the template still holds the records. Private memory is "
    "each clone's Private_Dirty just before it ended (`--cowfork-memory`); "
    "it includes the pages the template wrote to while the clone lived (the "
    "template takes a copy, the clone keeps the old page alone), so a clone "
    "that does nothing shows a few MiB. "
    "Peak PSS is summed over the pytest process and its descendants, sampled "
    "every 25 ms while each test sleeps 50 ms; 'alone' is plain pytest, one "
    "process holding the template."
)


def rows(
    mib: int, sizes: Sizes, measured: dict[str, Measured]
) -> list[tuple[str, ...]]:
    name = f"{mib} MiB"
    broken = [f"{key}: {m.failure}" for key, m in measured.items() if m.failure]
    if broken:
        return [(name, "FAILED", "; ".join(broken), "", "")]
    median = engine.median
    tests = sizes.tests
    plain, cowfork = measured["plain"], measured["cowfork"]
    collapse = median(cowfork.collapse) if cowfork.collapse else 0.0
    overhead = (median(cowfork.loop) - collapse - median(plain.loop)) / tests
    cycle = median(measured["normal pages"].cycle)
    normal = (median(measured["normal pages"].loop) - median(plain.loop)) / tests
    result = [
        (
            name,
            "overhead per test, huge pages auto",
            f"{overhead * 1e3:.1f} ms ({overhead / cycle:.2f}x the bare cycle); "
            f"one-time collapse {collapse:.2f} s, "
            f"{(overhead + collapse / tests) * 1e3:.1f} ms/test with it",
            f"<= {OVERHEAD_TARGET_MS:g} ms at 1 GiB",
            engine.yes_no(overhead * 1e3 <= OVERHEAD_TARGET_MS),
        ),
        (
            name,
            "overhead per test, normal pages",
            f"{normal * 1e3:.1f} ms; bare fork cycle {cycle * 1e3:.1f} ms",
            "",
            "",
        ),
    ]
    private = measured["memory"].private
    idle = [size for test, size in private if test != "test_collect"]
    collected = [size for test, size in private if test == "test_collect"]
    if idle and collected:
        extra = median(collected) - median(idle)
        result += [
            (
                name,
                "clone private memory, reading one object",
                f"{median(idle) / MIB:.2f} MiB",
                f"<= {IDLE_CLONE_TARGET / MIB:g} MiB",
                engine.yes_no(median(idle) <= IDLE_CLONE_TARGET),
            ),
            (
                name,
                "clone private memory, gc.collect()",
                f"{median(collected) / MIB:.2f} MiB ({extra / MIB:+.2f} MiB)",
                f"<= +{COLLECT_EXTRA_TARGET / MIB:g} MiB",
                engine.yes_no(extra <= COLLECT_EXTRA_TARGET),
            ),
        ]
    alone = median(measured["alone"].peak_pss)
    for key in ("jobs 2", "xdist -n 2"):
        if key not in measured:
            result.append((name, f"peak PSS, {key}", "skipped: not installed", "", ""))
            continue
        peak = median(measured[key].peak_pss)
        target = f"<= {PSS_TARGET:g}x alone" if key == "jobs 2" else ""
        met = engine.yes_no(peak <= PSS_TARGET * alone) if key == "jobs 2" else ""
        result.append(
            (
                name,
                f"peak PSS, {key}",
                f"{peak / MIB:.0f} MiB = {peak / alone:.2f}x alone "
                f"({alone / MIB:.0f} MiB)",
                target,
                met,
            )
        )
    return result


if __name__ == "__main__":
    sys.exit(main())
