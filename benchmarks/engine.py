"""Measure the cost of running each test in a cowfork clone.

Three measurements, each on a synthetic suite generated into a temporary
directory and run as ``python -m pytest -q -p no:cacheprovider ...`` in a
subprocess. A small ``-p`` plugin written next to the suites times pytest's
test loop in every run, so pytest's own start-up can be told apart.

1. Per-test overhead. ``pytest --cowfork`` minus plain pytest
   (``-p no:cowfork``) on N trivial tests, divided by N, compared with a bare
   fork cycle (``os.fork()``, the child calls ``os._exit(0)``, the parent
   ``os.waitpid``). The bare cycle is timed by the same plugin at the end of
   each ``pytest --cowfork`` run, in the template process itself. Target:
   overhead <= 2x a bare cycle.
2. pytest-forked. ``--forked`` against ``--cowfork`` on the trivial suite and
   on a heavy one (a session fixture that takes 50 ms to set up, and a module
   holding about 50 MB of Python objects). Target: cowfork >= 2x faster.
3. Parallel clones. ``--cowfork-jobs 4`` against ``--cowfork-jobs 1`` on
   tests that each sleep 0.2 s. Target: close to 4x (>= 3.5x in the loop).

Every command runs once per round, the commands interleaved and their order
rotated from round to round so that drift on a shared machine hits them all
alike. Medians are reported, as ratios: absolute times are only context.

Run it from the repository root::

    pip install -e '.[bench]'
    python benchmarks/engine.py              # 5 rounds, about 5 minutes
    python benchmarks/engine.py --quick      # 3 rounds of smaller suites
    python benchmarks/engine.py --rounds 9   # more rounds, steadier medians

The Markdown table is printed and written to ``benchmarks/results/engine.md``.
The exit status is 1 if any suite failed to run, 0 otherwise, whether or
not the targets were met.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "engine.md"
PYTEST = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider")
PROBE_PLUGIN = "cowfork_bench_probe"
PROBE_OUT = "COWFORK_BENCH_PROBE_OUT"
PROBE_CYCLES = "COWFORK_BENCH_PROBE_CYCLES"
HEAVY_SETUP = 0.05
SLEEP = 0.2
JOBS = 4
#: Tuples of (int, str, float): about 180 bytes each, so 50 MB in all.
BALLAST_ITEMS = 275_000
OVERHEAD_TARGET = 2.0
FORKED_TARGET = 2.0
PARALLEL_TARGET = 3.5
#: The word pytest's summary uses for one, for those it makes plural.
SINGULAR = {"errors": "error", "warnings": "warning"}
#: How the table names each kind of command.
LABELS = {
    "plain": "`pytest -p no:cowfork`",
    "cowfork": "`pytest --cowfork`",
    "probe": "bare fork cycle, timed inside `pytest --cowfork`",
    "forked": "`pytest --forked -p no:cowfork`",
    "jobs1": "`pytest --cowfork --cowfork-jobs 1`",
    "jobs4": f"`pytest --cowfork --cowfork-jobs {JOBS}`",
}

PROBE_SOURCE = f'''\
"""Time pytest's test loop, and bare fork cycles after it (from engine.py)."""

import json
import os
import statistics
import time

import pytest

_loop = []


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        _loop.append(time.perf_counter() - start)


def pytest_sessionfinish(session):
    result = {{"loop": _loop[0] if _loop else None}}
    cycles = int(os.environ.get("{PROBE_CYCLES}", "0"))
    if cycles:
        start = time.perf_counter()
        result["cycle"] = statistics.median(bare_cycle() for _ in range(cycles))
        result["probe"] = time.perf_counter() - start
        result["rss_kb"] = resident_kb()
    with open(os.environ["{PROBE_OUT}"], "w") as out:
        json.dump(result, out)


def bare_cycle():
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return time.perf_counter() - start


