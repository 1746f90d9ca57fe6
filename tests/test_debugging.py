"""Debuggers in clones: --pdb, --trace and breakpoint() at a real terminal.

Interactive runs go through pexpect, which gives the inner pytest a
pseudo-terminal of its own, as pytest's own debugging tests do.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from typing import TYPE_CHECKING

import pytest
from conftest import INNER_TIMEOUT, needs_fork

if TYPE_CHECKING:
    import pexpect

pytestmark = needs_fork

PROMPT = r"\(Pdb\) "

#: A failure with a local to print, in a clone that says which it is.
FAILING = """
    import os

    def test_fails():
        x = 41
        clone = os.environ.get("CLONE_ID")
        assert x == 2

    def test_next():
        pass
"""


def spawn(pytester: pytest.Pytester, args: str) -> pexpect.spawn:
    return pytester.spawn_pytest(
        f"-p no:cacheprovider {args}", expect_timeout=INNER_TIMEOUT
    )


def finish(child: pexpect.spawn) -> tuple[str, int | None]:
    """Read the rest of the output; return it and the exit status."""
    rest = child.read().decode("utf-8", "replace")
    if child.isalive():
        child.wait()
    return rest, child.exitstatus


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args, timeout=INNER_TIMEOUT)


def test_pdb_opens_at_a_failure_in_a_clone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FAILING)

    child = spawn(pytester, "--cowfork --pdb")
    child.expect("test_pdb_opens_at_a_failure_in_a_clone.py F")
    child.expect(">+ traceback >+")
    child.expect("assert 41 == 2")
    child.expect(PROMPT)
    child.sendline("p x")
    child.expect("41")
    child.expect(PROMPT)
    child.sendline("p clone")
    child.expect("'0'")
    child.expect(PROMPT)
    child.sendline("c")
    rest, status = finish(child)

    assert "1 failed, 1 passed" in rest
    # The debugger showed the failure; as in pytest, the summary does not.
    assert "FAILURES" not in rest
    assert "FAILED test_pdb_opens_at_a_failure_in_a_clone.py::test_fails" in rest
    assert status == 1


def test_quitting_the_debugger_ends_the_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FAILING)

    child = spawn(pytester, "--cowfork --pdb")
    child.expect(PROMPT)
    child.sendline("q")
    rest, status = finish(child)

    assert "Exit: Quitting debugger" in rest
    assert "1 failed in" in rest
    assert "passed" not in rest
    assert status == 2


def test_trace_stops_at_the_first_line_of_a_test_in_a_clone(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(FAILING)

    child = spawn(pytester, "--cowfork --trace -k test_fails")
    child.expect(r"\(4\)test_fails\(\)")
    child.expect(PROMPT)
    child.sendline("n")
    child.expect(PROMPT)
    child.sendline("p x")
    child.expect("41")
    child.expect(PROMPT)
    child.sendline("c")
    rest, status = finish(child)

    # Without --pdb, the failure is reported as usual.
    assert "assert 41 == 2" in rest
    assert "1 failed, 1 deselected" in rest
    assert status == 1


@pytest.mark.parametrize(
    "call",
    ["breakpoint()", "pytest.set_trace()", "__import__('pdb').set_trace()"],
)
def test_a_debugger_started_by_each_of_two_tests_gets_the_terminal(
    pytester: pytest.Pytester, call: str
) -> None:
    """The second clone waits as a standby while the first one debugs."""
    pytester.makepyfile(
        f"""
        import pytest

        def test_first():
            y = "first value"
            {call}
            assert y

        def test_second():
            z = "second value"
            {call}
            assert z
        """
    )

    child = spawn(pytester, "--cowfork")
    child.expect("PDB set_trace")
    child.expect(PROMPT)
    child.sendline("p y")
    child.expect("first value")
    child.expect(PROMPT)
    child.sendline("c")
    child.expect("PDB set_trace")
    child.expect(PROMPT)
    child.sendline("p z")
    child.expect("second value")
    child.expect(PROMPT)
    child.sendline("c")
    rest, status = finish(child)

    assert "2 passed" in rest
    assert "cowfork: 2 clones ran" in rest
    assert status == 0


def test_the_template_gets_the_terminal_back_after_a_clone(
    pytester: pytest.Pytester,
) -> None:
    """A debugger in the template after one in a clone can read the terminal."""
    pytester.makepyfile(
        """
        import pytest

        def test_in_a_clone():
            breakpoint()

        @pytest.mark.no_cowfork
        def test_in_the_template():
            where = "template"
            breakpoint()
        """
    )

    child = spawn(pytester, "--cowfork")
    child.expect(PROMPT)
    child.sendline("c")
    child.expect(r"test_in_the_template\(\)")
    child.expect(PROMPT)
    child.sendline("p where")
    child.expect("'template'")
    child.expect(PROMPT)
    child.sendline("c")
    rest, status = finish(child)

    assert "2 passed" in rest
    assert status == 0


def test_ctrl_c_reaches_a_clone_that_holds_the_terminal(
    pytester: pytest.Pytester,
) -> None:
    """As in pytest, Ctrl-C after ``c`` stops the test in its debugger."""
    pytester.makepyfile(
        """
        import time

        def test_waits():
            breakpoint()
            print("waiting")
            while True:
                time.sleep(0.01)
        """
    )

    child = spawn(pytester, "--cowfork -s")
    child.expect(PROMPT)
    child.sendline("c")
    child.expect("waiting")
    child.sendintr()
    child.expect("Program interrupted")
    child.expect(PROMPT)
    child.sendline("q")
    rest, status = finish(child)

    assert "Exit: Quitting debugger" in rest
    assert status == 2


def test_the_time_limit_stops_while_a_debugger_holds_the_terminal(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_debugged():
            breakpoint()
        """
    )

    child = spawn(pytester, "--cowfork --cowfork-timeout 1")
    child.expect(PROMPT)
    # Longer than the limit, spent in the debugger.
    child.sendline("import time; time.sleep(2); print('slept')")
    child.expect("slept")
    child.expect(PROMPT)
    child.sendline("c")
    rest, status = finish(child)

    assert "1 passed" in rest
    assert status == 0


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_no_capture_shows_a_clones_output_while_its_test_runs(
    pytester: pytest.Pytester, jobs: str
) -> None:
    """The test prints, then waits for a file created only once it is seen."""
    go = pytester.path / "go"
    pytester.makepyfile(
        f"""
        import os
        import time

        def test_prints_then_waits():
            print("first line", flush=True)
            while not os.path.exists({str(go)!r}):
                time.sleep(0.01)
            print("second line")
        """
    )

    child = spawn(pytester, f"--cowfork -s --cowfork-jobs {jobs}")
    child.expect("first line")
    assert child.isalive()
    go.touch()
    child.expect("second line")
    rest, status = finish(child)

    assert "1 passed" in rest
    assert status == 0


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--pdb"], "--pdb"),
        (["--trace"], "--trace"),
        (["--pdb", "--trace"], "--pdb and --trace"),
    ],
)
def test_debugging_options_are_refused_with_several_jobs(
    pytester: pytest.Pytester, options: list[str], named: str
) -> None:
    pytester.makepyfile("def test_one(): pass")

    result = run(pytester, "--cowfork", "--cowfork-jobs", "2", *options)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: {named} cannot be combined with --cowfork-jobs=2: *"
            "add --cowfork-jobs 1 (the default), or --no-cowfork*"
        ]
    )


