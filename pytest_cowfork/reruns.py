"""Give each pytest-rerunfailures attempt of a test a clone of its own (both).

pytest-rerunfailures runs a test in a loop of its own, in its
``pytest_runtest_protocol``, and decides after each attempt whether to run
it again. The template lets that loop run, with each attempt forked. The
loop reads back what its hooks wrote on the item during the attempt; those
hooks ran in the clone, so the clone sends that state with its reports.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

#: The name pytest-rerunfailures is registered under.
PLUGIN_NAME = "rerunfailures"
#: What its hooks record on an item during an attempt, as plain values:
#: which phases failed, failed with an error not to rerun, or were xfailed.
_PHASE_FLAGS = ("_test_failed_statuses", "_terminal_errors", "_test_xfailed")
#: Set by its teardown when it held the wide fixtures back for another attempt.
_HELD_BACK = "_finalizers_suspended"

#: Why a test cannot be rerun in clones by a pytest-rerunfailures that
#: cowfork does not know how to drive.
UNSUPPORTED = (
    "this release of pytest-rerunfailures does not run its attempts through "
    "pytest's runtestprotocol, so cowfork cannot give each attempt a clone and "
    "the test would not be rerun: mark the test no_cowfork to rerun it in the "
    "pytest process, or run with --no-cowfork"
)

Attempt = Callable[[], list[pytest.TestReport]]


def find(config: pytest.Config) -> ModuleType | None:
    """Return pytest-rerunfailures if it is active in this run."""
    module = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if module is None or not hasattr(module, "runtestprotocol"):
        return None
    return module  # type: ignore[no-any-return]


def check_supported(config: pytest.Config) -> None:
    """Refuse global reruns that cowfork cannot give clones; raise UsageError."""
    module = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if module is None or find(config) is not None:
        return
    reruns = config.getoption("reruns", None) or config.getoption("force_reruns", None)
    if reruns is None:
        with contextlib.suppress(TypeError, ValueError):
            reruns = int(config.getini("reruns"))
    if reruns:
        raise pytest.UsageError(f"--reruns with --cowfork: {UNSUPPORTED}")


def refusal(item: pytest.Item) -> str | None:
    """Return why ``item``'s flaky marker cannot be honoured in clones."""
    module = item.config.pluginmanager.get_plugin(PLUGIN_NAME)
    if module is None or find(item.config) is not None:
        return None
    if item.get_closest_marker("flaky") is None:
        return None
    return f"@pytest.mark.flaky in a clone: {UNSUPPORTED}"


def is_status_server(config: pytest.Config, thread: threading.Thread) -> bool:
    """Return True for a thread of pytest-rerunfailures' status server.

    With pytest-xdist installed, pytest-rerunfailures starts one in the main
    process of every run (in-process runs of pytester included) to count
    reruns for xdist workers. It waits in ``accept()`` and holds no lock a
    clone needs, so forking beside it is safe.
    """
    module = config.pluginmanager.get_plugin(PLUGIN_NAME)
    server_class = getattr(module, "ServerStatusDB", None)
    target = getattr(thread, "_target", None)
    return server_class is not None and (
        getattr(target, "__func__", None) is getattr(server_class, "run_server", 0)
    )


def status_fds(config: pytest.Config) -> list[int]:
    """Return the descriptor of pytest-rerunfailures' status socket, if any.

    The server's (in the main process) or a client's connection to it (in
    each xdist worker) counts reruns across workers. With one job, only one
    process at a time talks over it, through pytest-rerunfailures' own
    hooks, so it is no hazard to warn about.
    """
    sock = getattr(getattr(config, "failures_db", None), "sock", None)
    fileno = getattr(sock, "fileno", None)
    if fileno is None:
        return []
    try:
        fd = fileno()
    except OSError:
        return []
    return [fd] if isinstance(fd, int) and fd >= 0 else []


