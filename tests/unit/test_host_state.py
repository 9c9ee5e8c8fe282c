"""When a zygote made for one state of the host serves another (plugin.prepared.HostState),
and what --rootless-stats names as the cause when it does not."""

from __future__ import annotations

from pytest_rootless.plugin.prepared import HostState, SetUpNode, remake_cause

SESSION, MODULE, CLASS_A, CLASS_B, MODULE_2 = 1, 2, 3, 4, 5


def state(*nodes: tuple[int, int, str, bool], local_runs: int = 0) -> HostState:
    """The host with ``nodes`` set up: (id, finalizers, kind, bare) each."""
    return HostState(
        nodes=tuple(SetUpNode(*node) for node in nodes),
        local_runs=local_runs,
        fds=frozenset({0, 1, 2}),
        items=(99, 10),
    )


SESSION_UP = (SESSION, 3, "node", False)  # a session fixture set up
MODULE_BARE = (MODULE, 1, "module", True)
A_BARE = (CLASS_A, 1, "class", True)
B_BARE = (CLASS_B, 1, "class", True)
B_FIXTURE = (CLASS_B, 2, "class", False)


def test_a_bare_class_for_another_is_served() -> None:
    before = state(SESSION_UP, MODULE_BARE, A_BARE)
    assert before.serves(state(SESSION_UP, MODULE_BARE, B_BARE))
    assert before.serves(state(SESSION_UP, (MODULE_2, 1, "module", True), B_BARE))
    assert before.serves(state(SESSION_UP, MODULE_BARE))


def test_a_class_set_up_with_a_fixture_is_not_served() -> None:
    before = state(SESSION_UP, MODULE_BARE, A_BARE)
    after = state(SESSION_UP, MODULE_BARE, B_FIXTURE)
    assert not before.serves(after)
    assert remake_cause(before, after) == "class"


def test_leaving_a_class_that_held_a_fixture_is_not_served() -> None:
    before = state(SESSION_UP, MODULE_BARE, B_FIXTURE)
    after = state(SESSION_UP, MODULE_BARE, A_BARE)
    assert not before.serves(after)
    assert remake_cause(before, after) == "teardown"


def test_a_fixture_set_up_on_a_node_set_up_before_is_not_served() -> None:
    before = state(SESSION_UP, MODULE_BARE, A_BARE)
    after = state(SESSION_UP, (MODULE, 2, "module", False), A_BARE)
    assert not before.serves(after)
    assert remake_cause(before, after) == "fixture"
    more = state((SESSION, 4, "node", False), MODULE_BARE, A_BARE)
    assert not before.serves(more)
    assert remake_cause(before, more) == "fixture"


def test_a_test_run_on_the_host_is_not_served() -> None:
    before = state(SESSION_UP, MODULE_BARE, A_BARE)
    after = state(SESSION_UP, MODULE_BARE, A_BARE, local_runs=1)
    assert not before.serves(after)
    assert remake_cause(before, after) == "host-run"
    assert remake_cause(None, after) == "first"


def test_a_package_set_up_is_not_served() -> None:
    """A package's setup imports its ``__init__`` and runs its setup_module: never bare."""
    before = state(SESSION_UP, MODULE_BARE)
    after = state(SESSION_UP, (6, 1, "package", False), (MODULE_2, 1, "module", True))
    assert not before.serves(after)
    assert remake_cause(before, after) == "package"


def test_other_fds_are_not_served() -> None:
    before = state(SESSION_UP, MODULE_BARE)
    after = HostState(before.nodes, 0, frozenset({0, 1, 2, 7}), before.items)
    assert not before.serves(after)
    assert remake_cause(before, after) == "other"
