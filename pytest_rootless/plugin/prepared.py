"""Prepared containers, as pytest sees them: which tests get one, when the zygote (see
:mod:`pytest_rootless.runtime.child.zygote`) must be made again because the host changed,
and what a prepared init's test process runs."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest

from ..protocol import framing
from ..runtime import launch, limits, mountplan, prepared
from ..runtime.options import Options
from ..runtime.session import ContainerSession
from ..runtime.spec import ContainerSpec, Payload, spec_from_data
from . import setupstate
from .in_container import _container_protocol, _limit_notes
from .shared import TmpPath
from .stats import Stats


class ZygoteKeeper:
    """Keeps a zygote for the host as it is now, and has it prepare the next test's
    container while the current test runs."""

    def __init__(
        self,
        containers: ContainerSession,
        prepare: bool,
        tmp_path_for: Callable[[pytest.Item], TmpPath | None] = lambda item: None,
        spec_for: Callable[[Options, pytest.Item, tuple[str, ...]], ContainerSpec] | None = None,
        stats: Stats | None = None,
    ) -> None:
        self.containers = containers
        self.stats = stats or Stats()
        #: The state the last zygote was made for (what the next one's cause is said against).
        self.last_state: HostState | None = None
        self.lost = False  # the last zygote ended before the host was done with it
        self.prepare = prepare
        self.tmp_path_for = tmp_path_for
        self.spec_for = spec_for
        self.zygote: prepared.Zygote | None = None
        self.builder: prepared.Builder | None = None
        #: Tests pytest ran itself (not isolated): each may change what a copy of it holds.
        self.local_runs = 0
        #: tmp_path directories made for the next test along with its prepared container.
        self.tmp_ahead: dict[str, TmpPath] = {}
        #: Where each item is in session.items (a request names the item by its index).
        self.item_index: dict[int, int] = {}
        self.owner = os.getpid()

    def _here(self) -> None:
        """A forked copy (an isolated test making containers itself) has no zygote: the
        one it inherited is the host's."""
        if self.owner != os.getpid():
            self.owner = os.getpid()
            self.zygote = None
            self.builder = None
            self.tmp_ahead = {}

    def close(self) -> None:
        if self.owner != os.getpid():
            return
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None
        if self.builder is not None:
            self.builder.close()
            self.builder = None
        for made in self.tmp_ahead.values():  # for tests that did not come (-x, Ctrl-C)
            made.tidy_unused()
        self.tmp_ahead = {}

    def preparing(self, options: Options) -> bool:
        """Whether a container of ``options`` is prepared ahead: not for the ones whose
        init does more than build and reap (a named network's relay, cgroups), nor when
        the trace shows every step of each container as it happens."""
        return (
            self.prepare
            and not self.containers.trace
            and options.network in ("none", "host")
            and options.memory is None
            and options.pids is None
        )

    def index_of(self, item: pytest.Item) -> int | None:
        """Where ``item`` is in session.items (None: not there, a plugin's own item)."""
        if id(item) not in self.item_index:
            self.item_index = {id(it): n for n, it in enumerate(item.session.items)}
        return self.item_index.get(id(item))

    def run(
        self,
        item: pytest.Item,
        spec: ContainerSpec,
        job: framing.Message,
        ack_fd: int,
        on_message: Callable[[framing.Message], None],
        ahead: tuple[pytest.Item, Options] | None,
    ) -> launch.Outcome | None:
        """Run the test in a prepared container, and have the next test's prepared
        meanwhile; None if there is no zygote for the host as it is now and making one
        would not pay (or the container could not be prepared): the caller builds it."""
        self._here()
        containers = self.containers
        crash = containers.crash_channel()
        # A zygote made for this test alone would cost one more fork of pytest.
        if ahead is not None and not _same_zygote_likely(item, ahead[0]):
            ahead = None
        zygote = self._zygote_for(item, ahead is not None)
        if zygote is None:
            return None
        key = _spec_key(spec)
        came_prepared = key in zygote.prepared
        try:
            outcome = prepared.run_prepared(
                zygote,
                key,
                spec,
                job,
                ack_fd,
                on_message,
                crash,
                containers.reaper,
                then=lambda: self._try_preparing_ahead(ahead),
            )
        except launch.ContainerError:  # the zygote is gone: before the test was handed over
            zygote.close()
            self.zygote = None
            self.lost = True  # the next one is made because this one ended
            self.stats.cold["failed"] += 1
            return None
        if outcome is None:
            self.stats.cold["failed"] += 1
        elif came_prepared:
            self.stats.prepared += 1
        else:
            self.stats.cold["unprepared"] += 1
        return outcome

    def _zygote_for(self, item: pytest.Item, worth_making: bool) -> prepared.Zygote | None:
        """The zygote for the host as it is at ``item``'s turn: the one we have, or one
        made now if ``worth_making`` (the next test can use it too); None if none."""
        state = _host_state(item, self.local_runs, self.containers.keep())
        made_for = self.last_state  # what the zygote we have, if any, was made for
        if self.zygote is not None and not (made_for is not None and made_for.serves(state)):
            self.zygote.close()  # made before the host changed: it would run stale copies
            self.zygote = None
        if self.zygote is not None:
            return self.zygote
        if not worth_making:
            self.stats.cold["alone"] += 1
            return None
        try:
            self.zygote = prepared.Zygote(
                self._builder(),
                functools.partial(_job_payload, item.session, self.containers.backend),
                self.containers.keep(),
            )
        except (
            OSError,
            launch.ContainerError,
        ):  # no zygote now: the container is cloned from pytest
            self.stats.cold["failed"] += 1
            return None
        cause = "lost" if self.lost else remake_cause(self.last_state, state)
        self.stats.zygotes[cause] += 1
        self.last_state, self.lost = state, False
        return self.zygote

    def _builder(self) -> prepared.Builder:
        """The builder of this session's prepared containers: started on first use, and
        again if it ended."""
        if self.builder is not None and not self.builder.alive():
            self.builder.close()
            self.builder = None
        if self.builder is None:
            self.builder = prepared.Builder()
        return self.builder

    def _prepare_ahead(self, ahead: tuple[pytest.Item, Options] | None) -> None:
        """Have the zygote build the next test's container (its test is running now)."""
        if ahead is None or self.zygote is None or not self.preparing(ahead[1]):
            return
        if self.spec_for is None:
            return
        item, options = ahead
        made = self.tmp_ahead.get(item.nodeid) or self.tmp_path_for(item)
        if made is not None:
            self.tmp_ahead[item.nodeid] = made
        spec = self.spec_for(options, item, (made.path,) if made else ())
        self.zygote.prepare(_spec_key(spec), spec)

    def _try_preparing_ahead(self, ahead: tuple[pytest.Item, Options] | None) -> None:
        """Best effort, while the current test runs: what fails here (the zygote gone, its
        tmp_path or root not made) happens again when the next test comes, which then
        reports it, as its own."""
        try:
            self._prepare_ahead(ahead)
        except Exception:
            pass


