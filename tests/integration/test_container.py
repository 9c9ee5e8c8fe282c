"""The container on the real kernel: namespaces, identity, privileges, cleanup."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from pytest_rootless.runtime.child.leave import EXIT_SETUP_FAILED
from pytest_rootless.runtime.options import Options

from .. import procscan
from .conftest import RunInContainer


def _status_fields() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_pid_namespace(run_in_container: RunInContainer) -> None:
    outcome, value = run_in_container(
        lambda: (
            os.getpid(),
            os.getppid(),
            procscan.pids(),
        )
    )
    assert outcome.status == 0
    assert value == [2, 1, [1, 2]]


def test_identity_and_privileges(run_in_container: RunInContainer) -> None:
    def probe() -> dict[str, object]:
        status = _status_fields()
        with open("/proc/self/uid_map") as f:
            uid_map = f.read().split()
        return {
            "uid": os.getuid(),
            "gid": os.getgid(),
            "caps": [status[k].strip() for k in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb")],
            "no_new_privs": status["NoNewPrivs"].strip(),
            "uid_map": uid_map,
            "sid_is_self": os.getsid(0) == os.getpid(),
        }

    _, value = run_in_container(probe)
    assert value["uid"] == os.getuid()
    assert value["gid"] == os.getgid()
    assert value["caps"] == ["0000000000000000"] * 5
    assert value["no_new_privs"] == "1"
    assert value["uid_map"][0] == str(os.getuid())
    assert value["sid_is_self"]


def test_root_inside_is_your_uid_outside(run_in_container: RunInContainer) -> None:
    def probe() -> tuple[int, list[str], str]:
        with open("/proc/self/uid_map") as f:
            return os.getuid(), f.read().split(), _status_fields()["CapEff"].strip()

    _, (uid, uid_map, cap_eff) = run_in_container(probe, root=True)
    assert uid == 0
    assert uid_map[:3] == ["0", str(os.getuid()), "1"]
    assert cap_eff != "0000000000000000"


@pytest.mark.parametrize("root", [False, True])
def test_read_only_host_cannot_be_made_writable(
    run_in_container: RunInContainer, root: bool
) -> None:
    def probe() -> dict[str, object]:
        import ctypes
        import errno

        libc = ctypes.CDLL(None, use_errno=True)
        results: dict[str, object] = {}
        try:
            Path("/usr/rootless-probe").write_text("x")
            results["write"] = "written"
        except OSError as exc:
            results["write"] = errno.errorcode[exc.errno or 0]
        ms_remount, ms_bind = 32, 4096
        rc = libc.mount(None, b"/usr", None, ms_remount | ms_bind, None)
        results["remount"] = errno.errorcode[ctypes.get_errno()] if rc else "remounted"
        return results

    _, value = run_in_container(probe, root=root)
    assert value["write"] == "EROFS"
    assert value["remount"] == "EPERM"
    assert not os.path.exists("/usr/rootless-probe")


def test_network_is_only_loopback(run_in_container: RunInContainer) -> None:
    def probe() -> tuple[list[str], str]:
        names = [name for _, name in socket.if_nameindex()]
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            with socket.create_connection(server.getsockname(), timeout=2):
                pass
        try:
            socket.create_connection(("192.0.2.1", 9), timeout=2)  # TEST-NET-1, no route
            reached = "connected"
        except OSError as exc:
            reached = os.strerror(exc.errno or 0)
        return names, reached

    _, (names, reached) = run_in_container(probe)
    assert names == ["lo"]
    assert reached == os.strerror(101)  # ENETUNREACH


def test_host_listener_is_unreachable(run_in_container: RunInContainer) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def probe() -> str:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            except OSError as exc:
                return os.strerror(exc.errno or 0)
            return "connected"

        _, value = run_in_container(probe)
    assert value == os.strerror(111)  # ECONNREFUSED: its own, empty loopback


def test_hostname_and_hosts(run_in_container: RunInContainer) -> None:
    def probe() -> tuple[str, str, str]:
        with open("/etc/hostname") as f:
            hostname_file = f.read().strip()
        return socket.gethostname(), hostname_file, socket.gethostbyname("lab7")

    _, value = run_in_container(probe, hostname="lab7")
    assert value == ["lab7", "lab7", "127.0.1.1"]


def test_minimal_root_filesystem(run_in_container: RunInContainer, tmp_path: Path) -> None:
    marker = Path("/tmp") / f"rootless-host-{uuid.uuid4().hex}"
    marker.write_text("host")
    try:

        def probe() -> dict[str, object]:
            return {
                "root": sorted(os.listdir("/")),
                "etc": sorted(os.listdir("/etc")),
                "var": sorted(os.listdir("/var")),
                "marker": os.path.exists(marker),
                "home": os.listdir(os.environ["HOME"]),
                "dev": sorted(os.listdir("/dev")),
                "proc_sys_writable": os.access("/proc/sys/kernel/hostname", os.W_OK),
            }

        _, value = run_in_container(probe)
    finally:
        marker.unlink()
    for absent in ("run", "mnt", "media", "srv", "sys", "boot"):
        assert absent not in value["root"]
    assert value["var"] == ["tmp"]
    for secret in ("shadow", "gshadow", "sudoers", "ssh"):
        assert secret not in value["etc"]
    assert {"passwd", "group", "hosts", "hostname"} <= set(value["etc"])
    assert value["marker"] is False
    assert value["home"] == []
    assert {"null", "zero", "full", "random", "urandom", "shm", "pts"} <= set(value["dev"])
    assert value["proc_sys_writable"] is False


def test_inherited_fd_is_closed(run_in_container: RunInContainer) -> None:
    r, w = os.pipe()
    os.set_inheritable(r, True)
    try:

        def probe() -> str:
            try:
                os.fstat(r)
            except OSError as exc:
                return os.strerror(exc.errno or 0)
            return "open"

        _, value = run_in_container(probe)
    finally:
        os.close(r)
        os.close(w)
    assert value == os.strerror(9)  # EBADF


def test_pid1_is_not_dumpable(run_in_container: RunInContainer) -> None:
    """PID 1's open files, environment and executable are out of the test's reach.

    (Listing the fd *numbers* of /proc/1/fd is a plain permission check on a directory
    owned by root; a host-root test is root there, so only readlink/open are checked.)
    """

    def probe() -> list[str]:
        results = []
        # init keeps one fd (its channel to the host); whichever number it has, no link
        # of /proc/1/fd may be read
        fds = [lambda n=n: os.readlink(f"/proc/1/fd/{n}") for n in range(64)]
        for attempt in [
            lambda: os.readlink("/proc/1/exe"),
            lambda: Path("/proc/1/environ").read_bytes(),
            *fds,
        ]:
            try:
                attempt()
                results.append("allowed")
            except FileNotFoundError:
                continue
            except OSError as exc:
                results.append(os.strerror(exc.errno or 0))
        if os.getuid() != 0:
            try:
                os.listdir("/proc/1/fd")
                results.append("allowed")
            except OSError as exc:
                results.append(os.strerror(exc.errno or 0))
        return results

    _, value = run_in_container(probe)
    assert value
    assert set(value) == {os.strerror(13)}  # EACCES


@pytest.mark.parametrize(
    ("action", "status", "signum"),
    [
        ("os._exit(71)", 71, None),
        ("os.abort()", 134, signal.SIGABRT),
        ("os.kill(os.getpid(), signal.SIGKILL)", 137, signal.SIGKILL),
    ],
)
def test_exit_status_is_passed_on(
    run_in_container: RunInContainer, action: str, status: int, signum: int | None
) -> None:
    outcome, _ = run_in_container(lambda: exec(action, {"os": os, "signal": signal}))
    assert outcome.status == status
    assert outcome.signal == signum
    assert outcome.init_status == 0


def test_daemons_do_not_outlive_the_container(run_in_container: RunInContainer) -> None:
    token = f"rootless-daemon-{uuid.uuid4().hex}"

    def start_daemons() -> int:
        # a plain background child, and a double-forked setsid daemon
        subprocess.Popen(["sh", "-c", "sleep 300; true", token])
        subprocess.Popen(
            ["sh", "-c", f"setsid sh -c 'sleep 300; true' {token} </dev/null >/dev/null 2>&1 &"]
        )
        time.sleep(0.3)
        return len(procscan.tagged(token))

    outcome, started = run_in_container(start_daemons)
    assert outcome.status == 0
    assert started == 2
    assert procscan.gone(token, 5) == {}


def test_sigkill_to_the_host_process_leaves_nothing(tmp_path: Path) -> None:
    token = f"rootless-orphan-{uuid.uuid4().hex}"
    script = tmp_path / "host.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, subprocess, sys, time
        import pytest
        from pytest_rootless.runtime.options import Options
        from pytest_rootless.runtime.session import ContainerSession

        containers = ContainerSession(fds=lambda: frozenset({{0, 1, 2}}))
        def payload(fd):
            subprocess.Popen(["sh", "-c", "sleep 300; true", {token!r}])
            print("started", flush=True)
            time.sleep(300)
            return 0
        containers.run(containers.spec(Options(), [{str(tmp_path)!r}]), payload,
                            lambda m: None)
    """)
    )
    host = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        assert host.stdout.readline().strip() == "started"
        assert procscan.tagged(token)
        host.kill()
        host.wait()
        assert procscan.gone(token, 5) == {}
    finally:
        host.kill()
        host.wait()
        if host.stdout is not None:
            host.stdout.close()


