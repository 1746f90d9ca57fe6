"""Compare pytest-cowfork with the other ways of running a pytest suite.

Synthetic suites of controlled shape are generated into a temporary
directory: how long the session fixture takes to set up, how many MiB of
Python objects it holds (the template), how many tests there are, what each
test does (nothing, sleep, or burn CPU time) and whether the tests mutate
the session fixture's state (each asserts that a shared list is empty, then
appends to it: with a fresh state per test all pass; without, all but the
first test of each process fail).

Each suite runs under plain pytest, pytest-forked (``--forked``),
pytest-isolate (``--isolate``), pytest-xdist (``-n 2``), pytest-zygote
(``--workers 2``) and cowfork (``--cowfork``, ``--cowfork --cowfork-jobs 2``,
and ``-n 2 --cowfork``). Every run blocks the plugins it does not use, so each
one measures one runner. A peer that is not installed, or that cannot pass a
two-test suite with the installed pytest, is skipped with a note.

Every run records its wall time, how many tests passed, how many times the
session fixture was set up (it appends a line to a file each time) and the
peak PSS of its whole process tree (sampled from ``/proc``). The ``--cowfork``
run of each suite also times bare fork cycles in its template, which the
per-test overhead of every runner is compared with. The commands run in
interleaved rounds, the order rotated each round; figures are medians.

Run it from the repository root, in an environment of its own::

    pip install -e '.[bench]'
    python benchmarks/compare.py --quick     # about 3 minutes on 2 cores
    python benchmarks/compare.py             # more sizes and rounds
    python benchmarks/compare.py --docs      # also update docs/_static/benchmarks

The Markdown report goes to ``benchmarks/results/compare.md`` and the plots
next to it. The exit status is 1 if a run of an installed runner failed
(crashed, timed out, or did not run every test), 0 otherwise. Linux only: it
reads ``/proc``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import engine
from bigtemplate import MIB, OBJECTS_PER_MIB
from processtree import TreeSampler

RESULTS = engine.REPO / "benchmarks" / "results"
DOCS = engine.REPO / "docs" / "_static" / "benchmarks"
SETUP_LOG = "COWFORK_COMPARE_SETUP_LOG"
WORKS = ("none", "sleep", "cpu")
#: Processes (clones, workers) of the parallel runners in the main table.
PARALLEL = 2

# -- suites ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shape:
    """What one synthetic suite is made of."""

    name: str
    tests: int
    #: Seconds the session fixture sleeps when it is set up.
    setup: float = 0.0
    #: MiB of Python objects the session fixture builds and holds.
    mib: int = 0
    #: What each test does: nothing, ``time.sleep`` or burn CPU time.
    work: str = "none"
    #: Seconds of that work per test.
    seconds: float = 0.0
    #: Each test asserts that a session-scoped list is empty, then appends.
    mutate: bool = False

    @property
    def key(self) -> str:
        """The suite's directory, unique among the suites of one run."""
        return f"{self.name}-{self.tests}"

    def describe(self) -> str:
        parts = [f"{self.tests} tests"]
        if self.setup:
            parts.append(f"session setup {self.setup * 1e3:g} ms")
        if self.mib:
            parts.append(f"template {self.mib} MiB")
        if self.work == "sleep":
            parts.append(f"each sleeps {self.seconds * 1e3:g} ms")
        elif self.work == "cpu":
            parts.append(f"each burns {self.seconds * 1e3:g} ms of CPU")
        if self.mutate:
            parts.append("tests mutate shared state")
        return ", ".join(parts)


CONFTEST = """\
import os
import time

import pytest


class Record:
    __slots__ = ("number", "name")

    def __init__(self, number):
        self.number = number
        self.name = str(number)


class Shared:
    def __init__(self, records):
        self.records = records
        self.log = []


@pytest.fixture(scope="session")
def shared():
    path = os.environ.get("{setup_log}")
    if path:
        with open(path, "a") as log:
            log.write(f"{{os.getpid()}}\\n")
    time.sleep({setup})
    return Shared([Record(i) for i in range({objects})])
"""

TEST_HEAD = """\
import time


def work():
    {work}
"""

