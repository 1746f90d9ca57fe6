"""The hooks cowfork offers conftest files and plugins."""

from __future__ import annotations

import pytest
from conftest import INNER_TIMEOUT, needs_fork

pytestmark = needs_fork

CONFTEST = """
    import os

    def log(line):
        with open(os.path.join(os.path.dirname(__file__), "hooks.log"), "a") as f:
            f.write(line + "\\n")

    TEMPLATE = os.getpid()

    def pytest_cowfork_before_fork(item, clone_id):
        assert os.getpid() == TEMPLATE
        log(f"before_fork {item.name} {clone_id}")

    def pytest_cowfork_clone_started(item, clone_id):
        assert os.getpid() != TEMPLATE
        assert os.environ["CLONE_ID"] == str(clone_id)
        log(f"clone_started {item.name} {clone_id}")

    def pytest_cowfork_clone_finished(
        item, pid, clone_id, exit_status, wall_time, max_rss, private_dirty,
        fork_time
    ):
        assert os.getpid() == TEMPLATE != pid
        assert wall_time >= 0
        assert fork_time > 0
        assert private_dirty is None, "measured only with --cowfork-memory"
        status = "reported" if exit_status is None else os.waitstatus_to_exitcode(
            exit_status
        )
        rss = "rss" if max_rss and max_rss > 1024 * 1024 else max_rss
        log(f"clone_finished {item.name} {clone_id} {status} {rss}")
"""


def test_each_hook_fires_once_per_clone_in_the_right_process(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        import os

        def test_passes():
            pass

        def test_exits():
            os._exit(3)
        """
    )

    result = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)

    result.assert_outcomes(passed=1, failed=1)
    lines = (pytester.path / "hooks.log").read_text().splitlines()
    assert sorted(lines) == sorted(
        [
            "before_fork test_passes 0",
            "clone_started test_passes 0",
            "clone_finished test_passes 0 reported rss",
            "before_fork test_exits 0",
            "clone_started test_exits 0",
            "clone_finished test_exits 0 3 None",
        ]
    )


def test_a_failing_clone_started_hook_fails_the_setup(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        def pytest_cowfork_clone_started(item, clone_id):
            raise RuntimeError("could not reopen the database")
        """
    )
    pytester.makepyfile("def test_a(): pass")

    result = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of test_a*", "*RuntimeError: could not reopen the database"]
    )


def test_the_hooks_are_listed_by_pytest(pytester: pytest.Pytester) -> None:
    """An unknown hook name in a conftest would be an error under pluggy."""
    pytester.makeconftest(
        """
        def pytest_cowfork_before_fork(item, clone_id):
            pass
        """
    )
    pytester.makepyfile("def test_a(): pass")

    result = pytester.runpytest("--collect-only", "-q")

    assert result.ret == pytest.ExitCode.OK
