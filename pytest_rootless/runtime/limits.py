"""Resource limits of a container: ``memory``, ``pids`` and ``cpu``.

Which mechanism enforces each limit depends on the host, and is chosen once per session:

* **cgroup v2** (cgroups(7)), where a cgroup this user may write has the controller
  enabled for its children (a delegated subtree: systemd's ``Delegate=yes``, or a
  container's own cgroup namespace). The whole container is counted, every process in it.
* **cgroup v1**, where a hierarchy of the controller is writable (as real root on a
  host still on v1): the whole container is counted too.
* **rlimits** (setrlimit(2)) otherwise, set in each process of the container:
  ``RLIMIT_NPROC`` for ``pids`` (counted per user namespace since Linux 5.14, so it counts
  the container's processes and nothing else), ``RLIMIT_DATA`` for ``memory`` (per process:
  how much each may grow beyond what it started with).

``cpu`` is ``RLIMIT_CPU`` in every case, per process (a cgroup bounds CPU *rate*, not
time): SIGXCPU at the limit, SIGKILL a second later.

The host makes one cgroup per container before cloning it; the container's init moves
itself into it first thing (so every process it starts is counted from the start), and
the host removes it once the container is reaped. A test stopped by a limit fails with a
message naming the limit and the value (:func:`hit_lines`).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import resource
import signal
from dataclasses import dataclass, field

from ..kernel import procfs
from ..kernel.paths import in_root
from .options import Options, format_size
from .stale import PREFIX, remove_stale


@dataclass(frozen=True)
class Knobs:
    """The files of one controller in one cgroup version (cgroup-v1/*.rst, cgroup-v2.rst)."""

    limit: str  # where the limit is written
    extra: tuple[str, ...]  # other files given the same value where they exist (swap)
    events: str  # where the kernel counts the times the limit was hit
    event_key: str  # the line of ``events`` that counts it


KNOBS: dict[tuple[str, int], Knobs] = {
    ("memory", 2): Knobs("memory.max", ("memory.swap.max",), "memory.events", "oom_kill"),
    ("memory", 1): Knobs(
        "memory.limit_in_bytes", ("memory.memsw.limit_in_bytes",), "memory.oom_control", "oom_kill"
    ),
    ("pids", 2): Knobs("pids.max", (), "pids.events", "max"),
    ("pids", 1): Knobs("pids.max", (), "pids.events", "max"),
}


@dataclass(frozen=True)
class Hierarchy:
    """Where this session makes the containers' cgroups for one controller."""

    controller: str
    version: int
    parent: str  # a directory of the cgroup filesystem, writable by us

    @property
    def knobs(self) -> Knobs:
        return KNOBS[(self.controller, self.version)]

    def describe(self) -> str:
        return f"cgroup v{self.version}"


@dataclass(frozen=True)
class Backend:
    """How this host enforces each limit: a cgroup hierarchy, or None for rlimits."""

    memory: Hierarchy | None
    pids: Hierarchy | None
    #: Real root is exempt from RLIMIT_NPROC (kernel/fork.c: INIT_USER), so a pids limit
    #: without a cgroup cannot be enforced for a host-root pytest.
    nproc_works: bool

    def mechanism(self, limit: str) -> str:
        if limit == "cpu":
            return "RLIMIT_CPU, per process"
        hierarchy = self.memory if limit == "memory" else self.pids
        if hierarchy is not None:
            return f"{hierarchy.describe()}, the whole container"
        if limit == "memory":
            return "RLIMIT_DATA, per process"
        return "RLIMIT_NPROC, the whole container"

    def header(self) -> str:
        return "limits: " + "; ".join(
            f"{limit} by {self.mechanism(limit)}" for limit in ("memory", "pids", "cpu")
        )

    def check(self, options: Options) -> str | None:
        """Why ``options`` cannot be enforced here, or None."""
        if options.pids is not None and self.pids is None and not self.nproc_works:
            return (
                f"pids={options.pids} cannot be enforced: pytest runs as real root, which "
                "RLIMIT_NPROC does not bind, and no writable cgroup has the pids controller; "
                "run as a non-root user or on a host with cgroup delegation"
            )
        return None


#: The controllers a container's cgroup is made for (``cpu`` is RLIMIT_CPU everywhere).
LIMITED = ("memory", "pids")


@dataclass(frozen=True)
class Place:
    """Where this process's cgroup is in one mounted hierarchy of ``controller``
    (cgroups(7)): the parent a container's cgroup would be made in."""

    controller: str
    version: int
    mount: procfs.Mount
    #: This process's cgroup as a host path; None when the mount does not show it.
    directory: str | None

    def delegated(self, root: str = "/") -> bool:
        """Ours to make cgroups in, by the files: a read-write mount, and write access to
        the directory (to make child cgroups) and to its cgroup.procs (to move processes
        into them), as systemd's ``Delegate=`` grants (cgroups(7), "Delegation")."""
        if self.directory is None or "ro" in self.mount.options:
            return False
        files = (self.directory, f"{self.directory}/cgroup.procs")
        return all(os.access(in_root(root, path), os.W_OK) for path in files)

    def listed(self, name: str, root: str = "/") -> list[str]:
        """The controllers file ``name`` of the directory lists (cgroup v2:
        ``cgroup.controllers`` are available, ``cgroup.subtree_control`` enabled for
        children)."""
        if self.directory is None:
            return []
        return (procfs.read(f"{self.directory}/{name}", root) or "").split()

    def ready(self, root: str = "/") -> bool:
        """By the files, a cgroup made here would get the controller."""
        enabled = self.version == 1 or self.controller in self.listed(
            "cgroup.subtree_control", root
        )
        return enabled and self.delegated(root)


def places(controller: str, root: str = "/") -> list[Place]:
    """Where a cgroup of ours for ``controller`` could be made: in the cgroup v2 hierarchy
    (the one mounted on /sys/fs/cgroup first), then in the v1 hierarchy of the controller.
    One place per version: the first mount that shows our cgroup, else the first mount."""
    mounts, own = procfs.mountinfo(root), procfs.cgroups(root)
    v2 = sorted(
        (m for m in mounts if m.fstype == "cgroup2"), key=lambda m: m.point != "/sys/fs/cgroup"
    )
    v1 = [m for m in mounts if m.fstype == "cgroup" and controller in m.super_options]
    found = []
    # a cgroup file that does not say (none to read) stands for the root cgroup
    for version, hierarchy, path in ((2, v2, own.get("", "/")), (1, v1, own.get(controller, "/"))):
        shown = [Place(controller, version, m, _directory(m, path, root)) for m in hierarchy]
        visible = [place for place in shown if place.directory is not None]
        found += (visible or shown)[:1]
    return found


def _directory(mount: procfs.Mount, path: str, root: str) -> str | None:
    """Where cgroup ``path`` is through ``mount``, if it shows it and the directory is there."""
    directory = mount.shows(path)
    return directory if directory and os.path.isdir(in_root(root, directory)) else None


def _usable(controller: str, version: int, parent: str) -> bool:
    """Make a trial cgroup under ``parent``: usable if its limit file is there, writable."""
    trial = os.path.join(parent, f"{PREFIX}{os.getpid()}-probe")
    try:
        os.mkdir(trial)
    except FileExistsError:
        pass
    except OSError:
        return False
    try:
        if version == 2:
            with open(os.path.join(trial, "cgroup.controllers")) as f:
                if controller not in f.read().split():
                    return False
        knob = os.path.join(trial, KNOBS[(controller, version)].limit)
        return os.access(knob, os.W_OK) and os.access(os.path.join(trial, "cgroup.procs"), os.W_OK)
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(trial)


def _choose(controller: str, root: str, trial: bool) -> Hierarchy | None:
    for place in places(controller, root):
        if place.directory is None:
            continue
        parent = in_root(root, place.directory)
        usable = _usable(controller, place.version, parent) if trial else place.ready(root)
        if usable:
            if trial:
                remove_stale(parent, _rmdir)
            return Hierarchy(controller, place.version, parent)
    return None


def _rmdir(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def detect(root: str = "/", trial: bool = True, uid: int | None = None) -> Backend:
    """Find, for memory and pids, a cgroup hierarchy we may write (v2 first, then v1).

    ``trial``: the kernel decides, by a trial cgroup made in each place; without, the
    files under ``root`` do (:meth:`Place.ready`: a simulated host, or no trials).
    ``uid`` is the user pytest runs as (default: this process's effective uid)."""
    memory, pids = (_choose(controller, root, trial) for controller in LIMITED)
    uid = os.geteuid() if uid is None else uid
    return Backend(memory, pids, nproc_works=uid != 0)


class CgroupError(OSError):
    """A container's cgroup could not be made or set up."""


@dataclass
class Cgroups:
    """The cgroups of one container, one per hierarchy its limits need."""

    paths: dict[str, str]  # controller -> directory
    hierarchies: dict[str, Hierarchy]
    #: the kernel's counts, as last read (kept once the cgroups are removed)
    counted: dict[str, int] = field(default_factory=dict)

    @classmethod
    def make(cls, backend: Backend, options: Options, name: str) -> Cgroups:
        made = cls({}, {})
        wanted = [
            (h, value)
            for h, value in ((backend.memory, options.memory), (backend.pids, options.pids))
            if h is not None and value is not None
        ]
        try:
            for hierarchy, value in wanted:
                path = os.path.join(hierarchy.parent, f"{PREFIX}{os.getpid()}-{name}")
                os.mkdir(path, 0o755)
                made.paths[hierarchy.controller] = path
                made.hierarchies[hierarchy.controller] = hierarchy
                knobs = hierarchy.knobs
                _write(os.path.join(path, knobs.limit), str(value))
                for extra in knobs.extra:
                    if os.path.exists(os.path.join(path, extra)):
                        _write(
                            os.path.join(path, extra), str(value if hierarchy.version == 1 else 0)
                        )
        except OSError as exc:
            made.remove()
            raise CgroupError(
                exc.errno or errno.EIO, f"cannot set up the container's cgroup: {exc}"
            ) from None
        return made

    @property
    def procs_files(self) -> tuple[str, ...]:
        """What the container's init writes its pid into (cgroup.procs of each)."""
        return tuple(os.path.join(path, "cgroup.procs") for path in self.paths.values())

    def hits(self) -> dict[str, int]:
        """How many times each limit was hit, as the kernel counted it."""
        counts = self.counted
        for controller, path in self.paths.items():
            knobs = self.hierarchies[controller].knobs
            try:
                with open(os.path.join(path, knobs.events)) as f:
                    for line in f.read().splitlines():
                        key, _, value = line.partition(" ")
                        if key == knobs.event_key and int(value) > 0:
                            counts[controller] = int(value)
            except (OSError, ValueError):
                continue
        return counts

    def remove(self) -> bool:
        """Remove every cgroup that is empty; False if one still has processes."""
        self.hits()
        for controller, path in list(self.paths.items()):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
                continue
            del self.paths[controller]
        return not self.paths


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


# --- in the container --------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessLimits:
    """The rlimits every process of the container gets (set after fork, before the test)."""

    data_growth: int | None = None  # bytes, RLIMIT_DATA above the current data size
    nproc: int | None = None
    cpu: float | None = None  # seconds
    #: A memory cgroup bounds the container: its processes, not init, are the ones the
    #: OOM killer ends when it is full (init is a copy of pytest: by size, it would be
    #: picked first, and its end ends the container without saying why).
    oom_first: bool = False

    @classmethod
    def of(cls, backend: Backend, options: Options, ceiling: int | None = None) -> ProcessLimits:
        """The rlimits for ``options``; ``ceiling``: the default memory ceiling, the
        RLIMIT_DATA headroom of every process of a container with no ``memory`` option."""
        growth = options.memory if backend.memory is None else None
        return cls(
            data_growth=ceiling if options.memory is None else growth,
            nproc=options.pids if backend.pids is None else None,
            cpu=options.cpu,
            oom_first=options.memory is not None and backend.memory is not None,
        )

    def apply(self) -> None:
        """setrlimit(2) in this process; its children inherit them."""
        if self.data_growth is not None:
            # The test process is a copy of pytest, data and all: the limit bounds what it
            # adds. An exec'd program starts small and gets the same headroom.
            base = int((procfs.status_field("VmData") or "0 kB").split()[0]) * 1024
            value = base + self.data_growth
            resource.setrlimit(resource.RLIMIT_DATA, (value, value))
        if self.nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.nproc, self.nproc))
        if self.oom_first:
            # proc(5): above init's 0, this process and its children go before init;
            # raising it needs no privilege (lowering init's would). Not 1000: a process
            # of the test may still put itself first.
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("500")
        if self.cpu is not None:
            # SIGXCPU at the soft limit; the hard one (SIGKILL) if it is caught or ignored.
            seconds = max(1, math.ceil(self.cpu))
            resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))


# --- the default memory ceiling ------------------------------------------------------------

#: The default memory ceiling's share of the machine's RAM: no normal test grows by half
#: the machine, and a runaway (a mock recording calls in a loop) stops before the OOM killer
#: picks among the host's processes.
DEFAULT_CEILING_SHARE = 2


def default_ceiling() -> int:
    """The default memory ceiling of a test process: half of this machine's RAM, in whole
    MiB (whole GiB from 2G on), so that the header shows it as a user would write it."""
    share = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // DEFAULT_CEILING_SHARE
    unit = 1 << 30 if share >= 2 << 30 else 1 << 20
    return max(unit, share // unit * unit)


def ceiling_header(ceiling: int | None) -> str:
    """The header's words for the default memory ceiling (ini rootless_default_memory)."""
    if ceiling is None:
        return "default memory ceiling: none (rootless_default_memory = none)"
    return (
        f"default memory ceiling: {format_size(ceiling)} per process where no memory= is set "
        "(RLIMIT_DATA; ini rootless_default_memory)"
    )


def ceiling_line(ceiling: int) -> str:
    """The sentence naming the default memory ceiling when a test hit it."""
    return (
        f"the default memory ceiling rootless_default_memory={format_size(ceiling)} was "
        "reached (RLIMIT_DATA, per process): an allocation failed; give the test its own "
        "memory= limit, or set rootless_default_memory (none: no ceiling)"
    )


# --- reporting ---------------------------------------------------------------------------


def hit_lines(
    options: Options,
    backend: Backend,
    hits: dict[str, int],
    signum: int | None = None,
    exception: BaseException | None = None,
) -> list[str]:
    """Sentences naming each limit that stopped the test, from what the kernel counted
    (``hits``), the signal that ended a process, or the exception the test raised."""
    lines = []
    memory_hit = "memory" in hits or (
        options.memory is not None and isinstance(exception, MemoryError)
    )
    if memory_hit:
        how = (
            f"the kernel's OOM killer ended {hits['memory']} process(es)"
            if "memory" in hits
            else "an allocation failed"
        )
        lines.append(
            f"the memory limit memory={format_size(options.memory)} was reached "
            f"({backend.mechanism('memory')}): {how}"
        )
    pids_hit = "pids" in hits or (
        options.pids is not None
        and isinstance(exception, OSError)
        and exception.errno == errno.EAGAIN
    )
    if pids_hit:
        how = f"{hits['pids']} fork(s) refused" if "pids" in hits else "a fork was refused"
        lines.append(
            f"the pids limit pids={options.pids} was reached ({backend.mechanism('pids')}): {how}"
        )
    if options.cpu is not None and signum == signal.SIGXCPU:
        lines.append(f"the cpu limit cpu={options.cpu:g}s was reached ({backend.mechanism('cpu')})")
    return lines
