"""pytest-asyncio's tests run in clones; a loop shared with the template warns."""

from __future__ import annotations

import pytest
from conftest import INNER_TIMEOUT, needs_fork

# loop_scope= came with 0.24, which needs pytest 8.2: the oldest pytest
# supported gets an older pytest-asyncio, and these tests skip there.
pytest.importorskip("pytest_asyncio", minversion="0.24")
pytestmark = needs_fork

INI = """
    [pytest]
    asyncio_default_fixture_loop_scope = function
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "asyncio", "--cowfork", *args, timeout=INNER_TIMEOUT
    )


def test_async_tests_with_function_loops_pass_in_clones(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import asyncio
        import os
        import pytest
        import pytest_asyncio

        @pytest_asyncio.fixture
        async def pid():
            await asyncio.sleep(0)
            return os.getpid()

        @pytest.mark.asyncio
        @pytest.mark.parametrize("i", range(3))
        async def test_runs_in_its_clone(pid, i, clone_id):
            assert clone_id is not None
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, os.getpid) == pid
        """
    )

    result = run(pytester, "-W", "error::pytest_cowfork.PytestCowforkWarning")

    result.assert_outcomes(passed=3)


def test_a_session_loop_warns_once_and_its_tests_still_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import asyncio
        import pytest
        import pytest_asyncio

        @pytest_asyncio.fixture(scope="session", loop_scope="session")
        async def echo_port():
            async def echo(reader, writer):
                writer.write(await reader.readline())
                await writer.drain()
                writer.close()

            server = await asyncio.start_server(echo, "127.0.0.1", 0)
            yield server.sockets[0].getsockname()[1]
            server.close()

        @pytest.mark.asyncio(loop_scope="session")
        @pytest.mark.parametrize("i", range(3))
        async def test_talks_to_the_server(echo_port, i):
            reader, writer = await asyncio.open_connection("127.0.0.1", echo_port)
            writer.write(b"%d\\n" % i)
            await writer.drain()
            assert await asyncio.wait_for(reader.readline(), 10) == b"%d\\n" % i
            writer.close()
        """
    )

    result = run(pytester, "--cowfork-timeout=60")

    result.assert_outcomes(passed=3, warnings=2)
    output = result.stdout.str()
    assert output.count("open asyncio event loop") == 1
    assert output.count("TCP listening on 127.0.0.1:") == 1