def test_debugging_options_are_refused_with_several_jobs_from_the_ini_file(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\ncowfork_jobs = 3\n")
    pytester.makepyfile("def test_one(): pass")

    result = run(pytester, "--cowfork", "--pdb")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --pdb cannot be combined with cowfork_jobs = 3 (from the ini "
            "file): *add --cowfork-jobs 1*"
        ]
    )


def test_pdb_with_several_jobs_is_allowed_when_nothing_forks(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_one(): pass")

    result = run(pytester, "--no-cowfork", "--cowfork-jobs", "2", "--pdb")

    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    "call",
    ["breakpoint()", "pytest.set_trace()", "__import__('pdb').set_trace()"],
)
def test_a_debugger_fails_its_test_with_several_jobs(
    pytester: pytest.Pytester, call: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        def test_debugs():
            {call}

        def test_other():
            pass
        """
    )

    result = run(pytester, "--cowfork", "--cowfork-jobs", "2")

    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            f">       {call}",
            "E       Failed: this test started a debugger, which needs the "
            "terminal, and a clone gets it only with --cowfork-jobs 1 (this run "
            "has 2): run the test again with --cowfork-jobs 1, or with "
            "--no-cowfork",
        ]
    )
    assert "PDB set_trace" not in result.stdout.str()


def test_pythonbreakpoint_0_still_turns_breakpoint_off_with_several_jobs(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONBREAKPOINT", "0")
    pytester.makepyfile(
        """
        def test_debugs():
            breakpoint()
        """
    )

    result = run(pytester, "--cowfork", "--cowfork-jobs", "2")

    result.assert_outcomes(passed=1)


def test_a_clone_killed_in_its_debugger_gives_the_terminal_back(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        def test_killed():
            pid = os.getpid()
            breakpoint()

        @pytest.mark.no_cowfork
        def test_in_the_template():
            where = "template"
            breakpoint()
        """
    )

    child = spawn(pytester, "--cowfork")
    child.expect(PROMPT)
    child.sendline("p f'pid={pid}'")
    child.expect(r"pid=(\d+)")
    pid = int(child.match.group(1))
    child.expect(PROMPT)
    # Killed from outside while its debugger reads a line.
    os.kill(pid, signal.SIGKILL)
    child.expect(PROMPT)
    child.sendline("p where")
    child.expect("'template'")
    child.expect(PROMPT)
    child.sendline("c")
    rest, status = finish(child)

    assert "was killed by signal SIGKILL (9) during call" in rest
    assert "1 failed, 1 passed" in rest
    assert status == 1


def test_a_debugger_reads_end_of_file_when_pytest_runs_in_the_background(
    pytester: pytest.Pytester,
) -> None:
    """The terminal belongs to the shell then: taking it would steal it."""
    pytester.makepyfile(
        """
        def test_debugs():
            breakpoint()
        """
    )
    pytest_command = f"{shlex.quote(sys.executable)} -m pytest -p no:cacheprovider"

    child = pytester.spawn(
        shlex.join(["sh", "-c", f"set -m; {pytest_command} --cowfork & wait"]),
        expect_timeout=INNER_TIMEOUT,
    )
    rest, status = finish(child)

    assert "FAILED test_a_debugger_reads_end_of_file" in rest
    assert "bdb.BdbQuit" in rest
    assert status == 0  # The status of sh's wait.


def test_ctrl_z_does_not_stop_a_clone_that_holds_the_terminal(
    pytester: pytest.Pytester,
) -> None:
    """Nothing would resume it: the shell waits for the template."""
    pytester.makepyfile(
        """
        def test_debugged():
            breakpoint()
        """
    )

    child = spawn(pytester, "--cowfork")
    child.expect(PROMPT)
    child.sendcontrol("z")
    child.sendline("p 'still' + ' here'")
    child.expect("still here")
    child.expect(PROMPT)
    child.sendline("c")
    rest, status = finish(child)

    assert "1 passed" in rest
    assert status == 0
