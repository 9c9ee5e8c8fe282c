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
  link and route (:mod:`._netlink`). A pair dies with either namespace.
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
import select
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass, field
from typing import Any

from ..kernel import libc, netlink
from ..kernel import syscalls as sc
from ..kernel.syscalls import CloneFlag as NS
from ..protocol import framing

#: The block the networks' IPv4 subnets come from (RFC 2544, RFC 6890: not routed).
IPV4_BLOCK = ipaddress.IPv4Network("198.18.0.0/15")
#: The block of their IPv6 subnets (RFC 4193 unique local, "Rootl" in its global id).
IPV6_BLOCK = ipaddress.IPv6Network("fd52:6f6f:746c::/48")
#: Hosts per network: .2 to .254 of a /24.
MAX_MEMBERS = 253
BRIDGE = "br0"
IFNAME = "eth0"
#: How long the host and a joining init wait for the holder's answer.
TIMEOUT = 30.0

HOSTS_HEADER = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


class NetworkError(RuntimeError):
    """A private network could not be made or changed."""


def has_ipv6() -> bool:
    """Whether this kernel has IPv6 (it is missing when booted with ``ipv6.disable=1``)."""
    return os.path.isdir("/proc/sys/net/ipv6")


@dataclass(frozen=True)
class Join:
    """What a container's init needs to join a network (part of its ChildSpec)."""

    network: str
    index: int
    #: The holder's user namespace: the relay setns()es into it before cloning init.
    userns_fd: int
    #: Init's end of a socket to the holder.
    channel_fd: int
    hosts_file: str
    address: str  # "198.18.0.2/24"
    address6: str | None
    #: The holder's own steps, shown in the trace of the first container to join.
    holder_trace: tuple[str, ...] = ()


@dataclass
class Member:
    hostname: str
    index: int
    address: ipaddress.IPv4Interface
    address6: ipaddress.IPv6Interface | None
    connected: bool = True


# --- in the container's init (after its network namespace exists) ------------------------------


def note_cloned_inside(spec: Join) -> None:
    """For the trace: the relay entered the network's user namespace before it cloned
    this init (its own trace is not sent anywhere)."""
    libc.trace_note(
        f"setns(<user namespace of network {spec.network!r}>, CLONE_NEWUSER) "
        "[by the relay, before clone]"
    )


def join(spec: Join) -> None:
    """Hand this network namespace to the holder, which plugs a veth pair into it, then
    give ``eth0`` its addresses, bring it up, add the route to the subnet."""
    for line in spec.holder_trace:
        libc.trace_note(f"[network {spec.network!r}] {line}")
    channel = socket.socket(fileno=spec.channel_fd)
    try:
        netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            socket.send_fds(channel, [framing.encode({"kind": "join"})], [netns])
        finally:
            os.close(netns)
        reply = _receive(channel, TIMEOUT, f"network {spec.network!r}: the holder")[0]
    finally:
        channel.close()
    for line in reply.get("trace", []):
        libc.trace_note(f"[network {spec.network!r}] {line}")
    if reply["kind"] != "joined":
        raise NetworkError(f"network {spec.network!r}: {reply.get('message', reply)}")
    addresses = [ipaddress.ip_interface(spec.address)]
    if spec.address6 is not None:
        addresses.append(ipaddress.ip_interface(spec.address6))
    with netlink.Netlink() as nl:
        for address in addresses:
            nl.add_address(IFNAME, address)
        nl.set_up(IFNAME)
        for address in addresses:
            nl.add_subnet_route(IFNAME, address)


# --- the holder (a forked child of pytest; entered through child.holder_main) -----------------


