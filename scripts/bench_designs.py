"""A design the benchmark measures but pytest-rootless does not use: one copy of pytest
per test (docs/performance.md, "Not built, and what it would take").

A small process (forked here before the process grows to the measured size) clones each
container's init into new user, PID, mount, network, UTS and IPC namespaces; init maps
its ids, brings ``lo`` up and waits. The big process, in a user namespace of its own
(``setns(2)`` to a PID namespace needs CAP_SYS_ADMIN in the caller's own user namespace
too), points its children at init's PID namespace (``setns`` on a pidfd with
``CLONE_NEWPID``) and forks the test process, which joins init's other namespaces
(``setns`` with the rest of the flags) and exits; the big process reaps it and kills
init. The small process prepares the next init meanwhile. No root filesystem is mounted:
init would do that in the small process, off the test's path. The test process is PID 2
of its namespace (checked), but its parent is outside it, so ``getppid()`` would be 0.
"""

from __future__ import annotations

import json
import subprocess

ONE_COPY = r"""
import json, os, signal, socket, sys, time
from pytest_rootless.kernel import syscalls as sc
from pytest_rootless.kernel.syscalls import CloneFlag as NS

size, count = int(sys.argv[1]), int(sys.argv[2])
uid, gid = os.getuid(), os.getgid()
ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
if os.fork() == 0:  # the small process
    try:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
        ours.close()
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the inits
        theirs.recv(16)  # the big process has its user namespace: make inits under it
        sc.setns(os.open(f"/proc/{os.getppid()}/ns/user", os.O_RDONLY), NS.NEWUSER, "big")
        while theirs.recv(16):
            r, w = os.pipe()
            flags = NS.NEWUSER | NS.NEWPID | NS.NEWNS | NS.NEWNET | NS.NEWUTS | NS.NEWIPC
            pid = sc.clone(flags)
            if pid == 0:
                try:
                    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
                    sc.write_id_maps(uid, uid, gid, gid)
                    sc.loopback_up()
                    os.write(w, b"r")
                    signal.pause()
                finally:
                    os._exit(0)
            os.close(w)
            os.read(r, 1)
            os.close(r)
            theirs.send(str(pid).encode())
    finally:
        os._exit(0)
theirs.close()
sc.unshare(NS.NEWUSER)
sc.write_id_maps(uid, uid, gid, gid)
ours.send(b"userns")
ballast = bytearray(size)
for i in range(0, size, 4096):
    ballast[i] = 1


def bare():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def test_in(init):
    pidfd = os.pidfd_open(init)
    sc.setns(pidfd, NS.NEWPID, "init's PID namespace")  # for our children only
    ours.send(b"next")
    pid = os.fork()
    if pid == 0:
        try:
            flags = NS.NEWUSER | NS.NEWNS | NS.NEWNET | NS.NEWUTS | NS.NEWIPC
            sc.setns(pidfd, flags, "init's namespaces")
            os._exit(0 if os.getpid() == 2 else 3)
        finally:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the test process ended with {os.waitstatus_to_exitcode(status)}")
    os.kill(init, signal.SIGKILL)
    os.close(pidfd)


def per_test(step, warm=3):
    for _ in range(warm):
        step()
    start = time.perf_counter()
    for _ in range(count):
        step()
    return (time.perf_counter() - start) / count


fork = per_test(bare)
ours.send(b"first")
ready = [int(ours.recv(16))]


def one():
    init = ready.pop()
    test_in(init)
    ready.append(int(ours.recv(16)))


figures = {"fork": fork, "one_copy": per_test(one)}
os.kill(ready.pop(), signal.SIGKILL)
print(json.dumps(figures))
"""


def measure_one_copy(python: str, size: int, count: int) -> dict[str, float] | str:
    """Seconds per test of a bare fork and of the one-copy design at ``size`` bytes of RSS,
    or the error's last line."""
    done = subprocess.run(
        [python, "-c", ONE_COPY, str(size), str(count)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit {done.returncode}"
    result: dict[str, float] = json.loads(done.stdout)
    return result
