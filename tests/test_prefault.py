"""Learning the pages clones write, and copying them ahead into standbys."""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Callable

import pytest
from conftest import INNER_TIMEOUT, needs_fork

from pytest_cowfork import prefault
from pytest_cowfork.prefault import LEARN_EVERY, MAX_LEARNED, Learner

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
needs_populate = pytest.mark.skipif(
    prefault._populate is None, reason="needs MADV_POPULATE_WRITE (Linux 5.14+)"
)


def in_child(body: Callable[[], object]) -> object:
    """Return what ``body`` returns when run in a forked child."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write_end, json.dumps(body()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 1 << 16):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))


def covers(runs: object, address: int) -> bool:
    assert isinstance(runs, list)
    return any(start <= address < start + length for start, length in runs)


def page_of(buffer: ctypes.Array[ctypes.c_char], offset: int) -> int:
    return (ctypes.addressof(buffer) + offset) & ~(PAGE - 1)


@needs_fork
@needs_populate
def test_a_child_reports_the_page_it_wrote_and_not_one_it_only_read() -> None:
    buffer = ctypes.create_string_buffer(64 * PAGE)
    written, read = page_of(buffer, 10 * PAGE), page_of(buffer, 40 * PAGE)

    def body() -> object:
        buffer[10 * PAGE] = b"x"
        _ = buffer[40 * PAGE]
        return prefault.written_runs()

    runs = in_child(body)

    assert covers(runs, written)
    assert not covers(runs, read)


@needs_fork
@needs_populate
def test_copying_ahead_makes_pages_a_childs_own_without_writing_them() -> None:
    buffer = ctypes.create_string_buffer(64 * PAGE)
    start = page_of(buffer, 20 * PAGE)

    def body() -> object:
        prefault.copy_ahead([(start, 4 * PAGE)])
        return prefault.written_runs()

    runs = in_child(body)

    assert all(covers(runs, start + n * PAGE) for n in range(4))
    assert not covers(runs, start + 5 * PAGE)
    assert buffer.raw == bytes(len(buffer)), "copying ahead changed nothing"


@needs_populate
def test_copying_ahead_skips_what_is_no_longer_mapped() -> None:
    # The first page of the address space is never mapped.
    prefault.copy_ahead([(0, PAGE)])


@needs_populate
def test_one_clone_in_so_many_learns_and_the_others_copy_what_it_learned() -> None:
    learner = Learner(enabled=True)

    first = learner.next_clone()
    learner.learn([[PAGE, 2 * PAGE]])
    later = [learner.next_clone() for _ in range(LEARN_EVERY)]

    assert first == (True, ())
    assert later[:-1] == [(False, ((PAGE, 2 * PAGE),))] * (LEARN_EVERY - 1)
    assert later[-1] == (True, ())


@needs_populate
def test_a_learned_set_too_large_or_malformed_is_ignored() -> None:
    learner = Learner(enabled=True)
    learner.learn([[PAGE, PAGE]])

    learner.learn([[PAGE, MAX_LEARNED + PAGE]])
    learner.learn([["not", "a number"]])
    learner.learn({"start": 1})
    learner.learn(None)

    assert learner.runs == ((PAGE, PAGE),)


def test_a_disabled_learner_neither_learns_nor_copies() -> None:
    learner = Learner(enabled=False)
    learner.learn([[PAGE, PAGE]])

    assert [learner.next_clone() for _ in range(3)] == [(False, ())] * 3


@needs_fork
def test_tests_pass_when_standbys_copy_pages_ahead(pytester: pytest.Pytester) -> None:
    """Enough tests that several learn and the rest copy ahead."""
    pytester.makepyfile(
        f"""
        import pytest

        STATE = []

        @pytest.mark.parametrize("i", range({3 * LEARN_EVERY}))
        def test_pristine(i):
            assert STATE == []
            STATE.extend(range(1000))
        """
    )

    result = pytester.runpytest_subprocess("--cowfork", timeout=INNER_TIMEOUT)

    result.assert_outcomes(passed=3 * LEARN_EVERY)
