"""``--rootless-fallback=landlock``: where this host refuses user namespaces, isolated tests
that need no namespace run in a Landlock sandbox (:mod:`pytest_rootless.runtime.landlock`)
instead of being skipped; those that need one are skipped naming it. The host's side of
one such test reuses a container's (:class:`.host_container.ContainerRun`): the same
handlers of what the test sends, the same reports of how it ended."""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from ..kernel import syscalls as sc
from ..runtime import landlock as sandbox
from ..runtime import limits as limits_mod
from ..runtime.child.landlocked import SandboxSpec
from ..runtime.options import DEFAULTS, Options
from ..runtime.probe import Support
from .host_container import ContainerRun
from .in_container import _container_protocol, _forwarding, _limit_notes
from .session import STATE_KEY

HELP_FALLBACK = (
    "where this host refuses user namespaces: 'none' skips isolated tests (default); "
    "'landlock' runs those that need no namespace in a Landlock sandbox (writes only to "
    "tmp_path, TMPDIR and HOME; the host's processes and network stay visible) "
    "(ini: rootless_fallback)"
)

#: The fixtures that are live containers: they need every namespace.
CONTAINER_FIXTURES = ("container", "container_factory")


@dataclass
class TierState:
    """The fallback chosen for the session and what it did, for the header and summary."""

    fallback: str
    tier: sandbox.Tier | None = None
    landlocked: set[str] = field(default_factory=set)  # node ids assigned to the tier
    ran: int = 0  # tests run in the Landlock tier
    skipped: int = 0  # tests skipped there: they need a namespace

    def landlock(self) -> sandbox.Tier:
        if self.tier is None:
            self.tier = sandbox.Tier.probe()
        return self.tier


TIER_KEY = pytest.StashKey[TierState]()


def addoption(parser: pytest.Parser, group: Any) -> None:
    group.addoption("--rootless-fallback", default=None, metavar="TIER", help=HELP_FALLBACK)
    parser.addini("rootless_fallback", HELP_FALLBACK, default="")


def configure(config: pytest.Config) -> None:
    """Read the fallback (a usage error naming the option and the accepted values)."""
    value = config.getoption("rootless_fallback")
    where = "--rootless-fallback"
    if value is None:
        value, where = config.getini("rootless_fallback") or "none", "ini rootless_fallback"
    if value not in sandbox.FALLBACKS:
        accepted = " or ".join(repr(name) for name in sandbox.FALLBACKS)
        raise pytest.UsageError(f"{where}={value!r} is invalid: accepted {accepted}")
    config.stash[TIER_KEY] = TierState(value)


def wanted(config: pytest.Config) -> bool:
    state = config.stash.get(TIER_KEY, None)
    return state is not None and state.fallback == "landlock"


def needs_namespace(item: pytest.Item, options: Options, backend: limits_mod.Backend) -> str | None:
    """Why ``item`` cannot run in the Landlock tier: the namespace it needs; None if it can."""
    fixtures = set(getattr(item, "fixturenames", ()))
    used = [name for name in CONTAINER_FIXTURES if name in fixtures]
    if used:
        return f"the {used[0]} fixture needs user, mount, PID, network, UTS and IPC namespaces"
    if options.hostname != DEFAULTS["hostname"]:
        return f"hostname={options.hostname!r} needs a UTS namespace"
    if options.root:
        return "root=True needs a user namespace"
    if options.network not in ("none", "host"):
        return f"network={options.network!r} needs a network namespace"
    if options.rootfs not in ("minimal", "host"):
        return f"rootfs={options.rootfs!r} needs a mount namespace"
    if options.mounts:
        return "mounts needs a mount namespace"
    if options.writable:
        return "writable needs a mount namespace (a copy-on-write overlay)"
    if options.pids is not None and backend.pids is None:
        return (
            f"pids={options.pids} needs a pids cgroup or a user namespace (RLIMIT_NPROC "
            "would count every process of your user on this host)"
        )
    return None


def assign(
    config: pytest.Config,
    items: list[pytest.Item],
    support: Support,
    options_key: Any,
    required: bool,
) -> bool:
    """Give the isolated ``items`` to the Landlock tier, or skip those that need a
    namespace, naming it (``required``: leave them to fail as --rootless-require says);
    False (nothing done) if the tier cannot run here."""
    state = config.stash[TIER_KEY]
    landlock = state.landlock()
    if not landlock.ok:
        return False
    backend = config.stash[STATE_KEY].containers.limits_backend()
    for item in items:
        reason = needs_namespace(item, item.stash[options_key], backend)
        if reason is None:
            state.landlocked.add(item.nodeid)
            continue
        if required:
            continue
        state.skipped += 1
        item.add_marker(
            pytest.mark.skip(
                reason=f"rootless: {reason}, and {sandbox.short_cause(support.reason)} "
                "(the landlock tier has none)"
            )
        )
        del item.stash[options_key]
    return True


