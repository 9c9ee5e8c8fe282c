"""Trials: a forked child tries the real thing (a user namespace, an id map, mounts, a fresh
``/proc``, overlayfs) in namespaces of its own, then exits; and one real container is
started by the runtime itself.

Code after ``fork`` here follows CPython's discipline (``multiprocessing/popen_fork.py``):
it touches no pytest state, reports through a pipe as JSON, and leaves only through
``os._exit`` in a ``finally``.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

from ..kernel import mount as mnt
from ..kernel import syscalls as sc
from ..protocol import framing, messages
from ..runtime.session import ContainerSession
from .host import Host


@dataclass(frozen=True)
class Trial:
    """The kernel's answer to one trial: the failing call, its errno and message."""

    ok: bool
    call: str | None = None
    errno: int | None = None
    message: str = ""


class _Failed(Exception):
    """A nested trial failed; carries its answer up to the first child."""

    def __init__(self, trial: Trial) -> None:
        super().__init__(trial.message)
        self.trial = trial


def _answer(steps: Callable[[], None]) -> Trial:
    try:
        steps()
    except _Failed as failed:
        return failed.trial
    except OSError as exc:
        return Trial(False, getattr(exc, "call", None), exc.errno, str(exc))
    except Exception as exc:  # a bug of ours, reported rather than lost with the child
        return Trial(False, None, None, f"{type(exc).__name__}: {exc}")
    return Trial(True)


def in_child(steps: Callable[[], None]) -> Trial:
    """Run ``steps`` in a forked child and return how it went. Namespaces the child
    creates die with it: nothing the trial does is seen by this process."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    # sc.fork (os.fork, its 3.12 warning about threads acknowledged for this call, and
    # stdio flushed first): the child has one thread, so unshare(CLONE_NEWUSER) is
    # allowed there (user_namespaces(7): EINVAL with threads).
    pid = sc.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_fd)
            framing.send(write_fd, {"kind": messages.Doctor.TRIAL, **asdict(_answer(steps))})
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    decoder = framing.Decoder()
    found = []
    while chunk := os.read(read_fd, 65536):
        found += decoder.feed(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if not found:
        code = os.waitstatus_to_exitcode(status)
        return Trial(False, None, None, f"the trial process ended with status {code} first")
    return Trial(*messages.checked_trial(found[0]))


NS = sc.CloneFlag
MS = mnt.MountFlag


def _own_user_namespace(more: sc.CloneFlag | None = None) -> None:
    """A new user namespace (plus ``more``) mapping our own uid and gid, as a container's
    init does (user_namespaces(7): setgroups deny, then the one-line maps)."""
    uid, gid = os.getuid(), os.getgid()
    sc.unshare(NS.NEWUSER if more is None else NS.NEWUSER | more)
    sc.write_id_maps(uid, uid, gid, gid)


def _try_userns() -> None:
    sc.unshare(NS.NEWUSER)


def _try_mounts(scratch: str) -> None:
    _own_user_namespace(NS.NEWNS)
    mnt.mount(None, "/", None, MS.REC | MS.PRIVATE)  # nothing we mount propagates out
    mnt.mount("tmpfs", scratch, "tmpfs", MS.NOSUID | MS.NODEV, "mode=0755")
    sealed = os.path.join(scratch, "sealed")
    os.mkdir(sealed)
    mnt.mount(sealed, sealed, None, MS.BIND | MS.REC)
    mnt.mount_setattr(sealed, mnt.MOUNT_ATTR_RDONLY)
    try:
        os.close(os.open(os.path.join(sealed, "probe"), os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        if exc.errno != errno.EROFS:
            raise
    else:
        raise _Failed(Trial(False, "mount_setattr", None, "a read-only bind stayed writable"))
    os.chdir(scratch)  # pivot_root(2) NOTES: new_root and put_old may be the same, "."
    mnt.pivot_root(".", ".")
    mnt.umount2(".", mnt.MNT_DETACH)
    os.chdir("/")


def _try_proc(scratch: str) -> None:
    _own_user_namespace(NS.NEWNS | NS.NEWPID)

    def as_pid_1() -> None:
        # proc shows the PID namespace of the process that mounts it: the one that
        # unshared is not in it, its first child is (pid_namespaces(7)).
        mnt.mount(None, "/", None, MS.REC | MS.PRIVATE)
        mnt.mount("proc", scratch, "proc", MS.NOSUID | MS.NODEV | MS.NOEXEC)
        pids = [name for name in os.listdir(scratch) if name.isdigit()]
        if pids != ["1"]:
            raise _Failed(Trial(False, "proc", None, f"the new proc shows pids {pids[:5]}"))

    inner = in_child(as_pid_1)
    if not inner.ok:
        raise _Failed(inner)


def _try_overlay(scratch: str) -> None:
    _own_user_namespace(NS.NEWNS)
    mnt.mount(None, "/", None, MS.REC | MS.PRIVATE)
    mnt.mount("tmpfs", scratch, "tmpfs", MS.NOSUID | MS.NODEV, "mode=0755")
    lower, upper, work, merged = (os.path.join(scratch, d) for d in ("l", "u", "w", "m"))
    for directory in (lower, upper, work, merged):
        os.mkdir(directory)
    # userxattr: keep overlay's own metadata in user.* xattrs, the ones an unprivileged
    # mounter may write (overlayfs.rst, Linux 5.11)
    mnt.mount(
        "overlay",
        merged,
        "overlay",
        MS.NONE,
        f"lowerdir={lower},upperdir={upper},workdir={work},userxattr",
    )
    with open(os.path.join(merged, "written"), "w") as f:
        f.write("copy-on-write")
    if not os.path.exists(os.path.join(upper, "written")):
        raise _Failed(Trial(False, "overlay", None, "a write did not land in the upper dir"))


def _with_scratch(steps: Callable[[str], None]) -> Trial:
    # The child mounts over this directory in its own mount namespace only; here it stays
    # an empty directory, removed afterwards.
    with tempfile.TemporaryDirectory(prefix="rootless-doctor-") as scratch:
        return in_child(lambda: steps(scratch))


def _try_container() -> Trial:
    containers = ContainerSession()
    try:
        support = containers.probe()
    finally:
        containers.close()
    return Trial(support.ok, message=support.reason)


TRIALS: dict[str, Callable[[], Trial]] = {
    "userns": lambda: in_child(_try_userns),
    "idmap": lambda: in_child(_own_user_namespace),
    "mounts": lambda: _with_scratch(_try_mounts),
    "proc": lambda: _with_scratch(_try_proc),
    "overlay": lambda: _with_scratch(_try_overlay),
    "container": _try_container,
}


class Trials:
    """Trials run on demand, once each; ``answers`` (a test's canned ones) come first."""

    def __init__(self, host: Host, answers: Mapping[str, Trial] | None = None) -> None:
        self.host = host
        self.answers = dict(answers or {})

    def get(self, name: str) -> Trial | None:
        if name not in self.answers:
            if not self.host.live:
                return None
            self.answers[name] = TRIALS[name]()
        return self.answers[name]
