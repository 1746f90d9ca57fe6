"""Popular plugins work on tests that run in clones, as they do without cowfork."""

from __future__ import annotations

import json

import pytest
from conftest import INNER_TIMEOUT, needs_fork

pytestmark = needs_fork


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args, timeout=INNER_TIMEOUT)


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    """Return the counts of the summary line, ``rerun`` included."""
    return result.parseoutcomes()


# pytest-timeout

# The quick test comes first: the clone of the next test would be forked
# while it runs, before pytest-timeout's wrapper sees that test.
SLOW = """
    import time
    import pytest

    def test_quick():
        pass

    def test_slow_call():
        time.sleep(60)

    @pytest.mark.no_cowfork
    def test_slow_in_the_template():
        time.sleep(60)
"""


@pytest.mark.parametrize(
    "args",
    [["--timeout=1"], ["--timeout=1", "-o", "timeout_func_only=true"]],
    ids=["whole-protocol", "func-only"],
)
def test_pytest_timeout_fails_a_test_in_its_clone_with_its_message(
    pytester: pytest.Pytester, args: list[str]
) -> None:
    """pytest-timeout's signal fires in the clone, which reports the failure;
    the template, and the run, go on. A test in the template is timed there."""
    pytester.makepyfile(test_slow=SLOW)

    result = run(pytester, "--cowfork", "--cowfork-timeout=60", *args)

    result.assert_outcomes(failed=2, passed=1)
    message = "E*Failed: Timeout (>1.0s) from pytest-timeout."
    result.stdout.fnmatch_lines(
        ["*_ test_slow_call _*", message, "*_ test_slow_in_the_template _*", message]
    )
    result.stdout.fnmatch_lines(["cowfork: 2 clones ran*"])
    result.stdout.no_fnmatch_line("*timed out after*")


def test_pytest_timeout_times_the_setup_in_the_clone(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.fixture
        def slow_setup():
            time.sleep(60)

        def test_slow_setup(slow_setup):
            pass

        def test_quick():
            pass
        """
    )

    result = run(pytester, "--cowfork", "--timeout=1")

    result.assert_outcomes(errors=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_slow_setup _*",
            "E*Failed: Timeout (>1.0s) from pytest-timeout.",
        ]
    )


def test_pytest_timeout_thread_method_ends_only_the_clone(
    pytester: pytest.Pytester,
) -> None:
    """Its thread, started in the clone, ends the clone and not the run."""
    pytester.makepyfile(
        """
        import time
        import pytest

        def test_before():
            pass

        @pytest.mark.timeout(1)
        def test_slow():
            time.sleep(60)
        """
    )

    result = run(pytester, "--cowfork", "--timeout-method=thread")

    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*+ Timeout +*"])
    result.stdout.fnmatch_lines(
        ["*the clone running this test (pid *) exited with status 1 during call*"]
    )
    result.stdout.no_fnmatch_line("*PytestCowforkWarning*")


def test_cowfork_timeout_still_applies_beside_pytest_timeout(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_slow=SLOW)

    result = run(
        pytester, "--cowfork", "--timeout=60", "--cowfork-timeout=1", "-k", "call"
    )

    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines(["*timed out after 1 s during call and was killed*"])
    result.stdout.no_fnmatch_line("*from pytest-timeout*")


# pytest-rerunfailures

FLAKY = """
    import os
    import pytest

    STATE = []

    @pytest.fixture(scope="module")
    def shared():
        with open("module-setups", "a") as f:
            f.write("x")
        yield []
        with open("module-teardowns", "a") as f:
            f.write("x")

    def attempt():
        with open("attempts", "a") as f:
            f.write(f"{os.getpid()}\\n")
        with open("attempts") as f:
            return len(f.read().split())

    def test_flaky(shared):
        # Each attempt starts from the template's state, not the last one's.
        assert STATE == [] and shared == []
        STATE.append("changed")
        shared.append("changed")
        assert attempt() == 3

    def test_after(shared):
        assert shared == []
"""


def attempt_pids(pytester: pytest.Pytester) -> list[int]:
    return [int(pid) for pid in (pytester.path / "attempts").read_text().split()]


def test_reruns_run_each_attempt_in_a_fresh_clone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_flaky=FLAKY)

    result = run(pytester, "--cowfork", "--reruns=2", "-rR")

    assert outcomes(result) == {"passed": 2, "rerun": 2}
    result.stdout.fnmatch_lines(
        ["test_flaky.py RR.. *", "RERUN test_flaky.py::test_flaky"]
    )
    result.stdout.fnmatch_lines(["cowfork: 4 clones ran*"])
    pids = attempt_pids(pytester)
    assert len(set(pids)) == 3
    # The module fixture is set up once for every attempt, and torn down once.
    assert (pytester.path / "module-setups").read_text() == "x"
    assert (pytester.path / "module-teardowns").read_text() == "x"


def test_the_flaky_marker_reruns_in_fresh_clones(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_flaky=FLAKY.replace(
            "def test_flaky(", "@pytest.mark.flaky(reruns=1)\n    def test_flaky("
        )
    )

    result = run(pytester, "--cowfork", "-v")

    assert outcomes(result) == {"failed": 1, "passed": 1, "rerun": 1}
    result.stdout.fnmatch_lines(
        ["test_flaky.py::test_flaky RERUN *", "test_flaky.py::test_flaky FAILED *"]
    )
    # The second attempt failed on the count, not on the first one's changes.
    result.stdout.fnmatch_lines(["E       assert 2 == 3*"])
    assert len(set(attempt_pids(pytester))) == 2


def test_a_crashed_attempt_is_rerun(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os

        def test_crashes_once():
            if not os.path.exists("crashed"):
                open("crashed", "w").close()
                os._exit(3)
        """
    )

    result = run(pytester, "--cowfork", "--reruns=1", "-rR")

    assert outcomes(result) == {"passed": 1, "rerun": 1}
    result.stdout.fnmatch_lines(["cowfork: 2 clones ran, 1 crashed"])


