"""Trees the user may use but does not wholly own: a root filesystem extracted by someone
else, and files under a ``writable`` path whose owner or group a container cannot map
(its maps hold the user's own uid and gid only). What works plainly works isolated.

Run as root, the tests make such trees themselves, owned by ids that are not root's (a
container of root's maps uid 0 alone, so the same mechanism is at work). Run as a plain
user, they need trees made by root: ``.ci/run`` makes them and names them in
``ROOTLESS_FOREIGN_TREE`` (files of root's and of a foreign group) and uses ``/usr`` (root's)
as an image."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from .tinyroot import make_tiny_root

AS_ROOT = os.geteuid() == 0
#: Ids no container of the test's user maps (run as root).
OTHER_UID, OTHER_GID = 4242, 4242


def snapshot(root: Path) -> list[tuple[str, int, int, int, bytes]]:
    """Every entry under ``root``: path, mode, owner, group and a file's content."""
    found = []
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        content = path.read_bytes() if stat.S_ISREG(st.st_mode) and st.st_mode & 0o444 else b""
        found.append((str(path), st.st_mode, st.st_uid, st.st_gid, content))
    return found


@pytest.fixture
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root filesystem someone else owns: as root, a tiny one (the host's /bin/sh and
    its libraries) given to another uid; as a user, /usr, which is root's."""
    if not AS_ROOT:
        return Path("/usr")
    root = tmp_path_factory.mktemp("image") / "rootfs"
    make_tiny_root(root)
    for path in [root, *root.rglob("*")]:
        os.lchown(path, OTHER_UID, OTHER_GID)
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~0o022)
    return root


def test_a_root_filesystem_owned_by_someone_else(pytester: pytest.Pytester, image: Path) -> None:
    """/etc/hostname, hosts and resolv.conf are provided without writing into (or copying
    up) the image's own /etc, for an isolated test and a live container alike."""
    pytester.makepyfile(
        f"""
        import os, socket, subprocess
        import pytest

        def check():
            assert socket.gethostname() == "tiny"
            assert open("/etc/hostname").read() == "tiny\\n"
            assert "tiny" in open("/etc/hosts").read()
            assert not os.path.islink("/etc/resolv.conf")
            done = subprocess.run(["/bin/sh", "-c", "echo $((6 * 7))"], capture_output=True)
            assert done.stdout == b"42\\n"  # the image's shell runs
            with pytest.raises(OSError):
                open("/bin/new", "w")  # read-only, like every root
            return "ok"

        @pytest.mark.isolated(rootfs={str(image)!r}, hostname="tiny")
        def test_isolated():
            check()

        def test_live(container_factory):
            box = container_factory(rootfs={str(image)!r}, hostname="tiny")
            assert box.run(check) == "ok"
        """
    )
    before = snapshot(image) if AS_ROOT else None
    result = pytester.runpytest_subprocess("-p", "rootless", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    if before is not None:
        assert snapshot(image) == before  # the image is untouched


@pytest.fixture
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree whose entries have owners or groups a container of this user cannot map:
    ``foreign-group.txt`` (the user's, a foreign group, writable), ``world.txt`` (someone
    else's, mode 666), ``world/`` (someone else's, mode 777, holding ``inside.txt``, the
    user's) and ``readonly.txt`` (someone else's, mode 644)."""
    if not AS_ROOT:
        made = os.environ.get("ROOTLESS_FOREIGN_TREE")
        if not made:
            pytest.skip("needs a tree made by root: .ci/run makes one (ROOTLESS_FOREIGN_TREE)")
        return Path(made)
    tree = tmp_path_factory.mktemp("foreign")
    tree.chmod(0o755)
    make_foreign_tree(tree, other=(OTHER_UID, OTHER_GID))
    return tree


def make_foreign_tree(tree: Path, other: tuple[int, int]) -> None:
    """The tree of :func:`foreign`, made by root for the user running the tests (the same
    steps .ci/run takes for its unprivileged user)."""
    me = os.geteuid(), os.getegid()
    entries = {
        "foreign-group.txt": (me[0], other[1], 0o664),
        "world.txt": (other[0], other[1], 0o666),
        "readonly.txt": (other[0], other[1], 0o644),
    }
    for name, (uid, gid, mode) in entries.items():
        (tree / name).write_text(f"{name}\n")
        os.chown(tree / name, uid, gid)
        (tree / name).chmod(mode)
    (tree / "world").mkdir()
    (tree / "world" / "inside.txt").write_text("inside\n")
    os.chown(tree / "world", *other)
    (tree / "world").chmod(0o777)


def test_writable_over_files_of_foreign_owners(pytester: pytest.Pytester, foreign: Path) -> None:
    """What the user may write plainly is writable inside a writable path (copy on
    write), whatever its owner or group; what it may not write stays unwritable; the
    host's tree is unchanged, and changes() names only what the test changed."""
    pytester.makepyfile(
        f"""
        import os
        import pytest

        OPTIONS = dict(mounts={{"/data": {str(foreign)!r}}}, writable=["/data"])

        def change():
            with open("/data/foreign-group.txt", "a") as f:
                f.write("more\\n")
            with open("/data/world.txt", "a") as f:
                f.write("more\\n")
            with open("/data/world/new.txt", "w") as f:
                f.write("new\\n")
            os.unlink("/data/world/inside.txt")
            if {AS_ROOT!r}:  # root writes anyone's file plainly
                open("/data/readonly.txt", "a").close()
            else:
                with pytest.raises(PermissionError):
                    open("/data/readonly.txt", "a")
            assert open("/data/foreign-group.txt").read() == "foreign-group.txt\\nmore\\n"
            assert sorted(os.listdir("/data/world")) == ["new.txt"]

        @pytest.mark.isolated(**OPTIONS)
        def test_isolated():
            change()

        def test_live(container_factory):
            box = container_factory(**OPTIONS)
            box.run(change)
            assert box.changes() == {{
                "/data/foreign-group.txt": "modified",
                "/data/world.txt": "modified",
                "/data/world/inside.txt": "deleted",
                "/data/world/new.txt": "added",
            }}
        """
    )
    before = snapshot(foreign)
    result = pytester.runpytest_subprocess("-p", "rootless", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert snapshot(foreign) == before


def test_writable_dot_over_a_project_of_foreign_owners(
    pytester: pytest.Pytester, foreign: Path
) -> None:
    """The same, as a project: pytest's rootdir is the tree, and ``writable=["."]``."""
    pytester.makepyfile(
        f"""
        import os
        import pytest

        @pytest.mark.isolated(writable=["."])
        def test_isolated():
            project = {str(foreign)!r}
            with open(os.path.join(project, "foreign-group.txt"), "a") as f:
                f.write("more\\n")
            with open(os.path.join(project, "world.txt"), "a") as f:
                f.write("more\\n")
            with open(os.path.join(project, "world", "new.txt"), "w") as f:
                f.write("new\\n")
            with open(os.path.join(project, "created.txt"), "w") as f:
                f.write("created\\n")
        """
    )
    before = snapshot(foreign)
    result = pytester.runpytest_subprocess(
        "-p", "rootless", "-p", "no:cacheprovider", f"--rootdir={foreign}"
    )
    result.assert_outcomes(passed=1)
    assert snapshot(foreign) == before
