"""The recording fake of the mount boundary, kept honest against the real kernel.

The unit tests check the order of mount operations with ``tests/unit/fakes.FakeKernel``.
Here the same prepared plan is applied twice: once with the fake, once by a real
container with ``--rootless-trace`` on. Both must make the same calls, in the same order,
on the same targets; if the runtime changed and the fake did not, this fails.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pytest_rootless.runtime import mountplan, rootfs
from pytest_rootless.runtime.child import mounts

from ..unit.fakes import FakeKernel
from .conftest import RunInContainer

CALLS = ("mount", "mount_setattr", "pivot_root", "umount2")


def _target(name: str, args: list[str]) -> str:
    return args[1] if name == "mount" else args[0]


def _from_trace(lines: list[str], base: str) -> list[tuple[str, str]]:
    steps = []
    for line in lines:
        match = re.match(r"^(\w+)\((.*)\)$", line)
        if not match or match.group(1) not in CALLS:
            continue
        args = [a if a else "None" for a in re.findall(r"'([^']*)'|None", match.group(2))]
        target = _target(match.group(1), args)
        steps.append((match.group(1), target.removeprefix(base) or "/"))
        if match.group(1) == "umount2":
            break
    return steps


def test_fake_and_kernel_make_the_same_calls(
    run_in_container: RunInContainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome, _ = run_in_container(lambda: None, trace=True)
    assert outcome.status == 0
    real = _from_trace(run_in_container.last_trace, mountplan.BUILD_BASE)
    assert len(real) > 20, real  # every bind, tmpfs, cover, the pivot

    # the same plan, through the fake
    plan = run_in_container.last_plan
    assert plan is not None
    base = str(tmp_path / "root")
    os.makedirs(base)
    for name in rootfs.PROC_COVERS:  # what the fresh proc shows in the real container
        if os.path.lexists(f"/proc/{name}"):
            os.makedirs(f"{base}/proc/{name}", exist_ok=True)
    kernel = FakeKernel()
    monkeypatch.setattr(mounts, "mnt", kernel)
    monkeypatch.chdir(tmp_path)
    mounts.apply(plan, base=base)
    faked = []
    for call in kernel.calls:
        if call[0] in CALLS:
            target = call[2] if call[0] == "mount" else call[1]
            faked.append((call[0], target.removeprefix(base) or "/"))
    assert faked == real
