"""Named networks between the containers of one test (``network="lab"``), end to end.

Each test runs a real inner pytest. What is checked from the host after it ended, the way
an operator would: no process of the run is left, no process holds one of its network
or user namespaces (``/proc/*/ns`` and every open fd), and the host's interfaces are the
ones it had before.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pytest_rootless.runtime.stale import PREFIX
from pytest_rootless.runtime.statedir import state_parent

from .. import procscan

#: Helpers of the inner test files: what a container sees of its network, and pytest's
#: own children (the networks' holders and the relays that clone containers).
PRELUDE = """
import json, os, socket, time
import pytest
import procscan


def seen():
    from pytest_rootless.kernel.netlink import Netlink

    with Netlink() as nl:
        return {
            "links": sorted(nl.links()),
            "addresses": sorted(nl.addresses()),
            "routes": nl.routes(socket.AF_INET),
            "netns": os.readlink("/proc/self/ns/net"),
        }


def children():
    found = {}
    for pid in procscan.pids():
        fields = procscan.stat(pid)
        if fields is None or int(fields[1]) != os.getpid():
            continue
        try:
            found[str(pid)] = {
                "start": fields[19],
                "net": os.readlink(f"/proc/{pid}/ns/net"),
                "user": os.readlink(f"/proc/{pid}/ns/user"),
            }
        except OSError:
            continue
    return found


def connect(host, port, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection((host, port), timeout=timeout)
        except ConnectionRefusedError:  # not listening yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
"""


def run(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(PRELUDE + body, procscan=procscan.source())
    return pytester.runpytest_subprocess("-p", "rootless", "-p", "no:cacheprovider", *args)


def ticks_since_boot() -> int:
    """Now, in the unit of a process's start time (proc_pid_stat(5), field 22)."""
    with open("/proc/uptime") as f:
        return int(float(f.read().split()[0]) * os.sysconf("SC_CLK_TCK")) + 1


def namespaces_in_use(started_before: int) -> set[str]:
    """Every namespace ("net:[...]", "user:[...]") used, or held by an fd, by a process we
    can see that started before ``started_before``: the kernel gives a freed namespace's
    inode number to the next new one, and other tests make namespaces all the time.
    Another user's processes are unreadable to an unprivileged run: they cannot hold
    ours either."""
    found = set()
    for pid in procscan.pids():
        fields = procscan.stat(pid)
        if fields is None or int(fields[19]) > started_before:
            continue
        for kind in ("net", "user"):
            try:
                found.add(os.readlink(f"/proc/{pid}/ns/{kind}"))
            except OSError:
                pass
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(("net:[", "user:[")):
                found.add(target)
    return found


def still_running(processes: dict[str, dict[str, Any]]) -> list[str]:
    """The recorded processes that still exist (the same pid and start time)."""
    left = []
    for pid, facts in processes.items():
        fields = procscan.stat(int(pid))
        if fields is not None and fields[19] == facts["start"]:
            left.append(pid)
    return left


EIGHT = """
N = 8


def test_eight_members(container_factory):
    host_links = socket.if_nameindex()
    boxes = [container_factory(hostname=f"node{{i}}", network="lab") for i in range(N)]
    # addresses are given when containers are made, in order
    assert [b.address for b in boxes] == [f"198.18.0.{{i}}" for i in range(2, N + 2)]
    record = {{"members": [], "pytest_children": {{}}, "pid": os.getpid()}}
    for box in boxes:
        view = box.run(seen)
        assert view["links"] == ["eth0", "lo"]
        assert ("eth0", f"{{box.address}}/24") in view["addresses"]
        assert ("lo", "127.0.0.1/8") in view["addresses"]
        assert view["routes"] == [("198.18.0.0/24", "eth0")]  # no default route
        if box.address6 is not None:
            assert ("eth0", f"{{box.address6}}/64") in view["addresses"]
        record["members"].append(view["netns"])
    assert len(set(record["members"])) == N  # a network namespace each
    # every name resolves from every member, its own included, to the member's address
    names = {{b.hostname: b.address for b in boxes}}
    for box in boxes:
        assert box.run(lambda: {{n: socket.gethostbyname(n) for n in names}}) == names
    # the network lives in namespaces of its own: the host has no new interface
    assert socket.if_nameindex() == host_links
    record["pytest_children"] = children()
    # the holder: pytest's child in a network namespace that is neither the host's nor
    # a member's; the relays are in the host's network namespace
    mine = os.readlink("/proc/self/ns/net")
    holders = [c for c in record["pytest_children"].values() if c["net"] != mine]
    assert len(holders) == 1
    assert holders[0]["net"] not in record["members"]
    record["namespaces"] = [holders[0]["net"], holders[0]["user"], *record["members"]]
    with open({record!r}, "w") as f:
        json.dump(record, f)
"""


def test_eight_members_get_addresses_names_and_leave_nothing(pytester: pytest.Pytester) -> None:
    record_path = pytester.path / "record.json"
    host_links = socket.if_nameindex()
    result = run(pytester, EIGHT.format(record=str(record_path)))
    ended = ticks_since_boot()
    result.assert_outcomes(passed=1)
    record = json.loads(record_path.read_text())
    assert len(record["pytest_children"]) >= 9  # a holder and a relay per member
    assert still_running(record["pytest_children"]) == []
    assert set(record["namespaces"]) & namespaces_in_use(ended) == set()
    assert socket.if_nameindex() == host_links
    # the networks' hosts files went with their test
    assert list(Path(state_parent()).glob(f"{PREFIX}{record['pid']}-*")) == []


def test_tcp_and_udp_between_members_and_loopback_stays_private(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
def serve():
    tcp = socket.create_server(("0.0.0.0", 9000))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 9001))
    local = socket.create_server(("127.0.0.1", 9002))  # its loopback only
    tcp6 = socket.create_server(("::", 9003), family=socket.AF_INET6) if socket.has_ipv6 else None
    conn, peer = tcp.accept()
    conn.sendall(b"tcp " + conn.recv(100))
    data, sender = udp.recvfrom(100)
    udp.sendto(b"udp " + data, sender)
    if tcp6 is not None:
        conn6, _ = tcp6.accept()
        conn6.sendall(b"tcp6")
    connect("127.0.0.1", 9002).close()  # its loopback listener is there, for itself
    return peer[0], sender[0]


