"""Register cowfork's options, markers and fixture with pytest (template).

This is the ``cowfork`` entry point. It validates the settings at configure
time and installs the :class:`~pytest_cowfork.template.Template` plugin,
which does the forking.
"""

from __future__ import annotations

import os
import sys

import pytest

from pytest_cowfork import (
    clone,
    hookspecs,
    memory,
    reruns,
    settings,
    timeout_timer,
)
from pytest_cowfork.template import Template

_PLUGIN_NAME = "cowfork-template"
_COVERAGE_PLUGIN_NAME = "cowfork-coverage"
_TIMER_PLUGIN_NAME = "cowfork-timeout-timer"


@pytest.hookimpl
def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cowfork", "copy-on-write clones (pytest-cowfork)")
    group.addoption(
        "--cowfork", action="store_true", default=None, help=settings.ENABLE_HELP
    )
    group.addoption(
        "--no-cowfork",
        dest="cowfork",
        action="store_false",
        help=settings.DISABLE_HELP,
    )
    group.addoption(
        "--cowfork-jobs",
        dest="cowfork_jobs",
        metavar="N",
        type=settings.parse_jobs,
        help=settings.JOBS_HELP,
    )
    group.addoption(
        "--cowfork-scope",
        dest="cowfork_scope",
        metavar="SCOPE",
        type=settings.parse_scope,
        help=settings.SCOPE_HELP,
    )
    group.addoption(
        "--cowfork-timeout",
        dest="cowfork_timeout",
        metavar="SECONDS",
        type=settings.parse_timeout,
        help=settings.TIMEOUT_HELP,
    )
    group.addoption(
        "--cowfork-hugepages",
        dest="cowfork_hugepages",
        metavar="MODE",
        type=settings.parse_hugepages,
        help=settings.HUGEPAGES_HELP,
    )
    group.addoption(
        "--cowfork-memory",
        dest="cowfork_memory",
        action="store_true",
        default=None,
        help=settings.MEMORY_HELP,
    )
    parser.addini("cowfork", type="bool", default=False, help=settings.ENABLE_HELP)
    parser.addini("cowfork_jobs", help=settings.JOBS_HELP)
    parser.addini("cowfork_scope", help=settings.SCOPE_HELP)
    parser.addini("cowfork_timeout", help=settings.TIMEOUT_HELP)
    parser.addini("cowfork_hugepages", help=settings.HUGEPAGES_HELP)
    parser.addini(
        "cowfork_memory", type="bool", default=False, help=settings.MEMORY_HELP
    )


@pytest.hookimpl
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", settings.FORK_MARKER)
    config.addinivalue_line("markers", settings.NO_FORK_MARKER)
    chosen = settings.read_settings(config)
    if not hasattr(os, "fork"):
        if chosen.fork_all:
            raise pytest.UsageError(
                f"--cowfork needs os.fork(), which {sys.platform} does not have; "
                "run without --cowfork (and without cowfork = true in the ini file)"
            )
        return
    if chosen.jobs > 1 and config.getoption("numprocesses", None):
        raise pytest.UsageError(
            f"--cowfork-jobs={chosen.jobs} cannot be combined with xdist's -n: "
            "each xdist worker is already a template that forks its clones one "
            "at a time; add processes with -n instead"
        )
    if chosen.jobs > 1 and not chosen.disabled:
        _refuse_debugging_options(config, chosen.jobs)
    if chosen.fork_all:
        reruns.check_supported(config)
    template = Template(config, chosen)
    config.pluginmanager.register(template, _PLUGIN_NAME)
    config.pluginmanager.register(template.coverage, _COVERAGE_PLUGIN_NAME)
    if config.pluginmanager.has_plugin(timeout_timer.PLUGIN_NAME):
        config.pluginmanager.register(
            timeout_timer.TimerInClone(forks=template.forks), _TIMER_PLUGIN_NAME
        )


@pytest.hookimpl
def pytest_report_header(config: pytest.Config) -> list[str] | None:
    template = config.pluginmanager.get_plugin(_PLUGIN_NAME)
    if template is None:
        return None
    chosen: settings.Settings = template.settings
    if chosen.disabled:
        return ["cowfork: off (--no-cowfork), every test runs in this process"]
    which = "every test" if chosen.fork_all else "each test marked cowfork"
    timeout = "none" if chosen.timeout is None else f"{chosen.timeout:g} s"
    lines = [
        f"cowfork: {which} in its own clone (jobs: {chosen.jobs}, "
        f"template scope: {chosen.scope}, timeout: {timeout})"
    ]
    # Only a run that forks every test asks the kernel this early.
    refused = template.hugepages.refusal() if chosen.fork_all else None
    if refused is not None:
        lines.append(f"cowfork: no huge pages, forks copy every page table: {refused}")
    return lines


@pytest.hookimpl
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    template = terminalreporter.config.pluginmanager.get_plugin(_PLUGIN_NAME)
    if template is None or not template.stats.clones:
        return
    stats = template.stats
    line = f"cowfork: {stats.clones} clone{'s' if stats.clones != 1 else ''} ran"
    if stats.crashed:
        line += f", {stats.crashed} crashed"
    if stats.timed_out:
        line += f", {stats.timed_out} timed out"
    if terminalreporter.verbosity >= 0:
        terminalreporter.write_line(line)
        for extra in stats.costs.summary(memory.peak_resident()):
            terminalreporter.write_line(extra)
        moved = template.hugepages.collapsed
        refused = template.hugepages.known_refusal()
        if refused is not None and not template.settings.fork_all:
            # Not said in the header, which only runs forking every test ask.
            terminalreporter.write_line(
                f"cowfork: no huge pages, forks copy every page table: {refused}"
            )
        if moved:
            terminalreporter.write_line(
                f"cowfork: {moved / 2**20:.0f} MiB of the template moved onto "
                f"huge pages in {template.hugepages.seconds:.2f} s"
            )


def _refuse_debugging_options(config: pytest.Config, jobs: int) -> None:
    """Refuse --pdb and --trace when several clones share the terminal."""
    given = [
        flag
        for flag, dest in (("--pdb", "usepdb"), ("--trace", "trace"))
        if config.getoption(dest, False)
    ]
    if given:
        if config.getoption("cowfork_jobs") is None:
            source = f"cowfork_jobs = {jobs} (from the ini file)"
        else:
            source = f"--cowfork-jobs={jobs}"
        raise pytest.UsageError(
            f"{' and '.join(given)} cannot be combined with {source}: "
            "a debugger needs the terminal, which only one clone at a time can "
            "have; add --cowfork-jobs 1 (the default), or --no-cowfork to debug "
            "in the pytest process"
        )


@pytest.fixture
def clone_id() -> str | None:
    """Return this clone's slot, as in $CLONE_ID, or None in the template."""
    clone_id = clone.current_id()
    return None if clone_id is None else str(clone_id)
