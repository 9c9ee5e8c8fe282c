"""A directory as the root: a root filesystem the test suite builds itself from
the host's /bin/sh and the libraries it needs (no download), with the running Python and
the project mounted in read-only, and /etc/hosts, hostname and resolv.conf provided."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .tinyroot import make_tiny_root


@pytest.fixture
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny root: /bin/sh and its shared libraries, an os-release of its own, and the
    symlinks an image has (resolv.conf pointing into /run). Outside the test's project,
    so that pytest does not collect in it."""
    root = tmp_path_factory.mktemp("image") / "rootfs"
    make_tiny_root(root)
    (root / "etc" / "os-release").write_text("ID=tiny\n")
    return root


def test_a_directory_root(pytester: pytest.Pytester, root: Path) -> None:
    pytester.makepyfile(
        f"""
        import json, os, socket, subprocess, sys
        import pytest

        @pytest.mark.isolated(rootfs={str(root)!r}, hostname="tiny")
        def test_inside():
            assert open("/etc/os-release").read() == "ID=tiny\\n"  # the image's
            assert not os.path.exists("/usr/share")  # not the host's
            assert socket.gethostname() == "tiny"
            assert open("/etc/hostname").read() == "tiny\\n"
            assert "tiny" in open("/etc/hosts").read()
            assert not os.path.islink("/etc/resolv.conf")  # provided, over the image's link
            done = subprocess.run(["/bin/sh", "-c", "echo $((6 * 7))"], capture_output=True)
            assert done.stdout == b"42\\n"  # the image's shell runs
            assert os.path.exists(__file__)  # the project is there
            assert os.path.exists(sys.executable)  # and the running Python
            with pytest.raises(OSError):
                open("/bin/new", "w")  # read-only, like every root

        @pytest.mark.isolated(rootfs={str(root)!r}, writable=["/bin"])
        def test_writable_inside_the_image():
            open("/bin/new", "w").write("x")
        """
    )
    before = sorted(str(p) for p in root.rglob("*"))
    result = pytester.runpytest_subprocess("-p", "rootless", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert sorted(str(p) for p in root.rglob("*")) == before  # the image is untouched


def test_a_symlink_in_the_image_cannot_point_a_mount_at_the_host(
    pytester: pytest.Pytester, root: Path
) -> None:
    """The image's /tmp leads to the host's /etc: the container's /tmp is not mounted
    there, nor anywhere through it; the container is refused with the reason."""
    (root / "tmp").symlink_to("/etc")
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.isolated(rootfs={str(root)!r})
        def test_it():
            pass
        """
    )
    mounts_before = Path("/proc/self/mountinfo").read_text()
    result = pytester.runpytest_subprocess("-p", "rootless", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*tmpfs /tmp: refusing to follow a symlink in /tmp*"])
    assert Path("/proc/self/mountinfo").read_text() == mounts_before


def test_a_root_on_a_file_system_overlay_refuses(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.isolated(rootfs="/proc/sys")
        def test_it():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*rootfs /proc/sys: the kernel refused an overlay*(proc)*"])


def test_a_missing_root_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.isolated(rootfs="/no/such/root")
        def test_it():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*rootfs='/no/such/root' is not a directory*"])
    assert os.path.exists("/proc/sys")
