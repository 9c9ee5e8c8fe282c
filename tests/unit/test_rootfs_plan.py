"""The mount plan as data, and the order in which it is applied (recording fake)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_rootless.runtime import mountplan, rootfs, skeleton
from pytest_rootless.runtime.child import mounts
from pytest_rootless.runtime.mountplan import Bind, Dir, File, Proc, ReadOnlyCover, Symlink, Tmpfs

from .fakes import FakeKernel

IDENT = rootfs.Identity(uid=1000, gid=1000, user="alice", group="alice", home="/home/alice")


def plan(**kwargs: object) -> mountplan.Plan:
    args: dict[str, object] = {
        "rootfs": "minimal",
        "ident": IDENT,
        "hostname": "sandbox",
        "ro_paths": ["/usr/lib", "/usr", "/opt/project"],
        "cwd": "/opt/project",
        "state_dir": "/nonexistent",
    }
    args.update(kwargs)
    return rootfs.build_plan(**args)  # type: ignore[arg-type]


def test_outermost_drops_nested_paths() -> None:
    assert rootfs.outermost(["/a/b", "/a", "/c", "/ab", "/a/b/c"]) == ["/a", "/ab", "/c"]


def test_minimal_root_contents() -> None:
    p = plan()
    binds = {op.target: op for op in p.ops if isinstance(op, Bind)}
    assert binds["/usr"].readonly
    assert "/usr/lib" not in binds  # inside /usr already
    assert binds["/opt/project"].readonly
    tmpfs = {op.target for op in p.ops if isinstance(op, Tmpfs)}
    assert {"/tmp", "/var/tmp", "/dev", "/dev/shm", "/home/alice"} <= tmpfs
    files = {op.target: op.content for op in p.ops if isinstance(op, File)}
    assert files["/etc/hostname"] == b"sandbox\n"
    assert b"127.0.1.1\tsandbox" in files["/etc/hosts"]
    assert b"alice:x:1000:1000::/home/alice:" in files["/etc/passwd"]
    targets = {op.target for op in p.ops}
    for secret in (
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/sudoers",
        "/etc/ssh",
        "/root",
        "/home",
        "/run",
        "/var/run",
        "/mnt",
        "/media",
        "/srv",
        "/sys",
        "/boot",
    ):
        assert secret not in targets
    assert Proc("/proc") in p.ops
    assert ReadOnlyCover("/proc/sys") in p.ops
    assert p.home == "/home/alice"


def test_home_moves_when_something_is_bound_under_it() -> None:
    p = plan(ro_paths=["/usr", "/home/alice/project"], cwd="/home/alice/project")
    assert p.home != "/home/alice"
    assert Tmpfs(p.home, 0o700) in p.ops


def test_cwd_outside_the_binds_becomes_an_empty_dir() -> None:
    p = plan(cwd="/srv/elsewhere")
    assert Dir("/srv/elsewhere") in p.ops


def test_parents_come_before_children() -> None:
    p = plan(ro_paths=["/usr", "/tmp/proj", "/tmp/pytest-of-alice/pytest-1"], cwd="/tmp/proj")
    order = [op.target for op in p.ops]
    assert order.index("/tmp") < order.index("/tmp/proj")
    assert order.index("/tmp") < order.index("/tmp/pytest-of-alice/pytest-1")
    assert order.index("/dev") < order.index("/dev/null") < order.index("/dev/shm")
    assert order.index("/proc") < order.index("/proc/sys")
    # the read-only remount of /dev comes after everything inside it
    assert order.index("/dev/shm") < max(
        i for i, op in enumerate(p.ops) if isinstance(op, mountplan.ReadOnly)
    )


def test_host_root_binds_everything_read_only(tmp_path: Path) -> None:
    p = plan(rootfs="host", state_dir=str(tmp_path))
    assert p.ops[0] == Bind("/", "/")
    assert (tmp_path / "sandbox.hostname").read_text() == "sandbox\n"
    etc = {op.target for op in p.ops if isinstance(op, Bind) and op.target.startswith("/etc")}
    assert {"/etc/hostname", "/etc/hosts"} <= etc
    masked = {op.target for op in p.ops if isinstance(op, Bind) and op.source.endswith("empty")}
    assert masked == {f for f in rootfs.HOST_MASKED_FILES if os.path.isfile(f)}
    if os.path.isdir("/run"):  # host daemons' sockets: connect(2) ignores read-only mounts
        assert Tmpfs("/run", 0o755) in p.ops


def test_prepare_writes_the_skeleton_once(tmp_path: Path) -> None:
    p = skeleton.make_skeleton(plan(), str(tmp_path / "skel"))
    skel = tmp_path / "skel"
    assert (skel / "etc/hostname").read_text() == "sandbox\n"
    assert (skel / "dev/null").is_file()  # mount point for the host's node
    assert os.readlink(skel / "dev/fd") == "/proc/self/fd"
    assert (skel / "usr").is_dir()
    assert (skel / "proc").is_dir()
    # what is written is no longer in the plan; mounts stay, /dev is no tmpfs any more
    assert not [op for op in p.ops if isinstance(op, File | Symlink)]
    assert Tmpfs("/dev", 0o755) not in p.ops
    assert Bind("/usr", "/usr") in p.ops
    assert p.skeleton == str(skel)


def test_apply_order_with_the_recording_fake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = FakeKernel()
    monkeypatch.setattr(mounts, "mnt", kernel)
    monkeypatch.chdir(tmp_path)
    skel = str(tmp_path / "skel")
    p = skeleton.make_skeleton(
        mountplan.Plan(
            (
                Bind("/usr", "/usr"),
                Symlink("/bin", "usr/bin"),
                Tmpfs("/tmp", 0o1777),
                Bind("/somewhere", "/tmp/project", readonly=True),
                Bind("/dev/null", "/dev/null", readonly=False, is_file=True),
                Proc("/proc"),
                ReadOnlyCover("/proc/sys"),
            ),
            home="/home/x",
        ),
        skel,
    )
    # The fake mounts nothing: build on the skeleton itself, stand in for the fresh proc.
    base = skel
    os.makedirs(skel + "/proc/sys")
    mounts.apply(p, base=base)
    names = kernel.names()
    # propagation first, sources pinned before the new root covers them
    assert kernel.calls[0][:3] == ("mount", "None", "/")
    first_mount = names.index("mount", 1)
    assert all(n == "open_path" for n in names[1:first_mount])
    assert kernel.calls[first_mount][1:3] == (skel, base)  # the skel is the root
    # each read-only bind is followed by a recursive read-only mount_setattr
    usr = kernel.calls.index(("mount", "/usr", base + "/usr", "None", "20480"))
    assert kernel.calls[usr + 1] == ("mount_setattr", base + "/usr", "1", "True")
    dev_null = [c for c in kernel.calls if c[:3] == ("mount", "/dev/null", base + "/dev/null")]
    assert dev_null
    assert kernel.calls[kernel.calls.index(dev_null[0]) + 1][0] != "mount_setattr"
    # the project under the fresh /tmp gets its mount point created there, at apply time
    assert os.path.isdir(base + "/tmp/project")
    # proc is a fresh mount, never a bind
    proc = next(c for c in kernel.calls if c[1] == "proc")
    assert proc[3] == "proc"
    assert int(proc[4]) & 4096 == 0  # no MS_BIND
    # the root is made read-only, then pivot_root(".", ".") and the old root detached
    assert kernel.calls[-3] == ("mount_setattr", base, "1", "False")
    assert kernel.calls[-2] == ("pivot_root", ".", ".")
    assert kernel.calls[-1] == ("umount2", ".", "2")
    assert os.readlink(skel + "/bin") == "usr/bin"


def test_a_symlink_never_redirects_a_mount_point(tmp_path: Path) -> None:
    escape = tmp_path / "outside"
    escape.mkdir()
    p = mountplan.Plan((Symlink("/lib", str(escape)), Dir("/lib/evil")), home="/h")
    with pytest.raises(mounts.RootfsError, match="symlink"):
        skeleton.make_skeleton(p, str(tmp_path / "skel"))
    assert not (escape / "evil").exists()


def test_apply_refuses_an_unprepared_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = FakeKernel()
    monkeypatch.setattr(mounts, "mnt", kernel)
    with pytest.raises(mounts.RootfsError, match="not prepared"):
        mounts.apply(mountplan.Plan((), home="/h"), base=str(tmp_path))
    assert kernel.calls == []  # refused before the first mount


def test_host_root_rebinds_what_the_fresh_tmp_and_home_cover(tmp_path: Path) -> None:
    p = plan(
        rootfs="host",
        state_dir=str(tmp_path),
        ro_paths=["/tmp/venv", "/home/alice/src/project", "/usr/lib/python3"],
        cwd="/tmp/work",
    )
    binds = {op.target for op in p.ops if isinstance(op, Bind)}
    assert "/tmp/venv" in binds  # under the fresh /tmp: bound again
    assert p.home != "/home/alice"  # the project lives there: HOME moves, stays empty
    # both visible through the read-only "/", nothing covers them
    assert "/home/alice/src/project" not in binds
    assert "/usr/lib/python3" not in binds
    assert Dir("/tmp/work") in p.ops  # cwd under the fresh /tmp is created


def test_cwd_that_is_a_bound_project_needs_no_dir() -> None:
    p = plan(ro_paths=["/usr", "/tmp/proj"], cwd="/tmp/proj")
    assert not [op for op in p.ops if isinstance(op, Dir)]


def test_an_existing_mount_point_behind_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real" / "mnt").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(mounts.RootfsError, match="symlink"):
        mounts._makedirs(str(tmp_path / "link" / "mnt"))
    mounts._makedirs(str(tmp_path / "real" / "mnt"))  # the same directory, directly: fine


def test_shows_host_file_only_through_a_bind_at_the_same_place() -> None:
    """What coverage data from a container may name (plugin.coverage): a host file the
    container saw there, not its fresh tmpfs, its own files, or a file bound elsewhere."""
    plan = mountplan.Plan(
        (
            Bind("/", "/"),
            Tmpfs("/home/u"),
            Bind("/home/u/project", "/home/u/project"),
            Bind("/state/empty", "/etc/shadow", is_file=True),
            Tmpfs("/tmp"),
        ),
        home="/home/u",
    )
    assert rootfs.shows_host_file(plan, "/usr/lib/python3/os.py")
    assert rootfs.shows_host_file(plan, "/home/u/project/pkg/mod.py")
    assert not rootfs.shows_host_file(plan, "/home/u/.ssh/id_ed25519")
    assert not rootfs.shows_host_file(plan, "/etc/shadow")
    assert not rootfs.shows_host_file(plan, "/tmp/generated.py")
    own = mountplan.Plan((Bind("/usr", "/usr"), Tmpfs("/tmp")), home="/home/u")
    assert not rootfs.shows_host_file(own, "/etc/passwd")  # the root's own files
