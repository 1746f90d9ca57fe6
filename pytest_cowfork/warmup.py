"""Decide what the template sets up before a fork and tears down after (template).

The template owns the collector chain down to the node of the cowfork scope
and every fixture of that scope or wider; a clone sets up the rest. These
functions keep pytest's SetupState in the same shape plain pytest would
give it, so fixtures run exactly as often as without cowfork.
"""

from __future__ import annotations

from typing import Any

import pytest
from _pytest.python import Class, Package

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
        for name in _wide_fixture_names(item, scope):
            item._request.getfixturevalue(name)
    return list(setupstate.stack)[-1]  # type: ignore[return-value]


def wide_params(item: pytest.Item, scope: str) -> tuple[tuple[str, int], ...]:
    """Return the parameter indices of the fixtures the template sets up.

    Clones forked for different indices cannot run side by side: setting up
    the next parameter tears down the one running clones were forked with.
    """
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return ()
    wide = set(_wide_fixture_names(item, scope))
    return tuple(sorted((k, v) for k, v in callspec.indices.items() if k in wide))


def would_tear_down(session: pytest.Session, nextitem: pytest.Item | None) -> bool:
    """Return True if moving on to ``nextitem`` tears down template state."""
    stack = list(session._setupstate.stack)
    needed = nextitem.listchain() if nextitem is not None else []
    return stack != needed[: len(stack)]


def _wide_fixture_names(item: pytest.Item, scope: str) -> list[str]:
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
