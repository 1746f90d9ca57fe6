"""The template warns, once per run, about sockets and event loops it forks with."""

from __future__ import annotations

import pytest
from conftest import INNER_TIMEOUT, needs_fork

from pytest_cowfork import hazards

pytestmark = needs_fork

AS_ERROR = ("-W", "error::pytest_cowfork.PytestCowforkWarning")

#: A session fixture that holds a listening socket and a connection to it.
CONNECTED = """
    import socket
    import pytest

    @pytest.fixture(scope="session")
    def connection():
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        yield client
        for sock in (client, accepted, server):
            sock.close()
"""

#: A session fixture that keeps an asyncio event loop open.
LOOP = """
    import asyncio
    import pytest

    @pytest.fixture(scope="session")
    def loop():
        loop = asyncio.new_event_loop()
        yield loop
        loop.close()
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args, timeout=INNER_TIMEOUT)


def test_sockets_of_a_wide_fixture_are_named_in_one_warning(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        CONNECTED
        + """
    @pytest.mark.parametrize("i", range(3))
    def test_uses(connection, i):
        pass
    """
    )

    result = run(pytester, "--cowfork")

    result.assert_outcomes(passed=3, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*test_uses[[]0[]]*",
            "*PytestCowforkWarning: the template holds 3 open socket(s) at fork "
            "time (fd *, TCP listening on 127.0.0.1:*; fd *, TCP connected to "
            "127.0.0.1:*; fd *, TCP connected to 127.0.0.1:*); every clone "
            "shares*Open connections in function-scoped fixtures*",
        ]
    )


def test_a_socket_opened_by_a_later_module_is_noticed(
    pytester: pytest.Pytester,
) -> None:
    """Descriptors are looked at again once the template sets something up."""
    pytester.makepyfile(
        test_a="def test_plain(): pass",
        test_b=CONNECTED.replace('scope="session"', 'scope="module"')
        + """
    def test_uses(connection):
        pass
    """,
    )

    result = run(pytester, "--cowfork", "-p", "no:randomly")

    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(["*test_b.py::test_uses*", "*3 open socket(s)*"])


def test_a_socket_warning_turned_error_fails_the_test_it_would_fork(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        CONNECTED
        + """
    def test_one(connection):
        pass

    def test_two(connection):
        pass
    """
    )

    result = run(pytester, "--cowfork", *AS_ERROR)

    result.assert_outcomes(errors=1, passed=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of test_one*", "*the template holds 3 open socket(s)*"]
    )


def test_an_open_event_loop_is_named_in_one_warning(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        LOOP
        + """
    @pytest.mark.parametrize("i", range(3))
    def test_runs_it(loop, i):
        assert loop.run_until_complete(asyncio.sleep(0, result=i)) == i
    """
    )

    result = run(pytester, "--cowfork")

    result.assert_outcomes(passed=3, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*PytestCowforkWarning: the template holds an open asyncio event loop "
            "(_UnixSelectorEventLoop*) at fork time; a clone that runs it shares "
            "its selector and self-pipe*loop_scope=?function?*",
        ]
    )
    # The loop's own self-pipe is not reported as sockets.
    assert "open socket" not in result.stdout.str()


def test_a_loop_warning_turned_error_fails_the_test_it_would_fork(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        LOOP
        + """
    def test_one(loop):
        pass
    """
    )

    result = run(pytester, "--cowfork", *AS_ERROR)

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of test_one*", "*open asyncio event loop*"]
    )


def test_a_closed_loop_and_a_closed_socket_are_no_hazard(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import socket
        import pytest

        @pytest.fixture(scope="session")
        def used_once():
            asyncio.run(asyncio.sleep(0))
            socket.create_server(("127.0.0.1", 0)).close()

        def test_one(used_once):
            pass
        """
    )

    result = run(pytester, "--cowfork", *AS_ERROR)

    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_what_pytest_xdist_and_cowfork_hold_is_no_hazard(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """Their own pipes, selectors and capture files are not the user's."""
    if workers:
        pytest.importorskip("xdist")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_one(i):
            pass
        """
    )

    result = run(pytester, "--cowfork", *AS_ERROR, *workers)

    result.assert_outcomes(passed=4)


def test_descriptors_are_listed_only_after_the_template_set_up_more(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = pytester.getitem("def test_func(): pass")
    listings: list[int] = []

    def list_none() -> list[int]:
        listings.append(1)
        return []

    monkeypatch.setattr(hazards, "_fd_numbers", list_none)
    # Threads are another check; pytest-rerunfailures may run some here.
    watch = hazards.Hazards(item.config, harmless=lambda thread: True)

    watch.check(item)
    watch.check(item)
    watch.changed = True
    watch.check(item)

    assert len(listings) == 2
    assert not watch.changed
