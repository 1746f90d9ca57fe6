"""Fixtures run as often, and in the same order, as without cowfork.

Clones cannot share memory, so every fixture, xunit hook and test appends a
line to a log file; the tests compare that log with a plain pytest run.
"""

from __future__ import annotations

import collections
import re

import pytest
from conftest import INNER_TIMEOUT, needs_fork

pytestmark = needs_fork

CONFTEST = """
    import os

    import pytest

    def log(line):
        with open(os.path.join(os.path.dirname(__file__), "fixture.log"), "a") as f:
            f.write(line + "\\n")

    @pytest.fixture(scope="session")
    def session_fix():
        log("setup session")
        yield
        log("teardown session")

    @pytest.fixture(scope="session", params=["p1", "p2"])
    def session_param(request):
        log(f"setup session_param {request.param}")
        yield request.param
        log(f"teardown session_param {request.param}")
"""

PACKAGE_CONFTEST = """
    import pytest
    from conftest import log

    @pytest.fixture(scope="package")
    def package_fix():
        log("setup package")
        yield
        log("teardown package")
"""

TEST_ONE = """
    import unittest

    import pytest
    from conftest import log

    @pytest.fixture(scope="module")
    def module_fix():
        log("setup module_fix")
        yield
        log("teardown module_fix")

    @pytest.fixture(scope="module", params=["m1", "m2"])
    def module_param(request):
        log(f"setup module_param {request.param}")
        yield request.param
        log(f"teardown module_param {request.param}")

    @pytest.fixture(scope="class")
    def class_fix():
        log("setup class_fix")
        yield
        log("teardown class_fix")

    @pytest.fixture
    def function_fix():
        log("setup function_fix")
        yield
        log("teardown function_fix")

    def setup_module(module):
        log("setup_module")

    def teardown_module(module):
        log("teardown_module")

    def test_plain(session_fix, package_fix, module_fix, function_fix):
        log("test_plain")

    class TestGroup:
        @classmethod
        def setup_class(cls):
            log("setup_class")

        @classmethod
        def teardown_class(cls):
            log("teardown_class")

        def test_a(self, session_fix, package_fix, module_fix, class_fix, function_fix):
            log("test_a")

        def test_b(self, session_fix, package_fix, module_fix, class_fix, function_fix):
            log("test_b")

    def test_session_param(session_param, module_fix):
        log(f"test_session_param {session_param}")

    def test_module_param(module_param):
        log(f"test_module_param {module_param}")

    class TestUnit(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            log("setUpClass")

        @classmethod
        def tearDownClass(cls):
            log("tearDownClass")

        def test_x(self):
            log("test_x")

        def test_y(self):
            log("test_y")
"""

TEST_TWO = """
    from conftest import log

    def test_other(session_fix, package_fix):
        log("test_other")
"""

#: How often each line appears in plain pytest's log for the suite above.
PLAIN_COUNTS = {
    "setup session": 1,
    "setup session_param p1": 1,
    "setup session_param p2": 1,
    "setup package": 1,
    "setup_module": 1,
    "setup module_fix": 1,
    "setup module_param m1": 1,
    "setup module_param m2": 1,
    "setup_class": 1,
    "setup class_fix": 1,
    "setUpClass": 1,
    "setup function_fix": 3,
}

#: The scope of what each setup line sets up.
SCOPE_OF = {
    "setup session": "session",
    "setup session_param p1": "session",
    "setup session_param p2": "session",
    "setup package": "package",
    "setup_module": "module",
    "setup module_fix": "module",
    "setup module_param m1": "module",
    "setup module_param m2": "module",
    "setup_class": "class",
    "setup class_fix": "class",
    "setUpClass": "class",
    "setup function_fix": "function",
}

#: How often each line appears when a clone sets it up for every test that
#: needs it, because it is narrower than the template's scope.
PER_TEST_COUNTS = {
    "setup package": 4,
    "setup_module": 9,
    "setup module_fix": 5,
    "setup module_param m1": 1,
    "setup module_param m2": 1,
    "setup_class": 2,
    "setup class_fix": 2,
    "setUpClass": 2,
    "setup function_fix": 3,
}

_RANK = ["function", "class", "module", "package", "session"]