WORK_LINES = {
    "none": "pass",
    "sleep": "time.sleep({seconds})",
    # CPU time, not wall time: the same work whatever else the machine runs.
    "cpu": (
        "end = time.process_time() + {seconds}\n"
        "    while time.process_time() < end:\n"
        "        pass"
    ),
}

TEST = """

def test_{index}(shared):
    assert len(shared.records) == {objects}
    work()
"""

MUTATE = """\
    assert shared.log == []
    shared.log.append({index})
"""

SMOKE = Shape("smoke", tests=2)


def write_suite(root: Path, shape: Shape) -> None:
    """Write the suite ``shape`` describes to ``root / shape.key``."""
    objects = shape.mib * OBJECTS_PER_MIB
    work = WORK_LINES[shape.work].format(seconds=shape.seconds)
    tests = "".join(
        TEST.format(index=index, objects=objects)
        + (MUTATE.format(index=index) if shape.mutate else "")
        for index in range(shape.tests)
    )
    conftest = CONFTEST.format(setup_log=SETUP_LOG, setup=shape.setup, objects=objects)
    engine.write_suite(
        root / shape.key,
        {"conftest.py": conftest, "test_shape.py": TEST_HEAD.format(work=work) + tests},
    )


# -- runners -----------------------------------------------------------------

#: The name each runner's pytest plugin is registered under, for ``-p no:``.
PLUGINS = {
    "cowfork": ("cowfork",),
    "forked": ("pytest_forked",),
    "isolate": ("pytest_isolate",),
    "xdist": ("xdist", "xdist.looponfail"),
    "zygote": ("zygote",),
}
#: The module and distribution of each peer, to tell whether it is installed.
PEERS = {
    "forked": ("pytest_forked", "pytest-forked"),
    "isolate": ("pytest_isolate", "pytest-isolate"),
    "xdist": ("xdist", "pytest-xdist"),
    "zygote": ("pytest_zygote", "pytest-zygote"),
}


@dataclasses.dataclass(frozen=True)
class Runner:
    """One way of running a suite: pytest's options and the plugins used."""

    key: str
    args: tuple[str, ...]
    uses: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return "`pytest " + " ".join(self.args) + "`" if self.args else "`pytest`"

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(use for use in self.uses if use in PEERS)

    def command(self) -> tuple[str, ...]:
        blocked = [
            f"no:{name}"
            for plugin, names in PLUGINS.items()
            if plugin not in self.uses
            for name in names
        ]
        return (*self.args, *(arg for name in blocked for arg in ("-p", name)))


def cowfork_jobs(jobs: int) -> Runner:
    args = ("--cowfork",) if jobs == 1 else ("--cowfork", "--cowfork-jobs", str(jobs))
    return Runner(f"cowfork-jobs{jobs}", args, ("cowfork",))


def xdist(jobs: int) -> Runner:
    return Runner(f"xdist-n{jobs}", ("-n", str(jobs)), ("xdist",))


def zygote(jobs: int) -> Runner:
    return Runner(f"zygote-{jobs}", ("--workers", str(jobs)), ("zygote",))


PLAIN = Runner("plain", ())
COWFORK = cowfork_jobs(1)
RUNNERS = (
    PLAIN,
    Runner("forked", ("--forked",), ("forked",)),
    Runner("isolate", ("--isolate",), ("isolate",)),
    xdist(PARALLEL),
    zygote(PARALLEL),
    COWFORK,
    cowfork_jobs(PARALLEL),
    Runner("xdist-cowfork", ("-n", str(PARALLEL), "--cowfork"), ("xdist", "cowfork")),
)
#: Runners whose process count the memory sweep varies, by how they name it.
MEMORY_FAMILIES = {
    "`pytest --cowfork --cowfork-jobs N`": cowfork_jobs,
    "`pytest -n N` (xdist)": xdist,
    "`pytest --workers N` (zygote)": zygote,
}