def test_a_crash_is_reported_with_rerunfailures_installed_and_unused(
    pytester: pytest.Pytester,
) -> None:
    """Its hooks see the crash report the template makes; they expect state
    that their setup hook records, which the template never ran."""
    pytester.makepyfile(
        """
        import os

        def test_crashes():
            os._exit(3)
        """
    )

    result = run(pytester, "--cowfork", "-p", "rerunfailures")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*exited with status 3 during call*"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


def test_only_rerun_decides_on_the_exception_raised_in_the_clone(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_value_error():
            raise ValueError("flaky network")

        def test_assertion():
            assert False
        """
    )

    result = run(pytester, "--cowfork", "--reruns=1", "--only-rerun=ValueError", "-v")

    assert outcomes(result) == {"failed": 2, "rerun": 1}
    result.stdout.fnmatch_lines(
        [
            "*::test_value_error RERUN *",
            "*::test_value_error FAILED *",
            "*::test_assertion FAILED *",
        ]
    )
    result.stdout.no_fnmatch_line("*::test_assertion RERUN*")


def test_reruns_with_several_jobs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_flaky=FLAKY)

    result = run(pytester, "--cowfork", "--cowfork-jobs=2", "--reruns=2")

    assert outcomes(result) == {"passed": 2, "rerun": 2}
    assert len(set(attempt_pids(pytester))) == 3


# pytest-randomly, and the random state clones share without it

DRAWS = """
    import json
    import os
    import random

    import pytest

    #: Made at import, in the template: every clone gets a copy of it.
    MADE_AT_IMPORT = random.Random(1234)

    @pytest.fixture(autouse=True)
    def record(request):
        yield
        draws = {
            "module": [random.random() for _ in range(3)],
            "instance": MADE_AT_IMPORT.random(),
        }
        os.makedirs("draws", exist_ok=True)
        with open(f"draws/{request.node.name}", "w") as f:
            json.dump(draws, f)

    def test_one():
        pass

    def test_two():
        pass

    def test_three():
        pass
"""


def draws(pytester: pytest.Pytester) -> dict[str, dict[str, object]]:
    found = {
        path.name: json.loads(path.read_text())
        for path in (pytester.path / "draws").iterdir()
    }
    for path in (pytester.path / "draws").iterdir():
        path.unlink()
    return found


def test_pytest_randomly_seeds_clones_as_it_seeds_tests_in_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It reseeds in each test's setup, call and teardown hooks, which run in
    the clone, from the seed and the test's id: the draws match."""
    monkeypatch.delenv("PYTEST_ADDOPTS")
    pytester.makepyfile(test_draws=DRAWS)
    seeded = ["-p", "randomly", "--randomly-seed=4321"]

    run(pytester, "-p", "no:cowfork", *seeded).assert_outcomes(passed=3)
    in_process = draws(pytester)
    forked = run(pytester, "--cowfork", *seeded)
    forked.assert_outcomes(passed=3)

    module_draws = {name: draw["module"] for name, draw in in_process.items()}
    assert {name: draw["module"] for name, draw in draws(pytester).items()} == (
        module_draws
    )
    forked.stdout.fnmatch_lines(
        ["Using --randomly-seed=4321", "cowfork: 3 clones ran*"]
    )
    firsts = {values[0] for values in module_draws.values()}
    assert len(firsts) == 3, "each test has a seed of its own"


def test_without_pytest_randomly_clones_share_generators_but_not_random(
    pytester: pytest.Pytester,
) -> None:
    """Python reseeds the random module in every forked child; a generator
    the template made is copied as it was, so every clone draws the same."""
    pytester.makepyfile(test_draws=DRAWS)

    run(pytester, "--cowfork").assert_outcomes(passed=3)
    forked = draws(pytester)
    run(pytester, "-p", "no:cowfork").assert_outcomes(passed=3)
    in_process = draws(pytester)

    assert len({draw["instance"] for draw in forked.values()}) == 1
    assert len({draw["instance"] for draw in in_process.values()}) == 3
    assert len({draw["module"][0] for draw in forked.values()}) == 3


# hypothesis

# The database is named: on CI, Hypothesis's own profile would turn it off.
GIVEN = """
    import os

    from hypothesis import given, settings, strategies as st
    from hypothesis.database import DirectoryBasedExampleDatabase

    @settings(database=DirectoryBasedExampleDatabase(".hypothesis/examples"))
    @given(st.integers())
    def test_small(n):
        with open(f"pids.{os.getpid()}", "w"):
            pass
        assert n < 1000

    @given(st.lists(st.integers()))
    def test_sorted_twice(xs):
        assert sorted(sorted(xs)) == sorted(xs)
"""


def test_hypothesis_shrinks_in_the_clone_and_shows_the_example(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_given=GIVEN)

    result = run(pytester, "--cowfork")

    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*: test_small(", "*n=1000,"])
    pids = {int(path.suffix[1:]) for path in pytester.path.glob("pids.*")}
    assert len(pids) == 1, "every example of a test runs in its one clone"
    # The example database, written by the clone, holds the failure:
    # the next run tries it first.
    examples = pytester.path / ".hypothesis" / "examples"
    assert any(path.is_file() for path in examples.rglob("*"))
    again = run(pytester, "--cowfork", "-k", "small", "-p", "no:cacheprovider")
    again.assert_outcomes(failed=1, deselected=1)
    again.stdout.fnmatch_lines(["*n=1000,*"])


def test_a_pytest_rerunfailures_cowfork_cannot_drive_is_refused(
    pytester: pytest.Pytester,
) -> None:
    """A release whose loop no longer calls runtestprotocol would run each
    test once: --reruns is refused, and a flaky test fails its setup."""
    pytester.makeconftest(
        """
        import pytest_rerunfailures

        del pytest_rerunfailures.runtestprotocol
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.flaky(reruns=1)
        def test_flaky():
            pass

        def test_plain():
            pass
        """
    )

    refused = run(pytester, "--cowfork", "--reruns=1")

    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(
        ["ERROR: --reruns with --cowfork: this release of pytest-rerunfailures *"]
    )
    marked = run(pytester, "--cowfork")
    marked.assert_outcomes(errors=1, passed=1)
    marked.stdout.fnmatch_lines(["@pytest.mark.flaky in a clone: this release *"])