def attempt_state(item: pytest.Item) -> dict[str, Any] | None:
    """Return what pytest-rerunfailures recorded on ``item`` (clone).

    Called after the attempt's teardown. Whether a ``condition`` of the
    ``flaky`` marker holds may depend on the exception, which only exists
    here: it is decided here, and only the answers travel.
    """
    module = find(item.config)
    if module is None or not hasattr(item, "execution_count"):
        # Not an attempt that pytest-rerunfailures' loop runs.
        return None
    failures = getattr(module, "_get_reruns_condition_failures", None)
    if failures is not None:
        module.get_reruns_condition(item, failures(item))
    names = (*_PHASE_FLAGS, _HELD_BACK)
    state = {name: getattr(item, name) for name in names if hasattr(item, name)}
    results = getattr(item, "_rerun_condition_results", {})
    state["condition_results"] = [[*key, bool(held)] for key, held in results.items()]
    excinfos = getattr(item, "_rerun_condition_excinfos", {})
    state["failure_counts"] = {when: len(found) for when, found in excinfos.items()}
    return state


def adopt_state(
    item: pytest.Item,
    state: dict[str, Any] | None,
    reports: list[pytest.TestReport],
) -> None:
    """Record on ``item`` what an attempt in a clone recorded (template).

    Without ``state`` (the clone crashed before it sent it, or it ran no
    attempt), the phases the clone reported are taken from its ``reports``;
    the crash reports the template makes then pass through
    pytest-rerunfailures' hooks, which record the phases they fail.
    """
    if find(item.config) is None:
        return
    state = state or {}
    derived = {
        "_test_failed_statuses": {report.when: report.failed for report in reports},
        "_terminal_errors": {report.when: False for report in reports},
        "_test_xfailed": {
            report.when: hasattr(report, "wasxfail") for report in reports
        },
    }
    for name in _PHASE_FLAGS:
        setattr(item, name, {**derived[name], **state.get(name, {})})
    setattr(item, _HELD_BACK, bool(state.get(_HELD_BACK, False)))
    item._rerun_condition_results = {  # type: ignore[attr-defined]
        (when, index): held for when, index, held in state.get("condition_results", [])
    }
    # The exceptions stay in the clone; every decision about them was made
    # there and is found among the results above.
    item._rerun_condition_excinfos = {  # type: ignore[attr-defined]
        when: [None] * count for when, count in state.get("failure_counts", {}).items()
    }


def ensure_state(
    item: pytest.Item,
    state: dict[str, Any] | None,
    reports: list[pytest.TestReport],
) -> None:
    """Adopt ``state`` unless ``item`` holds an attempt's state already."""
    if not hasattr(item, _PHASE_FLAGS[0]):
        adopt_state(item, state, reports)


def expects_rerun(item: pytest.Item) -> bool:
    """Return True if the attempt's teardown held the wide fixtures back."""
    return bool(getattr(item, _HELD_BACK, False))


def run_protocol(
    module: ModuleType,
    item: pytest.Item,
    nextitem: pytest.Item | None,
    attempt: Attempt,
) -> bool:
    """Run pytest-rerunfailures' protocol for ``item``, each attempt by ``attempt``.

    Return False if pytest-rerunfailures does not rerun this item.
    """
    with _attempts_by(module, item, attempt):
        handled = module.pytest_runtest_protocol(item=item, nextitem=nextitem)
    return bool(handled)


@contextlib.contextmanager
def _attempts_by(
    module: ModuleType, item: pytest.Item, attempt: Attempt
) -> Iterator[None]:
    """Make pytest-rerunfailures' loop call ``attempt`` to run ``item`` once.

    Its loop calls pytest's ``runtestprotocol`` by the name it imported;
    that name is the one place where an attempt can be moved into a clone.
    """

    def run_attempt(
        attempted: pytest.Item, log: bool = True, nextitem: pytest.Item | None = None
    ) -> list[pytest.TestReport]:
        assert attempted is item
        assert not log
        return attempt()

    plugin: Any = module
    original = plugin.runtestprotocol
    plugin.runtestprotocol = run_attempt
    try:
        yield
    finally:
        plugin.runtestprotocol = original
