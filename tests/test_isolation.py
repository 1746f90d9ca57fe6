"""What a test does in its clone stays in its clone."""

from __future__ import annotations

import sys

import pytest
from conftest import INNER_TIMEOUT, needs_fork

pytestmark = needs_fork

POLLUTERS = """
    import json
    import os
    import sys

    import pytest

    STATE = []

    class Settings:
        mode = "original"

    @pytest.fixture(scope="session")
    def shared():
        return {"items": []}

    @pytest.mark.parametrize("n", [1, 2])
    def test_sees_pristine_state_then_dirties_it(n, shared):
        assert STATE == []
        assert shared == {"items": []}
        assert "COWFORK_PROBE" not in os.environ
        assert "cowfork_fake_module" not in sys.modules
        assert Settings.mode == "original"
        assert json.dumps([n]) == f"[{n}]"

        STATE.append(n)
        shared["items"].append(n)
        os.environ["COWFORK_PROBE"] = "dirty"
        sys.modules["cowfork_fake_module"] = sys
        # A patch nobody undoes, as when a MonkeyPatch() is never closed.
        pytest.MonkeyPatch().setattr(Settings, "mode", "leaked")
        json.dumps = lambda *args, **kwargs: "clobbered"
"""


def test_state_leaks_from_test_to_test_without_cowfork(pytester: pytest.Pytester):
    """The suite below really does pollute: without clones, its second test
    fails. This keeps the next test honest."""
    pytester.makepyfile(test_polluters=POLLUTERS)
    result = pytester.runpytest_subprocess("-p", "no:cowfork", timeout=INNER_TIMEOUT)
    result.assert_outcomes(passed=1, failed=1)


def test_each_test_sees_pristine_state_with_cowfork(pytester: pytest.Pytester):
    pytester.makepyfile(test_polluters=POLLUTERS)
    result = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)
    result.assert_outcomes(passed=2)


RECORD_PIDS = """
    import os

    import pytest

    TEMPLATE_PID = os.getpid()

    def record(name, clone_id):
        forked = os.getpid() != TEMPLATE_PID
        env = os.environ.get("CLONE_ID")
        with open(f"{name}.where", "w") as f:
            f.write(f"forked={forked} fixture={clone_id} env={env}")

    @pytest.mark.cowfork
    def test_marked(clone_id):
        record("marked", clone_id)

    def test_unmarked(clone_id):
        record("unmarked", clone_id)

    @pytest.mark.no_cowfork
    def test_kept_in_template(clone_id):
        record("kept", clone_id)
"""


def where(pytester: pytest.Pytester) -> dict[str, str]:
    return {
        name: (pytester.path / f"{name}.where").read_text()
        for name in ("marked", "unmarked", "kept")
    }


def test_only_marked_tests_fork_without_the_option(pytester: pytest.Pytester):
    pytester.makepyfile(RECORD_PIDS)
    result = pytester.runpytest_subprocess(timeout=INNER_TIMEOUT)
    result.assert_outcomes(passed=3)
    assert where(pytester) == {
        "marked": "forked=True fixture=0 env=0",
        "unmarked": "forked=False fixture=None env=None",
        "kept": "forked=False fixture=None env=None",
    }
    result.stdout.fnmatch_lines(["cowfork: 1 clone ran"])


def test_no_cowfork_marker_keeps_a_test_in_the_template(pytester: pytest.Pytester):
    pytester.makepyfile(RECORD_PIDS)
    result = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)
    result.assert_outcomes(passed=3)
    assert where(pytester) == {
        "marked": "forked=True fixture=0 env=0",
        "unmarked": "forked=True fixture=0 env=0",
        "kept": "forked=False fixture=None env=None",
    }
    result.stdout.fnmatch_lines(["cowfork: 2 clones ran"])


def test_ini_key_forks_every_test(pytester: pytest.Pytester):
    pytester.makeini(
        """
        [pytest]
        cowfork = true
        """
    )
    pytester.makepyfile(RECORD_PIDS)
    result = pytester.runpytest_subprocess(timeout=INNER_TIMEOUT)
    result.assert_outcomes(passed=3)
    assert where(pytester)["unmarked"] == "forked=True fixture=0 env=0"
    assert where(pytester)["kept"] == "forked=False fixture=None env=None"


READS_STDIN = """
    import sys

    def test_input():
        try:
            line = input()
        except Exception as exc:
            print(f"input raised {type(exc).__name__}: {exc}")
        else:
            print(f"input gave {line!r}")
        print(f"read gave {sys.stdin.read()!r}")
        assert False, "show the output"
"""


def test_reading_stdin_under_capture_fails_as_in_plain_pytest(
    pytester: pytest.Pytester,
):
    pytester.makepyfile(test_stdin=READS_STDIN)
    plain = pytester.runpytest_subprocess("-p", "no:cowfork", timeout=INNER_TIMEOUT)
    forked = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)
    expected = [
        "E       OSError: pytest: reading from stdin while output is captured!*",
        "*- Captured stdout call -*",
        "input raised OSError: pytest: reading from stdin while output is captured!*",
    ]
    for result in (plain, forked):
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(expected)


def test_stdin_of_a_clone_is_empty_even_with_capture_off(pytester: pytest.Pytester):
    """With -s, a test in the template could read what was typed at pytest;
    a clone reads /dev/null instead, so it never steals the template's input
    nor waits for a keyboard."""
    pytester.makepyfile(test_stdin=READS_STDIN)
    result = pytester.run(
        sys.executable,
        "-m",
        "pytest",
        f"--basetemp={pytester.path / 'basetemp'}",
        "-s",
        "--cowfork",
        stdin=b"typed at the terminal\n",
        timeout=INNER_TIMEOUT,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*input raised EOFError: EOF when reading a line", "read gave ''"]
    )
    result.stdout.no_fnmatch_line("*typed at the terminal*")
