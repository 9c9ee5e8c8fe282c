"""Private networks between the containers of one test (``network="lab"``).

Who owns what (user_namespaces(7), network_namespaces(7), setns(2)):

* A **holder** process per network and test, forked from pytest, unshares a user
  namespace ``H`` (mapping only the user's own uid and gid) and a network namespace ``B``
  owned by it. In ``B`` it creates a bridge; ``B`` has no address, no route, and no
  link-local IPv6 either: it is a switch, not a host. Nothing of it touches the host's
  network namespace, which keeps only its own interfaces.
* A container on the network is cloned by a **relay** (a fork of pytest) that first
  ``setns``'es into ``H``. pytest's user owns ``H``, and a process of the owner's uid in
  the parent namespace has every capability in it, which is all setns(2) asks of a user
  namespace; nothing is asked of the host. The container's namespaces are then children
  of ``H`` (``H`` > the container's outer user namespace > its inner one, which owns its
  network namespace ``C``), so the holder, which has every capability in ``H``, has
  them over ``C`` too, while the container has none over ``B`` or its peers.
* The container's init, once ``C`` exists, sends an fd of it over a socket to the
  holder, which creates a veth pair with one end in ``B`` (on the bridge) and the other,
  ``eth0``, directly in ``C`` (``IFLA_NET_NS_FD``); init then sets its own address,
  link and route (:mod:`pytest_rootless.kernel.netlink`). A pair dies with either namespace.
* Containers of one test naming the same network share one holder; two names, two
  holders: two bridges with nothing between them. Nothing reaches ``B`` from the host
  (it has no interface there) or from another test (another holder, another ``H``).
* Cleanup needs nothing but the processes ending: no namespace is bound to a file. When
  the test ends, the containers end (each ``C``, with its veth pair, goes with its last
  process) and the host closes the holder's socket: the holder exits, ``B`` and the
  bridge go, then ``H`` once no namespace of it is left.

Addresses are given by the host when a container is made: the k-th network of a test is
``198.18.k.0/24`` (RFC 2544's benchmarking block, which no network routes), hosts from
``.2`` in the order they are made, and ``fd52:6f6f:746c:k::/64`` for IPv6 (a unique local
prefix, RFC 4193) where the kernel has IPv6. Each container's ``/etc/hosts`` is a
read-only bind of the network's own hosts file, which the host appends to as members
join: every name resolves from every member, its own included.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..kernel import processes
from ..kernel import syscalls as sc
from ..protocol import framing, messages
from . import statedir
from .child import holder as holder_side
from .child.holder import TIMEOUT, NetworkError, has_ipv6
from .spec import Join

#: The block the networks' IPv4 subnets come from (RFC 2544, RFC 6890: not routed).
IPV4_BLOCK = ipaddress.IPv4Network("198.18.0.0/15")
#: The block of their IPv6 subnets (RFC 4193 unique local, "Rootl" in its global id).
IPV6_BLOCK = ipaddress.IPv6Network("fd52:6f6f:746c::/48")
#: Hosts per network: .2 to .254 of a /24.
MAX_MEMBERS = 253

HOSTS_HEADER = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


@dataclass
class Member:
    hostname: str
    index: int
    address: ipaddress.IPv4Interface
    address6: ipaddress.IPv6Interface | None


# The holder's messages are protocol.messages.Holder and Member: one frame per SOCK_SEQPACKET
# packet, fds alongside (protocol.framing.send_packet).


# --- the host's side ------------------------------------------------------------------------


class Holder:
    """The host's handle on a holder process."""

    def __init__(self, trace: bool) -> None:

        host_end, holder_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = sc.fork()
        if pid == 0:
            holder_side.holder_main(holder_end.fileno(), trace)  # never returns
        holder_end.close()
        self.pid = pid
        self.sock = host_end
        self.userns_fd = -1
        try:
            message, fds = holder_side.receive(host_end, TIMEOUT, "the network's holder")
            if message["kind"] != messages.Holder.NETWORK_UP or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                raise NetworkError(str(message.get("message", message)))
        except BaseException:
            self.close()
            raise
        self.userns_fd = fds[0]
        self.trace = tuple(str(line) for line in message.get("trace", []))

    def tell(self, message: framing.Message, fds: Sequence[int] = ()) -> None:
        """Send a message the holder does not answer (messages.Holder.MEMBER)."""
        framing.send_packet(self.sock, message, fds)

    def request(self, message: framing.Message) -> framing.Message:
        """Send a request (messages.Holder.LINK) and return the holder's answer."""
        framing.send_packet(self.sock, message)
        reply, extra = holder_side.receive(self.sock, TIMEOUT, "the network's holder")
        for fd in extra:
            os.close(fd)
        return reply

    def close(self) -> None:
        """End it and reap it. It holds nothing but namespaces, which go with it: no
        need to wait for it to see the socket's EOF (a process forked meanwhile may hold
        a copy of our end)."""
        self.sock.close()
        if self.userns_fd >= 0:
            os.close(self.userns_fd)
            self.userns_fd = -1
        processes.kill_and_reap(self.pid)


