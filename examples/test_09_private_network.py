"""Lesson 9: two hosts on a private network: a web server and its client, each in a
container of its own, on a network that nothing outside the test can reach.

Kernel mechanism, network_namespaces(7) and veth(4): each container has a network
namespace of its own, with its own loopback. Containers of one test that name the same
network each get one end of a veth pair as ``eth0``, with an address, and the other end
sits on a bridge in a network namespace that belongs to the test alone (owned by a user
namespace of its own, user_namespaces(7)): no interface of the host's takes part, so
the host has no way in, and neither has a container on another network. Every member's
/etc/hosts lists the others by hostname, so a client finds its server by name.

The host's own network may accept any outgoing connection (a transparent proxy does): so
"unreachable from the host" is proved by the server's log, which never shows the request.

Why it matters: a client and a server, or a small cluster, get real hosts with their own
addresses and names, talking TCP and UDP, without root, a daemon or a port on the host,
and gone when the test ends.
"""

import http.server
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest_rootless

Factory = Callable[..., pytest_rootless.Container]


#: What the server in a container was asked for, and by whom (its own copy: each
#: process of a container is a fork of the host's pytest).
SERVED: list[tuple[str, str]] = []


class Hello(http.server.BaseHTTPRequestHandler):
    """Answers every GET with who it is and who asked."""

    def do_GET(self) -> None:
        SERVED.append((self.path, self.client_address[0]))
        body = f"hello from {socket.gethostname()} to {self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve_http(until: str = "/stop") -> list[tuple[str, str]]:
    """A web server on port 8000 until it is asked for ``until``: what it served."""
    with http.server.HTTPServer(("", 8000), Hello) as server:
        while not SERVED or SERVED[-1][0] != until:
            server.handle_request()
    return SERVED


def fetch(url: str, timeout: float = 30.0) -> str:
    """GET ``url`` (retried while the server is not listening yet). No proxy: the
    host's proxy settings, inherited through the environment, mean nothing in here."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with opener.open(url, timeout=timeout) as response:
                return str(response.read().decode())
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, ConnectionRefusedError) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_a_web_server_and_its_client(container_factory: Factory) -> None:
    web = container_factory(hostname="web", network="lab")
    client = container_factory(hostname="client", network="lab")
    served = web.start(serve_http)
    # the client finds the server by its name (/etc/hosts) and reaches it at its address
    assert client.run(fetch, "http://web:8000/") == f"hello from web to {client.address}\n"
    assert client.run(fetch, f"http://{web.address}:8000/stop").startswith("hello from web")
    assert served.wait(30) == [("/", client.address), ("/stop", client.address)]


def try_to_reach(host: str) -> str:
    """Connect to host:8000 and ask for a page: what happened."""
    try:
        with socket.create_connection((host, 8000), timeout=1) as conn:
            conn.sendall(b"GET /intruder HTTP/1.0\r\n\r\n")
        return "sent"
    except OSError as exc:
        return type(exc).__name__


def test_the_server_is_unreachable_from_the_host_and_from_another_network(
    container_factory: Factory,
) -> None:
    web = container_factory(hostname="web", network="lab")
    client = container_factory(hostname="client", network="lab")
    stranger = container_factory(hostname="stranger", network="elsewhere")
    served = web.start(serve_http)
    assert client.run(fetch, "http://web:8000/from-a-peer").startswith("hello from web")

    # From another network: no route to the lab's addresses, no name for its hosts.
    assert stranger.run(try_to_reach, web.address) == "OSError"  # ENETUNREACH
    assert stranger.run(try_to_reach, "web") == "gaierror"
    # From the host: none of its interfaces is on the network. (Where the host's own
    # network accepts any outgoing connection, a transparent proxy, "sent" goes there:
    # the server's log is the proof that nothing arrived.)
    try_to_reach(web.address)
    assert web.address not in {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None)}

    client.run(fetch, "http://web:8000/stop")
    assert served.wait(30) == [("/from-a-peer", client.address), ("/stop", client.address)]
