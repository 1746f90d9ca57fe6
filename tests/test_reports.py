"""A test run in a clone is reported exactly as it would be in-process."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from conftest import INNER_TIMEOUT, needs_fork

pytestmark = needs_fork

#: Lines that legitimately differ between a run with and without cowfork.
_OWN_LINES = re.compile(r"^(cowfork: |plugins: |rootdir: |cachedir: )")
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")
_SECONDS = re.compile(r"\d+\.\d+s\b")

ALL_OUTCOMES = """
    import logging
    import sys

    import pytest

    @pytest.fixture
    def broken_setup():
        raise ValueError("setup went wrong")

    @pytest.fixture
    def broken_teardown():
        yield
        print("teardown speaks")
        raise ValueError("teardown went wrong")

    @pytest.fixture(scope="module")
    def broken_module_resource():
        print("module resource tries")
        raise ValueError("module setup went wrong")

    @pytest.fixture(scope="module")
    def module_resource():
        print("module resource up")
        yield "resource"
        print("module resource down")

    def test_pass(module_resource):
        print("out of pass")
        sys.stderr.write("err of pass\\n")

    def test_fail():
        assert [1, 2, 3] == [1]

    @pytest.mark.skip(reason="marked skip")
    def test_skip_mark():
        pass

    def test_skip_runtime():
        pytest.skip("skipped at runtime")

    @pytest.mark.xfail(reason="expected to fail")
    def test_xfail():
        assert False

    @pytest.mark.xfail(reason="unexpectedly passes")
    def test_xpass():
        pass

    @pytest.mark.xfail(reason="strict one", strict=True)
    def test_xpass_strict():
        pass

    def test_setup_error(broken_setup):
        pass

    def test_teardown_error(broken_teardown):
        pass

    def test_wide_setup_error(broken_module_resource):
        pass

    def test_logs(caplog):
        logging.getLogger("cowprobe").warning("a logged warning")
        assert False, "look at the log"

    def test_last(module_resource):
        print("last one")
"""


def normalized(lines: list[str]) -> list[str]:
    """Return ``lines`` without what may differ between two honest runs."""
    kept = [line for line in lines if not _OWN_LINES.match(line)]
    return [_SECONDS.sub("N.NNs", _ADDRESS.sub(" at 0x?", line)) for line in kept]


def run_both(
    pytester: pytest.Pytester, *args: str
) -> tuple[pytest.RunResult, pytest.RunResult]:
    """Run the suite in-process (cowfork disabled) and with every test forked."""
    plain = pytester.runpytest_subprocess(
        "-p", "no:cowfork", *args, timeout=INNER_TIMEOUT
    )
    forked = pytester.runpytest_subprocess("--cowfork", *args, timeout=INNER_TIMEOUT)
    return plain, forked


def test_every_outcome_is_reported_as_in_plain_pytest(pytester: pytest.Pytester):
    """Outcomes, tracebacks, captured sections and the short summary all match
    a run without the plugin, line for line."""
    pytester.makepyfile(test_outcomes=ALL_OUTCOMES)
    plain, forked = run_both(pytester, "-rA")
    expected = dict(passed=3, failed=3, skipped=2, xfailed=1, xpassed=1, errors=3)
    plain.assert_outcomes(**expected)
    forked.assert_outcomes(**expected)
    assert forked.ret == plain.ret == pytest.ExitCode.TESTS_FAILED
    assert normalized(forked.outlines) == normalized(plain.outlines)


def test_assertion_rewriting_details_reach_the_report(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        def test_lists():
            assert [1, 2, 3] == [1]
        """
    )
    result = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            ">       assert [1, 2, 3] == [1]",
            "E       assert [1, 2, 3] == [1]",
            "E         Left contains 2 more items, first extra item: 2",
            "*test_assertion_rewriting_details_reach_the_report.py:2: AssertionError",
        ]
    )


def test_captured_sections_of_every_phase_are_in_the_report(
    pytester: pytest.Pytester,
):
    pytester.makepyfile(
        """
        import logging
        import sys

        import pytest

        @pytest.fixture
        def noisy():
            print("setup says hi")
            yield
            sys.stderr.write("teardown complains\\n")

        def test_talks(noisy):
            print("call says hi")
            logging.getLogger("cowprobe").warning("call logs")
        """
    )
    result = pytester.runpytest_subprocess("--cowfork", "-rA", timeout=INNER_TIMEOUT)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*- Captured stdout setup -*",
            "setup says hi",
            "*- Captured stdout call -*",
            "call says hi",
            "*- Captured log call -*",
            "WARNING  cowprobe:*call logs",
            "*- Captured stderr teardown -*",
            "teardown complains",
        ]
    )


def test_junitxml_holds_properties_recorded_in_a_clone(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        def test_records(record_property):
            record_property("answer", 42)
            print("to the xml")

        def test_fails():
            assert 1 == 2
        """
    )
    result = pytester.runpytest_subprocess(
        "--cowfork",
        "--junitxml=report.xml",
        "-o",
        "junit_family=legacy",
        "-o",
        "junit_logging=system-out",
        timeout=INNER_TIMEOUT,
    )
    result.assert_outcomes(passed=1, failed=1)
    cases = {
        case.get("name"): case
        for case in ET.parse(pytester.path / "report.xml").iter("testcase")
    }
    assert set(cases) == {"test_records", "test_fails"}
    properties = cases["test_records"].findall("properties/property")
    assert [(p.get("name"), p.get("value")) for p in properties] == [("answer", "42")]
    assert "to the xml" in cases["test_records"].findtext("system-out", "")
    assert cases["test_fails"].find("failure") is not None


def test_durations_are_reported_for_every_phase_of_a_clone(
    pytester: pytest.Pytester,
):
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def resource():
            yield

        def test_one(resource):
            pass

        def test_two(resource):
            pass
        """
    )
    plain, forked = run_both(pytester, "--durations=0", "--durations-min=0", "-vv")

    def durations(result: pytest.RunResult) -> set[str]:
        found = set()
        for line in result.outlines:
            match = re.fullmatch(r"\d+\.\d+s (setup|call|teardown) +(\S+)", line)
            if match:
                found.add(f"{match[1]} {match[2]}")
        return found

    assert durations(forked) == durations(plain)
    assert len(durations(forked)) == 6


def test_warnings_raised_in_a_clone_reach_the_warnings_summary(
    pytester: pytest.Pytester,
):
    pytester.makepyfile(
        """
        import warnings

        def test_warns():
            warnings.warn(UserWarning("careful now"))
        """
    )
    plain, forked = run_both(pytester)
    plain.assert_outcomes(passed=1, warnings=1)
    forked.assert_outcomes(passed=1, warnings=1)
    forked.stdout.fnmatch_lines(
        [
            "*= warnings summary =*",
            "test_warnings_raised_in_a_clone_reach_the_warnings_summary.py::test_warns",
            "*UserWarning: careful now",
        ]
    )
