"""The netlink client against the real kernel, in throwaway user and network namespaces.

Each test forks a child that unshares a user namespace (mapping only our own ids) and a
network namespace, runs the requests there and sends back what it saw: the test process
itself never changes namespace, and nothing reaches the host's network.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

from pytest_rootless.kernel import netlink
from pytest_rootless.kernel import syscalls as sc
from pytest_rootless.kernel.syscalls import CloneFlag as NS


def in_new_netns(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a forked child in new user and network namespaces; its JSON value, or
    the exception it raised (type, errno and text) as a dict under "raised"."""
    read_fd, write_fd = os.pipe()
    pid = sc.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_fd)
            uid, gid = os.geteuid(), os.getegid()
            sc.unshare(NS.NEWUSER | NS.NEWNET)
            sc.write_id_maps(uid, uid, gid, gid)
            try:
                out: Any = {"value": fn()}
            except OSError as exc:
                out = {"raised": [type(exc).__name__, exc.errno, str(exc)]}
            os.write(write_fd, json.dumps(out).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0, data
    return json.loads(data)


def test_attributes_are_padded_and_parsed_back() -> None:
    packed = netlink.attr(3, b"eth0\0") + netlink.attr(5, b"abcd") + netlink.attr(7, b"x")
    assert len(netlink.attr(3, b"eth0\0")) == 12  # 4-byte header, 5 bytes, 3 of padding
    assert netlink.parse_attrs(packed) == {3: b"eth0\0", 5: b"abcd", 7: b"x"}
    nested = netlink.nested(18, netlink.attr(1, b"veth\0"))
    assert netlink.parse_attrs(nested) == {18: netlink.attr(1, b"veth\0")}


def _bridge_and_pair() -> dict[str, Any]:
    """A bridge here, a veth pair from it into a second namespace, each side as the kernel
    reports it, and the second side's addresses and routes once set."""
    first = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    with netlink.Netlink() as nl:
        nl.add_bridge("br0")
        nl.set_up("br0")
    sc.unshare(NS.NEWNET)  # a second namespace: the pair is made from here
    with netlink.Netlink() as nl:
        nl.add_veth("port", "eth0", first, "the first namespace")
        here = sorted(nl.links())
    sc.setns(first, NS.NEWNET, "the first namespace")
    v4 = ipaddress.ip_interface("10.9.0.2/24")
    v6 = ipaddress.ip_interface("fd00:9::2/64")
    with netlink.Netlink() as nl:
        nl.set_master("eth0", "br0")
        nl.set_up("eth0")
        for address in (v4, v6):
            nl.add_address("eth0", address)
            nl.add_subnet_route("eth0", address)
        links = nl.links()
        return {
            "second": here,
            "first": sorted(links),
            "eth0_up": bool(links["eth0"][1] & netlink.IFF_UP),
            "addresses": sorted(a for a in nl.addresses() if a[0] == "eth0"),
            "routes4": nl.routes(socket.AF_INET),
            "routes6": [r for r in nl.routes(socket.AF_INET6) if r[0].startswith("fd00")],
        }


def test_a_bridge_a_veth_pair_across_namespaces_addresses_and_routes() -> None:
    seen = in_new_netns(_bridge_and_pair)["value"]
    assert seen["second"] == ["lo", "port"]
    assert seen["first"] == ["br0", "eth0", "lo"]
    assert seen["eth0_up"]
    assert ["eth0", "10.9.0.2/24"] in seen["addresses"]
    assert ["eth0", "fd00:9::2/64"] in seen["addresses"]
    assert seen["routes4"] == [["10.9.0.0/24", "eth0"]]  # the subnet, and no default route
    assert seen["routes6"] == [["fd00:9::/64", "eth0"]]


def _twice() -> None:
    with netlink.Netlink() as nl:
        nl.add_bridge("br0")
        nl.add_bridge("br0")


def test_a_refusal_names_the_request_and_the_errno() -> None:
    name, err, text = in_new_netns(_twice)["raised"]
    assert (name, err) == ("NetlinkError", errno.EEXIST)
    assert "RTM_NEWLINK('br0', type bridge)" in text


def test_without_capabilities_the_kernel_refuses() -> None:
    def unprivileged() -> None:
        sc.cap_drop_all(sc.cap_last_cap())
        with netlink.Netlink() as nl:
            nl.add_bridge("br0")

    name, err, _ = in_new_netns(unprivileged)["raised"]
    assert (name, err) == ("NetlinkError", errno.EPERM)


def test_links_can_go_down_and_up() -> None:
    def flap() -> list[bool]:
        states = []
        with netlink.Netlink() as nl:
            nl.add_bridge("br0")
            for up in (True, False, True):
                nl.set_up("br0", up)
                states.append(bool(nl.links()["br0"][1] & netlink.IFF_UP))
        return states

    assert in_new_netns(flap)["value"] == [True, False, True]


@pytest.mark.skipif(not os.path.isdir("/proc/sys/net/ipv6"), reason="no IPv6 in this kernel")
def test_addrgenmode_none_leaves_a_port_without_a_link_local_address() -> None:
    def ports() -> list[list[str]]:
        here = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        with netlink.Netlink() as nl:
            nl.add_veth("quiet", "chatty", here, "this namespace")  # a pair: both have carrier
            nl.set_addr_gen_mode_none("quiet")
            nl.set_up("quiet")
            nl.set_up("chatty")
            return [list(a) for a in nl.addresses() if a[1].startswith("fe80")]

    link_local = in_new_netns(ports)["value"]
    assert [name for name, _ in link_local] == ["chatty"]