# -- sizes -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big and how many: the suites and the rounds of one mode."""

    rounds: int
    #: Test counts of the scaling suites; the largest is also in the table.
    scaling: tuple[int, ...]
    #: Tests of the other suites of the table.
    tests: int
    #: Tests of the mutating suite.
    mutate: int
    memory_tests: int
    memory_mib: int
    jobs: tuple[int, ...]
    fork_cycles: int

    def table_shapes(self) -> list[Shape]:
        common = {"setup": SETUP, "mib": TEMPLATE_MIB}
        return [
            self.scaling_shape(max(self.scaling)),
            Shape("mutate", self.mutate, mutate=True),
            Shape("cpu", self.tests, work="cpu", seconds=0.02, **common),
            Shape("sleep", self.tests, work="sleep", seconds=0.05, **common),
        ]

    def scaling_shape(self, tests: int) -> Shape:
        return Shape("setup", tests, setup=SETUP, mib=TEMPLATE_MIB)

    def memory_shape(self) -> Shape:
        # The tests sleep so that the processes overlap while sampled.
        return Shape(
            "memory", self.memory_tests, mib=self.memory_mib, work="sleep", seconds=0.1
        )


#: The session fixture of the timed suites: its setup time and its size.
SETUP = 0.05
TEMPLATE_MIB = 10
FULL = Sizes(
    rounds=5,
    scaling=(25, 50, 100, 200),
    tests=40,
    mutate=20,
    memory_tests=16,
    memory_mib=200,
    jobs=(1, 2, 4),
    fork_cycles=30,
)
QUICK = Sizes(
    rounds=2,
    scaling=(8, 24),
    tests=8,
    mutate=8,
    memory_tests=8,
    memory_mib=50,
    jobs=(1, 2, 4),
    fork_cycles=10,
)


# -- measuring ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
    """One runner on one suite."""

    shape: Shape
    runner: Runner
    #: Time bare fork cycles in the template at the end of the run.
    probe: bool = False

    @property
    def key(self) -> str:
        return f"{self.shape.key}/{self.runner.key}"


@dataclasses.dataclass
class Measured:
    """What the rounds measured for one run."""

    wall: list[float] = dataclasses.field(default_factory=list)
    passed: list[int] = dataclasses.field(default_factory=list)
    setups: list[int] = dataclasses.field(default_factory=list)
    peak_pss: list[int] = dataclasses.field(default_factory=list)
    #: Median bare fork cycle of each probed run, in seconds.
    cycle: list[float] = dataclasses.field(default_factory=list)
    failure: str | None = None


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    sizes = QUICK if options.quick else FULL
    if options.rounds:
        sizes = dataclasses.replace(sizes, rounds=options.rounds)
    started = time.monotonic()
    when = time.strftime("%Y-%m-%d %H:%M:%S %z")
    load = os.getloadavg()[0]
    table = sizes.table_shapes()
    scaling = [sizes.scaling_shape(tests) for tests in sizes.scaling]
    memory = sizes.memory_shape()
    shapes = list({shape.key: shape for shape in [*table, *scaling, memory]}.values())
    with tempfile.TemporaryDirectory(prefix="cowfork-compare-") as tmp:
        root = Path(tmp)
        write_probe(root)
        for shape in [*shapes, SMOKE]:
            write_suite(root, shape)
        skipped = check_peers(root, options.timeout)
        runs = plan(sizes, table, scaling, memory, skipped)
        measured = {run.key: Measured() for run in runs}
        warm_up(root, shapes, options.timeout, measured, runs)
        for number, order in enumerate(engine.rotations(runs, sizes.rounds)):
            for run in order:
                if measured[run.key].failure is None:
                    measure(root, run, sizes, options.timeout, measured[run.key])
            engine.log(f"round {number + 1}/{sizes.rounds} done")
    results = Results(
        sizes=sizes,
        quick=options.quick,
        table=table,
        scaling=scaling,
        memory=memory,
        skipped=skipped,
        measured=measured,
        when=when,
        took=time.monotonic() - started,
        load=(load, os.getloadavg()[0]),
    )
    options.output.mkdir(parents=True, exist_ok=True)
    report = render_markdown(results)
    sys.stdout.write(report)
    (options.output / "compare.md").write_text(report, encoding="utf-8")
    plots = draw_plots(results, options.output)
    if options.docs:
        write_docs(results, plots, DOCS)
    sys.stdout.write(f"\nwritten to {options.output}\n")
    return 1 if any(m.failure for m in measured.values()) else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer sizes, 2 rounds: about 3 minutes"
    )
    parser.add_argument(
        "--rounds", type=engine.positive_int, help="rounds (default: 5, quick: 2)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds one pytest run may take before it counts as failed",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS,
        help=f"directory for compare.md and the plots (default: {RESULTS})",
    )
    parser.add_argument(
        "--docs",
        action="store_true",
        help=f"also write the plots and a reST table to {DOCS}",
    )
    return parser.parse_args(argv)