def unavailable(config: pytest.Config) -> str:
    """What the skip reason adds when the tier was asked for and cannot run."""
    reason = config.stash[TIER_KEY].landlock().reason
    return f" (and --rootless-fallback=landlock cannot run: {reason})"


def runs(item: pytest.Item) -> bool:
    state = item.config.stash.get(TIER_KEY, None)
    return state is not None and item.nodeid in state.landlocked


def header(config: pytest.Config, support: Support) -> str:
    state = config.stash[TIER_KEY]
    if support.ok:
        return "isolation: containers (the landlock fallback is not needed)"
    landlock = state.landlock()
    if not landlock.ok:
        return (
            f"isolation: none, tests skip ({support.reason}); landlock fallback: {landlock.reason}"
        )
    return landlock.describe(sandbox.short_cause(support.reason))


def summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(TIER_KEY, None)
    if state is None or not (state.ran or state.skipped):
        return
    terminalreporter.write_sep("=", "rootless: isolation tiers")
    terminalreporter.write_line(
        f"{state.ran} isolated test(s) ran in the landlock tier, {state.skipped} skipped "
        "(they need a namespace), none in containers (user namespaces are refused here)"
    )


class LandlockRun(ContainerRun):
    """One test in the Landlock tier, seen from the host: a container's run (its handlers
    and reports), with a sandbox in place of the container."""

    def run(self, ahead: tuple[pytest.Item, Options] | None) -> None:
        item, options, state = self.item, self.options, self.state
        item.config.stash[TIER_KEY].ran += 1
        started = time.monotonic()
        try:
            cgroups = state.containers.cgroups_for(options)
        except limits_mod.CgroupError as exc:
            self._fail_setup(f"rootless: {exc.strerror}")
            return
        tmp = state.tmp_path_for(item)
        scratch = sandbox.Scratch()
        ack_r, self.ack_w = os.pipe2(os.O_CLOEXEC)
        try:
            spec = self._spec(scratch, tmp.path if tmp else None, cgroups, ack_r)
            _forwarding()
            notes = _limit_notes(options, state.containers.limits_backend())
            payload = functools.partial(
                _container_protocol, item, tmp, notes, ack_r, ceiling=self.ceiling()
            )
            crash = state.containers.crash_channel()
            outcome = sandbox.run(spec, payload, self.on_message, crash)
        finally:
            os.close(ack_r)
            os.close(self.ack_w)
            scratch.remove()
        try:
            self._finish(outcome, cgroups, tmp, started)
        finally:
            if cgroups is not None:
                state.containers.remove_cgroups(cgroups)

    def ceiling(self) -> int | None:
        """The default memory ceiling, where the test sets no memory limit of its own."""
        return self.state.containers.memory_ceiling if self.options.memory is None else None

    def _spec(
        self,
        scratch: sandbox.Scratch,
        tmp_path: str | None,
        cgroups: limits_mod.Cgroups | None,
        ack_r: int,
    ) -> SandboxSpec:
        options, containers = self.options, self.state.containers
        limited = options.memory or options.pids or options.cpu
        ceiling = self.ceiling()
        landlock = self.item.config.stash[TIER_KEY].landlock()
        assert landlock.abi is not None  # assigned only where the tier runs
        return SandboxSpec(
            writable=((tmp_path,) if tmp_path else ()) + (scratch.tmpdir, scratch.home),
            home=scratch.home,
            tmpdir=scratch.tmpdir,
            abi=landlock.abi,
            env=options.env,
            env_allow=options.env_allow,
            cwd=os.getcwd(),
            timeout=options.timeout,
            keep_fds=containers.keep() | {ack_r},
            last_cap=sc.cap_last_cap(),
            trace=containers.trace and self.writer is not None,
            cgroups=cgroups.procs_files if cgroups is not None else (),
            rlimits=(
                limits_mod.ProcessLimits.of(containers.limits_backend(), options, ceiling)
                if limited
                else limits_mod.ProcessLimits(data_growth=ceiling)
            ),
        )
