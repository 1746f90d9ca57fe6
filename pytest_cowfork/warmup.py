"""Decide what the template sets up before a fork and tears down after (template).

The template owns the collector chain down to the node of the cowfork scope
and every fixture of that scope or wider; a clone sets up the rest. These
functions keep pytest's SetupState in the same shape plain pytest would
give it, so fixtures run exactly as often as without cowfork.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from _pytest.python import Class, Package
from _pytest.skipping import evaluate_skip_marks, evaluate_xfail_marks
from _pytest.unittest import TestCaseFunction

#: Fixture scopes, narrowest first, as pytest names them.
_RANK = {"function": 0, "class": 1, "module": 2, "package": 3, "session": 4}


def template_node(item: pytest.Item, scope: str) -> pytest.Collector:
    """Return the deepest collector of ``item`` that the template sets up."""
    chain = item.listchain()[:-1]
    if scope == "session":
        return chain[0]  # type: ignore[return-value]
    if scope == "package":
        packages = [node for node in chain if isinstance(node, Package)]
        return packages[-1] if packages else chain[0]  # type: ignore[return-value]
    if scope == "module":
        files = [node for node in chain if isinstance(node, pytest.File)]
        return files[-1] if files else chain[-1]  # type: ignore[return-value]
    return chain[-1]  # type: ignore[return-value]


def warm(item: pytest.Item, scope: str) -> pytest.Collector:
    """Set up, in the template, what clones of ``item`` will share.

    Return the deepest node now on the setup stack: a clone tears down to
    it and no further. Any exception is the one pytest would raise in the
    item's own setup; it stays cached, so running the item in-process
    raises it again there.
    """
    setupstate = item.session._setupstate
    node = template_node(item, scope)
    if len(setupstate.stack) < len(node.listchain()):
        setupstate.setup(node)  # type: ignore[arg-type]
    if hasattr(item, "_request"):
        if not item._request:
            item._initrequest()  # type: ignore[attr-defined]
        _make_test_case(item)
        with _serving(setupstate, item):
            for name in wide_fixture_names(item, scope):
                item._request.getfixturevalue(name)
    return list(setupstate.stack)[-1]  # type: ignore[return-value]


def is_warm(item: pytest.Item, scope: str) -> bool:
    """Return True if :func:`warm` would set nothing up for ``item``."""
    stack = item.session._setupstate.stack
    if len(stack) < len(template_node(item, scope).listchain()):
        return False
    info: Any = getattr(item, "_fixtureinfo", None)
    for name in wide_fixture_names(item, scope):
        cached = info.name2fixturedefs[name][-1].cached_result
        if cached is None or cached[2] is not None:
            return False
    return True


def wide_params(item: pytest.Item, scope: str) -> tuple[tuple[str, int], ...]:
    """Return the parameter indices of the fixtures the template sets up.

    Clones forked for different indices cannot run side by side: setting up
    the next parameter tears down the one running clones were forked with.
    """
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return ()
    wide = set(wide_fixture_names(item, scope))
    return tuple(sorted((k, v) for k, v in callspec.indices.items() if k in wide))


def would_skip(item: pytest.Item) -> bool:
    """Return True if ``item``'s marks skip it before any setup.

    Such an item runs in the template: pytest skips it without setting up
    a fixture, and a clone would change nothing but the cost.
    """
    try:
        if evaluate_skip_marks(item) is not None:
            return True
        xfailed = evaluate_xfail_marks(item)
    except Exception:
        # A broken condition: pytest reports it from the item's own setup.
        return True
    return (
        xfailed is not None
        and not xfailed.run
        and not item.config.getoption("runxfail", False)
    )


def would_tear_down(session: pytest.Session, nextitem: pytest.Item | None) -> bool:
    """Return True if moving on to ``nextitem`` tears down template state."""
    stack = list(session._setupstate.stack)
    needed = nextitem.listchain() if nextitem is not None else []
    return stack != needed[: len(stack)]


def _make_test_case(item: pytest.Item) -> None:
    """Create a unittest item's TestCase, which its class fixtures are bound to.

    pytest before 8.2 creates it only in the item's own setup, too late for
    the template to run ``setUpClass``; the clone's setup makes its own.
    """
    if isinstance(item, TestCaseFunction) and getattr(item, "_testcase", 0) is None:
        item._testcase = item.parent.obj(item.name)  # type: ignore[misc,union-attr,unused-ignore]
        item._obj = getattr(item._testcase, item.name)


@contextlib.contextmanager
def _serving(setupstate: Any, item: pytest.Item) -> Iterator[None]:
    """Let pytest serve ``item``'s wide fixtures before the item is set up.

    pytest 9.1+ treats a fixture request from an item that is not on the
    setup stack as a request during teardown. The item stands on the stack
    while its wide fixtures are set up, and leaves it before the fork; the
    clone then sets it up for real.
    """
    if item in setupstate.stack:
        yield
        return
    setupstate.stack[item] = ([], None)
    try:
        yield
    finally:
        setupstate.stack.pop(item)


def wide_fixture_names(item: pytest.Item, scope: str) -> list[str]:
    """Return the fixtures of ``item`` the template sets up, in setup order."""
    info: Any = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    in_class = item.getparent(Class) is not None
    names = []
    for name in item.fixturenames:  # type: ignore[attr-defined]
        fixturedefs = info.name2fixturedefs.get(name)
        if not fixturedefs:
            continue
        fixture_scope = fixturedefs[-1].scope
        if _RANK[fixture_scope] < _RANK[scope]:
            continue
        if fixture_scope == "class" and not in_class:
            # Without a class, pytest gives a class fixture to the item
            # itself: it is the clone's.
            continue
        names.append(name)
    return names
