"""What the template decides: which items fork, what it sets up, and when."""

from __future__ import annotations

import os

import pytest
from conftest import INNER_TIMEOUT, interrupt_when, needs_fork

pytestmark = needs_fork


#: A session fixture that keeps a thread running in the template.
POLLER = """
    import threading
    import pytest

    @pytest.fixture(scope="session")
    def poller():
        stop = threading.Event()
        thread = threading.Thread(target=stop.wait, name="poller-thread")
        thread.start()
        yield
        stop.set()
        thread.join()
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args, timeout=INNER_TIMEOUT)


def test_no_cowfork_runs_even_marked_tests_in_the_template(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        TEMPLATE = os.getpid()

        @pytest.mark.cowfork(timeout=5)
        def test_marked(clone_id):
            assert os.getpid() == TEMPLATE
            assert clone_id is None
        """
    )

    result = run(pytester, "--cowfork", "--no-cowfork")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["cowfork: off (--no-cowfork), every test runs in this process"]
    )
    result.stdout.no_fnmatch_line("cowfork: * clone* ran*")


def test_tests_their_marks_skip_get_no_clone_and_no_wide_setup(
    pytester: pytest.Pytester,
) -> None:
    """pytest skips such a test before setting anything up; so does cowfork."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        def expensive():
            open("expensive.ran", "w").close()

        @pytest.mark.skip(reason="not today")
        def test_skipped(expensive):
            pass

        @pytest.mark.skipif("True", reason="never")
        def test_skipped_if(expensive):
            pass

        @pytest.mark.xfail(run=False, reason="would hang")
        def test_not_run(expensive):
            pass
        """
    )

    result = run(pytester, "--cowfork", "-rsx")

    result.assert_outcomes(skipped=2, xfailed=1)
    result.stdout.fnmatch_lines(["*not today*", "*never*", "*would hang*"])
    assert not (pytester.path / "expensive.ran").exists()
    result.stdout.no_fnmatch_line("cowfork: * clone* ran*")


def test_a_skip_raised_by_a_wide_fixture_is_reported_as_a_skip(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="session")
        def database():
            pytest.skip("no database here")

        def test_one(database):
            pass

        def test_two(database):
            pass

        def test_three():
            pass
        """
    )

    result = run(pytester, "--cowfork", "-rs")

    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(
        ["SKIPPED *:7: no database here", "SKIPPED *:10: no database here"]
    )
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


def test_a_wide_fixture_requested_inside_a_test_is_torn_down_in_its_clone(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.fixture(scope="session")
        def resource():
            yield
            with open("teardowns.log", "a") as log:
                log.write(f"{os.getpid()}\\n")

        def test_asks_at_run_time(request):
            request.getfixturevalue("resource")
        """
    )

    result = run(pytester, "--cowfork")

    result.assert_outcomes(passed=1)
    assert len((pytester.path / "teardowns.log").read_text().split()) == 1


def test_threads_in_the_template_are_named_in_a_warning(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        POLLER
        + """
    def test_one(poller):
        pass

    def test_two(poller):
        pass
    """
    )

    result = run(pytester, "--cowfork")

    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*PytestCowforkWarning: the template is forking while 1 other "
            "thread(s) run (poller-thread)*"
        ]
    )


def test_a_thread_warning_turned_error_fails_the_test_it_would_fork(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        POLLER
        + """
    def test_one(poller):
        pass
    """
    )

    result = run(
        pytester, "--cowfork", "-W", "error::pytest_cowfork.PytestCowforkWarning"
    )

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_one*", "*poller-thread*"])


def test_pdb_still_reports_the_failure_it_stops_at(
    pytester: pytest.Pytester,
) -> None:
    """At end of file on standard input, the debugger quits, after the report."""
    pytester.makepyfile(
        """
        def test_fails():
            assert 1 == 2
        """
    )

    result = run(pytester, "--cowfork", "--pdb")

    result.stdout.fnmatch_lines(["*assert 1 == 2*", "*1 failed*"])


def test_ctrl_c_lets_running_clones_tear_down(pytester: pytest.Pytester) -> None:
    """As without cowfork, an interrupted test's fixtures are torn down."""
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.fixture
        def resource():
            yield
            open("torn-down", "w").close()

        def test_waits(resource):
            open("started", "w").close()
            time.sleep(60)
        """
    )
    returncode, output = interrupt_when(
        pytester, [pytester.path / "started"], ["--cowfork"]
    )

    assert returncode == pytest.ExitCode.INTERRUPTED, output
    assert (pytester.path / "torn-down").exists(), output


def test_a_standby_clone_sets_nothing_up_early(pytester: pytest.Pytester) -> None:
    """With one job, the next test's class is set up only after this test."""
    pytester.makepyfile(
        """
        import time

        def log(line):
            with open("order.log", "a") as file:
                file.write(line + "\\n")

        def test_first():
            time.sleep(0.5)
            log("test_first done")

        class TestNext:
            @classmethod
            def setup_class(cls):
                log("setup_class")

            def test_second(self):
                log("test_second")

            def test_third(self):
                log("test_third")
        """
    )

    result = run(pytester, "--cowfork")

    result.assert_outcomes(passed=3)
    assert (pytester.path / "order.log").read_text().split("\n")[:-1] == [
        "test_first done",
        "setup_class",
        "test_second",
        "test_third",
    ]


def test_clone_ids_are_set_in_a_clone_and_none_in_the_template(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        def test_in_clone(clone_id):
            assert clone_id == os.environ["CLONE_ID"] == "0"

        @pytest.mark.no_cowfork
        def test_in_template(clone_id):
            assert clone_id is None
            assert "CLONE_ID" not in os.environ
        """
    )

    result = run(pytester, "--cowfork")

    result.assert_outcomes(passed=2)


def test_os_environ_is_kept_out_of_later_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os

        def test_sets():
            os.environ["COWFORK_LEAK"] = "1"

        def test_does_not_see_it():
            assert "COWFORK_LEAK" not in os.environ
        """
    )

    assert "COWFORK_LEAK" not in os.environ
    run(pytester, "--cowfork").assert_outcomes(passed=2)


def test_output_of_a_late_wide_teardown_is_captured_in_the_teardown(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="session")
        def server():
            yield
            print("stop server")

        def test_asks_late(request):
            request.getfixturevalue("server")
        """
    )

    result = run(pytester, "--cowfork", "-rP")

    result.stdout.fnmatch_lines(["*Captured stdout teardown*", "stop server"])


def test_pdb_shows_a_failure_once_as_plain_pytest_does(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_fails():
            assert 1 == 2
        """
    )

    plain = run(pytester, "-p", "no:cowfork", "--pdb")
    cowfork = run(pytester, "--cowfork", "--pdb")

    count = str(cowfork.stdout).count("assert 1 == 2")
    assert count == str(plain.stdout).count("assert 1 == 2")
    assert count > 0