def write_probe(root: Path) -> None:
    plugins = root / "plugins"
    plugins.mkdir()
    probe = plugins / f"{engine.PROBE_PLUGIN}.py"
    probe.write_text(engine.PROBE_SOURCE, encoding="utf-8")


def check_peers(root: Path, timeout: float) -> dict[str, str]:
    """Return why each peer that cannot be measured here is skipped."""
    skipped = {}
    for peer, (module, package) in PEERS.items():
        if importlib.util.find_spec(module) is None:
            skipped[peer] = f"{package} is not installed (pip install -e '.[bench]')"
            continue
        runner = next(r for r in RUNNERS if r.uses == (peer,))
        try:
            engine.run_pytest(root, SMOKE.key, runner.command(), SMOKE.tests, timeout)
        except engine.SuiteFailed as exc:
            reason = first_error(exc.output) or str(exc)
            skipped[peer] = (
                f"{package} {engine.package_version(package)} does not run with "
                f"pytest {engine.package_version('pytest')}: {reason}"
            )
            engine.log(f"skipping {package}: {exc}")
            engine.log(textwrap.indent(exc.output, "    | "))
    return skipped


def first_error(output: str) -> str:
    """Return the first line of pytest's output that says what went wrong."""
    for line in output.splitlines():
        if line.startswith(("E ", "ERROR", "FAILED")) or "Error" in line:
            return line.strip().replace("|", "/")[:120]
    return ""


def plan(
    sizes: Sizes,
    table: list[Shape],
    scaling: list[Shape],
    memory: Shape,
    skipped: dict[str, str],
) -> list[Run]:
    """Return every run of a round, without the skipped peers' runs."""
    runs = {}
    for shape in [*table, *scaling]:
        for runner in RUNNERS:
            run = Run(shape, runner, probe=runner == COWFORK)
            runs[run.key] = run
    for jobs in sizes.jobs:
        for family in MEMORY_FAMILIES.values():
            run = Run(memory, family(jobs))
            runs[run.key] = run
    plain = Run(memory, PLAIN)
    runs[plain.key] = plain
    return [
        run
        for run in runs.values()
        if not any(peer in skipped for peer in run.runner.peers)
    ]


def warm_up(
    root: Path,
    shapes: list[Shape],
    timeout: float,
    measured: dict[str, Measured],
    runs: list[Run],
) -> None:
    """Collect each suite once, so that no timed run pays for compiling it."""
    for shape in shapes:
        args = ("--collect-only", *PLAIN.command())
        try:
            engine.run_pytest(root, shape.key, args, shape.tests, timeout)
        except engine.SuiteFailed as exc:
            engine.log(f"{shape.key} FAILED to collect: {exc}\n{exc.output}")
            for run in runs:
                if run.shape == shape:
                    measured[run.key].failure = f"collection: {exc}"