@dataclass
class Network:
    """One named network of a test, host side: its members, hosts file and holder."""

    name: str
    number: int
    directory: str
    trace: bool
    members: dict[str, Member] = field(default_factory=dict)
    holder: Holder | None = None
    _holder_trace: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        base4 = int(IPV4_BLOCK.network_address) + (self.number << 8)
        self.subnet = ipaddress.IPv4Network((base4, 24))
        base6 = int(IPV6_BLOCK.network_address) + (self.number << 64)
        self.subnet6 = ipaddress.IPv6Network((base6, 64)) if has_ipv6() else None
        self.hosts_file = os.path.join(self.directory, f"hosts.{self.number}")
        with open(self.hosts_file, "w") as f:
            f.write(HOSTS_HEADER)
        os.chmod(self.hosts_file, 0o644)

    def add(self, hostname: str) -> Member:
        """A new member's address, and its name in every member's /etc/hosts."""
        if hostname in self.members:
            raise ValueError(
                f"network {self.name!r} has a container named {hostname!r} already: give "
                "each container on a network its own hostname= (names resolve through "
                "/etc/hosts, so two hosts of one name would be ambiguous)"
            )
        if len(self.members) >= MAX_MEMBERS:
            raise ValueError(f"network {self.name!r} is full ({MAX_MEMBERS} containers)")
        index = len(self.members) + 1
        address = ipaddress.IPv4Interface((int(self.subnet.network_address) + index + 1, 24))
        address6 = None
        if self.subnet6 is not None:
            address6 = ipaddress.IPv6Interface((int(self.subnet6.network_address) + index + 1, 64))
        member = Member(hostname, index, address, address6)
        self.members[hostname] = member
        # Appended, never rewritten: a member reading it meanwhile sees what it saw, or more.
        lines = f"{address.ip}\t{hostname}\n"
        if address6 is not None:
            lines += f"{address6.ip}\t{hostname}\n"
        with open(self.hosts_file, "a") as f:
            f.write(lines)
        return member

    def join(self, member: Member) -> Join:
        """What the member's init needs to join; the holder is started on first use.
        The host closes ``channel_fd`` once init is cloned (see :func:`release`)."""
        if self.holder is None:
            self.holder = Holder(self.trace)
            self._holder_trace = self.holder.trace
        host_end, init_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.holder.tell(
                {"kind": messages.Holder.MEMBER, "index": member.index}, [host_end.fileno()]
            )
        except BaseException:
            init_end.close()
            raise
        finally:
            host_end.close()
        holder_trace, self._holder_trace = self._holder_trace, ()
        return Join(
            network=self.name,
            index=member.index,
            userns_fd=self.holder.userns_fd,
            channel_fd=init_end.detach(),
            hosts_file=self.hosts_file,
            address=member.address.with_prefixlen,
            address6=member.address6.with_prefixlen if member.address6 else None,
            holder_trace=holder_trace,
        )

    def set_link(self, member: Member, up: bool) -> list[str]:
        """Plug a member's cable back in, or pull it (its veth end on the bridge up or
        down); returns the holder's steps."""
        if self.holder is None:
            raise NetworkError(f"network {self.name!r} has no running container")
        reply = self.holder.request({"kind": messages.Holder.LINK, "index": member.index, "up": up})
        if reply["kind"] != messages.Holder.LINKED:
            raise NetworkError(f"network {self.name!r}: {reply.get('message', reply)}")
        return [str(line) for line in reply.get("trace", [])]

    def close(self) -> None:
        if self.holder is not None:
            self.holder.close()
            self.holder = None


def release(spec: Join | None) -> None:
    """The host's copy of init's end of the holder socket, once init is cloned."""
    if spec is not None:
        try:
            os.close(spec.channel_fd)
        except OSError:
            pass


class Networks:
    """The named networks of one test (or of one container made outside a test)."""

    def __init__(self, trace: bool = False) -> None:
        self.trace = trace
        self.networks: dict[str, Network] = {}
        self._directory: str | None = None

    def get(self, name: str) -> Network:
        network = self.networks.get(name)
        if network is None:
            if len(self.networks) >= 512:  # the /24s of 198.18.0.0/15
                raise ValueError("a test can have at most 512 named networks")
            if self._directory is None:
                # named like the session's state, so a killed session's is cleaned up too
                self._directory = statedir.new_state_dir("net-")
            network = Network(name, len(self.networks), self._directory, self.trace)
            self.networks[name] = network
        return network

    def close(self) -> None:
        for network in self.networks.values():
            network.close()
        self.networks.clear()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def describe(self) -> dict[str, Any]:
        """For tests and debugging: each network's subnet, holder pid and members."""
        return {
            name: {
                "subnet": str(net.subnet),
                "holder": net.holder.pid if net.holder else None,
                "members": {m.hostname: str(m.address.ip) for m in net.members.values()},
            }
            for name, net in self.networks.items()
        }


__all__ = ["Member", "Network", "Networks", "release"]
