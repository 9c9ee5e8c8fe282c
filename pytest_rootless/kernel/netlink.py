"""A small rtnetlink client: the few requests a private network needs, and nothing else.

rtnetlink(7) over a plain ``socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)``: each request is
one message (``struct nlmsghdr`` + the request's header + attributes, netlink(7)), sent
with ``NLM_F_ACK`` and answered by one ``NLMSG_ERROR`` whose error is 0 or ``-errno``.
Layouts and constants come from ``include/uapi/linux/{netlink,rtnetlink,if_link,
if_addr,veth}.h``; the requests are those of ``ip link add ... type veth peer ...``,
``ip link add ... type bridge``, ``ip link set ... master/up/down``, ``ip addr add`` and
``ip route add`` (iproute2 sends the same messages).

Why not pyroute2: it is well kept, but it is 54,000 lines whose 0.9 core runs an asyncio
event loop, and importing it takes 160-190 ms; this module is ~250 lines of stdlib
``socket`` and ``struct``, runs in a freshly forked process without threads or an event
loop, and traces each request as one line for ``--rootless-trace``.

A netlink socket acts in the network namespace it was created in: create it in the
namespace to configure (:class:`Netlink` is opened after ``setns``/``unshare``).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable
from typing import Final

from . import libc

# netlink(7), include/uapi/linux/netlink.h
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLM_F_REQUEST: Final = 0x1
NLM_F_MULTI: Final = 0x2
NLM_F_ACK: Final = 0x4
NLM_F_DUMP: Final = 0x300
NLM_F_EXCL: Final = 0x200
NLM_F_CREATE: Final = 0x400
NLA_F_NESTED: Final = 0x8000
_NLMSGHDR: Final = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NLATTR: Final = struct.Struct("=HH")  # len, type
_NLMSGERR: Final = struct.Struct("=i")  # error, then the request's header

# rtnetlink(7), include/uapi/linux/rtnetlink.h
RTM_NEWLINK: Final = 16
RTM_GETLINK: Final = 18
RTM_NEWADDR: Final = 20
RTM_GETADDR: Final = 22
RTM_NEWROUTE: Final = 24
RTM_GETROUTE: Final = 26
_IFINFOMSG: Final = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG: Final = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
_RTMSG: Final = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table,
# protocol, scope, type, flags

# include/uapi/linux/if_link.h, veth.h, if.h
IFLA_IFNAME: Final = 3
IFLA_MASTER: Final = 10
IFLA_LINKINFO: Final = 18
IFLA_AF_SPEC: Final = 26
IFLA_NET_NS_FD: Final = 28
IFLA_INET6_ADDR_GEN_MODE: Final = 8
IN6_ADDR_GEN_MODE_NONE: Final = 1
IFLA_INFO_KIND: Final = 1
IFLA_INFO_DATA: Final = 2
VETH_INFO_PEER: Final = 1
IFF_UP: Final = 0x1
# include/uapi/linux/if_addr.h
IFA_ADDRESS: Final = 1
IFA_LOCAL: Final = 2
IFA_FLAGS: Final = 8
IFA_F_NODAD: Final = 0x02
IFA_F_NOPREFIXROUTE: Final = 0x200
# include/uapi/linux/rtnetlink.h (routes)
RTA_DST: Final = 1
RTA_OIF: Final = 4
RTA_PREFSRC: Final = 7
RT_TABLE_MAIN: Final = 254
RTPROT_STATIC: Final = 4
RT_SCOPE_UNIVERSE: Final = 0
RT_SCOPE_LINK: Final = 253
RTN_UNICAST: Final = 1


def attr(kind: int, payload: bytes) -> bytes:
    """One ``struct nlattr`` with its payload, padded to 4 bytes (NLA_ALIGN)."""
    length = _NLATTR.size + len(payload)
    return _NLATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def name_attr(name: str) -> bytes:
    return attr(IFLA_IFNAME, name.encode() + b"\0")


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """Attributes of one message body, by type (the last one wins, as in the kernel)."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size:
            break
        found[kind & ~NLA_F_NESTED] = data[offset + _NLATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


class NetlinkError(OSError):
    """The kernel refused a request; ``call`` is the request as traced."""

    def __init__(self, err: int, call: str) -> None:
        super().__init__(err, f"{call}: {os.strerror(err)} ({errno.errorcode.get(err, err)})")
        self.call = call


class Netlink:
    """An rtnetlink socket in the caller's network namespace (a context manager)."""

    def __init__(self) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        self.sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the exchange
    def request(self, kind: int, flags: int, body: bytes, call: str) -> None:
        """Send one request and wait for its acknowledgement; raise NetlinkError on a
        refusal. ``call`` describes it, for the trace and the error."""
        for _ in self._exchange(kind, flags | NLM_F_ACK, body, call):
            pass
        libc.trace_note(call)

    def dump(self, kind: int, body: bytes) -> list[tuple[int, bytes]]:
        """The messages (type, body) of an ``NLM_F_DUMP`` request."""
        return list(self._exchange(kind, NLM_F_DUMP, body, f"dump {kind}"))

    def _exchange(
        self, kind: int, flags: int, body: bytes, call: str
    ) -> Iterable[tuple[int, bytes]]:
        self._seq += 1
        seq = self._seq
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0)
        self.sock.send(header + body)
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, mtype, mflags, mseq, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise NetlinkError(errno.EPROTO, f"{call}: a malformed reply")
                payload = data[offset + _NLMSGHDR.size : offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    (error,) = _NLMSGERR.unpack_from(payload)
                    if error:
                        libc.trace_note(f"{call} = -1 {errno.errorcode.get(-error, -error)}")
                        raise NetlinkError(-error, call)
                    return  # the acknowledgement
                if mtype == NLMSG_DONE:
                    return
                yield mtype, payload
                if not mflags & NLM_F_MULTI:
                    return

    # -- links (ip link)
    def add_bridge(self, name: str) -> None:
        """``ip link add name NAME type bridge``."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + name_attr(name)
        body += nested(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"bridge"))
        self.request(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL,
            body,
            f"RTM_NEWLINK({name!r}, type bridge)",
        )

    def add_veth(self, name: str, peer: str, peer_netns_fd: int, peer_label: str) -> None:
        """``ip link add name NAME type veth peer name PEER netns FD``: a pair whose peer
        end is created directly in another network namespace (``peer_label`` names it
        in the trace)."""
        peer_body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + name_attr(peer)
        peer_body += attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        info = attr(IFLA_INFO_KIND, b"veth") + nested(
            IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_body)
        )
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + name_attr(name)
        body += nested(IFLA_LINKINFO, info)
        self.request(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL,
            body,
            f"RTM_NEWLINK({name!r}, type veth, peer {peer!r} in {peer_label})",
        )

    def set_master(self, name: str, master: str) -> None:
        """``ip link set NAME master MASTER``."""
        index, master_index = socket.if_nametoindex(name), socket.if_nametoindex(master)
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        body += attr(IFLA_MASTER, struct.pack("=I", master_index))
        self.request(RTM_NEWLINK, 0, body, f"RTM_NEWLINK({name!r}, master {master!r})")

    def set_up(self, name: str, up: bool = True) -> None:
        """``ip link set NAME up`` (or ``down``)."""
        index = socket.if_nametoindex(name)
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, IFF_UP)
        self.request(RTM_NEWLINK, 0, body, f"RTM_NEWLINK({name!r}, {'up' if up else 'down'})")

    def set_addr_gen_mode_none(self, name: str) -> None:
        """``ip link set NAME addrgenmode none``: no IPv6 link-local address when it
        comes up, so that a link meant as a switch port is no host of the network."""
        index = socket.if_nametoindex(name)
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        mode = attr(IFLA_INET6_ADDR_GEN_MODE, struct.pack("=B", IN6_ADDR_GEN_MODE_NONE))
        body += nested(IFLA_AF_SPEC, nested(socket.AF_INET6, mode))
        self.request(RTM_NEWLINK, 0, body, f"RTM_NEWLINK({name!r}, addrgenmode none)")

    def links(self) -> dict[str, tuple[int, int]]:
        """Every link of this namespace: ``{name: (index, flags)}`` (``ip link``)."""
        found = {}
        for _, body in self.dump(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            _, _, index, flags, _ = _IFINFOMSG.unpack_from(body)
            attrs = parse_attrs(body[_IFINFOMSG.size :])
            found[attrs[IFLA_IFNAME].rstrip(b"\0").decode()] = (index, flags)
        return found

    # -- addresses and routes (ip addr, ip route)
    def add_address(
        self, name: str, interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    ) -> None:
        """``ip addr add ADDR/PREFIX dev NAME noprefixroute`` (and ``nodad`` for IPv6:
        usable at once, no duplicate detection to wait for on a network whose addresses
        are all given out by one allocator). The route to the subnet is added apart
        (:meth:`add_subnet_route`), so that it shows in the trace."""
        index = socket.if_nametoindex(name)
        family = socket.AF_INET if interface.version == 4 else socket.AF_INET6
        flags = IFA_F_NOPREFIXROUTE | (IFA_F_NODAD if interface.version == 6 else 0)
        packed = interface.ip.packed
        body = _IFADDRMSG.pack(family, interface.network.prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        body += attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
        body += attr(IFA_FLAGS, struct.pack("=I", flags))
        extra = "noprefixroute" + (" nodad" if interface.version == 6 else "")
        self.request(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            body,
            f"RTM_NEWADDR({name!r}, {interface.with_prefixlen}, {extra})",
        )

    def add_subnet_route(
        self, name: str, interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    ) -> None:
        """``ip route add SUBNET dev NAME scope link src ADDR``: the only route of a
        container on a private network (no default route: nothing lies beyond it)."""
        index = socket.if_nametoindex(name)
        net = interface.network
        family = socket.AF_INET if net.version == 4 else socket.AF_INET6
        body = _RTMSG.pack(
            family, net.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_LINK, RTN_UNICAST, 0
        )
        body += attr(RTA_DST, net.network_address.packed)
        body += attr(RTA_OIF, struct.pack("=I", index))
        body += attr(RTA_PREFSRC, interface.ip.packed)
        self.request(
            RTM_NEWROUTE,
            NLM_F_CREATE | NLM_F_EXCL,
            body,
            f"RTM_NEWROUTE({net}, dev {name!r}, scope link, src {interface.ip})",
        )

    def addresses(self) -> list[tuple[str, str]]:
        """Every address of this namespace: ``[(interface, "addr/prefix")]`` (``ip addr``)."""
        names = {index: name for name, (index, _) in self.links().items()}
        found = []
        for _, body in self.dump(RTM_GETADDR, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            _, prefix, _, _, index = _IFADDRMSG.unpack_from(body)
            attrs = parse_attrs(body[_IFADDRMSG.size :])
            raw = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS, b""))
            address = ipaddress.ip_address(raw)
            found.append((names.get(index, str(index)), f"{address}/{prefix}"))
        return found

    def routes(self, family: int) -> list[tuple[str, str]]:
        """The main table's routes of ``family``: ``[(destination, interface)]``."""
        names = {index: name for name, (index, _) in self.links().items()}
        found = []
        for _, body in self.dump(RTM_GETROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
            _, dst_len, _, _, table, _, _, rtype, _ = _RTMSG.unpack_from(body)
            if table != RT_TABLE_MAIN or rtype != RTN_UNICAST:
                continue
            attrs = parse_attrs(body[_RTMSG.size :])
            dst = attrs.get(RTA_DST)
            where = "default" if dst is None else f"{ipaddress.ip_address(dst)}/{dst_len}"
            oif = attrs.get(RTA_OIF)
            device = names.get(struct.unpack("=I", oif)[0], "?") if oif else "?"
            found.append((where, device))
        return found
