"""Warnings raised in clones reach pytest in the template, as in-process ones do."""

from __future__ import annotations

import json

import pytest
from conftest import INNER_TIMEOUT, needs_fork

pytestmark = needs_fork

WARNS = """
    import warnings
    import pytest

    @pytest.mark.filterwarnings("error::UserWarning")
    def test_strict():
        pass

    def test_user():
        warnings.warn(UserWarning("from test_user"))

    def test_deprecated():
        warnings.warn(DeprecationWarning("from test_deprecated"))
"""

#: A conftest that records each pytest_warning_recorded call in the process
#: that makes it.
RECORDER = """
    import json
    import os

    def pytest_sessionstart(session):
        with open("pids.txt", "a") as f:
            f.write(f"{os.getpid()}\\n")

    def pytest_warning_recorded(warning_message, when, nodeid, location):
        record = {
            "pid": os.getpid(),
            "when": when,
            "nodeid": nodeid,
            "message": str(warning_message.message),
            "category": warning_message.category.__name__,
            "filename": os.path.basename(warning_message.filename),
            "lineno": warning_message.lineno,
            "location": location,
        }
        with open("recorded.jsonl", "a") as f:
            f.write(json.dumps(record) + "\\n")
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:randomly", *args, timeout=INNER_TIMEOUT
    )


def summary(result: pytest.RunResult) -> list[str]:
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "warnings summary" in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("-- Docs"))
    return lines[start:end]


@pytest.mark.parametrize("workers", [[], ["-n", "1"]])
def test_the_warnings_summary_is_the_same_as_in_process(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """A filterwarnings mark applies to its own test only, not the next one,
    whose clone may be forked while the marked test runs."""
    if workers:
        pytest.importorskip("xdist")
    pytester.makepyfile(WARNS)

    in_process = run(pytester, "--no-cowfork", *workers)
    in_clones = run(pytester, "--cowfork", *workers)

    in_process.assert_outcomes(passed=3, warnings=2)
    in_clones.assert_outcomes(passed=3, warnings=2)
    assert summary(in_clones) == summary(in_process)
    assert (
        sum("UserWarning: from test_user" in line for line in summary(in_clones)) == 1
    )


def test_warnings_as_errors_fail_the_test_in_its_clone(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(WARNS)

    result = run(pytester, "--cowfork", "-W", "error::UserWarning")

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["E *UserWarning: from test_user", "FAILED *::test_user - *"]
    )


def test_the_warning_recorded_hook_runs_in_the_template(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(RECORDER)
    pytester.makepyfile(WARNS)

    def records(*args: str) -> list[dict[str, object]]:
        for name in ("recorded.jsonl", "pids.txt"):
            (pytester.path / name).unlink(missing_ok=True)
        run(pytester, *args).assert_outcomes(passed=3, warnings=2)
        template_pid = int((pytester.path / "pids.txt").read_text())
        lines = (pytester.path / "recorded.jsonl").read_text().splitlines()
        found = [json.loads(line) for line in lines]
        assert {record.pop("pid") for record in found} == {template_pid}
        return found

    in_process = records("--no-cowfork")
    in_clones = records("--cowfork")

    assert in_clones == in_process
    assert [(r["when"], r["nodeid"], r["lineno"]) for r in in_clones] == [
        (
            "runtest",
            "test_the_warning_recorded_hook_runs_in_the_template.py::test_user",
            9,
        ),
        (
            "runtest",
            "test_the_warning_recorded_hook_runs_in_the_template.py::test_deprecated",
            12,
        ),
    ]
