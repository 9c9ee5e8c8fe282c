"""Copy-on-write views: ``writable`` paths are writable inside through an overlay
over what the container sees there; the host never sees a write; the upper layers are
the record of what changed (``container.changes()``, ``--rootless-report-writes``)."""

from __future__ import annotations

import os

import pytest

SCRIBBLE = """
import os, pytest
from pathlib import Path

@pytest.mark.isolated(writable=["."])
def test_scribble_over_the_project():
    Path("data.txt").write_text("changed")
    Path("new.txt").write_text("new")
    os.remove("sub/kept.txt")
    os.makedirs("build/out")
    assert Path("data.txt").read_text() == "changed"
    assert sorted(os.listdir("sub")) == []

@pytest.mark.isolated(writable=["/etc", "/opt/fresh"])
def test_scribble_over_etc_and_a_fresh_path():
    Path("/etc/added.conf").write_text("x")
    os.remove("/etc/hostname")  # the container's own, in its root
    os.makedirs("/opt/fresh/a")
    assert os.listdir("/opt/fresh") == ["a"]
    assert not os.path.exists("/etc/shadow")  # the view is the container's, not the host's

@pytest.mark.isolated
def test_without_writable_the_project_is_read_only():
    with pytest.raises(OSError):
        Path("data.txt").write_text("changed")

def test_nothing_reached_the_host():
    assert Path("data.txt").read_text() == "orig"
    assert not Path("new.txt").exists()
    assert Path("sub/kept.txt").exists()
    assert not Path("build").exists()
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".txt", data="orig")
    (pytester.path / "sub").mkdir()
    (pytester.path / "sub" / "kept.txt").write_text("kept")
    pytester.makeini("[pytest]\n")  # the rootdir: what writable=["."] means
    return pytester


def test_writes_stay_inside(project: pytest.Pytester) -> None:
    project.makepyfile(SCRIBBLE)
    result = project.runpytest_subprocess("-p", "rootless", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    assert (project.path / "data.txt").read_text() == "orig"
    assert (project.path / "sub" / "kept.txt").read_text() == "kept"
    assert not (project.path / "new.txt").exists()
    assert not (project.path / "build").exists()
    assert not os.path.exists("/etc/added.conf")
    assert os.path.exists("/etc/hostname")


def test_the_writes_report_lists_what_each_test_left(project: pytest.Pytester) -> None:
    project.makepyfile(SCRIBBLE)
    result = project.runpytest_subprocess(
        "-p", "rootless", "-p", "no:cacheprovider", "--rootless-report-writes"
    )
    result.assert_outcomes(passed=4)
    root = str(project.path)
    result.stdout.fnmatch_lines(
        [
            "*rootless: writes outside /tmp, HOME and tmp_path*",
            "*::test_scribble_over_the_project",
            f"    added     {root}/build",
            f"    added     {root}/build/out",
            f"    modified  {root}/data.txt",
            f"    added     {root}/new.txt",
            f"    deleted   {root}/sub/kept.txt",
            "*::test_scribble_over_etc_and_a_fresh_path",
            "    added     /etc/added.conf",
            "    deleted   /etc/hostname",
            "    added     /opt/fresh/a",
            "2 of 3 isolated test(s) wrote outside their scratch space",
        ]
    )


def test_changes_of_a_live_container(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import os, pytest

        @pytest.mark.container(writable=["."])
        def test_changes(container):
            here = os.getcwd()
            assert container.changes() == {}
            container.write_text(f"{here}/data.txt", "zzz")
            container.run(os.remove, "sub/kept.txt")
            container.write_text("/tmp/x", "1")
            container.run(lambda: open("data.txt", "a").close())  # opened, unchanged: no change
            assert container.changes() == {
                f"{here}/data.txt": "modified",
                f"{here}/sub/kept.txt": "deleted",
                "/tmp/x": "added",
            }

        def test_a_file_reopened_unchanged_is_no_change(container_factory):
            box = container_factory(writable=["."])
            box.run(lambda: open("data.txt", "r+").close())
            assert box.changes() == {}
        """
    )
    result = project.runpytest_subprocess("-p", "rootless", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert (project.path / "data.txt").read_text() == "orig"


def test_a_full_tmpfs_is_enospc_for_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nrootless_tmpfs_size = 4M\n")
    pytester.makepyfile(
        """
        import errno, pytest

        @pytest.mark.isolated(writable=["/opt/data"])
        @pytest.mark.parametrize("where", ["/tmp/big", "/opt/data/big"])
        def test_fill(where):
            with pytest.raises(OSError) as info:
                with open(where, "wb") as f:
                    f.write(b"x" * (8 << 20))
            assert info.value.errno == errno.ENOSPC
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_writable_path_that_cannot_be_made_is_a_clear_error(pytester: pytest.Pytester) -> None:
    missing = "/usr/share/rootless-does-not-exist"
    assert not os.path.exists(missing)
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.isolated(writable=["{missing}"])
        def test_it():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "rootless", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*writable path {missing} does not exist*create it on the host*"])


def test_writable_from_the_ini_file_and_the_factory(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nrootless_writable =\n    .\n")
    project.makepyfile(
        """
        import os, pytest
        from pathlib import Path

        @pytest.mark.isolated
        def test_ini_default():
            Path("data.txt").write_text("changed")

        def test_factory(container_factory):
            box = container_factory(writable=["/srv/cache"])
            box.write_text("/srv/cache/entry", "1")
            assert box.changes() == {"/srv/cache/entry": "added"}
        """
    )
    result = project.runpytest_subprocess("-p", "rootless", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert (project.path / "data.txt").read_text() == "orig"
