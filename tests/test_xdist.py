"""Each pytest-xdist worker is a template that forks its own clones."""

from __future__ import annotations

import re

import pytest
from conftest import INNER_TIMEOUT, needs_fork

pytest.importorskip("xdist")
pytestmark = needs_fork


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args, timeout=INNER_TIMEOUT)


def test_tests_run_isolated_in_clones_of_each_worker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        SEEN = []

        @pytest.fixture(scope="session")
        def worker_state():
            with open(f"setup.{os.environ['PYTEST_XDIST_WORKER']}", "a") as f:
                f.write("x")
            return []

        @pytest.mark.parametrize("i", range(6))
        def test_mutates(i, worker_state):
            assert SEEN == [] and worker_state == []
            SEEN.append(i)
            worker_state.append(i)
            worker, clone = os.environ["PYTEST_XDIST_WORKER"], os.environ["CLONE_ID"]
            with open(f"ids.{os.getpid()}", "w") as f:
                f.write(f"{worker} {clone}")
        """
    )

    result = run(pytester, "--cowfork", "-n", "2")

    result.assert_outcomes(passed=6)
    setups = sorted(p.read_text() for p in pytester.path.glob("setup.gw*"))
    assert setups == ["x", "x"], "one session setup per worker"
    pairs = {p.read_text() for p in pytester.path.glob("ids.*")}
    assert pairs == {"gw0 0", "gw1 1"}


def test_a_crash_in_a_worker_clone_fails_only_its_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os
        import signal

        def test_crashes():
            os.kill(os.getpid(), signal.SIGSEGV)

        def test_passes():
            pass
        """
    )

    result = run(pytester, "--cowfork", "-n", "2")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*killed by signal SIGSEGV (11) during call*"])


def test_several_jobs_per_worker_are_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass")

    result = run(pytester, "--cowfork", "-n", "2", "--cowfork-jobs=2")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--cowfork-jobs=2 cannot be combined with xdist's -n*add processes with -n*"]
    )


#: Each kind of end a clone can come to, with how the report names it.
ENDINGS = {
    "setup": ("os.kill(os.getpid(), signal.SIGKILL)", "was killed by signal SIGKILL"),
    "call": ("time.sleep(60)", "timed out after 1 s"),
    "teardown": ("os.abort()", "was killed by signal SIGABRT"),
}


@pytest.mark.parametrize("phase", list(ENDINGS))
def test_a_worker_clone_that_dies_is_reported_as_without_xdist(
    pytester: pytest.Pytester, phase: str
) -> None:
    how, described = ENDINGS[phase]
    pytester.makepyfile(
        f"""
        import os
        import signal
        import time
        import pytest

        @pytest.fixture
        def ends():
            if {phase!r} == "setup":
                {how}
            yield
            if {phase!r} == "teardown":
                {how}

        def test_dies(ends):
            if {phase!r} == "call":
                {how}

        @pytest.mark.parametrize("i", range(4))
        def test_passes(i):
            pass
        """
    )

    def failure(*args: str) -> list[str]:
        result = run(pytester, "--cowfork", "--cowfork-timeout=1", *args)
        outcome = {"setup": "errors", "call": "failed", "teardown": "errors"}[phase]
        result.assert_outcomes(passed=4 + (phase == "teardown"), **{outcome: 1})
        assert "crashed while running" not in result.stdout.str(), "a worker crashed"
        lines = result.stdout.lines
        first = next(i for i, line in enumerate(lines) if "the clone running" in line)
        last = next(i for i, line in enumerate(lines) if "To run it without" in line)
        return [
            re.sub(r"pid \d+|0x[0-9a-f]+", "N", line)
            for line in lines[first : last + 1]
        ]

    alone = failure()
    under_xdist = failure("-n", "2")

    assert under_xdist == alone
    assert re.fullmatch(
        rf"the clone running this test \(N\) {described}.* during {phase}.*",
        under_xdist[0],
    )
    assert re.search(r"pytest --no-cowfork \S+\.py::test_dies$", under_xdist[-1])


