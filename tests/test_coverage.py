"""Lines that clones run count in pytest-cov's and coverage.py's data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import INNER_TIMEOUT, needs_fork

pytest_cov = pytest.importorskip("pytest_cov")
coverage = pytest.importorskip("coverage")
pytestmark = needs_fork

#: A package whose every function body is one line, so each is easy to name.
MOD = """\
def in_template():
    return "session fixture"


def in_setup():
    return "function fixture"


def in_call():
    return "test body"


def in_teardown():
    return "fixture teardown"


def never():
    return "nobody"
"""
IN_TEMPLATE, IN_SETUP, IN_CALL, IN_TEARDOWN, NEVER = 2, 6, 10, 14, 18
#: The def lines, run when the template imports the module.
DEFS = [1, 5, 9, 13, 17]

TESTS = """
import pytest
from pkg import mod


@pytest.fixture(scope="session")
def wide():
    return mod.in_template()


@pytest.fixture
def per_test():
    mod.in_setup()
    yield
    mod.in_teardown()


@pytest.mark.parametrize("i", range(4))
def test_calls(i, wide, per_test):
    assert mod.in_call() == "test body"
"""


@pytest.fixture(autouse=True)
def _no_outer_coverage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a coverage.py measuring this suite out of the inner runs."""
    for name in ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(**{"pkg/__init__.py": "", "pkg/mod.py": MOD})
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", *args, timeout=INNER_TIMEOUT
    )


def executed(pytester: pytest.Pytester, report: str = "cov.json") -> list[int]:
    """Return the lines of pkg/mod.py that a JSON report says ran."""
    files = json.loads((pytester.path / report).read_text())["files"]
    lines: list[int] = files[str(Path("pkg", "mod.py"))]["executed_lines"]
    return lines


def leftovers(pytester: pytest.Pytester) -> list[str]:
    return sorted(path.name for path in pytester.path.glob(".coverage.*"))


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([], id="one-job"),
        pytest.param(["--cowfork-jobs", "2"], id="two-jobs"),
        pytest.param(["-n", "2"], id="xdist"),
        pytest.param(["--cov-branch"], id="branch"),
    ],
)
def test_lines_run_in_clones_count_once_with_pytest_cov(
    suite: pytest.Pytester, extra: list[str]
) -> None:
    suite.makepyfile(test_calls=TESTS)

    result = run(
        suite,
        "--cowfork",
        "--cov=pkg",
        "--cov-report=json:cov.json",
        "--cov-report=term-missing",
        *extra,
    )

    result.assert_outcomes(passed=4)
    assert executed(suite) == sorted(
        [*DEFS, IN_TEMPLATE, IN_SETUP, IN_CALL, IN_TEARDOWN]
    )
    result.stdout.fnmatch_lines([f"pkg*mod.py * 10 * 1 * 90% * {NEVER}"])
    assert leftovers(suite) == []
    assert (suite.path / ".coverage").exists()


def test_a_clone_that_ends_early_keeps_what_it_measured(
    suite: pytest.Pytester,
) -> None:
    """os._exit and sys.exit keep the phase they end; a kill keeps earlier ones."""
    suite.makepyfile(
        test_ends="""
        import os
        import signal
        import sys
        import pytest
        from pkg import mod

        @pytest.fixture
        def set_up():
            mod.in_setup()

        def test_os_exit():
            mod.in_call()
            os._exit(0)

        def test_sys_exit():
            mod.in_template()
            sys.exit(3)

        def test_killed(set_up):
            os.kill(os.getpid(), signal.SIGKILL)

        def test_os_exit_in_teardown(request):
            request.addfinalizer(lambda: (mod.in_teardown(), os._exit(5)))
        """
    )

    result = run(suite, "--cowfork", "--cov=pkg", "--cov-report=json:cov.json")

    result.assert_outcomes(passed=1, failed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*the clone running this test * exited with status 5 during teardown*",
            "*the clone running this test * exited with status 0 during call*",
        ]
    )
    assert executed(suite) == sorted(
        [*DEFS, IN_TEMPLATE, IN_SETUP, IN_CALL, IN_TEARDOWN]
    )
    assert leftovers(suite) == []


