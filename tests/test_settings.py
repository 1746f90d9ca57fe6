"""Unit tests for reading options, ini keys and markers (in-process runs)."""

from __future__ import annotations

import argparse

import pytest

from pytest_cowfork import settings


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("4", 4), ("12", 12)])
def test_jobs_accepts_positive_whole_numbers(value: str, expected: int) -> None:
    assert settings.parse_jobs(value) == expected


def test_jobs_auto_is_at_least_one() -> None:
    assert settings.parse_jobs("auto") >= 1


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", ""])
def test_jobs_rejects_nonsense_naming_the_value(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=repr(value)):
        settings.parse_jobs(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2.0), ("0.5", 0.5), ("0", 0.0), ("0.00", 0.0), ("none", 0.0), ("", 0.0)],
)
def test_timeout_reads_seconds_or_zero_for_no_limit(
    value: str, expected: float
) -> None:
    assert settings.parse_timeout(value) == expected


@pytest.mark.parametrize("value", ["-1", "soon", "inf", "nan"])
def test_timeout_rejects_nonsense_naming_the_value(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=repr(value)):
        settings.parse_timeout(value)


def test_scope_accepts_the_four_template_scopes() -> None:
    assert [settings.parse_scope(s) for s in settings.SCOPES] == list(settings.SCOPES)


@pytest.mark.parametrize("value", ["function", "Module", "file"])
def test_scope_rejects_others_and_lists_the_choices(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="session, package"):
        settings.parse_scope(value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cowfork-jobs=zero"], "'zero' is not a number of clones"),
        (["--cowfork-timeout=-3"], "'-3' is not a timeout"),
        (["--cowfork-scope=function"], "'function' is not a scope"),
        (
            ["--cowfork-hugepages=always"],
            "'always' is not a huge pages mode: choose one of auto, on, off",
        ),
    ],
)
def test_bad_options_stop_the_run_with_a_usage_error(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_a(): pass")

    result = pytester.runpytest(*args)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cowfork_jobs", "many", "ini option cowfork_jobs: 'many' is not a number"),
        ("cowfork_timeout", "later", "ini option cowfork_timeout: 'later' is not"),
        ("cowfork_scope", "item", "ini option cowfork_scope: 'item' is not a scope"),
        ("cowfork_hugepages", "yes", "ini option cowfork_hugepages: 'yes' is not a"),
        ("cowfork_memory", "lots", "ini option cowfork_memory: *; write true or false"),
    ],
)
def test_bad_ini_values_stop_the_run_with_a_usage_error(
    pytester: pytest.Pytester, key: str, value: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\n{key} = {value}\n")
    pytester.makepyfile("def test_a(): pass")

    result = pytester.runpytest()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_command_line_wins_over_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncowfork_jobs = 3\ncowfork_scope = module\n")
    pytester.makeconftest(
        """
        def pytest_report_header(config):
            from pytest_cowfork.settings import read_settings
            return f"settings: {read_settings(config)}"
        """
    )
    pytester.makepyfile("def test_a(): pass")

    result = pytester.runpytest("--cowfork-jobs=2", "--collect-only")

    result.stdout.fnmatch_lines(["*jobs=2, scope='module', timeout=None*"])


class _Item:
    """Just enough of an item for settings.choose."""

    def __init__(self, *marks: pytest.MarkDecorator) -> None:
        self._marks = {mark.mark.name: mark.mark for mark in marks}

    def get_closest_marker(self, name: str) -> pytest.Mark | None:
        return self._marks.get(name)


_ALL = settings.Settings(
    fork_all=True, disabled=False, jobs=1, scope="class", timeout=5.0
)
_MARKED = settings.Settings(
    fork_all=False, disabled=False, jobs=1, scope="class", timeout=None
)


def test_unmarked_items_fork_only_when_every_test_does() -> None:
    assert settings.choose(_Item(), _ALL) == settings.ItemChoice(True, 5.0)  # type: ignore[arg-type]
    assert settings.choose(_Item(), _MARKED).fork is False  # type: ignore[arg-type]


def test_the_marker_forks_and_its_timeout_wins() -> None:
    item = _Item(pytest.mark.cowfork(timeout=2))

    assert settings.choose(item, _MARKED) == settings.ItemChoice(True, 2.0)  # type: ignore[arg-type]
    assert settings.choose(item, _ALL) == settings.ItemChoice(True, 2.0)  # type: ignore[arg-type]


def test_a_marker_timeout_of_none_lifts_the_limit() -> None:
    item = _Item(pytest.mark.cowfork(timeout=None))

    assert settings.choose(item, _ALL) == settings.ItemChoice(True, None)  # type: ignore[arg-type]


def test_no_cowfork_keeps_an_item_in_the_template() -> None:
    item = _Item(pytest.mark.no_cowfork, pytest.mark.cowfork)

    assert settings.choose(item, _ALL).fork is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mark", "message"),
    [
        (pytest.mark.cowfork("yes"), "takes only timeout=SECONDS, not 'yes'"),
        (pytest.mark.cowfork(time=3), "takes only timeout=SECONDS, not time"),
        (pytest.mark.cowfork(timeout="abc"), "timeout='abc'"),
        (pytest.mark.cowfork(timeout=-1), "timeout=-1"),
        (pytest.mark.cowfork(timeout=True), "timeout=True"),
    ],
)
def test_a_misused_marker_is_explained(
    mark: pytest.MarkDecorator, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        settings.choose(_Item(mark), _ALL)  # type: ignore[arg-type]


def test_cowfork_without_os_fork_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on Windows; the inner run is in-process and forks nothing."""
    monkeypatch.delattr("os.fork")
    pytester.makepyfile("def test_a(): pass")

    result = pytester.runpytest("--cowfork")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--cowfork needs os.fork(), which * does not have; run without --cowfork*"]
    )


def test_without_os_fork_marked_tests_run_in_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr("os.fork")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.cowfork
        def test_marked():
            pass
        """
    )

    result = pytester.runpytest("--strict-markers")

    result.assert_outcomes(passed=1)
