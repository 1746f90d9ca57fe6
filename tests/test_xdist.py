"""Each pytest-xdist worker is a template that forks its own clones."""

from __future__ import annotations

import pytest
from conftest import INNER_TIMEOUT, needs_fork

pytest.importorskip("xdist")
pytestmark = needs_fork


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args, timeout=INNER_TIMEOUT)


def test_tests_run_isolated_in_clones_of_each_worker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        SEEN = []

        @pytest.fixture(scope="session")
        def worker_state():
            with open(f"setup.{os.environ['PYTEST_XDIST_WORKER']}", "a") as f:
                f.write("x")
            return []

        @pytest.mark.parametrize("i", range(6))
        def test_mutates(i, worker_state):
            assert SEEN == [] and worker_state == []
            SEEN.append(i)
            worker_state.append(i)
            worker, clone = os.environ["PYTEST_XDIST_WORKER"], os.environ["CLONE_ID"]
            with open(f"ids.{os.getpid()}", "w") as f:
                f.write(f"{worker} {clone}")
        """
    )

    result = run(pytester, "--cowfork", "-n", "2")

    result.assert_outcomes(passed=6)
    setups = sorted(p.read_text() for p in pytester.path.glob("setup.gw*"))
    assert setups == ["x", "x"], "one session setup per worker"
    pairs = {p.read_text() for p in pytester.path.glob("ids.*")}
    assert pairs == {"gw0 0", "gw1 1"}


def test_a_crash_in_a_worker_clone_fails_only_its_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os
        import signal

        def test_crashes():
            os.kill(os.getpid(), signal.SIGSEGV)

        def test_passes():
            pass
        """
    )

    result = run(pytester, "--cowfork", "-n", "2")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*killed by signal SIGSEGV (11) during call*"])


def test_several_jobs_per_worker_are_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass")

    result = run(pytester, "--cowfork", "-n", "2", "--cowfork-jobs=2")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--cowfork-jobs=2 cannot be combined with xdist's -n*add processes with -n*"]
    )


def test_reruns_run_in_fresh_clones_of_a_worker(pytester: pytest.Pytester) -> None:
    """pytest-rerunfailures counts a worker's reruns through the controller."""
    pytester.makepyfile(
        """
        import os

        STATE = []

        def test_flaky():
            assert STATE == []
            STATE.append("changed")
            with open("attempts", "a") as f:
                f.write(f"{os.getpid()}\\n")
            with open("attempts") as f:
                assert len(f.read().split()) == 3
        """
    )

    result = run(pytester, "--cowfork", "-n", "2", "--reruns=2")

    assert result.parseoutcomes() == {"passed": 1, "rerun": 2}
    assert len(set((pytester.path / "attempts").read_text().split())) == 3