@pytest.mark.parametrize(
    ("tests", "code", "message"),
    [
        pytest.param(
            "def test_all():\n    from pkg import mod\n"
            "    for name in dir(mod):\n"
            "        if not name.startswith('_'):\n"
            "            getattr(mod, name)()\n",
            pytest.ExitCode.OK,
            "Required test coverage of 100% reached. Total coverage: 100.00%",
            id="reached",
        ),
        pytest.param(
            TESTS,
            pytest.ExitCode.TESTS_FAILED,
            "FAIL Required test coverage of 100% not reached. Total coverage: 90.00%",
            id="not-reached",
        ),
    ],
)
def test_fail_under_sees_the_lines_clones_ran(
    suite: pytest.Pytester, tests: str, code: pytest.ExitCode, message: str
) -> None:
    suite.makepyfile(test_fail_under=tests)

    result = run(suite, "--cowfork", "--cov=pkg", "--cov-fail-under=100")

    assert result.ret == code
    result.stdout.fnmatch_lines([f"*{message}*"])


def test_xml_report_counts_clone_lines(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_calls=TESTS)

    result = run(suite, "--cowfork", "--cov=pkg", "--cov-report=xml:cov.xml")

    result.assert_outcomes(passed=4)
    xml = (suite.path / "cov.xml").read_text()
    assert f'<line number="{IN_CALL}" hits="1"/>' in xml
    assert f'<line number="{NEVER}" hits="0"/>' in xml


def test_contexts_name_the_tests_that_ran_in_clones(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_calls=TESTS)

    result = run(suite, "--cowfork", "--cov=pkg", "--cov-context=test")

    result.assert_outcomes(passed=4)
    data = coverage.CoverageData(basename=str(suite.path / ".coverage"))
    data.read()
    mod = str(suite.path / "pkg" / "mod.py")
    contexts = data.contexts_by_lineno(mod)
    for line, when in [
        (IN_SETUP, "setup"),
        (IN_CALL, "run"),
        (IN_TEARDOWN, "teardown"),
    ]:
        tests = [f"test_calls.py::test_calls[{i}]|{when}" for i in range(4)]
        assert sorted(contexts[line]) == tests


@pytest.mark.parametrize(
    "rcfile",
    [
        pytest.param("", id="default"),
        # With these patches coverage.py saves at os._exit and restarts
        # measuring in forked processes; neither may touch the data file.
        pytest.param("[run]\npatch =\n    _exit\n    fork\n", id="patched"),
    ],
)
def test_coverage_run_counts_clone_lines(suite: pytest.Pytester, rcfile: str) -> None:
    suite.makepyfile(test_calls=TESTS)
    (suite.path / ".coveragerc").write_text(rcfile)

    result = suite.run(
        sys.executable,
        "-m",
        "coverage",
        "run",
        "--source=pkg",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--cowfork",
        timeout=INNER_TIMEOUT,
    )
    report = suite.run(
        sys.executable, "-m", "coverage", "json", "-o", "cov.json", timeout=60
    )

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert report.ret == 0, report.stdout.str()
    assert executed(suite) == sorted(
        [*DEFS, IN_TEMPLATE, IN_SETUP, IN_CALL, IN_TEARDOWN]
    )
    assert leftovers(suite) == []