def test_clone_ids_are_unique_across_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.parametrize("i", range(12))
        def test_records(i, clone_id):
            assert clone_id == os.environ["CLONE_ID"]
            with open(f"ids.{os.getpid()}", "w") as f:
                f.write(f"{os.environ['PYTEST_XDIST_WORKER']} {clone_id}")
        """
    )

    result = run(pytester, "--cowfork", "-n", "auto", "--maxprocesses=3")

    result.assert_outcomes(passed=12)
    pairs = {p.read_text() for p in pytester.path.glob("ids.*")}
    workers = {pair.split()[0] for pair in pairs}
    assert workers <= {"gw0", "gw1", "gw2"}
    assert pairs == {f"{worker} {worker[2:]}" for worker in workers}


#: Two modules, one with a class, whose wide fixtures log each setup.
WIDE_SUITE = {
    "conftest": """
        import os
        import pytest

        def log(scope, name):
            worker = os.environ["PYTEST_XDIST_WORKER"]
            with open("setups.log", "a") as f:
                f.write(f"{worker} {scope} {name}\\n")

        @pytest.fixture(scope="session")
        def session_fixture():
            log("session", "")

        @pytest.fixture(scope="module")
        def module_fixture(request):
            log("module", request.module.__name__)

        @pytest.fixture(scope="class")
        def class_fixture(request):
            log("class", request.cls.__name__)
    """,
    "test_one": """
        import pytest

        @pytest.mark.xdist_group("first")
        @pytest.mark.parametrize("i", range(6))
        def test_a(i, session_fixture, module_fixture):
            pass

        @pytest.mark.xdist_group("second")
        class TestB:
            @pytest.mark.parametrize("i", range(4))
            def test_b(self, i, session_fixture, module_fixture, class_fixture):
                pass
    """,
    "test_two": """
        import pytest

        @pytest.mark.xdist_group("first")
        @pytest.mark.parametrize("i", range(6))
        def test_c(i, session_fixture, module_fixture):
            pass
    """,
}


@pytest.mark.parametrize("dist", ["load", "loadscope", "loadfile", "loadgroup"])
def test_wide_fixtures_are_set_up_as_often_as_under_xdist_alone(
    pytester: pytest.Pytester, dist: str
) -> None:
    """Once per worker for each scope the worker runs tests of."""
    for name, source in WIDE_SUITE.items():
        if name == "conftest":
            pytester.makeconftest(source)
        else:
            pytester.makepyfile(**{name: source})

    def setups(*args: str) -> list[tuple[str, ...]]:
        log = pytester.path / "setups.log"
        log.unlink(missing_ok=True)
        run(pytester, "-n", "2", f"--dist={dist}", *args).assert_outcomes(passed=16)
        return [tuple(line.split(" ")) for line in log.read_text().splitlines()]

    alone = setups("--no-cowfork")
    with_clones = setups("--cowfork")

    def count(found: list[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
        keys = [entry[1:] for entry in found]
        return {key: keys.count(key) for key in keys}

    for found in (alone, with_clones):
        assert len(found) == len(set(found)), "a fixture set up twice on one worker"
    assert count(with_clones).keys() == count(alone).keys()
    # Which worker gets which scope is up to the controller; only scopes
    # that one worker runs whole are set up a known number of times.
    if dist == "loadfile":
        assert count(with_clones) == count(alone)
        assert count(with_clones)[("module", "test_one")] == 1
    if dist == "loadscope":
        assert count(with_clones)[("class", "TestB")] == 1
        assert count(with_clones)[("module", "test_two")] == 1


def test_x_stops_every_worker_after_the_first_failure(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_fails():
            assert False

        @pytest.mark.parametrize("i", range(200))
        def test_passes(i):
            pass
        """
    )

    result = run(pytester, "--cowfork", "-n", "2", "-x")

    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1
    assert outcomes.get("passed", 0) < 200
    assert "error" not in outcomes
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])


def test_standby_clones_serve_the_items_xdist_hands_out(
    pytester: pytest.Pytester,
) -> None:
    """xdist calls the protocol one item at a time, as more items arrive;
    the next item's clone is forked while the current one runs, and the
    next item is always the one xdist runs next.
    """
    pytester.makeconftest(
        """
        import os
        import pytest

        @pytest.hookimpl
        def pytest_cowfork_before_fork(item, clone_id):
            with open(f"forked.{os.environ['PYTEST_XDIST_WORKER']}", "a") as f:
                f.write(item.nodeid + "\\n")
        """
    )
    pytester.makepyfile(
        """
        import os
        import time
        import pytest

        @pytest.mark.parametrize("i", range(40))
        def test_item(i, request):
            worker = os.environ["PYTEST_XDIST_WORKER"]
            with open(f"ran.{worker}", "a") as f:
                f.write(request.node.nodeid + "\\n")
            # Wait until the template forks another clone while this one
            # runs, which only a standby does; the last test waits in vain.
            deadline = time.monotonic() + 5
            forked = f"forked.{worker}"
            while time.monotonic() < deadline:
                with open(forked) as f:
                    lines = f.read().splitlines()
                if lines[-1] != request.node.nodeid:
                    with open(f"overlapped.{worker}", "a") as f:
                        f.write("x")
                    break
                time.sleep(0.01)
        """
    )

    result = run(pytester, "--cowfork", "-n", "2")

    result.assert_outcomes(passed=40)
    overlapped = 0
    for ran in pytester.path.glob("ran.gw*"):
        worker = ran.name.split(".")[1]
        forked = (pytester.path / f"forked.{worker}").read_text().splitlines()
        # Every fork served the item run next: no standby was thrown away.
        assert forked == ran.read_text().splitlines()
        overlapped += len((pytester.path / f"overlapped.{worker}").read_text())
    assert overlapped >= 40 - 2, "each worker's last test has no next one"


def test_a_debugger_in_a_clone_of_a_worker_fails_its_test(
    pytester: pytest.Pytester,
) -> None:
    """A worker has no terminal to lend; without this, pdb reads end of file."""
    pytester.makepyfile(
        """
        def test_debugs():
            breakpoint()

        def test_other():
            pass
        """
    )

    result = run(pytester, "--cowfork", "-n", "1")

    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*Failed: this test started a debugger, which needs the terminal, and "
            "a clone under pytest-xdist has none: run the test again without -n, "
            "or with --no-cowfork"
        ]
    )


def test_reruns_run_in_fresh_clones_of_a_worker(pytester: pytest.Pytester) -> None:
    """pytest-rerunfailures counts a worker's reruns through the controller."""
    pytester.makepyfile(
        """
        import os

        STATE = []

        def test_flaky():
            assert STATE == []
            STATE.append("changed")
            with open("attempts", "a") as f:
                f.write(f"{os.getpid()}\\n")
            with open("attempts") as f:
                assert len(f.read().split()) == 3
        """
    )

    result = run(pytester, "--cowfork", "-n", "2", "--reruns=2")

    assert result.parseoutcomes() == {"passed": 1, "rerun": 2}
    assert len(set((pytester.path / "attempts").read_text().split())) == 3