def measure(root: Path, run: Run, sizes: Sizes, timeout: float, into: Measured) -> None:
    """Run ``run`` once; add what it measured to ``into``, or its failure."""
    setups, probe = root / "setups.log", root / "probe.json"
    setups.unlink(missing_ok=True)
    probe.unlink(missing_ok=True)
    env = {SETUP_LOG: str(setups), engine.PROBE_OUT: str(probe)}
    args = run.runner.command()
    if run.probe:
        env[engine.PROBE_CYCLES] = str(sizes.fork_cycles)
        args = (*args, "-p", engine.PROBE_PLUGIN)
    sampler = TreeSampler()
    try:
        wall, done = engine.run_process(
            root, run.shape.key, args, timeout, env, on_start=sampler.start
        )
        passed = check_ran(done, run.shape.tests)
        probed = engine.read_probe(probe, cycles=True) if run.probe else {}
    except engine.SuiteFailed as exc:
        into.failure = str(exc)
        engine.log(f"{run.key} FAILED: {exc}")
        engine.log(textwrap.indent(exc.output, "    | "))
        return
    finally:
        sampler.stop()
    into.wall.append(wall - probed.get("probe", 0.0))
    into.passed.append(passed)
    into.setups.append(len(setups.read_text().splitlines()) if setups.exists() else 0)
    into.peak_pss.append(sampler.peak)
    if run.probe:
        into.cycle.append(probed["cycle"])


def check_ran(done: subprocess.CompletedProcess[str], tests: int) -> int:
    """Return how many tests passed; raise SuiteFailed unless all of them ran.

    Failed tests are a result here (a runner that does not isolate the tests
    of the mutating suite fails them); errors, crashes and missing tests are
    not.
    """
    counts = engine.summary_counts(done.stdout)
    passed, failed = counts.get("passed", 0), counts.get("failed", 0)
    if done.returncode in (0, 1) and passed + failed == tests and "error" not in counts:
        return passed
    raise engine.SuiteFailed(
        f"exit {done.returncode}, {passed} passed and {failed} failed of {tests}"
        + (f", {counts['error']} errors" if "error" in counts else ""),
        engine.output_tail(done),
    )


# -- results -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Results:
    sizes: Sizes
    quick: bool
    table: list[Shape]
    scaling: list[Shape]
    memory: Shape
    skipped: dict[str, str]
    measured: dict[str, Measured]
    #: When the run started, and how many seconds it took.
    when: str
    took: float
    #: The machine's one-minute load average when the run started and ended.
    load: tuple[float, float]

    def get(self, shape: Shape, runner: Runner) -> Measured | None:
        return self.measured.get(f"{shape.key}/{runner.key}")

    def skip_note(self, runner: Runner) -> str | None:
        notes = [self.skipped[peer] for peer in runner.peers if peer in self.skipped]
        return "; ".join(notes) if notes else None


def ok(measured: Measured | None) -> bool:
    return measured is not None and measured.failure is None and bool(measured.wall)


