"""Clones leave nothing behind, and the run stops when pytest would stop."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import INNER_TIMEOUT, interrupt_when, is_gone, needs_fork, wait_until_gone

pytestmark = needs_fork


@pytest.fixture
def pids_to_kill():
    """Kill, after the test, whatever a failing plugin left running."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if not is_gone(pid):
            os.kill(pid, signal.SIGKILL)


def read_pids(path: Path) -> list[int]:
    return [int(word) for word in path.read_text().split()]


def test_processes_a_test_leaves_running_are_killed(
    pytester: pytest.Pytester, pids_to_kill: list[int]
):
    pytester.makepyfile(
        """
        import subprocess

        def test_starts_a_sleeper():
            sleeper = subprocess.Popen(["sleep", "1000"])
            with open("sleeper.pid", "w") as f:
                f.write(str(sleeper.pid))

        def test_next():
            pass
        """
    )
    result = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)
    (sleeper,) = read_pids(pytester.path / "sleeper.pid")
    pids_to_kill.append(sleeper)
    result.assert_outcomes(passed=2)
    assert wait_until_gone(sleeper)


def test_ctrl_c_interrupts_the_run_and_kills_every_clone(
    pytester: pytest.Pytester, pids_to_kill: list[int]
):
    """SIGINT to pytest, as a terminal's Ctrl-C sends it, ends the run like
    KeyboardInterrupt without cowfork, and kills the running clones (each in
    a process group of its own, out of the terminal's reach) and their
    children."""
    pytester.makepyfile(
        """
        import os
        import subprocess
        import time

        import pytest

        @pytest.mark.parametrize("n", [1, 2])
        def test_waits(n):
            sleeper = subprocess.Popen(["sleep", "1000"])
            with open(f"{n}.pids.tmp", "w") as f:
                f.write(f"{os.getpid()} {sleeper.pid}")
            os.rename(f"{n}.pids.tmp", f"{n}.pids")
            time.sleep(60)

        def test_never_runs():
            pass
        """
    )
    started = [pytester.path / "1.pids", pytester.path / "2.pids"]
    pids: list[int] = []

    def remember_pids() -> None:
        pids.extend(pid for path in started for pid in read_pids(path))
        pids_to_kill.extend(pids)

    returncode, output = interrupt_when(
        pytester, started, ["--cowfork", "--cowfork-jobs=2"], remember_pids
    )
    assert returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    assert "test_never_runs" not in output
    assert [pid for pid in pids if not wait_until_gone(pid)] == []


FAILS_OFTEN = """
    import pytest

    @pytest.mark.parametrize("n", range(6))
    def test_fails(n):
        with open(f"{n}.ran", "w"):
            pass
        assert n < 0
"""


def ran(pytester: pytest.Pytester) -> list[str]:
    return sorted(path.stem for path in pytester.path.glob("*.ran"))


def test_exitfirst_stops_after_the_first_failure(pytester: pytest.Pytester):
    pytester.makepyfile(FAILS_OFTEN)
    result = pytester.runpytest_subprocess("--cowfork", "-x", timeout=INNER_TIMEOUT)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])
    assert ran(pytester) == ["0"]


def test_maxfail_stops_after_that_many_failures(pytester: pytest.Pytester):
    pytester.makepyfile(FAILS_OFTEN)
    result = pytester.runpytest_subprocess(
        "--cowfork", "--maxfail=2", timeout=INNER_TIMEOUT
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*stopping after 2 failures*"])
    assert ran(pytester) == ["0", "1"]


def test_exitfirst_forks_no_clone_after_the_failure_with_several_jobs(
    pytester: pytest.Pytester,
):
    """Once a failure is known, no further test may start. Clones already
    running may finish or be killed, but the one after them must not run.

    ``test_neighbour`` is still running when ``test_fails_first`` fails, so
    the template learns of the failure while it waits for a free slot.
    """
    pytester.makepyfile(
        """
        import os
        import time

        def test_fails_first():
            assert False

        def test_neighbour():
            deadline = time.monotonic() + 5
            while not os.path.exists("late.ran") and time.monotonic() < deadline:
                time.sleep(0.05)

        def test_late():
            open("late.ran", "w").close()
        """
    )
    result = pytester.runpytest_subprocess(
        "--cowfork", "--cowfork-jobs=2", "-x", timeout=INNER_TIMEOUT
    )
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert not (pytester.path / "late.ran").exists()
    result.stdout.no_fnmatch_line("*test_late*")


def test_exitfirst_sets_up_nothing_for_tests_after_the_failure(
    pytester: pytest.Pytester,
):
    """Without cowfork, -x after the first test means the next class is never
    set up; a clone running the first test must not change that."""
    pytester.makepyfile(
        """
        def test_fails():
            assert False

        class TestNext:
            @classmethod
            def setup_class(cls):
                open("next_class.setup", "w").close()

            def test_next(self):
                pass
        """
    )
    result = pytester.runpytest_subprocess("--cowfork", "-x", timeout=INNER_TIMEOUT)
    result.assert_outcomes(failed=1)
    assert not (pytester.path / "next_class.setup").exists()


EXITS = """
    import pytest

    def test_first():
        pass

    def test_exits():
        pytest.exit("enough for today", returncode=3)

    def test_never_runs():
        open("never.ran", "w").close()
"""


def test_pytest_exit_in_a_clone_ends_the_session(pytester: pytest.Pytester):
    pytester.makepyfile(EXITS)
    result = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)
    assert result.ret == 3
    result.stdout.fnmatch_lines(["*! _pytest.outcomes.Exit: enough for today !*"])
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "never.ran").exists()


def test_pytest_exit_in_a_clone_ends_the_session_with_several_jobs(
    pytester: pytest.Pytester,
):
    pytester.makepyfile(EXITS)
    result = pytester.runpytest_subprocess(
        "--cowfork", "--cowfork-jobs=2", timeout=INNER_TIMEOUT
    )
    assert result.ret == 3
    result.stdout.fnmatch_lines(["*! _pytest.outcomes.Exit: enough for today !*"])