def test_timeout_kills_the_whole_container_and_dumps_stacks(
    run_in_container: RunInContainer,
) -> None:
    def hang_here() -> None:
        time.sleep(60)

    started = time.monotonic()
    outcome, _ = run_in_container(hang_here, timeout=0.5)
    elapsed = time.monotonic() - started
    assert outcome.timed_out
    assert outcome.init_status == 0  # init ended it: the host's backstop (SIGKILL) was not needed
    assert elapsed < 5  # far below the 60 s the test would sleep; loose for loaded machines
    assert "hang_here" in outcome.crash_text


def test_a_failing_build_step_is_an_error_naming_it(
    run_in_container: RunInContainer, tmp_path: Path
) -> None:
    # Validation refuses a missing host path; here it vanishes after validation.
    options = Options(mounts=(("/data", str(tmp_path / "gone")),))
    outcome, value = run_in_container(lambda: "ran", options=options)
    assert value is None
    assert outcome.setup_error is not None
    assert "gone" in outcome.setup_error["message"]
    assert outcome.init_status == EXIT_SETUP_FAILED


def test_the_host_session_keyring_is_out_of_reach(tmp_path: Path) -> None:
    """A key in the host's session keyring (a Kerberos ticket, say) is not visible."""
    script = tmp_path / "host.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import ctypes, json, os
            from pytest_rootless.kernel import libc as kernel_libc
            from pytest_rootless.protocol import framing
            from pytest_rootless.runtime.options import Options
            from pytest_rootless.runtime.session import ContainerSession

            libc = ctypes.CDLL(None, use_errno=True)
            KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_SEARCH, SESSION = 1, 10, -3
            NR_ADD_KEY = {{"x86_64": 248, "aarch64": 217}}[os.uname().machine]
            NR_KEYCTL = kernel_libc.nr("keyctl")
            assert libc.syscall(NR_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, b"rootless-test") > 0
            secret = b"s3cr3t-ticket"
            key = libc.syscall(NR_ADD_KEY, b"user", b"rootless-secret", secret,
                               len(secret), SESSION)
            assert key > 0, ctypes.get_errno()

            def search():
                return libc.syscall(NR_KEYCTL, KEYCTL_SEARCH, SESSION, b"user",
                                    b"rootless-secret", 0)

            assert search() == key  # the host process finds it

            containers = ContainerSession(fds=lambda: frozenset({{0, 1, 2}}))
            found = []

            def payload(fd):
                result = search()
                framing.send(fd, {{"kind": "v", "found": result, "errno": ctypes.get_errno()}})
                return 0

            containers.run(containers.spec(Options(), [{str(tmp_path)!r}]), payload,
                                found.append)
            print(json.dumps([m for m in found if m["kind"] == "v"][0]))
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True
    )
    found = json.loads(result.stdout)
    assert found["found"] == -1
    # EPERM: the test process's seccomp filter refuses every keyring call (before it, the
    # search ran, in the fresh session keyring init joins, and found nothing: ENOKEY)
    assert found["errno"] == errno.EPERM