def make_suite(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.mkpydir("pkg")
    pytester.makepyfile(
        **{
            "pkg/conftest": PACKAGE_CONFTEST,
            "pkg/test_one": TEST_ONE,
            "pkg/test_two": TEST_TWO,
        }
    )


def run_logged(pytester: pytest.Pytester, *args: str) -> list[str]:
    """Run the suite with ``args``; return its fixture log."""
    log = pytester.path / "fixture.log"
    log.unlink(missing_ok=True)
    result = pytester.runpytest_subprocess(*args, timeout=INNER_TIMEOUT)
    result.assert_outcomes(passed=10)
    return log.read_text().splitlines()


def setups(lines: list[str]) -> collections.Counter[str]:
    return collections.Counter(line for line in lines if line in SCOPE_OF)


def balanced(lines: list[str]) -> bool:
    """Return True if every fixture set up was torn down as often."""
    counts = collections.Counter(lines)
    pairs = [
        ("setup_module", "teardown_module"),
        ("setup_class", "teardown_class"),
        ("setUpClass", "tearDownClass"),
    ]
    pairs += [
        (line, line.replace("setup ", "teardown ", 1))
        for line in SCOPE_OF
        if line.startswith("setup ")
    ]
    return all(counts[setup] == counts[teardown] for setup, teardown in pairs)


def comparable(result: pytest.RunResult) -> list[str]:
    """Return the output lines that must not change with cowfork."""
    return [
        re.sub(r"\d+\.\d+s\b", "N.NNs", line)
        for line in result.outlines
        if not line.startswith(("cowfork: ", "plugins: "))
    ]


def test_fixture_log_is_identical_to_plain_pytest(pytester: pytest.Pytester):
    """With the default scope, every setup, test and teardown happens the same
    number of times and in the same order as without cowfork."""
    make_suite(pytester)
    plain = run_logged(pytester, "-p", "no:cowfork")
    forked = run_logged(pytester, "--cowfork")
    assert setups(plain) == PLAIN_COUNTS
    assert forked == plain


@pytest.mark.parametrize("scope", ["session", "package", "module", "class"])
def test_template_fixtures_run_as_often_as_in_plain_pytest(
    pytester: pytest.Pytester, scope: str
):
    """Fixtures at least as wide as --cowfork-scope run once, as in plain
    pytest; narrower ones are set up by each clone that needs them, and torn
    down there too."""
    make_suite(pytester)
    lines = run_logged(pytester, "--cowfork", f"--cowfork-scope={scope}")
    expected = {
        line: plain
        if _RANK.index(SCOPE_OF[line]) >= _RANK.index(scope)
        else PER_TEST_COUNTS[line]
        for line, plain in PLAIN_COUNTS.items()
    }
    assert setups(lines) == expected
    assert balanced(lines)
    tests = [line for line in lines if line.startswith("test")]
    assert len(tests) == len(set(tests)) == 10


def test_fixture_counts_do_not_change_with_several_jobs(pytester: pytest.Pytester):
    make_suite(pytester)
    plain = run_logged(pytester, "-p", "no:cowfork")
    lines = run_logged(pytester, "--cowfork", "--cowfork-jobs=3")
    assert setups(lines) == PLAIN_COUNTS
    assert balanced(lines)
    # Which session fixture pytest tears down last depends on its version.
    assert (lines[0], lines[-1]) == (plain[0], plain[-1])


def test_wide_fixture_output_and_errors_land_where_plain_pytest_puts_them(
    pytester: pytest.Pytester,
):
    """Setup output of a class fixture goes to the first test's report, its
    teardown output and error to the last one's, as without cowfork."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        def mod():
            print("module setup out")
            yield
            print("module teardown out")

        @pytest.fixture(scope="class")
        def cls_fix():
            print("class setup out")
            yield
            print("class teardown out")
            raise RuntimeError("class teardown boom")

        class TestA:
            def test_one(self, mod, cls_fix):
                print("one out")

            def test_two(self, mod, cls_fix):
                print("two out")

        def test_three(mod):
            print("three out")
        """
    )
    plain = pytester.runpytest_subprocess(
        "-p", "no:cowfork", "-rA", timeout=INNER_TIMEOUT
    )
    forked = pytester.runpytest_subprocess("--cowfork", "-rA", timeout=INNER_TIMEOUT)
    forked.assert_outcomes(passed=3, errors=1)
    forked.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of TestA.test_two _*",
            "E       RuntimeError: class teardown boom",
            "*- Captured stdout teardown -*",
            "class teardown out",
            "*= PASSES =*",
            "*_ TestA.test_one _*",
            "*- Captured stdout setup -*",
            "module setup out",
            "class setup out",
            "*_ test_three _*",
            "*- Captured stdout teardown -*",
            "module teardown out",
        ]
    )
    assert comparable(forked) == comparable(plain)


def test_a_wide_teardown_error_is_reported_with_the_narrow_one(
    pytester: pytest.Pytester,
):
    """When the last test's own fixture and a template-owned fixture both
    fail to tear down, the test's teardown report carries both errors."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        def wide():
            yield
            raise RuntimeError("wide teardown failed")

        @pytest.fixture
        def narrow():
            yield
            raise ValueError("narrow teardown failed")

        def test_one(wide, narrow):
            pass
        """
    )
    result = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)
    result.assert_outcomes(passed=1, errors=1)
    errors = result.stdout.str().split("= ERRORS =")[1].split("short test summary")[0]
    assert "RuntimeError: wide teardown failed" in errors
    assert "ValueError: narrow teardown failed" in errors