def spread(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def table_rows(results: Results, shape: Shape) -> list[tuple[str, ...]]:
    """Return the rows of one suite: every runner, then the bare fork cycle."""
    plain, cowfork = results.get(shape, PLAIN), results.get(shape, COWFORK)
    cycle = engine.median(cowfork.cycle) if ok(cowfork) and cowfork.cycle else None
    rows = []
    for runner in RUNNERS:
        note = results.skip_note(runner)
        measured = results.get(shape, runner)
        if note is not None or measured is None:
            rows.append((runner.label, f"skipped: {note or 'not run'}", *[""] * 6))
            continue
        if not ok(measured):
            rows.append((runner.label, f"FAILED: {measured.failure}", *[""] * 6))
            continue
        wall = engine.median(measured.wall)
        overhead = ratio = ""
        if runner != PLAIN and ok(plain):
            assert plain is not None
            per_test = (wall - engine.median(plain.wall)) / shape.tests
            overhead = f"{per_test * 1e3:+.1f}"
            if cycle:
                ratio = f"{per_test / cycle:+.1f}x"
        rows.append(
            (
                runner.label,
                f"{wall:.2f}",
                f"{min(measured.wall):.2f}-{max(measured.wall):.2f}",
                f"{spread(measured.passed)}/{shape.tests}",
                spread(measured.setups),
                f"{engine.median(measured.peak_pss) / MIB:.0f}",
                overhead,
                ratio,
            )
        )
    fork = f"{cycle * 1e3:.2f} ms" if cycle else "n/a: the --cowfork run failed"
    rows.append(("bare fork cycle, in the `--cowfork` template", fork, *[""] * 6))
    return rows


TABLE_HEADER = (
    "Runner",
    "Wall s",
    "Range s",
    "Passed",
    "Session setups",
    "Peak PSS MiB",
    "Overhead ms/test",
    "x bare fork",
)


def scaling_rows(results: Results) -> list[tuple[str, ...]]:
    rows = []
    for runner in RUNNERS:
        note = results.skip_note(runner)
        cells = []
        for shape in results.scaling:
            measured = results.get(shape, runner)
            if note is not None:
                cells.append("skipped")
            elif not ok(measured):
                cells.append("FAILED")
            else:
                assert measured is not None
                cells.append(f"{engine.median(measured.wall):.2f}")
        rows.append((runner.label, *cells))
    return rows


def memory_rows(results: Results) -> list[tuple[str, ...]]:
    rows = []
    for label, family in MEMORY_FAMILIES.items():
        cells = []
        for jobs in results.sizes.jobs:
            runner = family(jobs)
            measured = results.get(results.memory, runner)
            if results.skip_note(runner) is not None:
                cells.append("skipped")
            elif not ok(measured):
                cells.append("FAILED")
            else:
                assert measured is not None
                cells.append(
                    f"{engine.median(measured.peak_pss) / MIB:.0f} MiB, "
                    f"{spread(measured.setups)} setup"
                    + ("" if measured.setups == [1] * len(measured.setups) else "s")
                )
        rows.append((label, *cells))
    plain = results.get(results.memory, PLAIN)
    alone = f"{engine.median(plain.peak_pss) / MIB:.0f} MiB" if ok(plain) else "FAILED"
    rows.append(
        (
            "`pytest` (one process, for reference)",
            alone,
            *[""] * (len(results.sizes.jobs) - 1),
        )
    )
    return rows


def context_lines(results: Results) -> list[str]:
    sizes = results.sizes
    versions = ", ".join(
        f"{package} {engine.package_version(package)}"
        for package in (
            "pytest",
            "pytest-cowfork",
            *(package for _, package in PEERS.values()),
        )
    )
    mode = "quick (`--quick`)" if results.quick else "full"
    return [
        f"when: {results.when}, took {results.took:.0f} s, "
        f"load average {results.load[0]:.1f} at the start, {results.load[1]:.1f} "
        "at the end",
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        f"versions: {versions}",
        f"checkout: {engine.describe_checkout()}",
        f"mode: {mode}, {sizes.rounds} rounds, interleaved; every figure is a median",
    ]


def skip_lines(results: Results) -> list[str]:
    return [f"skipped {peer}: {note}" for peer, note in results.skipped.items()]


def render_markdown(results: Results) -> str:
    lines = ["# pytest-cowfork compared with other runners", ""]
    lines += [f"- {line}" for line in [*context_lines(results), *skip_lines(results)]]
    for shape in results.table:
        lines += ["", f"## {shape.name}: {shape.describe()}", ""]
        lines += markdown_table(TABLE_HEADER, table_rows(results, shape))
    scaling = results.scaling[0]
    lines += [
        "",
        "## Wall seconds against the number of tests",
        "",
        f"Suite: {scaling.describe().split(', ', 1)[1]}.",
        "",
    ]
    header = ("Runner", *(f"{shape.tests} tests" for shape in results.scaling))
    lines += markdown_table(header, scaling_rows(results))
    lines += [
        "",
        "## Peak PSS of the process tree against processes",
        "",
        f"Suite: {results.memory.describe()}.",
        "",
    ]
    header = ("Runner", *(f"N = {jobs}" for jobs in results.sizes.jobs))
    lines += markdown_table(header, memory_rows(results))
    lines += ["", NOTES, ""]
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = [engine.table_line(header), engine.table_line(("---",) * len(header))]
    return [*lines, *(engine.table_line(row) for row in rows)]


NOTES = (
    "Wall s is the median wall time of the whole pytest process, start-up "
    "included; Range s its spread over the rounds. Passed counts the tests "
    "that passed (all of them, unless the runner shares state between tests "
    "of the mutating suite). Session setups counts how many times the session "
    "fixture was set up. Peak PSS is summed over the pytest process and all "
    "its descendants, sampled every 25 ms. Overhead is (wall - wall of plain "
    "pytest) / tests, negative when a runner is faster than plain pytest; "
    "x bare fork divides it by one fork, `_exit` and `waitpid` of the "
    "`--cowfork` template, timed in the same run."
)


# -- plots and docs ----------------------------------------------------------


def draw_plots(results: Results, directory: Path) -> list[Path]:
    """Draw the two plots into ``directory``; return their paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import ScalarFormatter
    except ImportError:
        engine.log("no plots: matplotlib is not installed (pip install -e '.[bench]')")
        return []
    title = "quick run" if results.quick else f"{results.sizes.rounds} rounds"
    scaling_png = directory / "compare-scaling.png"
    figure, axes = plt.subplots(figsize=(10, 5), dpi=100)
    for runner in RUNNERS:
        points = [
            (shape.tests, engine.median(m.wall))
            for shape in results.scaling
            if ok(m := results.get(shape, runner))
        ]
        if points:
            axes.plot(
                *zip(*points, strict=True), marker="o", label=runner.label.strip("`")
            )
    axes.set_yscale("log")
    # Plain numbers on the log axis: 0.5, 1, 2, 5 rather than powers of ten.
    axes.yaxis.set_major_formatter(ScalarFormatter())
    axes.yaxis.set_minor_formatter(ScalarFormatter())
    axes.set_xlabel("tests in the suite")
    axes.set_ylabel("median wall time, s (log scale)")
    axes.set_title(
        f"Wall time against suite size ({title})\n"
        + results.scaling[0].describe().split(", ", 1)[1],
        fontsize=10,
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    figure.tight_layout()
    figure.savefig(scaling_png)
    plt.close(figure)

    memory_png = directory / "compare-memory.png"
    figure, axes = plt.subplots(figsize=(10, 5), dpi=100)
    for label, family in MEMORY_FAMILIES.items():
        points = [
            (jobs, engine.median(m.peak_pss) / MIB)
            for jobs in results.sizes.jobs
            if ok(m := results.get(results.memory, family(jobs)))
        ]
        if points:
            axes.plot(
                *zip(*points, strict=True), marker="o", label=label.replace("`", "")
            )
    plain = results.get(results.memory, PLAIN)
    if ok(plain):
        assert plain is not None
        alone = engine.median(plain.peak_pss) / MIB
        axes.axhline(alone, color="grey", linestyle="--", label="pytest, one process")
    axes.set_xticks(results.sizes.jobs)
    axes.set_ylim(bottom=0)
    axes.set_xlabel("clones or workers at once (N)")
    axes.set_ylabel("median peak PSS of the process tree, MiB")
    axes.set_title(
        f"Memory against parallelism ({title})\n{results.memory.describe()}",
        fontsize=10,
    )
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    figure.tight_layout()
    figure.savefig(memory_png)
    plt.close(figure)
    return [scaling_png, memory_png]


def write_docs(results: Results, plots: list[Path], directory: Path) -> None:
    """Copy the plots, and the tables as reST, for ``docs/benchmarks.rst``."""
    directory.mkdir(parents=True, exist_ok=True)
    for plot in plots:
        shutil.copyfile(plot, directory / plot.name)
    lines = [f"- {line}" for line in [*context_lines(results), *skip_lines(results)]]
    for shape in results.table:
        lines += ["", f".. list-table:: {shape.name}: {shape.describe()}"]
        lines += rst_table(TABLE_HEADER, table_rows(results, shape))
    header = ("Runner", *(f"{shape.tests} tests" for shape in results.scaling))
    lines += ["", ".. list-table:: Wall seconds against the number of tests"]
    lines += rst_table(header, scaling_rows(results))
    header = ("Runner", *(f"N = {jobs}" for jobs in results.sizes.jobs))
    lines += ["", ".. list-table:: Peak PSS of the process tree against N"]
    lines += rst_table(header, memory_rows(results))
    target = directory / "compare-results.txt"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    engine.log(f"docs: wrote {target} and {len(plots)} plots")


def rst_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" if cell else "     -" for cell in row[1:]]
    return lines


if __name__ == "__main__":
    sys.exit(main())
