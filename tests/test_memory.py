"""What clones cost: fork time, and the memory each one wrote."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import INNER_TIMEOUT, needs_fork

from pytest_cowfork.memory import CostLog, private_dirty

MIB = 1024 * 1024
has_smaps_rollup = pytest.mark.skipif(
    not Path("/proc/self/smaps_rollup").exists(),
    reason="needs /proc/self/smaps_rollup (Linux 4.14+)",
)

# A test that writes 40 MiB of its own and keeps it to the end of its
# clone (memory freed before then is not counted); the template of these
# inner runs holds far less, so this clone must be named.
WRITES_40_MIB = """
    KEPT = []

    def test_small():
        pass

    def test_writes_a_lot():
        block = bytearray(40 * 1024 * 1024)
        for offset in range(0, len(block), 4096):
            block[offset] = 1
        KEPT.append(block)
"""


def test_the_summary_names_the_fork_time_and_the_template_size(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_a(): pass")

    result = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)

    result.stdout.fnmatch_lines(
        ["cowfork: template peak size *.* MiB, median fork *.* ms"]
    )
    result.stdout.no_fnmatch_line("*private memory*")


@has_smaps_rollup
@needs_fork
def test_with_memory_on_the_summary_names_a_clone_that_wrote_a_lot(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(WRITES_40_MIB)

    result = pytester.runpytest_subprocess(
        "--cowfork", "--cowfork-memory", timeout=INNER_TIMEOUT
    )

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "cowfork: clone private memory median *.* MiB, worst 4?.* MiB "
            "(test_with_memory_on_the_summary_names_a_clone_that_wrote_a_lot.py"
            "::test_writes_a_lot)",
            "cowfork: *::test_writes_a_lot wrote 4?.* MiB of its own, *% of the "
            "template's size",
        ]
    )
    result.stdout.no_fnmatch_line("*::test_small wrote*")


@has_smaps_rollup
@needs_fork
def test_the_ini_key_turns_memory_on_and_the_hook_gets_the_figure(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\ncowfork = true\ncowfork_memory = true\n")
    pytester.makeconftest(
        """
        import os

        def pytest_cowfork_clone_finished(item, private_dirty):
            with open(os.path.join(os.path.dirname(__file__), "mib.log"), "a") as f:
                f.write(f"{item.name} {private_dirty // (1024 * 1024)}\\n")
        """
    )
    pytester.makepyfile(WRITES_40_MIB)

    result = pytester.runpytest_subprocess(timeout=INNER_TIMEOUT)

    result.assert_outcomes(passed=2)
    written = dict(
        line.split() for line in (pytester.path / "mib.log").read_text().splitlines()
    )
    assert int(written["test_writes_a_lot"]) >= 40
    assert int(written["test_small"]) < 40


@has_smaps_rollup
@needs_fork
def test_private_dirty_counts_what_a_forked_child_writes() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        before = private_dirty() or 0
        block = bytearray(8 * MIB)
        for offset in range(0, len(block), 4096):
            block[offset] = 1
        after = private_dirty() or 0
        os.write(write_end, str(after - before).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    grown = int(os.read(read_end, 100))
    os.close(read_end)
    assert grown >= 8 * MIB


def test_the_cost_log_summarizes_fork_times_and_names_large_writers() -> None:
    costs = CostLog()
    costs.add("t.py::test_a", 0.001, 1 * MIB)
    costs.add("t.py::test_b", 0.003, 2 * MIB)
    costs.add("t.py::test_c", 0.002, 30 * MIB)

    lines = costs.summary(template_size=100 * MIB)

    assert lines == [
        "cowfork: template peak size 100.0 MiB, median fork 2.00 ms",
        "cowfork: clone private memory median 2.0 MiB, worst 30.0 MiB (t.py::test_c)",
        "cowfork: t.py::test_c wrote 30.0 MiB of its own, 30% of the template's size",
    ]


def test_the_cost_log_names_at_most_three_large_writers() -> None:
    costs = CostLog()
    for index in range(5):
        costs.add(f"t.py::test_{index}", 0.001, (50 + index) * MIB)

    lines = costs.summary(template_size=100 * MIB)

    assert [line.split()[1] for line in lines[2:5]] == [
        "t.py::test_4",
        "t.py::test_3",
        "t.py::test_2",
    ]
    assert (
        lines[5] == "cowfork: and 2 more clones wrote over 25% of the template's size"
    )


def test_without_measurements_the_summary_has_only_fork_times() -> None:
    costs = CostLog()
    costs.add("t.py::test_a", 0.004, None)

    assert costs.summary(template_size=10 * MIB) == [
        "cowfork: template peak size 10.0 MiB, median fork 4.00 ms"
    ]
    assert CostLog().summary(template_size=10 * MIB) == []


@has_smaps_rollup
@needs_fork
def test_a_collection_in_a_clone_leaves_the_template_objects_alone(
    pytester: pytest.Pytester,
) -> None:
    """The template freezes its heap before each fork, including objects
    its later fixtures created: a clone's gc.collect() must not walk (and so
    copy) them all."""
    pytester.makeconftest(
        """
        import os
        import pytest

        @pytest.fixture(scope="session")
        def early():
            return [[i, str(i)] for i in range(300_000)]

        def pytest_cowfork_clone_finished(item, private_dirty):
            with open(os.path.join(os.path.dirname(__file__), "mib.log"), "a") as f:
                f.write(f"{item.name} {private_dirty // (1024 * 1024)}\\n")
        """
    )
    pytester.makepyfile(
        test_a="""
        import gc

        def test_early(early):
            gc.collect()
        """,
        test_b="""
        import gc
        import pytest

        @pytest.fixture(scope="module")
        def late():
            return [[i, str(i)] for i in range(300_000)]

        def test_late(early, late):
            gc.collect()
        """,
    )

    result = pytester.runpytest_subprocess(
        "--cowfork", "--cowfork-memory", timeout=INNER_TIMEOUT
    )

    result.assert_outcomes(passed=2)
    written = dict(
        line.split() for line in (pytester.path / "mib.log").read_text().splitlines()
    )
    # Each fixture holds about 50 MiB of lists, which the collector always
    # tracks: without the freeze, each clone copied about that much.
    assert int(written["test_early"]) < 15, written
    assert int(written["test_late"]) < 15, written
