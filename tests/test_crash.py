"""A clone that dies, or runs too long, fails its test and says why."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import INNER_TIMEOUT, needs_fork

from pytest_cowfork import crash

pytestmark = needs_fork

#: How each kind of crash is brought about, and how the report names it.
CRASHES = {
    "sigkill": ("os.kill(os.getpid(), signal.SIGKILL)", "killed by signal SIGKILL"),
    "segfault": ("ctypes.string_at(0)", "killed by signal SIGSEGV"),
    "abort": ("os.abort()", "killed by signal SIGABRT"),
    "exit0": ("os._exit(0)", "exited with status 0"),
    "exit3": ("os._exit(3)", "exited with status 3"),
}
FATAL = {"segfault", "abort"}

CRASHING_SUITE = """
    import ctypes
    import os
    import signal
    import sys

    import pytest

    def crash():
        with open("clone.pid", "w") as f:
            f.write(str(os.getpid()))
        print("stdout before the crash")
        sys.stderr.write("stderr before the crash\\n")
        sys.stdout.flush()
        sys.stderr.flush()
        {how}

    @pytest.fixture
    def crashes_in_setup():
        crash()

    @pytest.fixture
    def crashes_in_teardown():
        yield
        crash()

    def test_{phase}({fixture}):
        {body}
"""

#: For each phase: the fixture the test uses, its body, and its outcome.
PHASES = {
    "setup": ("crashes_in_setup", "pass", {"errors": 1}),
    "call": ("", "crash()", {"failed": 1}),
    "teardown": ("crashes_in_teardown", "pass", {"passed": 1, "errors": 1}),
}


@pytest.mark.parametrize("kind", list(CRASHES))
@pytest.mark.parametrize("phase", list(PHASES))
def test_a_crash_fails_the_phase_it_happens_in(
    pytester: pytest.Pytester, phase: str, kind: str
):
    """The phase the clone died in fails (an error for setup and teardown, as
    pytest counts them) with the cause, the phase, the pid, the way to run
    the test without a clone, and what the test printed before it died."""
    how, described = CRASHES[kind]
    fixture, body, outcomes = PHASES[phase]
    pytester.makepyfile(
        test_crash=CRASHING_SUITE.format(
            how=how, phase=phase, fixture=fixture, body=body
        )
    )
    result = pytester.runpytest_subprocess("--cowfork", "-rA", timeout=INNER_TIMEOUT)
    result.assert_outcomes(**outcomes)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    pid = (pytester.path / "clone.pid").read_text()
    heading = "*_ test_call _*" if phase == "call" else f"*_ ERROR at {phase} of *"
    result.stdout.fnmatch_lines(
        [
            heading,
            f"the clone running this test (pid {pid}) *{described}* during {phase}*",
            "To run it without a clone: pytest --no-cowfork "
            f"test_crash.py::test_{phase}",
            f"*- Captured stdout {phase} -*",
            "stdout before the crash",
            f"*- Captured stderr {phase} -*",
            "stderr before the crash",
        ]
    )
    if kind in FATAL:
        result.stdout.fnmatch_lines(
            [
                "Stacks of the clone's threads at the end:",
                "Fatal Python error: *",
                '  File "*test_crash.py", line * in crash',
            ]
        )
    result.stdout.fnmatch_lines(["cowfork: 1 clone ran, 1 crashed"])


def test_output_before_a_crash_is_exact_after_an_earlier_crash(
    pytester: pytest.Pytester,
):
    """A slot's capture files are reused by the next clone: what a dead clone
    left there must not leak into, or pad, the next crash report."""
    pytester.makepyfile(
        """
        import os

        import pytest

        @pytest.fixture
        def dies():
            print("last words")
            os._exit(1)

        @pytest.mark.parametrize("n", [1, 2, 3])
        def test_dies_in_setup(dies, n):
            pass
        """
    )
    result = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)
    result.assert_outcomes(errors=3)
    sections = [
        result.outlines[i + 1]
        for i, line in enumerate(result.outlines)
        if "- Captured stdout setup -" in line
    ]
    assert sections == ["last words"] * 3


def test_a_test_that_breaks_json_and_time_still_reports_its_assertion(
    pytester: pytest.Pytester,
):
    pytester.makepyfile(
        """
        import json
        import time

        def test_clobbers():
            json.dumps = lambda *args, **kwargs: "not json"
            json.loads = lambda *args, **kwargs: None
            time.time = lambda: -1.0
            time.monotonic = lambda: -1.0
            time.perf_counter = lambda: -1.0
            assert 6 * 7 == 41, "the real reason"

        def test_next_one_passes():
            assert json.dumps([1]) == "[1]"
        """
    )
    result = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "E       AssertionError: the real reason",
            "E       assert (6 * 7) == 41",
        ]
    )
    result.stdout.no_fnmatch_line("*crashed*")


def test_a_test_that_closes_every_inherited_fd_fails(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import os

        def test_closes_fds():
            os.closerange(3, 65536)

        def test_next_one_passes():
            pass
        """
    )
    result = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_closes_fds _*",
            "the clone running this test (pid *) * during call*",
            "To run it without a clone: pytest --no-cowfork *::test_closes_fds",
        ]
    )


