"""The readers of /proc files, on a fake /proc tree under tmp_path, and the path rules."""

from __future__ import annotations

from pathlib import Path

from pytest_rootless.kernel import procfs
from pytest_rootless.kernel.paths import in_root, is_under

MOUNTINFO = (
    "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "50 22 0:70 / /mnt/with\\040space rw,nosuid - tmpfs tmpfs rw,size=64k\n"
    "51 22 0:71 /sub /srv/bind ro - ext4 /dev/vdb rw\n"
    "a line without the separator\n"
    "52 22 0:72 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
)


def fake_proc(tmp_path: Path, pid: str, files: dict[str, str]) -> str:
    for name, text in files.items():
        path = tmp_path / "proc" / pid / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


def test_mountinfo_fields_escapes_and_order(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, "self", {"mountinfo": MOUNTINFO})
    mounts = procfs.mountinfo(root)
    assert [m.point for m in mounts] == [
        "/",
        "/mnt/with space",
        "/srv/bind",
        "/sys/fs/cgroup/memory",
    ]
    bind = mounts[2]
    assert (bind.root, bind.options, bind.fstype) == ("/sub", ("ro",), "ext4")
    assert mounts[3].super_options == ("rw", "memory")


def test_mountinfo_of_another_process_and_of_nothing(tmp_path: Path) -> None:
    root = fake_proc(tmp_path, "42", {"mountinfo": MOUNTINFO})
    assert procfs.mountinfo(root) == []  # no /proc/self here: nothing, not an error
    assert len(procfs.mountinfo(root, pid="42")) == 4


def test_a_mount_shows_the_part_of_its_filesystem_it_binds() -> None:
    [bind] = procfs.parse_mountinfo("51 22 0:71 /sub /srv/bind ro - ext4 /dev/vdb rw\n")
    assert bind.shows("/sub") == "/srv/bind"
    assert bind.shows("/sub/a/b") == "/srv/bind/a/b"
    assert bind.shows("/subway") is None
    assert bind.shows("/other") is None
    [whole] = procfs.parse_mountinfo("22 1 254:0 / / rw - ext4 /dev/vda rw\n")
    assert whole.shows("/") == "/"
    assert whole.shows("/etc") == "/etc"


def test_cgroup_file_first_line_per_controller_wins(tmp_path: Path) -> None:
    text = "4:memory,pids:/job\n0::/user.slice\nnot a line\n9:memory:/later\n"
    root = fake_proc(tmp_path, "self", {"cgroup": text})
    assert procfs.cgroups(root) == {"memory": "/job", "pids": "/job", "": "/user.slice"}
    assert procfs.cgroups(str(tmp_path / "nowhere")) == {}


def test_status_fields(tmp_path: Path) -> None:
    text = "Name:\tpython\nVmData:\t  1234 kB\nSeccomp:\t2\n"
    root = fake_proc(tmp_path, "7", {"status": text})
    assert procfs.status_field("VmData", root, pid="7") == "1234 kB"
    assert procfs.status_field("Seccomp", root, pid="7") == "2"
    assert procfs.status_field("CapEff", root, pid="7") is None
    assert procfs.status_field("Name", root) is None  # no /proc/self/status here


def test_read_strips_and_says_none_for_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("  15000\n")
    assert procfs.read("/f", str(tmp_path)) == "15000"
    assert procfs.read("/missing", str(tmp_path)) is None


def test_is_under_and_in_root() -> None:
    assert is_under("/a/b", "/a")
    assert is_under("/a/b", "/a/")
    assert is_under("/anything", "/")
    assert not is_under("/ab", "/a")
    assert in_root("/", "/etc/passwd") == "/etc/passwd"
    assert in_root("/tmp/host", "/etc/passwd") == "/tmp/host/etc/passwd"
