"""Options, ini keys and markers: good values are shown, bad ones refused.

None of these runs forks (a usage error stops pytest before any test, and
a misused marker fails the test before its clone is forked), so they run
in-process.
"""

from __future__ import annotations

import os

import pytest
from conftest import INNER_TIMEOUT


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--cowfork-jobs", "zero"),
        ("--cowfork-jobs", "0"),
        ("--cowfork-jobs", "-2"),
        ("--cowfork-jobs", "1.5"),
        ("--cowfork-timeout", "soon"),
        ("--cowfork-timeout", "-1"),
        ("--cowfork-timeout", "inf"),
        ("--cowfork-timeout", "nan"),
        ("--cowfork-scope", "function"),
        ("--cowfork-scope", "Session"),
    ],
)
def test_bad_option_value_is_a_usage_error_naming_it(
    pytester: pytest.Pytester, option: str, value: str
):
    pytester.makepyfile("def test_never_runs(): pass")
    result = pytester.runpytest(f"{option}={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*error: argument {option}: '{value}' *"])
    result.stdout.no_fnmatch_line("*test_never_runs*")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cowfork_jobs", "lots"),
        ("cowfork_jobs", "0"),
        ("cowfork_timeout", "forever"),
        ("cowfork_timeout", "-3"),
        ("cowfork_scope", "function"),
        ("cowfork", "maybe"),
    ],
)
def test_bad_ini_value_is_a_usage_error_naming_it(
    pytester: pytest.Pytester, key: str, value: str
):
    pytester.makeini(f"[pytest]\n{key} = {value}\n")
    pytester.makepyfile("def test_never_runs(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: *{key}*{value}*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_misused_marker_fails_the_test_with_a_message(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.cowfork("x")
        def test_positional():
            pass

        @pytest.mark.cowfork(timeout="abc")
        def test_text_timeout():
            pass

        @pytest.mark.cowfork(timeout=-1)
        def test_negative_timeout():
            pass

        @pytest.mark.cowfork(retries=3)
        def test_unknown_keyword():
            pass

        @pytest.mark.cowfork(timeout=5)
        def test_used_right():
            pass
        """
    )
    # The one correct marker forks: in a subprocess, as every inner run that
    # forks, away from what the outer run holds open.
    result = pytester.runpytest_subprocess(timeout=INNER_TIMEOUT)
    result.assert_outcomes(errors=4, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_positional _*",
            "@pytest.mark.cowfork takes only timeout=SECONDS, not 'x'; *",
            "*_ ERROR at setup of test_text_timeout _*",
            "@pytest.mark.cowfork(timeout='abc') needs a number of seconds *",
            "*_ ERROR at setup of test_negative_timeout _*",
            "@pytest.mark.cowfork(timeout=-1) needs a number of seconds *",
            "*_ ERROR at setup of test_unknown_keyword _*",
            "@pytest.mark.cowfork takes only timeout=SECONDS, not retries; *",
        ]
    )


def test_markers_are_registered(pytester: pytest.Pytester):
    result = pytester.runpytest("--markers")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.cowfork(timeout=None): *",
            "@pytest.mark.no_cowfork: *",
        ],
        consecutive=False,
    )


def test_header_shows_the_settings_from_options(pytester: pytest.Pytester):
    result = pytester.runpytest(
        "--cowfork",
        "--cowfork-jobs=2",
        "--cowfork-scope=module",
        "--cowfork-timeout=2.5",
    )
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(
        [
            "cowfork: every test in its own clone "
            "(jobs: 2, template scope: module, timeout: 2.5 s)"
        ]
    )


def test_header_shows_the_settings_from_the_ini_file(pytester: pytest.Pytester):
    pytester.makeini(
        """
        [pytest]
        cowfork_jobs = 3
        cowfork_scope = session
        cowfork_timeout = 0
        """
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        [
            "cowfork: each test marked cowfork in its own clone "
            "(jobs: 3, template scope: session, timeout: none)"
        ]
    )


def test_options_override_the_ini_file(pytester: pytest.Pytester):
    pytester.makeini(
        """
        [pytest]
        cowfork_jobs = 3
        cowfork_scope = session
        cowfork_timeout = 10
        """
    )
    result = pytester.runpytest(
        "--cowfork-jobs=1", "--cowfork-scope=module", "--cowfork-timeout=4"
    )
    result.stdout.fnmatch_lines(
        ["cowfork: * (jobs: 1, template scope: module, timeout: 4 s)"]
    )


def test_timeout_zero_on_the_command_line_lifts_the_ini_limit(
    pytester: pytest.Pytester,
):
    """0 means no limit, so ``--cowfork-timeout=0`` is how to debug a test
    at leisure in a project whose ini file sets a limit."""
    pytester.makeini(
        """
        [pytest]
        cowfork_timeout = 10
        """
    )
    result = pytester.runpytest("--cowfork-timeout=0")
    result.stdout.fnmatch_lines(["cowfork: * timeout: none)"])


def test_jobs_auto_means_one_clone_per_usable_cpu(pytester: pytest.Pytester):
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:
        cpus = os.cpu_count()
    result = pytester.runpytest("--cowfork-jobs=auto")
    result.stdout.fnmatch_lines([f"cowfork: * (jobs: {cpus}, *"])
