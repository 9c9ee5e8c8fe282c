"""Live containers a test can drive: the ``container`` and ``container_factory`` fixtures.

A :class:`Container` is started on first use and stays up until :meth:`Container.close`
(the fixture closes it at teardown). Each call starts a new process inside it; the
function and its arguments go *down* with cloudpickle (a lambda, a closure over the
test's locals), the result comes *up* as data
(:mod:`pytest_rootless.protocol.values`), never as a pickle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from ..runtime import network
from ..runtime.options import Options, validate
from ..runtime.probe import UnsupportedHost
from .config import require, resolve_options
from .container import Container
from .session import STATE_KEY, SessionState

__all__ = ["container", "container_factory", "run_isolated"]


def _state(config: pytest.Config) -> SessionState:
    return config.stash[STATE_KEY]


def _options(
    config: pytest.Config,
    item: pytest.Item | None,
    markers: list[pytest.Mark],
    extra: Mapping[str, Any] | None = None,
) -> Options:
    try:
        return resolve_options(config, item, markers, extra)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def _usable(state: SessionState, config: pytest.Config) -> None:
    support = state.containers.probe()
    if support.ok:
        return
    if require(config):
        raise UnsupportedHost(support.reason)
    pytest.skip(f"rootless: {support.reason}")


@pytest.fixture
def container(request: pytest.FixtureRequest) -> Iterator[Container]:
    """A live container for this test, started on first use; its options come from a
    ``@pytest.mark.container(**options)`` marker, else the ini defaults."""
    state = _state(request.config)
    _usable(state, request.config)
    item = request.node if isinstance(request.node, pytest.Item) else None
    markers = list(item.iter_markers("container")) if item is not None else []
    with (
        _test_networks(request) as networks,
        Container(_options(request.config, item, markers), state, networks) as made,
    ):
        yield made


@pytest.fixture
def container_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Container]]:
    """Make any number of containers for this test: ``container_factory(**options)``."""
    state = _state(request.config)
    _usable(state, request.config)
    made: list[Container] = []
    with _test_networks(request) as networks:

        def make(**options: Any) -> Container:
            box = Container(_options(request.config, None, [], options), state, networks)
            made.append(box)
            return box

        try:
            yield make
        finally:
            for box in made:
                box.close()


_NETWORKS = pytest.StashKey[tuple[network.Networks, list[int]]]()


@contextlib.contextmanager
def _test_networks(request: pytest.FixtureRequest) -> Iterator[network.Networks]:
    """The named networks of this test: shared by its ``container`` and its
    ``container_factory``, closed (holders ended) after the last of them is torn down."""
    node = request.node
    trace = _state(request.config).trace
    networks, users = node.stash.setdefault(_NETWORKS, (network.Networks(trace), [0]))
    users[0] += 1
    try:
        yield networks
    finally:
        users[0] -= 1
        if not users[0]:
            networks.close()
            del node.stash[_NETWORKS]


def run_isolated(fn: Callable[..., Any], /, *args: Any, **options: Any) -> Any:
    """Call ``fn(*args)`` once in a fresh container, without pytest; options as for the
    marker. Raises UnsupportedHost where this host cannot isolate."""
    state = SessionState(None)
    try:
        with Container(validate(options), state) as box:
            return box.run(fn, *args)
    finally:
        state.close()