def talk(address6):
    with connect("server", 9000) as tcp:
        tcp.sendall(b"hello")
        got = [tcp.recv(100)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(30)
        udp.sendto(b"hello", ("server", 9001))
        got.append(udp.recvfrom(100)[0])
    if address6 is not None:
        with connect(address6, 9003) as tcp6:
            got.append(tcp6.recv(100))
    for where in ("127.0.0.1", "server"):  # its own loopback; the server's address
        try:
            socket.create_connection((where, 9002), timeout=30).close()
            got.append(f"{where}: reached")
        except ConnectionRefusedError:
            got.append(f"{where}: refused")
    return got


def test_members_talk(container_factory):
    server = container_factory(hostname="server", network="lab")
    client = container_factory(hostname="client", network="lab")
    served = server.start(serve)
    got = client.run(talk, server.address6)
    six = [b"tcp6"] if server.address6 else []
    assert got == [b"tcp hello", b"udp hello", *six, "127.0.0.1: refused", "server: refused"]
    assert served.wait(30) == (client.address, client.address)
""",
    )
    result.assert_outcomes(passed=1)


def test_two_names_are_two_networks_and_the_marker_joins_the_factory(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
def reach(host):
    try:
        socket.create_connection((host, 9000), timeout=30).close()
        return "reached"
    except ConnectionRefusedError:
        return "refused"  # got there: nobody listens
    except OSError as exc:
        return type(exc).__name__ + (f" {exc.errno}" if exc.errno else "")


@pytest.mark.container(network="red", hostname="web")
def test_networks(container, container_factory):
    red = container_factory(network="red", hostname="client")
    blue = container_factory(network="blue", hostname="stranger")
    assert container.address == "198.18.0.2" and red.address == "198.18.0.3"
    assert blue.address == "198.18.1.2"  # another network, another subnet
    container.pid  # a container joins its network when it starts (on first use)
    assert red.run(reach, "web") == "refused"
    assert red.run(reach, container.address) == "refused"
    # no route from blue to red's subnet, and no name either
    assert blue.run(reach, container.address) == "OSError 101"  # ENETUNREACH
    assert blue.run(reach, "web").startswith("gaierror")  # no such name (or no DNS)
    assert "web" not in blue.read_text("/etc/hosts")
    assert container.run(seen)["netns"] != blue.run(seen)["netns"]
""",
    )
    result.assert_outcomes(passed=1)