def test_timeout_option_kills_a_hanging_test(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import time

        def test_sleeps_forever():
            print("about to sleep")
            time.sleep(60)

        def test_quick():
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "--cowfork", "--cowfork-timeout=1", timeout=INNER_TIMEOUT
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_sleeps_forever _*",
            "the clone running this test (pid *) timed out after 1 s during call*",
            "Stacks of the clone's threads at the end:",
            '  File "*", line * in test_sleeps_forever',
            "To run it without a clone: pytest --no-cowfork *::test_sleeps_forever",
            "*- Captured stdout call -*",
            "about to sleep",
            "cowfork: 2 clones ran, 1 timed out",
        ]
    )


def test_timeout_marker_kills_a_hanging_setup_without_the_option(
    pytester: pytest.Pytester,
):
    """The marker forks the test and limits it even without --cowfork; a hang
    in a function fixture counts against the limit."""
    pytester.makepyfile(
        """
        import time

        import pytest

        @pytest.fixture
        def slow_resource():
            time.sleep(60)

        @pytest.mark.cowfork(timeout=0.5)
        def test_waits_for_resource(slow_resource):
            pass

        @pytest.mark.cowfork(timeout=30)
        def test_within_its_limit():
            pass
        """
    )
    result = pytester.runpytest_subprocess(timeout=INNER_TIMEOUT)
    result.assert_outcomes(errors=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_waits_for_resource _*",
            "the clone running this test (pid *) timed out after 0.5 s during setup*",
            "Stacks of the clone's threads at the end:",
            '  File "*", line * in slow_resource',
            "cowfork: 2 clones ran, 1 timed out",
        ]
    )


def test_summary_counts_clones_crashes_and_timeouts(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import os
        import time

        import pytest

        def test_passes():
            pass

        def test_dies():
            os._exit(1)

        @pytest.mark.cowfork(timeout=0.5)
        def test_hangs():
            time.sleep(60)

        @pytest.mark.no_cowfork
        def test_in_template():
            pass
        """
    )
    result = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["cowfork: 3 clones ran, 1 crashed, 1 timed out"])


# The message builders alone, without forking.


def _ending(status: int, **kwargs: object) -> crash.Ending:
    return crash.Ending(pid=4242, slot=0, status=status, wall_time=0.1, **kwargs)  # type: ignore[arg-type]


def test_a_signal_is_named_with_its_number() -> None:
    status = signal.SIGSEGV  # a wait status for "killed by SIGSEGV"

    text = crash.describe(_ending(status), "call")

    assert text == (
        "the clone running this test (pid 4242) was killed by signal "
        "SIGSEGV (11) during call"
    )


def test_sigkill_mentions_the_out_of_memory_killer() -> None:
    text = crash.describe(_ending(signal.SIGKILL), "setup")

    assert "SIGKILL (9) during setup (the kernel's out-of-memory killer" in text


def test_an_exit_status_is_given_as_the_code() -> None:
    text = crash.describe(_ending(3 << 8), "teardown")

    assert "exited with status 3 during teardown before reporting" in text


def test_a_timeout_names_the_limit_and_where_it_is_set() -> None:
    text = crash.describe(_ending(signal.SIGKILL, timeout=1.5), "call")

    assert "timed out after 1.5 s during call and was killed" in text
    assert "--cowfork-timeout" in text


def test_a_problem_on_the_channel_is_given_as_is() -> None:
    text = crash.describe(_ending(0, problem="unknown message kind 99"), "call")

    assert text.endswith("failed during call: unknown message kind 99")


def test_stacks_are_cut_at_the_first_frame_of_cowfork() -> None:
    package = os.path.dirname(crash.__file__)
    dump = "\n".join(
        [
            "Current thread 0x01 (most recent call first):",
            '  File "/tests/test_x.py", line 3 in test_hang',
            f'  File "{package}/clone.py", line 9 in run',
            f'  File "{package}/fork.py", line 5 in fork_clone',
            '  File "/pytest/main.py", line 1 in main',
            "",
            "Thread 0x02 (most recent call first):",
            '  File "/threading.py", line 7 in wait',
        ]
    )

    assert crash.trim_stacks(dump).splitlines() == [
        "Current thread 0x01 (most recent call first):",
        '  File "/tests/test_x.py", line 3 in test_hang',
        "  (then the template's frames, from before the fork)",
        "",
        "Thread 0x02 (most recent call first):",
        '  File "/threading.py", line 7 in wait',
    ]