def hold(control_fd: int, trace: bool) -> int:
    """The holder's life: make ``H`` and ``B`` and the bridge, send an fd of ``H`` to the
    host, then plug in members and switch their links until the host closes the socket."""
    # A fork of pytest holds every fd pytest had, among them the host's ends of other
    # containers' sockets: keep none, or those containers would not see their EOF.
    for low, high in ((3, control_fd - 1), (control_fd + 1, 0xFFFFFFFF)):
        if low <= high:
            sc.close_range(low, high)
    libc.set_tracing(trace)
    uid, gid = os.geteuid(), os.getegid()
    sc.unshare(NS.NEWUSER | NS.NEWNET)
    sc.write_id_maps(uid, uid, gid, gid)
    ipv6 = has_ipv6()
    control = socket.socket(fileno=control_fd)
    with netlink.Netlink() as nl:
        nl.add_bridge(BRIDGE)
        if ipv6:
            nl.set_addr_gen_mode_none(BRIDGE)
        nl.set_up(BRIDGE)
        userns = os.open("/proc/self/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        _send(control, {"kind": "ready", "trace": _steps()}, [userns])
        os.close(userns)
        members: dict[int, int] = {}  # channel fd -> member index
        poller = select.poll()
        poller.register(control_fd, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd == control_fd:
                    if not _control_request(nl, control, members, poller):
                        return 0
                else:
                    poller.unregister(fd)
                    _plug(nl, fd, members.pop(fd), ipv6)


def _steps() -> list[str]:
    lines = list(libc.TRACE)
    libc.TRACE.clear()
    return lines


def _control_request(
    nl: netlink.Netlink,
    control: socket.socket,
    members: dict[int, int],
    poller: select.poll,
) -> bool:
    """One request of the host's; False when it closed the socket."""
    data, fds, _, _ = socket.recv_fds(control, 1 << 16, 4, socket.MSG_CMSG_CLOEXEC)
    if not data:
        return False
    message = _decode(data)
    if message["kind"] == "member" and len(fds) == 1:
        members[fds[0]] = int(message["index"])
        poller.register(fds[0], select.POLLIN)
        return True
    for fd in fds:
        os.close(fd)
    try:
        if message["kind"] != "link":
            raise NetworkError(f"unknown request {message['kind']!r}")
        nl.set_up(f"veth{int(message['index'])}", bool(message["up"]))
        reply: framing.Message = {"kind": "done", "trace": _steps()}
    except Exception as exc:
        reply = {"kind": "error", "message": str(exc), "trace": _steps()}
    _send(control, reply)
    return True


def _plug(nl: netlink.Netlink, channel_fd: int, index: int, ipv6: bool) -> None:
    """Plug a member in: a veth pair from the bridge into the network namespace whose fd
    its init sends. A failure is the member's, told to it: the holder goes on."""
    with socket.socket(fileno=channel_fd) as channel:
        try:
            data, fds, _, _ = socket.recv_fds(channel, 1 << 16, 1, socket.MSG_CMSG_CLOEXEC)
        except OSError:
            return  # its init is gone
        try:
            if not data or _decode(data)["kind"] != "join" or len(fds) != 1:
                raise NetworkError("a member sent no network namespace")
            veth = f"veth{index}"
            nl.add_veth(veth, IFNAME, fds[0], "the container's network namespace")
            if ipv6:
                nl.set_addr_gen_mode_none(veth)
            nl.set_master(veth, BRIDGE)
            nl.set_up(veth)
            reply: framing.Message = {"kind": "joined", "trace": _steps()}
        except Exception as exc:
            reply = {"kind": "error", "message": str(exc), "trace": _steps()}
        finally:
            for fd in fds:
                os.close(fd)
        try:
            _send(channel, reply)
        except OSError:
            pass


# --- messages: one _wire frame per SOCK_SEQPACKET packet, fds alongside ----------------------


def _send(sock: socket.socket, message: framing.Message, fds: list[int] | None = None) -> None:
    socket.send_fds(sock, [framing.encode(message)], fds or [])


def _decode(packet: bytes) -> framing.Message:
    messages = framing.Decoder().feed(packet)
    if len(messages) != 1:
        raise NetworkError("a malformed message")
    return messages[0]


def _receive(sock: socket.socket, timeout: float, who: str) -> tuple[framing.Message, list[int]]:
    ready, _, _ = select.select([sock], [], [], timeout)
    if not ready:
        raise NetworkError(f"{who} did not answer within {timeout:g} s")
    data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 4, socket.MSG_CMSG_CLOEXEC)
    if not data:
        raise NetworkError(f"{who} is gone")
    try:
        return _decode(data), fds
    except NetworkError:
        for fd in fds:
            os.close(fd)
        raise


# --- the host's side ------------------------------------------------------------------------


class Holder:
    """The host's handle on a holder process."""

    def __init__(self, trace: bool) -> None:
        from .child import init as child

        host_end, holder_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = sc.fork()
        if pid == 0:
            child.holder_main(holder_end.fileno(), trace)  # never returns
        holder_end.close()
        self.pid = pid
        self.sock = host_end
        self.userns_fd = -1
        try:
            message, fds = _receive(host_end, TIMEOUT, "the network's holder")
            if message["kind"] != "ready" or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                raise NetworkError(str(message.get("message", message)))
        except BaseException:
            self.close()
            raise
        self.userns_fd = fds[0]
        self.trace = tuple(str(line) for line in message.get("trace", []))

    def request(self, message: framing.Message, fds: list[int] | None = None) -> framing.Message:
        _send(self.sock, message, fds)
        if message["kind"] == "member":
            return {"kind": "done"}
        reply, extra = _receive(self.sock, TIMEOUT, "the network's holder")
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
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while True:
            try:
                os.waitpid(self.pid, 0)
            except InterruptedError:
                continue
            except ChildProcessError:
                pass
            return


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
            self.holder.request({"kind": "member", "index": member.index}, [host_end.fileno()])
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
        reply = self.holder.request({"kind": "link", "index": member.index, "up": up})
        if reply["kind"] != "done":
            raise NetworkError(f"network {self.name!r}: {reply.get('message', reply)}")
        member.connected = up
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
                from ..plugin.host_item import STATE_PREFIX, state_parent

                # named like the session's state, so a killed session's is cleaned up too
                self._directory = tempfile.mkdtemp(
                    prefix=f"{STATE_PREFIX}{os.getpid()}-net-", dir=state_parent()
                )
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


__all__ = ["Join", "Member", "Network", "NetworkError", "Networks", "hold", "join", "release"]
