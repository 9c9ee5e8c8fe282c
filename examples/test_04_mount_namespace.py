"""Lesson 4: the host's files are read-only; /tmp and HOME are fresh and yours.

Kernel mechanism, mount_namespaces(7): the container has its own mount table, a copy of the
host's that nothing else sees (its propagation made private first, so no mount leaks out or
in). pytest-rootless builds a new root on a fresh tmpfs, bind-mounts the host directories a
test needs (/usr, the Python installation, the project) and marks each bind read-only with
mount_setattr(2) (MOUNT_ATTR_RDONLY, recursively), then pivot_root(2)s into it (lesson 5).
A read-only mount refuses to create a file with EROFS, checked before the file permissions:
root gets the same answer as anyone else. /tmp and HOME are new tmpfs mounts that exist only
in this container (pytest's own basetemp under /tmp is bound in, so `tmp_path` still works).

Why it matters: a test cannot damage your system or your checkout, cannot read what other
programs left in /tmp or in your home directory, and whatever it scribbles into /tmp is gone
when it ends.
"""

import errno
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Decided on the host at import; the isolated test below writes it inside its container.
SCRATCH = Path("/tmp") / f"rootless-example-{uuid.uuid4().hex}"


def create_file_in(directory: Path) -> str:
    """Ask the kernel for a new file in `directory`: "created", or its errno name.

    O_TMPFILE asks for a file without a name: where creating is allowed, it disappears on
    close, so this probe leaves nothing behind, with or without isolation.
    """
    try:
        os.close(os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o600))
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "created"


@pytest.fixture(scope="module")
def host_tmp_file() -> Iterator[Path]:
    """A file in the host's /tmp: module-scoped fixtures are set up on the host."""
    with tempfile.NamedTemporaryFile(dir="/tmp", prefix="rootless-example-") as f:
        yield Path(f.name)


@pytest.mark.isolated
def test_usr_is_read_only() -> None:
    assert create_file_in(Path("/usr")) == "EROFS", "the host's /usr is not read-only"


@pytest.mark.isolated
def test_the_project_is_read_only(pytestconfig: pytest.Config) -> None:
    project = pytestconfig.rootpath
    assert create_file_in(project) == "EROFS", f"the project {project} is not read-only"


@pytest.mark.isolated
def test_the_hosts_tmp_is_invisible(host_tmp_file: Path) -> None:
    assert not host_tmp_file.exists(), f"the host's {host_tmp_file} is visible"
    # Only now that /tmp is known to be the container's own: looked for by the next test.
    SCRATCH.write_text("written in the container's /tmp\n")


def test_what_the_container_wrote_in_tmp_is_gone() -> None:
    # Not isolated: this test runs on the host, after the one above.
    leaked = SCRATCH.exists()
    SCRATCH.unlink(missing_ok=True)  # clean up after a run with --rootless-off
    assert not leaked, f"{SCRATCH}, written by the test above, reached the host's /tmp"


@pytest.mark.isolated
def test_home_is_fresh_and_empty() -> None:
    home = os.environ["HOME"]
    assert os.listdir(home) == [], f"HOME ({home}) holds the host's files"
