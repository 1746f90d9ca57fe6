"""pytest's own options behave with clones as they do without the plugin."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET

import pytest
from conftest import INNER_TIMEOUT, needs_fork
from test_reports import ALL_OUTCOMES

pytestmark = needs_fork

_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args, timeout=INNER_TIMEOUT)


def test_junitxml_matches_a_run_without_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_outcomes=ALL_OUTCOMES)

    def cases(*args: str) -> list[tuple[object, ...]]:
        run(pytester, *args, "--junitxml=report.xml", "-o", "junit_logging=all")
        tree = ET.parse(pytester.path / "report.xml")
        return [
            (
                case.get("classname"),
                case.get("name"),
                [
                    (
                        child.tag,
                        child.get("message"),
                        _ADDRESS.sub("", child.text or ""),
                    )
                    for child in case
                ],
            )
            for case in tree.iter("testcase")
        ]

    plain = cases("-p", "no:cowfork")
    forked = cases("--cowfork")

    assert forked == plain
    assert len(forked) == 12
    assert {tag for *_, children in forked for tag, *_ in children} == {
        "error",
        "failure",
        "skipped",
        "system-out",
        "system-err",
    }


def test_junitxml_reports_a_crashed_clone_as_a_failure(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os

        def test_crashes():
            os._exit(3)
        """
    )

    run(pytester, "--cowfork", "--junitxml=report.xml")

    [case] = ET.parse(pytester.path / "report.xml").iter("testcase")
    failure = case.find("failure")
    assert failure is not None
    assert "exited with status 3 during call" in str(failure.get("message"))


def test_durations_count_the_wide_fixtures_the_template_sets_up(
    pytester: pytest.Pytester,
) -> None:
    """A wide fixture's setup counts in its first test's setup, its teardown
    in its last test's teardown, as without the plugin. The sleeps give those
    phases a duration they cannot go below."""
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.fixture(scope="module")
        def wide():
            time.sleep(0.2)
            yield
            time.sleep(0.2)

        def test_one(wide):
            pass

        def test_two(wide):
            pass
        """
    )

    result = run(pytester, "--cowfork", "--durations=0", "-vv")

    durations = {}
    for line in result.outlines:
        match = re.fullmatch(r"(\d+\.\d+)s (setup|call|teardown) +\S+::(\w+)", line)
        if match:
            durations[match[2], match[3]] = float(match[1])
    assert len(durations) == 6
    assert durations["setup", "test_one"] >= 0.2
    assert durations["teardown", "test_two"] >= 0.2


FAILURES = """
    import os

    def test_passes():
        pass

    def test_fails():
        assert False

    def test_crashes():
        os._exit(3)
"""


def test_last_failed_reruns_the_tests_that_failed_in_clones(
    pytester: pytest.Pytester,
) -> None:
    """The cache plugin records the reports the template logs, crashes too."""
    pytester.makepyfile(test_failures=FAILURES)
    run(pytester, "--cowfork").assert_outcomes(passed=1, failed=2)

    result = run(pytester, "--cowfork", "--lf", "-v")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["run-last-failure: rerun previous 2 failures"])
    result.stdout.no_fnmatch_line("*::test_passes*")


def test_failed_first_runs_the_tests_that_failed_in_clones_first(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_failures=FAILURES)
    run(pytester, "--cowfork").assert_outcomes(passed=1, failed=2)

    result = run(pytester, "--cowfork", "--ff", "-v")

    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*::test_fails FAILED*",
            "*::test_crashes FAILED*",
            "*::test_passes PASSED*",
        ]
    )


@pytest.mark.parametrize(
    ("args", "ran"),
    [(["-k", "not slow"], "test_fast"), (["-m", "slow"], "test_slow")],
)
def test_tests_deselected_with_k_and_m_get_no_clone(
    pytester: pytest.Pytester, args: list[str], ran: str
) -> None:
    pytester.makeini("[pytest]\nmarkers = slow: a slow test")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.slow
        def test_slow():
            pass

        def test_fast():
            pass
        """
    )

    result = run(pytester, "--cowfork", "-v", *args)

    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines([f"*::{ran} PASSED*", "cowfork: 1 clone ran*"])


def test_setup_show_lists_the_fixtures_of_template_and_clones(
    pytester: pytest.Pytester,
) -> None:
    """Wide fixtures are shown by the template, the others by each clone,
    in the order a run without the plugin shows them."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        def wide():
            yield

        @pytest.fixture
        def narrow():
            yield

        def test_one(wide, narrow):
            pass

        def test_two(wide, narrow):
            pass
        """
    )

    def shown(*args: str) -> list[str]:
        result = run(pytester, "--setup-show", *args)
        result.assert_outcomes(passed=2)
        # The progress dot of a clone's test may follow its teardown lines.
        return [
            line.rstrip(" .")
            for line in result.outlines
            if (line.startswith("    ") and "SETUP" in line)
            or "TEARDOWN" in line
            or "(fixtures used:" in line
        ]

    plain = shown("-p", "no:cowfork")

    assert shown("--cowfork") == plain
    assert len(plain) == 8


def test_collect_only_forks_nothing(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        def pytest_cowfork_before_fork(item, clone_id):
            open("forked", "w").close()
        """
    )
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass")

    result = run(pytester, "--cowfork", "--collect-only", "-q")

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*::test_a", "*::test_b"])
    result.stdout.no_fnmatch_line("cowfork: * ran*")
    assert not (pytester.path / "forked").exists()


PIDS = """
    import os
    import pytest

    @pytest.mark.parametrize("i", range(2))
    def test_pid(i):
        with open(f"pid.{i}", "w") as f:
            f.write(str(os.getpid()))
"""


def test_p_no_cowfork_unloads_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_pids=PIDS)

    result = run(pytester, "-p", "no:cowfork")

    result.assert_outcomes(passed=2)
    pids = {(pytester.path / f"pid.{i}").read_text() for i in range(2)}
    assert len(pids) == 1, "both tests ran in the pytest process"
    assert str(os.getpid()) not in pids
    result.stdout.no_fnmatch_line("cowfork:*")
    refused = run(pytester, "-p", "no:cowfork", "--cowfork")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*unrecognized arguments: --cowfork*"])


MARKED = """
    import pytest

    @pytest.mark.cowfork
    def test_marked():
        pass

    @pytest.mark.no_cowfork
    def test_kept_here():
        pass
"""


def test_p_no_cowfork_leaves_the_markers_unknown_to_strict_markers(
    pytester: pytest.Pytester,
) -> None:
    """Unloaded, the plugin registers no markers; the ini file can."""
    pytester.makepyfile(test_marked=MARKED)

    result = run(pytester, "-p", "no:cowfork", "--strict-markers")

    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*'cowfork' not found in `markers` configuration*"])

    pytester.makeini(
        """
        [pytest]
        markers =
            cowfork: run in a clone (pytest-cowfork)
            no_cowfork: run in the pytest process (pytest-cowfork)
        """
    )
    declared = run(pytester, "-p", "no:cowfork", "--strict-markers")
    declared.assert_outcomes(passed=2)
    # Loaded, the plugin accepts the markers declared in the ini file too.
    run(pytester, "--strict-markers").assert_outcomes(passed=2)
