"""Integration tests: real containers, made by the runtime directly (no pytest item).

``run_in_container(fn, **options)`` runs ``fn()`` in the container's test process and
returns (outcome, value): ``value`` is what ``fn`` returned (JSON data), or None.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest

from pytest_rootless.plugin import session
from pytest_rootless.protocol import framing
from pytest_rootless.runtime import launch, mountplan
from pytest_rootless.runtime.options import Options, validate
from pytest_rootless.runtime.session import ContainerSession


class RunInContainer(Protocol):
    last_trace: list[str]  # what --rootless-trace would print for the last container
    last_plan: mountplan.Plan | None

    def __call__(
        self,
        fn: Callable[[], Any],
        *,
        options: Options | None = None,
        trace: bool = False,
        **raw: Any,
    ) -> tuple[launch.Outcome, Any]: ...


@pytest.fixture
def run_in_container(pytestconfig: pytest.Config) -> Iterator[RunInContainer]:
    state = session.SessionState(pytestconfig, ContainerSession())
    state.containers.keep_fds = frozenset({0, 1, 2})
    support = state.containers.probe()
    if not support.ok:
        pytest.skip(f"rootless: {support.reason}")

    def run(
        fn: Callable[[], Any],
        *,
        options: Options | None = None,
        trace: bool = False,
        **raw: Any,
    ) -> tuple[launch.Outcome, Any]:
        values: list[Any] = []

        def payload(fd: int) -> int:
            try:
                value = fn()
            except BaseException:
                framing.send(fd, {"kind": "value", "error": traceback.format_exc()})
                return 1
            framing.send(fd, {"kind": "value", "value": value})
            return 0

        def on_message(message: framing.Message) -> None:
            if message["kind"] == "trace":
                run.last_trace += [str(line) for line in message["lines"]]
            if message["kind"] == "value":
                if "error" in message:
                    pytest.fail(f"in the container:\n{message['error']}")
                values.append(message["value"])

        state.containers.trace = trace
        spec = state.spec(options or validate(raw), None)
        run.last_trace, run.last_plan = [], spec.plan
        outcome = state.containers.run(spec, payload, on_message)
        return outcome, values[0] if values else None

    run.last_trace, run.last_plan = [], None  # type: ignore[attr-defined]
    yield run  # type: ignore[misc]
    state.close()
