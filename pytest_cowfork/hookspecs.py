"""Hooks cowfork calls around each clone, for conftest files and plugins.

Registered through ``pytest_addhooks``; each hook says which process calls
it: the template, or the clone.
"""

from __future__ import annotations

import pytest


@pytest.hookspec
def pytest_cowfork_before_fork(item: pytest.Item, clone_id: int) -> None:
    """Called in the template right before it forks the clone for ``item``.

    The template's wide fixtures for ``item`` are set up. Use it to flush
    or quiesce what a clone must not inherit half-done (a buffered writer,
    a connection pool in mid-request).

    :param item: the item the clone will run.
    :param clone_id: the clone's ``CLONE_ID``.
    """


@pytest.hookspec
def pytest_cowfork_clone_started(item: pytest.Item, clone_id: int) -> None:
    """Called in a new clone after the fork, before the item's setup.

    The place to give the clone resources of its own: reopen a database
    connection a wide fixture holds, reseed a random generator, re-create a
    thread pool (the clone has no thread but its own). An exception here
    fails the item's setup.

    :param item: the item the clone runs.
    :param clone_id: the clone's ``CLONE_ID``.
    """


@pytest.hookspec
def pytest_cowfork_clone_finished(
    item: pytest.Item,
    pid: int,
    clone_id: int,
    exit_status: int | None,
    wall_time: float,
    max_rss: int | None,
    private_dirty: int | None,
    fork_time: float,
) -> None:
    """Called in the template once the result of ``item``'s clone is in.

    :param pid: the clone's process id.
    :param exit_status: the clone's wait status (see ``os.waitstatus_to_exitcode``)
        if it ended without reporting everything, None if it did (the
        template then kills it without waiting for its exit).
    :param wall_time: seconds from the start of the clone's run to its end.
    :param max_rss: the clone's peak resident size in bytes, shared pages
        included, if it reported it.
    :param private_dirty: the bytes of memory the clone wrote, and so no
        longer shares with the template, read just before it ended; None
        unless ``--cowfork-memory`` is on and the clone ended normally.
    :param fork_time: seconds the template spent forking the clone.
    """
