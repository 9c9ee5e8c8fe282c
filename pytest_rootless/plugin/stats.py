"""``--rootless-stats``: where an isolated run's time went, printed after the run.

How many containers the tests had and how many came prepared (built ahead, while the test
before ran, see :mod:`pytest_rootless.plugin.prepared`); how often the zygote, the copy of
pytest that prepares them, was made and why; and the median and 95th percentile of each
stage of a test's container:

- **build**: from the clone(2) of its init to its namespaces and root being ready
  (measured by init, sent as ``built``). Off the test's path when it came prepared, and
  so is the fork of the test process that follows there (runtime.child.ahead).
- **hand-over**: from the host asking for the container to the test process running
  pytest's protocol in it (``running``, sent by the test process): the fork of the test
  process and its isolation, plus the build for a container made on the test's turn.
- **teardown**: from the test's last frame to the host being free for the next test. The
  container itself is torn down by the kernel meanwhile, on another core (runtime.launch).

Under pytest-xdist each worker counts its own tests; the controller adds them up
(``workeroutput``, as pytest-xdist's own workers report their collection).
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Why a zygote was made, as the summary words it.
REMAKE_CAUSES = {
    "first": "the first",
    "module": "a new module with fixtures or a setup",
    "class": "a new class with fixtures or a setup",
    "package": "a new package",
    "node": "another collector set up",
    "teardown": "a node torn down with its fixtures or setup",
    "fixture": "a fixture set up on the host",
    "host-run": "a test run on the host (not isolated)",
    "lost": "the previous one ended",
    "other": "pytest's fds or items changed",
}

#: Why a container was built on its test's turn rather than prepared.
COLD_CAUSES = {
    "alone": "no zygote and its node has no next test (making one would not pay)",
    "options": "options never prepared ahead (memory=, pids=, a named network, --rootless-trace)",
    "no-prepare": "--rootless-no-prepare",
    "failed": "the zygote could not prepare it",
    "unprepared": "built by the zygote on request (the first test of each zygote)",
}

STAGES = ("build", "hand-over", "teardown")


@dataclass
class Stats:
    """What the run's containers cost; filled in by the zygote keeper and each test's
    ContainerRun, printed by :func:`summary`."""

    containers: int = 0
    prepared: int = 0
    cold: Counter[str] = field(default_factory=Counter)
    zygotes: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    def time(self, stage: str, seconds: float) -> None:
        self.seconds[stage].append(max(0.0, seconds))

    def data(self) -> dict[str, Any]:
        """As plain data, for pytest-xdist's workeroutput (which execnet serializes)."""
        return {
            "containers": self.containers,
            "prepared": self.prepared,
            "cold": dict(self.cold),
            "zygotes": dict(self.zygotes),
            "seconds": self.seconds,
        }

    def add(self, data: dict[str, Any]) -> None:
        """Add a worker's counts (:meth:`data`) to ours."""
        self.containers += int(data["containers"])
        self.prepared += int(data["prepared"])
        self.cold.update({str(k): int(v) for k, v in data["cold"].items()})
        self.zygotes.update({str(k): int(v) for k, v in data["zygotes"].items()})
        for stage in STAGES:
            self.seconds[stage].extend(float(s) for s in data["seconds"].get(stage, ()))


def _ms(values: list[float], fraction: float) -> str:
    ordered = sorted(values)
    if fraction == 0.5:
        return f"{statistics.median(ordered) * 1000:.1f}"
    return f"{ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000:.1f}"


def _causes(counts: Counter[str], words: dict[str, str]) -> str:
    return ", ".join(f"{n} {words.get(k, k)}" for k, n in counts.most_common())


def summary(stats: Stats) -> list[str]:
    """The lines of the summary section."""
    if not stats.containers:
        return ["no test ran in a container"]
    cold = sum(stats.cold.values())
    share = 100 * stats.prepared / stats.containers
    lines = [
        f"containers: {stats.containers} for tests, {stats.prepared} prepared ahead "
        f"({share:.0f}%), {cold} built on their test's turn",
    ]
    if cold:
        lines.append(f"  built on their test's turn: {_causes(stats.cold, COLD_CAUSES)}")
    made = sum(stats.zygotes.values())
    lines.append(f"zygotes (copies of pytest that prepare containers): {made} made")
    if made:
        lines.append(f"  why: {_causes(stats.zygotes, REMAKE_CAUSES)}")
    lines.append("per container, median / 95th percentile:")
    for stage in STAGES:
        values = stats.seconds[stage]
        if values:
            lines.append(
                f"  {stage:<10} {_ms(values, 0.5):>7} / {_ms(values, 0.95):>7} ms"
                f"  ({len(values)} measured)"
            )
    remade = made - stats.zygotes.get("first", 0)
    if stats.containers >= 20 and remade * 5 > stats.containers:
        lines.append(
            f"hint: the zygote was made again {remade} times for {stats.containers} "
            "containers; each costs a fork of pytest. Fewer module- or class-scoped "
            "fixtures and setup_class/setup_module functions (a class or module that sets "
            "up nothing costs none), fewer tests run on the host between isolated ones "
            "(or isolate them too)."
        )
    return lines
