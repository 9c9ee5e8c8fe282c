"""Lesson 8: the network is only a loopback of your own, with ports of its own.

Kernel mechanism, network_namespaces(7): interfaces, addresses, routes, ports and firewall
rules belong to a network namespace. A new one holds a single interface, `lo`, which is
down; pytest-rootless brings it up and adds nothing else. So 127.0.0.1 works (and it is not
the host's 127.0.0.1: the host's local services are unreachable), and any other address is
refused at once with ENETUNREACH, because there is no route to it: no packet ever leaves.
Ports belong to a namespace too: a port the host is listening on is free in each container,
and two containers can each bind the same one.

Why it matters: a test cannot reach the internet, your LAN or the databases listening on
your machine's localhost, so it cannot depend on them, leak to them or damage them; and its
own servers cannot clash with the host's ports or with each other's: tests that all start a
server on port 8000 can run side by side.
"""

import errno
import socket
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.isolated

#: TEST-NET-1 (RFC 5737): an address for documentation, routed nowhere.
DOCUMENTATION_ADDRESS = "192.0.2.1"


def connect(host: str, port: int) -> str:
    """Try a TCP connection: "connected", "timed out", or the errno name of the refusal."""
    try:
        socket.create_connection((host, port), timeout=1).close()
    except TimeoutError:
        return "timed out"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "connected"


def bind(server: socket.socket, port: int) -> str:
    """Bind a socket to 127.0.0.1:port: "bound", or the errno name of the refusal."""
    try:
        server.bind(("127.0.0.1", port))
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "bound"


@pytest.fixture(scope="module")
def host_server() -> Iterator[int]:
    """A TCP server on the host's 127.0.0.1 (module-scoped fixtures run on the host)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def test_the_only_interface_is_loopback() -> None:
    names = [name for _, name in socket.if_nameindex()]
    assert names == ["lo"], f"the host's interfaces are visible: {names}"


def test_a_server_on_loopback_works() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        socket.create_connection(server.getsockname(), timeout=1) as client,
    ):
        peer, _ = server.accept()
        with peer:
            client.sendall(b"ping")
            assert peer.recv(4) == b"ping", "the loopback lost the message"


def test_the_hosts_loopback_is_another_one(host_server: int) -> None:
    outcome = connect("127.0.0.1", host_server)
    assert outcome == "ECONNREFUSED", f"the host's server on 127.0.0.1:{host_server}: {outcome}"


def test_every_other_address_is_unreachable() -> None:
    outcome = connect(DOCUMENTATION_ADDRESS, 80)
    assert outcome == "ENETUNREACH", f"{DOCUMENTATION_ADDRESS} is routed: {outcome}"


@pytest.mark.parametrize(
    "hostname",
    [
        pytest.param("alpha", marks=pytest.mark.isolated(hostname="alpha")),
        pytest.param("beta", marks=pytest.mark.isolated(hostname="beta")),
    ],
)
def test_the_hosts_busy_port_is_free_in_here(host_server: int, hostname: str) -> None:
    # Two tests, two containers, one port number: the one the host is listening on.
    with socket.socket() as server:
        outcome = bind(server, host_server)
        assert outcome == "bound", f"127.0.0.1:{host_server} is the host's port: {outcome}"
        server.listen()
        assert socket.gethostname() == hostname
