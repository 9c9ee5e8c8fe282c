"""Both ends of a private network that run after fork: the **holder** (forked from pytest:
it owns the network's user namespace ``H``, its network namespace ``B`` and the bridge in
it, and plugs members in) and a member's init joining it. The design is in
:mod:`pytest_rootless.runtime.network`, the host's side."""

from __future__ import annotations

import ipaddress
import os
import select
import socket
from typing import NoReturn

from ...kernel import libc, netlink
from ...kernel import syscalls as sc
from ...kernel.syscalls import CloneFlag as NS
from ...protocol import framing
from ...protocol.messages import Holder, Member
from ..spec import Join
from .leave import run_then_exit


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
        framing.send_packet(control, {"kind": Holder.NETWORK_UP, "trace": _steps()}, [userns])
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
    message = framing.decode_packet(data)
    if message["kind"] == Holder.MEMBER and len(fds) == 1:
        members[fds[0]] = int(message["index"])
        poller.register(fds[0], select.POLLIN)
        return True
    for fd in fds:
        os.close(fd)
    try:
        if message["kind"] != Holder.LINK:
            raise NetworkError(f"unknown request {message['kind']!r}")
        nl.set_up(f"veth{int(message['index'])}", bool(message["up"]))
        reply: framing.Message = {"kind": Holder.LINKED, "trace": _steps()}
    except Exception as exc:
        reply = {"kind": Holder.FAILED, "message": str(exc), "trace": _steps()}
    framing.send_packet(control, reply)
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
            if not data or framing.decode_packet(data)["kind"] != Member.JOIN or len(fds) != 1:
                raise NetworkError("a member sent no network namespace")
            veth = f"veth{index}"
            nl.add_veth(veth, IFNAME, fds[0], "the container's network namespace")
            if ipv6:
                nl.set_addr_gen_mode_none(veth)
            nl.set_master(veth, BRIDGE)
            nl.set_up(veth)
            reply: framing.Message = {"kind": Member.JOINED, "trace": _steps()}
        except Exception as exc:
            reply = {"kind": Member.FAILED, "message": str(exc), "trace": _steps()}
        finally:
            for fd in fds:
                os.close(fd)
        try:
            framing.send_packet(channel, reply)
        except OSError:
            pass


def holder_main(control_fd: int, trace: bool) -> NoReturn:
    """Entry point of a named network's holder process, right after fork (see
    hold). Never returns."""
    run_then_exit("network", control_fd, lambda: hold(control_fd, trace))


BRIDGE = "br0"


IFNAME = "eth0"


#: How long the host and a joining init wait for the holder's answer.
TIMEOUT = 30.0


class NetworkError(RuntimeError):
    """A private network could not be made or changed."""


def has_ipv6() -> bool:
    """Whether this kernel has IPv6 (it is missing when booted with ``ipv6.disable=1``)."""
    return os.path.isdir("/proc/sys/net/ipv6")


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
            framing.send_packet(channel, {"kind": Member.JOIN}, [netns])
        finally:
            os.close(netns)
        reply = receive(channel, TIMEOUT, f"network {spec.network!r}: the holder")[0]
    finally:
        channel.close()
    for line in reply.get("trace", []):
        libc.trace_note(f"[network {spec.network!r}] {line}")
    if reply["kind"] != Member.JOINED:
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


def receive(sock: socket.socket, timeout: float, who: str) -> tuple[framing.Message, list[int]]:
    ready, _, _ = select.select([sock], [], [], timeout)
    if not ready:
        raise NetworkError(f"{who} did not answer within {timeout:g} s")
    data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 4, socket.MSG_CMSG_CLOEXEC)
    if not data:
        raise NetworkError(f"{who} is gone")
    try:
        return framing.decode_packet(data), fds
    except NetworkError:
        for fd in fds:
            os.close(fd)
        raise