def test_nothing_on_the_network_is_reachable_from_the_host(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def log_until_stop():  # what every connection sends, until one says stop
    server = socket.create_server(("0.0.0.0", 9000))
    log = []
    while not log or log[-1][1] != b"stop":
        conn, peer = server.accept()
        with conn:
            conn.settimeout(30)
            log.append((peer[0], conn.recv(100)))
    return log


def knock(host, token, wait=False):
    # Send token to host:9000: True if it was sent (wait: retried until it listens). Some
    # networks (a transparent proxy) accept any outgoing connection: whether the server
    # got it is for its log to say.
    try:
        with connect(host, 9000) if wait else socket.create_connection((host, 9000), 1) as conn:
            conn.sendall(token)
        return True
    except OSError:
        return False


def test_host_cannot_reach(container_factory):
    server = container_factory(hostname="server", network="lab")
    peer = container_factory(hostname="peer", network="lab")
    log = server.start(log_until_stop)
    assert peer.run(knock, "server", b"from a peer", True)  # once it listens
    host_addresses = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None)}
    assert server.address not in host_addresses
    knock(server.address, b"from the host")
    knock(server.address6 or server.address, b"from the host over IPv6")
    assert peer.run(knock, "server", b"stop")
    assert log.wait(30) == [(peer.address, b"from a peer"), (peer.address, b"stop")]
""",
    )
    result.assert_outcomes(passed=1)


def test_disconnect_cuts_one_member_off_and_reconnect_brings_it_back(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
def serve():
    server = socket.create_server(("0.0.0.0", 9000))
    while True:
        server.accept()[0].close()


def attempt(host, timeout):
    try:
        socket.create_connection((host, 9000), timeout=timeout).close()
        return "reached"
    except OSError as exc:
        return type(exc).__name__


def reach(host):
    connect(host, 9000).close()
    return "reached"


def test_cut(container_factory):
    server = container_factory(hostname="server", network="lab")
    client = container_factory(hostname="client", network="lab")
    other = container_factory(hostname="other", network="lab")
    server.start(serve)
    assert client.run(reach, server.address) == "reached"
    server.disconnect()
    # its cable is pulled: nothing gets there, and its eth0 has no carrier
    assert client.run(attempt, server.address, 0.5) in ("TimeoutError", "OSError")
    assert other.run(attempt, server.address, 0.5) in ("TimeoutError", "OSError")
    assert server.run(attempt, client.address, 0.5) in ("TimeoutError", "OSError")
    # the others still reach each other, and the server still reaches itself
    other.start(serve)
    assert client.run(reach, "other") == "reached"
    assert server.run(attempt, server.address, 5) == "reached"
    server.reconnect()
    assert client.run(reach, server.address) == "reached"


def test_only_named_networks_have_a_cable(container_factory):
    alone = container_factory()
    with pytest.raises(ValueError, match="on no named network"):
        alone.disconnect()
""",
    )
    result.assert_outcomes(passed=2)


