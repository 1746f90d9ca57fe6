"""Several clones at once: each test runs once, in a slot of its own."""

from __future__ import annotations

import collections

import pytest
from conftest import INNER_TIMEOUT, needs_fork

pytestmark = needs_fork


def test_every_test_runs_once_in_a_slot_below_the_job_count(
    pytester: pytest.Pytester,
):
    pytester.makepyfile(
        """
        import os

        import pytest

        @pytest.mark.parametrize("n", range(12))
        def test_slot(n, clone_id):
            assert os.environ["CLONE_ID"] == clone_id
            with open(f"{n}.slot", "w") as f:
                f.write(clone_id)

        class TestInClass:
            @pytest.mark.parametrize("n", range(12, 15))
            def test_slot(self, n, clone_id):
                with open(f"{n}.slot", "w") as f:
                    f.write(clone_id)
        """
    )
    result = pytester.runpytest_subprocess(
        "--cowfork", "--cowfork-jobs", "3", "-v", timeout=INNER_TIMEOUT
    )
    result.assert_outcomes(passed=15)
    slots = [(pytester.path / f"{n}.slot").read_text() for n in range(15)]
    assert set(slots) <= {"0", "1", "2"}
    reported = collections.Counter(
        line.split(" PASSED")[0] for line in result.outlines if " PASSED" in line
    )
    assert len(reported) == 15
    assert set(reported.values()) == {1}
    result.stdout.fnmatch_lines(
        [
            "cowfork: every test in its own clone (jobs: 3, *",
            "cowfork: 15 clones ran",
        ]
    )


CHATTY = """
    import os
    import sys

    import pytest

    LINES = 3 * 1024

    @pytest.mark.parametrize("n", range(3))
    def test_prints(n):
        line = "Z" * 1023 + "\\n"
        for _ in range(LINES):
            print(line, end="")
        sys.stderr.write(line * 1024)

    @pytest.mark.parametrize("n", range(3))
    def test_writes_to_fd_1(n):
        data = memoryview(("Y" * 1023 + "\\n").encode() * LINES)
        while data:
            data = data[os.write(1, data) :]
        os.write(2, b"e" * (1024 * 1024) + b"\\n")
"""


@pytest.mark.parametrize("capture", ["-s", "--capture=fd"])
@pytest.mark.parametrize("jobs", ["1", "3"])
def test_clones_that_print_megabytes_do_not_deadlock(
    pytester: pytest.Pytester, capture: str, jobs: str
):
    """A clone blocks once its pipe is full; the template must keep reading
    every clone's pipes while it waits. With -s every byte reaches the
    terminal."""
    pytester.makepyfile(test_chatty=CHATTY)
    result = pytester.runpytest_subprocess(
        "--cowfork", f"--cowfork-jobs={jobs}", capture, "-q", timeout=INNER_TIMEOUT
    )
    result.assert_outcomes(passed=6)
    if capture == "-s":
        # Clones running side by side may interleave, but no byte is lost.
        out = result.stdout.str()
        assert out.count("Z") == out.count("Y") == 3 * 3 * 1024 * 1023