@dataclasses.dataclass(frozen=True)
class SetUpNode:
    """A node on the host's stack of set-up nodes, as a zygote's copy of pytest holds it."""

    ident: int  # id() of the node
    finalizers: int  # each fixture set up for it adds one (FixtureDef.execute)
    kind: str  # for the stats: "class", "module"...
    bare: bool  # nothing but its place on the stack (see setupstate)


@dataclasses.dataclass(frozen=True)
class HostState:
    """What a zygote was made for (see _host_state)."""

    nodes: tuple[SetUpNode, ...]
    local_runs: int
    fds: frozenset[int]
    items: tuple[int, int]  # the list of items: its identity and length

    def kept(self) -> tuple[tuple[int, int], ...]:
        """The nodes that hold more than their place on the stack, and their finalizers."""
        return tuple((node.ident, node.finalizers) for node in self.nodes if not node.bare)

    def serves(self, now: HostState) -> bool:
        """Whether a copy of pytest made at this state runs a test at ``now`` as a copy
        made then would: they differ at most in bare nodes, which the test process puts
        on its stack or takes off (setupstate.mirror_host_stack)."""
        mine = (self.kept(), self.local_runs, self.fds, self.items)
        return mine == (now.kept(), now.local_runs, now.fds, now.items)


def remake_cause(old: HostState | None, new: HostState) -> str:
    """Why a zygote for ``new`` was needed when the last was made for ``old``, which did
    not serve it (see stats.REMAKE_CAUSES)."""
    if old is None:
        return "first"
    if old.local_runs != new.local_runs:
        return "host-run"
    old_ids = {node.ident for node in old.nodes}
    added = [node.kind for node in new.nodes if not node.bare and node.ident not in old_ids]
    if added:
        return added[-1]
    old_kept, new_kept = old.kept(), new.kept()
    if len(new_kept) < len(old_kept):
        return "teardown"
    if old_kept != new_kept:
        return "fixture"  # on a node set up before, now holding one more
    return "other"