def test_root_in_a_member_administers_its_own_interface_only(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def add_address(address):
    import errno, ipaddress
    from pytest_rootless.kernel.netlink import Netlink

    try:
        with Netlink() as nl:
            nl.add_address("eth0", ipaddress.ip_interface(address))
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return [a for a in seen()["addresses"] if a[0] == "eth0"]


def test_root(container_factory):
    root = container_factory(network="lab", hostname="admin", root=True)
    user = container_factory(network="lab", hostname="user")
    assert ("eth0", "198.18.0.99/24") in root.run(add_address, "198.18.0.99/24")
    assert user.run(add_address, "198.18.0.98/24") == "EPERM"  # no capability at all
    # the root container's change stays in its own namespace
    assert ("eth0", "198.18.0.99/24") not in user.run(seen)["addresses"]
""",
    )
    result.assert_outcomes(passed=1)


def test_other_roots_and_a_lone_container(pytester: pytest.Pytester) -> None:
    """/etc/hosts is the network's with rootfs="host" too; run_isolated on a named
    network is a container alone on it, and leaves no holder behind."""
    result = run(
        pytester,
        """
import pytest_rootless


def test_host_root(container_factory):
    a = container_factory(network="lab", hostname="a", rootfs="host")
    b = container_factory(network="lab", hostname="b")
    assert a.run(socket.gethostbyname, "b") == b.address
    assert b.run(socket.gethostbyname, "a") == a.address


def test_run_isolated_alone():
    view = pytest_rootless.run_isolated(seen, network="solo", hostname="one")
    assert ("eth0", "198.18.0.2/24") in view["addresses"]
    assert children() == {}
""",
    )
    result.assert_outcomes(passed=2)


def test_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_isolated="""
import pytest

@pytest.mark.isolated(network="lab")
def test_x():
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "rootless", "test_isolated.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*network='lab': a named network joins the containers of one test*isolated test is*"]
    )
    pytester.makepyfile(
        test_names="""
import pytest

def test_bad_name(container_factory):
    with pytest.raises(pytest.UsageError, match="network='my lab' is invalid"):
        container_factory(network="my lab")

def test_same_hostname_twice(container_factory):
    container_factory(network="lab")
    with pytest.raises(ValueError, match="has a container named 'sandbox' already"):
        container_factory(network="lab")
    container_factory(network="other")  # another network: fine
"""
    )
    result = pytester.runpytest_subprocess("-p", "rootless", "test_names.py")
    result.assert_outcomes(passed=2)


def test_trace_shows_the_network_steps(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_traced(container_factory):
    a = container_factory(network="lab", hostname="a")
    b = container_factory(network="lab", hostname="b")
    a.pid, b.pid
    b.disconnect()
    b.reconnect()
""",
        "--rootless-trace",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "rootless trace container 'a':",
            "  [[]init[]] setns(<user namespace of network 'lab'>, CLONE_NEWUSER)*",
            "  [[]init[]] [[]network 'lab'[]] unshare(CLONE_NEWUSER|CLONE_NEWNET)",
            "  [[]init[]] [[]network 'lab'[]] RTM_NEWLINK('br0', type bridge)",
            "  [[]init[]] [[]network 'lab'[]] RTM_NEWLINK('veth1', type veth, peer 'eth0' *)",
            "  [[]init[]] [[]network 'lab'[]] RTM_NEWLINK('veth1', master 'br0')",
            "  [[]init[]] RTM_NEWADDR('eth0', 198.18.0.2/24, noprefixroute)",
            "  [[]init[]] RTM_NEWLINK('eth0', up)",
            "  [[]init[]] RTM_NEWROUTE(198.18.0.0/24, dev 'eth0', scope link, src 198.18.0.2)",
            "rootless trace container 'b':",
            "  [[]init[]] [[]network 'lab'[]] RTM_NEWLINK('veth2', type veth, *)",
            "  [[]init[]] RTM_NEWADDR('eth0', 198.18.0.3/24, noprefixroute)",
            "rootless trace disconnect 'b':",
            "  [[]network[]] RTM_NEWLINK('veth2', down)",
            "rootless trace reconnect 'b':",
            "  [[]network[]] RTM_NEWLINK('veth2', up)",
        ]
    )
    assert result.stdout.str().count("type bridge") == 1  # one bridge, made once


KILLED = """
import os, time


def test_network(container_factory):
    boxes = [container_factory(hostname=f"h{{i}}", network="lab") for i in range(2)]
    for box in boxes:
        box.start(time.sleep, 300)
    open({ready!r}, "w").close()
    time.sleep(300)
"""


def test_sigkill_to_pytest_leaves_no_holder_nor_member(pytester: pytest.Pytester) -> None:
    token = f"rootless_net_killed_{uuid.uuid4().hex}"  # in the test file's name: in argv
    ready = pytester.path / "ready"
    test_file = pytester.makepyfile(**{f"test_{token}": KILLED.format(ready=str(ready))})
    command = [sys.executable, "-m", "pytest", "-p", "rootless", "-p", "no:cacheprovider"]
    host = subprocess.Popen([*command, str(test_file)], cwd=pytester.path)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and host.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists()
        # pytest, the holder, and per member a relay, an init and a process inside
        assert len(procscan.tagged(token)) >= 8
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait()
    assert procscan.gone(token, 10) == {}