def test_coverage_run_in_parallel_mode_leaves_one_file(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_calls=TESTS)

    result = suite.run(
        sys.executable,
        "-m",
        "coverage",
        "run",
        "--parallel-mode",
        "--source=pkg",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--cowfork",
        "--cowfork-jobs=2",
        timeout=INNER_TIMEOUT,
    )

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert len(leftovers(suite)) == 1, "the template's own data file only"
    suite.run(sys.executable, "-m", "coverage", "combine", timeout=60)
    suite.run(sys.executable, "-m", "coverage", "json", "-o", "cov.json", timeout=60)
    assert executed(suite) == sorted(
        [*DEFS, IN_TEMPLATE, IN_SETUP, IN_CALL, IN_TEARDOWN]
    )


@pytest.mark.parametrize(
    ("args", "measuring"),
    [
        pytest.param([], False, id="without-cov"),
        pytest.param(["--cov=pkg"], True, id="with-cov"),
    ],
)
def test_clones_do_coverage_work_only_when_coverage_measures(
    suite: pytest.Pytester, args: list[str], measuring: bool
) -> None:
    suite.makepyfile(
        f"""
        import os
        from pytest_cowfork import clone

        def test_clone():
            assert os.environ["CLONE_ID"] == "0"
            assert (clone._coverage is not None) is {measuring}
            assert (type(os._exit).__name__ == "function") is {measuring}
        """
    )

    result = run(suite, "--cowfork", *args)

    result.assert_outcomes(passed=1)


def test_a_coverage_py_it_does_not_know_loses_lines_with_a_warning(
    suite: pytest.Pytester,
) -> None:
    suite.makeconftest(
        """
        import coverage.collector

        def pytest_configure():
            # The Coverage of pytest-cov has started already.
            del coverage.collector.Collector.use_data
        """
    )
    suite.makepyfile(test_calls=TESTS)

    result = run(suite, "--cowfork", "--cov=pkg", "--cov-report=json:cov.json")

    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "cowfork: warning: lines run in clones are not all in the coverage data: "
            "coverage.py * has changed in a way cowfork does not know; "
            "run with --no-cowfork to measure every line"
        ]
    )
    assert IN_CALL not in executed(suite)
    assert IN_TEMPLATE in executed(suite)
    assert leftovers(suite) == []


def test_a_clone_that_cannot_send_its_data_keeps_its_outcome(
    suite: pytest.Pytester,
) -> None:
    suite.makeconftest(
        """
        import coverage

        def pytest_cowfork_clone_started():
            def broken(self):
                raise OSError("disk on fire")

            coverage.CoverageData.dumps = broken
        """
    )
    suite.makepyfile(test_calls=TESTS + "\n\ndef test_fails():\n    assert False\n")

    result = run(suite, "--cowfork", "--cov=pkg")

    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(
        [
            "cowfork: warning: lines run in clones are not all in the coverage data: "
            "a clone could not save its data: OSError('disk on fire')"
        ]
    )
    assert leftovers(suite) == []


def test_a_pytest_cov_that_measures_forks_itself_is_named(
    suite: pytest.Pytester,
) -> None:
    """pytest-cov before 7 has a module of its own for forked tests."""
    suite.makeconftest(
        """
        import sys
        import types

        import pytest_cov

        sys.modules["pytest_cov.embed"] = types.ModuleType("pytest_cov.embed")
        """
    )
    suite.makepyfile(test_calls=TESTS)

    result = run(suite, "--cowfork", "--cov=pkg")

    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "cowfork: warning: lines run in clones are not all in the coverage data: "
            f"pytest-cov {pytest_cov.__version__} measures each clone itself, "
            "which misses the lines of teardowns and of clones that crash; "
            "upgrade to pytest-cov 7"
        ]
    )


def test_unreadable_clone_data_is_a_warning_not_an_error() -> None:
    from pytest_cowfork.coverage import TemplateCoverage

    gathered = TemplateCoverage()
    gathered.receive(iter([{"data": "bm90IGNvdmVyYWdlIGRhdGE="}]))
    gathered.merge()

    assert gathered.problem is not None
    assert gathered.problem.startswith("a clone's coverage data was unreadable: ")