def _host_state(item: pytest.Item, local_runs: int, fds: frozenset[int]) -> HostState:
    """What a copy of pytest must have to run ``item`` as a copy made now would: the
    nodes set up on the host and their finalizers (each time a fixture is set up there,
    a parametrized one again included, its node gets one more: FixtureDef.execute), the
    tests pytest ran itself, the fds its test processes keep, and the list of items
    (a request names its item by index; see run_prepared). What the logging hooks change
    on the host is not in it: the session's counts go with each test (see _job_payload)."""
    nodes = tuple(
        SetUpNode(id(node), len(entry[0]), _kind(node), setupstate.bare(node, entry))
        for node, entry in item.session._setupstate.stack.items()
    )
    items = item.session.items
    return HostState(nodes, local_runs, fds, (id(items), len(items)))


def _same_zygote_likely(item: pytest.Item, nextitem: pytest.Item) -> bool:
    """Whether the zygote for ``item`` will likely serve ``nextitem`` too (HostState.serves):
    the nodes the host will tear down after ``item`` are bare, the ones it will set up for
    ``nextitem`` have nothing to set up, and every fixture the host sets up for it is set up
    already. A wrong guess costs a container prepared for nothing."""
    if nextitem.parent is item.parent:
        return True
    leaving, coming = setupstate.changes_between(item.session, nextitem)
    return (
        all(setupstate.bare(node, entry) for node, entry in leaving)
        and all(setupstate.bare_setup(node) for node in coming)
        and all(
            fixture.cached_result is not None for fixture in setupstate.wider_fixtures(nextitem)
        )
    )


#: The nodes whose set-up makes a new zygote, as --rootless-stats names them.
_NODE_KINDS: tuple[tuple[str, type], ...] = (
    ("class", pytest.Class),
    ("module", pytest.Module),
    ("package", pytest.Package),
)


def _kind(node: object) -> str:
    return next((kind for kind, cls in _NODE_KINDS if isinstance(node, cls)), "node")


_NO_PLAN = mountplan.Plan(ops=(), home="")


def _spec_key(spec: ContainerSpec) -> str:
    """Which prepared container ``spec`` asks for. Plans are made once per session and
    never change: the plan by its identity (kept alive in ContainerSession.plans), the rest
    (a few small fields, all frozen) by value: equal ones get the same number."""
    return f"{id(spec.plan):x}-{_number_of(dataclasses.replace(spec, plan=_NO_PLAN))}"


#: Numbers for the values _spec_key has seen. A key is compared only while its container
#: is prepared (until the next test starts), so the recent values are enough.
_COUNTER = itertools.count()


@functools.lru_cache(maxsize=256)
def _number_of(rest: ContainerSpec) -> int:
    return next(_COUNTER)


#: Session attributes the host's logging hooks change (pytest's main.Session).
SESSION_COUNTS = ("testsfailed", "shouldstop", "shouldfail")


def _job_payload(
    session: pytest.Session, backend: limits.Backend | None, job: dict[str, Any], ack_fd: int
) -> Payload:
    """In a prepared container's init (a copy of the zygote): what its test process runs,
    from the host's description of the test."""
    item = session.items[int(job["item"])]
    if item.nodeid != job["nodeid"]:  # the zygote's copy of the session is not pytest's
        raise RuntimeError(f"pytest-rootless: the prepared copy of pytest has no {job['nodeid']}")
    # What the host's logging hooks have changed since the zygote was made: the session's
    # counts (a fixture may skip once a test failed), as a copy made now would hold them.
    for name in SESSION_COUNTS:
        setattr(session, name, job["session"][name])
    tmp = job.get("tmp")
    prepared = TmpPath(str(tmp[0]), str(tmp[1]), bool(tmp[2])) if tmp else None
    options = spec_from_data(job["options"], Options)
    notes = _limit_notes(options, backend or limits.detect())
    ceiling = job.get("ceiling")
    return functools.partial(
        _container_protocol,
        item,
        prepared,
        notes,
        ack_fd,
        ceiling=ceiling if isinstance(ceiling, int) else None,
    )