def resident_kb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
'''

HEAVY_CONFTEST = f"""\
import time

import pytest

import ballast


@pytest.fixture(scope="session")
def expensive():
    time.sleep({HEAVY_SETUP})
    return len(ballast.OBJECTS)
"""

BALLAST_SOURCE = f"""\
OBJECTS = [(i, str(i), float(i)) for i in range({BALLAST_ITEMS})]
"""


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How many rounds and tests to run, and how many bare cycles to time."""

    rounds: int
    trivial: int
    heavy: int
    sleepy: int
    fork_cycles: int


FULL = Sizes(rounds=5, trivial=300, heavy=300, sleepy=40, fork_cycles=50)
QUICK = Sizes(rounds=3, trivial=100, heavy=60, sleepy=20, fork_cycles=20)


@dataclasses.dataclass(frozen=True)
class Command:
    """One pytest invocation on one suite, and how many tests must pass."""

    key: str
    suite: str
    args: tuple[str, ...]
    expected: int
    #: Time bare fork cycles at the end of the run.
    probe: bool = False


@dataclasses.dataclass
class Samples:
    """What the rounds measured for one command, in seconds."""

    #: Wall time of the whole pytest process, less the fork probe's own time.
    wall: list[float] = dataclasses.field(default_factory=list)
    #: Wall time of pytest's test loop alone.
    loop: list[float] = dataclasses.field(default_factory=list)
    #: Median bare fork cycle of each probed run.
    cycle: list[float] = dataclasses.field(default_factory=list)
    rss_kb: list[int] = dataclasses.field(default_factory=list)
    failure: str | None = None


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the results table."""

    suite: str
    command: str
    seconds: str
    ratio: str = ""
    target: str = ""
    met: str = ""


class SuiteFailed(Exception):
    """A benchmarked pytest run did not pass exactly the expected tests."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        #: The end of what pytest printed, to show why.
        self.output = output


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    sizes = choose_sizes(options.quick, options.rounds)
    has_forked = importlib.util.find_spec("pytest_forked") is not None
    commands = build_commands(sizes, has_forked)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cowfork-bench-") as tmp:
        root = Path(tmp)
        write_suites(root, sizes)
        samples = run_rounds(commands, root, sizes, options.timeout)
    elapsed = time.monotonic() - started
    rows = summarize(sizes, samples, has_forked)
    report = render_report(sizes, rows, samples, has_forked, elapsed)
    sys.stdout.write(report)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(report, encoding="utf-8")
    sys.stdout.write(f"\nwritten to {options.output}\n")
    return 1 if any(s.failure for s in samples.values()) else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="3 rounds of smaller suites"
    )
    parser.add_argument(
        "--rounds", type=positive_int, help="rounds to run (default: 5, quick: 3)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds one pytest run may take before it counts as failed",
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help=f"default: {RESULTS}"
    )
    return parser.parse_args(argv)


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not 1 or more")
    return number


def choose_sizes(quick: bool, rounds: int | None) -> Sizes:
    sizes = QUICK if quick else FULL
    return sizes if rounds is None else dataclasses.replace(sizes, rounds=rounds)


def build_commands(sizes: Sizes, has_forked: bool) -> list[Command]:
    """Return every command to run each round, in the first round's order."""
    # Each run loads at most one of the two forking plugins, so neither pays
    # for the other's hooks.
    plain = ("-p", "no:cowfork", "-p", "no:pytest_forked")
    cowfork = ("--cowfork", "-p", "no:pytest_forked")
    forked = ("--forked", "-p", "no:cowfork")
    jobs = (*cowfork, "--cowfork-jobs")
    commands = [
        Command("trivial/plain", "trivial", plain, sizes.trivial),
        Command("trivial/cowfork", "trivial", cowfork, sizes.trivial, probe=True),
        Command("heavy/plain", "heavy", plain, sizes.heavy),
        Command("heavy/cowfork", "heavy", cowfork, sizes.heavy),
        Command("sleepy/jobs1", "sleepy", (*jobs, "1"), sizes.sleepy),
        Command("sleepy/jobs4", "sleepy", (*jobs, str(JOBS)), sizes.sleepy),
    ]
    if has_forked:
        commands += [
            Command("trivial/forked", "trivial", forked, sizes.trivial),
            Command("heavy/forked", "heavy", forked, sizes.heavy),
        ]
    return commands


def write_suites(root: Path, sizes: Sizes) -> None:
    """Generate the three suites, and the probe plugin, under ``root``."""
    write_suite(root / "trivial", {"test_trivial.py": trivial_module(sizes.trivial)})
    write_suite(
        root / "heavy",
        {
            "ballast.py": BALLAST_SOURCE,
            "conftest.py": HEAVY_CONFTEST,
            "test_heavy.py": heavy_module(sizes.heavy),
        },
    )
    write_suite(root / "sleepy", {"test_sleepy.py": sleepy_module(sizes.sleepy)})
    plugins = root / "plugins"
    plugins.mkdir()
    (plugins / f"{PROBE_PLUGIN}.py").write_text(PROBE_SOURCE, encoding="utf-8")


def write_suite(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir()
    # Its own ini file keeps pytest from picking up any configuration above.
    files = {"pytest.ini": "[pytest]\n", **files}
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")


def trivial_module(count: int) -> str:
    return "".join(f"def test_{i}():\n    pass\n\n\n" for i in range(count))


def heavy_module(count: int) -> str:
    return "".join(
        f"def test_{i}(expensive):\n    assert expensive\n\n\n" for i in range(count)
    )


def sleepy_module(count: int) -> str:
    tests = "".join(
        f"def test_{i}():\n    time.sleep({SLEEP})\n\n\n" for i in range(count)
    )
    return f"import time\n\n\n{tests}"


def run_rounds(
    commands: list[Command], root: Path, sizes: Sizes, timeout: float
) -> dict[str, Samples]:
    """Run every command once per round, interleaved; return what was measured."""
    samples = {command.key: Samples() for command in commands}
    warm_up(commands, root, samples, timeout)
    for number, order in enumerate(rotations(commands, sizes.rounds)):
        for command in order:
            sample = samples[command.key]
            if sample.failure is None:
                run_sample(command, root, sizes, timeout, sample)
        log(f"round {number + 1}/{sizes.rounds} done")
    return samples


def rotations(items: Sequence[_T], rounds: int) -> Iterator[list[_T]]:
    """Yield the order of each round: ``items``, rotated by one each round.

    Interleaving the commands, and rotating who goes first, spreads the
    drift of a shared machine over all of them alike.
    """
    for number in range(rounds):
        shift = number % len(items) if items else 0
        yield [*items[shift:], *items[:shift]]


def warm_up(
    commands: list[Command], root: Path, samples: dict[str, Samples], timeout: float
) -> None:
    """Collect each suite once, so no timed run pays for compiling it."""
    suites = {command.suite: command for command in commands}
    for suite, command in suites.items():
        try:
            run_pytest(root, suite, ("--collect-only",), command.expected, timeout)
        except SuiteFailed as exc:
            log(f"{suite} suite FAILED to collect: {exc}")
            log(textwrap.indent(exc.output, "    | "))
            for other in commands:
                if other.suite == suite:
                    samples[other.key].failure = str(exc)


def run_sample(
    command: Command, root: Path, sizes: Sizes, timeout: float, sample: Samples
) -> None:
    """Time one run of ``command``; record a failure instead if it fails."""
    out = root / "probe.json"
    out.unlink(missing_ok=True)
    env = {PROBE_OUT: str(out)}
    if command.probe:
        env[PROBE_CYCLES] = str(sizes.fork_cycles)
    args = (*command.args, "-p", PROBE_PLUGIN)
    try:
        wall = run_pytest(root, command.suite, args, command.expected, timeout, env)
        probed = read_probe(out, command.probe)
    except SuiteFailed as exc:
        sample.failure = str(exc)
        log(f"{command.key} FAILED: {exc}")
        log(textwrap.indent(exc.output, "    | "))
        return
    sample.wall.append(wall - probed.get("probe", 0.0))
    sample.loop.append(probed["loop"])
    if command.probe:
        sample.cycle.append(probed["cycle"])
        sample.rss_kb.append(probed["rss_kb"])


def read_probe(path: Path, cycles: bool) -> dict[str, float]:
    """Return what the probe plugin measured in the run that just ended."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SuiteFailed(f"the timing plugin left no result ({exc})") from None
    wanted = ("loop", "cycle", "probe", "rss_kb") if cycles else ("loop",)
    if any(not isinstance(data.get(key), (int, float)) for key in wanted):
        raise SuiteFailed(f"the timing plugin left an incomplete result: {data}")
    return data


def run_pytest(
    root: Path,
    suite: str,
    args: Iterable[str],
    expected: int,
    timeout: float,
    extra_env: dict[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> float:
    """Run pytest on ``suite``; return its wall time if it did as expected.

    :param on_start: called with the pytest process's pid once it started.
    """
    args = tuple(args)
    seconds, done = run_process(root, suite, args, timeout, extra_env, on_start)
    check_outcome(done, expected, collect_only="--collect-only" in args)
    return seconds


def run_process(
    root: Path,
    suite: str,
    args: Iterable[str],
    timeout: float,
    extra_env: dict[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run pytest on ``suite``; return its wall time and how it ended.

    :raises SuiteFailed: it ran longer than ``timeout``; it is then killed
        with every process it started.
    """
    command = [*PYTEST, *args]
    env = pytest_env(root, extra_env or {})
    start = time.perf_counter()
    with subprocess.Popen(
        command,
        cwd=root / suite,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A session of its own, so that a timeout kills the forked children
        # too instead of leaving them running on the machine.
        start_new_session=True,
    ) as process:
        if on_start is not None:
            on_start(process.pid)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise SuiteFailed(f"timed out after {timeout:g} s") from None
    seconds = time.perf_counter() - start
    return seconds, subprocess.CompletedProcess(
        command, process.returncode, stdout, stderr
    )


def pytest_env(root: Path, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    # A benchmark run inside a clone, or with the user's pytest options,
    # would measure something else.
    for name in ("CLONE_ID", "PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
        env.pop(name, None)
    paths = [str(root / "plugins"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    env.update(extra)
    return env


def check_outcome(
    done: subprocess.CompletedProcess[str], expected: int, collect_only: bool
) -> None:
    """Raise SuiteFailed unless pytest exited 0 with ``expected`` tests."""
    counts = summary_counts(done.stdout)
    what = "collected" if collect_only else "passed"
    count = counts.get(what, 0)
    if done.returncode == 0 and count == expected and "failed" not in counts:
        return
    raise SuiteFailed(
        f"exit {done.returncode}, {count} of {expected} {what}", output_tail(done)
    )


def summary_counts(stdout: str) -> dict[str, int]:
    """Return the counts of pytest's last line: ``{"passed": 3, "error": 1}``.

    ``-q --collect-only`` ends with "N tests collected", counted as
    ``collected``.
    """
    lines = stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    counts = {
        SINGULAR.get(word, word): int(number)
        for number, word in re.findall(r"(\d+) ([a-z]+)\b", summary)
        if word not in ("test", "tests")
    }
    collected = re.search(r"(\d+) tests? collected", summary)
    if collected:
        counts["collected"] = int(collected.group(1))
    return counts


def output_tail(done: subprocess.CompletedProcess[str], lines: int = 15) -> str:
    """Return the end of what pytest printed, to show why a run failed."""
    out = done.stdout.strip().splitlines()[-lines:]
    err = done.stderr.strip().splitlines()[-lines:]
    return "\n".join([*out, *err])


def summarize(sizes: Sizes, samples: dict[str, Samples], has_forked: bool) -> list[Row]:
    """Return the table rows, with each target's ratio."""
    return [
        command_row("trivial", "plain", samples["trivial/plain"]),
        probe_row(samples["trivial/cowfork"]),
        overhead_row(sizes, samples),
        *forked_rows("trivial", samples, has_forked),
        command_row("heavy", "plain", samples["heavy/plain"]),
        command_row("heavy", "cowfork", samples["heavy/cowfork"]),
        *forked_rows("heavy", samples, has_forked),
        command_row("sleepy", "jobs1", samples["sleepy/jobs1"]),
        parallel_row(samples),
    ]


def command_row(suite: str, kind: str, sample: Samples) -> Row:
    return Row(suite, LABELS[kind], seconds_cell(sample))


def seconds_cell(sample: Samples) -> str:
    if sample.failure is not None:
        return f"FAILED: {sample.failure}"
    return f"{median(sample.wall):.3f} (loop {median(sample.loop):.3f})"


def probe_row(sample: Samples) -> Row:
    cell = seconds_cell(sample)
    if sample.failure is None:
        cell = f"{median(sample.cycle):.5f} per cycle"
    return Row("trivial", LABELS["probe"], cell)


def overhead_row(sizes: Sizes, samples: dict[str, Samples]) -> Row:
    plain, cowfork = samples["trivial/plain"], samples["trivial/cowfork"]
    target = f"<= {OVERHEAD_TARGET:g}x bare cycle, in the loop"
    row = Row("trivial", LABELS["cowfork"], seconds_cell(cowfork), target=target)
    if failed(plain, cowfork):
        return dataclasses.replace(row, ratio="n/a: a suite failed", met="no")
    cycle = median(cowfork.cycle)
    loop = (median(cowfork.loop) - median(plain.loop)) / sizes.trivial
    wall = (median(cowfork.wall) - median(plain.wall)) / sizes.trivial
    cell = (
        f"loop: {loop * 1e3:.2f} ms/test = {loop / cycle:.2f}x bare cycle; "
        f"wall: {wall * 1e3:.2f} ms/test = {wall / cycle:.2f}x"
    )
    met = yes_no(loop / cycle <= OVERHEAD_TARGET)
    return dataclasses.replace(row, ratio=cell, met=met)


def forked_rows(suite: str, samples: dict[str, Samples], has_forked: bool) -> list[Row]:
    target = f">= {FORKED_TARGET:g}x faster, wall"
    if not has_forked:
        skipped = "skipped: pytest-forked is not installed (pip install -e '.[bench]')"
        return [Row(suite, LABELS["forked"], skipped, target=target, met="n/a")]
    cowfork, forked = samples[f"{suite}/cowfork"], samples[f"{suite}/forked"]
    row = Row(suite, LABELS["forked"], seconds_cell(forked), target=target)
    if failed(cowfork, forked):
        return [dataclasses.replace(row, ratio="n/a: a suite failed", met="no")]
    wall = median(forked.wall) / median(cowfork.wall)
    loop = median(forked.loop) / median(cowfork.loop)
    cell = f"cowfork {wall:.2f}x faster ({loop:.2f}x in the loop)"
    return [dataclasses.replace(row, ratio=cell, met=yes_no(wall >= FORKED_TARGET))]


def parallel_row(samples: dict[str, Samples]) -> Row:
    one, many = samples["sleepy/jobs1"], samples["sleepy/jobs4"]
    target = f"close to {JOBS}x: >= {PARALLEL_TARGET:g}x in the loop"
    row = Row("sleepy", LABELS["jobs4"], seconds_cell(many), target=target)
    if failed(one, many):
        return dataclasses.replace(row, ratio="n/a: a suite failed", met="no")
    loop = median(one.loop) / median(many.loop)
    wall = median(one.wall) / median(many.wall)
    cell = f"{loop:.2f}x in the loop ({wall:.2f}x wall)"
    return dataclasses.replace(row, ratio=cell, met=yes_no(loop >= PARALLEL_TARGET))


def median(values: list[float] | list[int]) -> float:
    return float(statistics.median(values))


def failed(*samples: Samples) -> bool:
    return any(sample.failure is not None or not sample.wall for sample in samples)


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def render_report(
    sizes: Sizes,
    rows: list[Row],
    samples: dict[str, Samples],
    has_forked: bool,
    elapsed: float,
) -> str:
    """Return the Markdown report: context, the table, and how to read it."""
    return "\n".join(
        [
            "# pytest-cowfork engine benchmark",
            "",
            *describe_run(sizes, has_forked, elapsed),
            "",
            *render_table(rows),
            "",
            *describe_notes(sizes, samples),
            "",
        ]
    )


def describe_run(sizes: Sizes, has_forked: bool, elapsed: float) -> list[str]:
    versions = ", ".join(
        f"{name} {package_version(name)}"
        for name in ("pytest", "pytest-cowfork", "pytest-forked")
        if name != "pytest-forked" or has_forked
    )
    return [
        f"- when: {time.strftime('%Y-%m-%d %H:%M:%S %z')}, took {elapsed:.0f} s",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {versions}",
        f"- checkout: {describe_checkout()}",
        f"- rounds: {sizes.rounds}, interleaved; every figure is a median",
        f"- suites: trivial = {sizes.trivial} empty tests; heavy = {sizes.heavy} "
        f"tests using a {HEAVY_SETUP * 1e3:g} ms session fixture, with "
        f"{BALLAST_ITEMS:,} tuples (~50 MB) imported; sleepy = {sizes.sleepy} "
        f"tests of time.sleep({SLEEP})",
        "- every command also has `-q -p no:cacheprovider -p "
        f"{PROBE_PLUGIN}`; cowfork and plain runs also `-p no:pytest_forked`",
    ]


def describe_checkout() -> str:
    """Return the commit benchmarked; an editable install's version lags it."""
    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "pytest_cowfork")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout?)"
    return head + (" with uncommitted changes to pytest_cowfork/" if dirty else "")


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def render_table(rows: list[Row]) -> list[str]:
    header = ("Suite", "Command", "Median s", "Ratio", "Target", "Met")
    lines = [table_line(header), table_line(("---",) * len(header))]
    for row in rows:
        cells = (row.suite, row.command, row.seconds, row.ratio, row.target, row.met)
        lines.append(table_line(cells))
    return lines


def table_line(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def describe_notes(sizes: Sizes, samples: dict[str, Samples]) -> list[str]:
    probed = samples["trivial/cowfork"]
    notes = [
        "Median s is the wall time of the pytest process; loop is the part "
        "spent in pytest's test loop (`pytest_runtestloop`), which leaves out "
        "interpreter start, plugin import and collection. The overhead is "
        "(cowfork - plain) / tests, judged in the loop, where start-up noise "
        "does not swamp a few ms per test. The bare fork cycle (fork, child "
        "`os._exit(0)`, parent `waitpid`) is the median of "
        f"{sizes.fork_cycles} cycles timed after the test loop of each "
        "`pytest --cowfork` run of the trivial suite, by the template process "
        "itself; that time is not counted in the run's wall time.",
    ]
    if probed.rss_kb:
        rss = median(probed.rss_kb) / 1024
        notes.append(f"The template had {rss:.0f} MiB resident when probed.")
    spread = [
        f"{key} {min(s.wall):.2f}-{max(s.wall):.2f}"
        for key, s in samples.items()
        if s.wall
    ]
    notes.append("Range of wall seconds over the rounds: " + "; ".join(spread) + ".")
    return [" ".join(notes[:-1]), "", notes[-1]]


def log(text: str) -> None:
    """Report progress on stderr, keeping stdout for the table."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
