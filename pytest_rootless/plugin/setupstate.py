"""pytest's stack of set-up nodes (``session._setupstate.stack``: each node, from the
session down to the item's parent, with its finalizers), as far as a prepared test
process must share it with the host.

A test process is a copy of pytest made by a zygote for an earlier test (see
plugin.prepared). Most nodes the host sets up between two tests change nothing in pytest
but the stack itself: a class or module whose set-up runs no fixture (a fixture's set-up
adds a finalizer to its node, FixtureDef.execute) and no ``setup()`` of its own
(Node.setup does nothing; a Package imports its ``__init__`` and runs ``setup_module``).
Such a node is *bare*. A copy of pytest made before the host set up or tore down only
bare nodes runs a test as a copy made now would, once its stack is the host's:
:func:`mirror_host_stack` puts the new nodes on it and takes the old ones off, as
SetupState.setup and teardown_exact would (a bare node's teardown does nothing either).
Anything else (a fixture of a wider scope set up or torn down, a node with a setup of its
own) takes a new zygote (HostState.serves).
"""

from __future__ import annotations

from typing import Any

import pytest

#: A node's entry on the stack: its finalizers (its own teardown first), and the
#: exception its setup raised, if it did.
Entry = tuple[list[Any], Any]


def bare_setup(node: object) -> bool:
    """Whether setting ``node`` up and tearing it down run nothing (pytest's Node.setup
    and Node.teardown; Collector does not override them)."""
    kind = type(node)
    return (
        getattr(kind, "setup", None) is pytest.Collector.setup
        and getattr(kind, "teardown", None) is pytest.Collector.teardown
    )


def bare(node: object, entry: Entry) -> bool:
    """Whether ``node``, set up with ``entry``, holds nothing but its place on the stack:
    its setup ran nothing, did not fail, and no fixture has set up on it since (its
    finalizers are its own teardown alone, as SetupState.setup put it there)."""
    finalizers, failed = entry
    return failed is None and len(finalizers) == 1 and bare_setup(node)


def changes_between(
    session: pytest.Session, item: pytest.Item
) -> tuple[list[tuple[Any, Entry]], list[Any]]:
    """What setting ``item``'s parents up changes on ``session``'s stack as it is now: the
    nodes (with their entries) that go, and the nodes that come, in the order pytest tears
    down and sets up. Both the stack and the item's chain go from the session down, so what
    they share is where they start."""
    stack = session._setupstate.stack
    chain = item.listchain()[:-1]
    leaving = [(node, entry) for node, entry in reversed(stack.items()) if node not in chain]
    return leaving, [node for node in chain if node not in stack]


def mirror_host_stack(item: pytest.Item) -> None:
    """In a test process: make the stack the host's for ``item`` (the item's parents, all
    set up), taking off the bare nodes the host tore down since this copy of pytest was
    made and adding the ones it set up. The host made sure that only bare nodes differ;
    anything else here is a bug, said as one rather than run on a wrong stack."""
    stack = item.session._setupstate.stack
    leaving, coming = changes_between(item.session, item)
    for node, entry in leaving:
        if not bare(node, entry):
            raise RuntimeError(f"pytest-rootless: a stale copy of pytest still holds {node!r}")
        del stack[node]
    for node in coming:
        if not bare_setup(node):
            raise RuntimeError(f"pytest-rootless: a stale copy of pytest lacks {node!r}")
        stack[node] = ([node.teardown], None)


def wider_fixtures(item: pytest.Item) -> list[Any]:
    """The definitions of the fixtures ``item`` uses whose scope is wider than the
    function's: the ones the host sets up (the one that applies to the item: the last).
    Not a class-scoped fixture of a test outside any class: pytest sets that up for the
    item itself and tears it down with it (SubRequest's fallback to the item), like a
    function-scoped one, so the container does too."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    in_class = item.getparent(pytest.Class) is not None
    found = []
    for name in getattr(item, "fixturenames", ()):
        defs = info.name2fixturedefs.get(name)
        if not defs:
            continue  # request and the like: no definition
        scope = defs[-1].scope
        if scope == "function" or (scope == "class" and not in_class):
            continue
        found.append(defs[-1])
    return found
