"""What pytest-rerunfailures records in a clone reaches the template intact."""

from __future__ import annotations

import threading
import types
from typing import Any

import pytest

from pytest_cowfork import reruns, wire

rerunfailures = pytest.importorskip("pytest_rerunfailures")


def make_item(**attributes: Any) -> Any:
    """Return a stand-in for an item of a run with pytest-rerunfailures."""
    manager = types.SimpleNamespace(get_plugin=lambda name: rerunfailures)
    config = types.SimpleNamespace(pluginmanager=manager)
    marker = None
    return types.SimpleNamespace(
        config=config,
        session=types.SimpleNamespace(config=config),
        get_closest_marker=lambda name: marker,
        **attributes,
    )


def travel(state: Any) -> Any:
    """Return ``state`` as the template receives it from a clone."""
    [(_, payload)] = wire.FrameReader().feed(wire.encode(wire.Kind.RERUN_STATE, state))
    return payload


def make_report(when: str, outcome: str) -> pytest.TestReport:
    return pytest.TestReport("t.py::test", ("t.py", 0, "test"), {}, outcome, None, when)


def test_an_attempts_state_survives_the_wire() -> None:
    in_clone = make_item(
        execution_count=1,
        _test_failed_statuses={"setup": False, "call": True, "teardown": False},
        _terminal_errors={"setup": False, "call": False, "teardown": False},
        _test_xfailed={"setup": False, "call": False, "teardown": False},
        _finalizers_suspended=True,
        _rerun_condition_results={("call", 0): True},
        _rerun_condition_excinfos={"call": [object()]},
    )
    state = reruns.attempt_state(in_clone)
    in_template = make_item(execution_count=1)

    reruns.adopt_state(in_template, travel(state), [])

    for name in ("_test_failed_statuses", "_terminal_errors", "_test_xfailed"):
        assert getattr(in_template, name) == getattr(in_clone, name)
    assert in_template._rerun_condition_results == {("call", 0): True}
    assert in_template._rerun_condition_excinfos == {"call": [None]}
    assert reruns.expects_rerun(in_template)


def test_a_crashed_attempt_is_described_by_its_reports() -> None:
    item = make_item(execution_count=1)
    reports = [make_report("setup", "passed"), make_report("call", "failed")]

    reruns.adopt_state(item, None, reports)

    assert item._test_failed_statuses == {"setup": False, "call": True}
    assert item._terminal_errors == {"setup": False, "call": False}
    assert item._rerun_condition_excinfos == {}
    assert not reruns.expects_rerun(item)


def test_ensure_state_keeps_what_an_attempt_recorded() -> None:
    item = make_item(execution_count=1, _test_failed_statuses={"call": True})

    reruns.ensure_state(item, None, [make_report("call", "passed")])

    assert item._test_failed_statuses == {"call": True}


def test_only_attempts_of_the_rerun_loop_send_state() -> None:
    assert reruns.attempt_state(make_item()) is None


def test_the_status_server_thread_is_recognised() -> None:
    config: Any = make_item().config
    release = threading.Event()
    server = object.__new__(rerunfailures.ServerStatusDB)
    serving = threading.Thread(target=server.run_server)
    other = threading.Thread(target=release.wait)
    # Not started: a thread's target is known before it runs.
    assert reruns.is_status_server(config, serving)
    assert not reruns.is_status_server(config, other)
