"""The host's bookkeeping of named networks: names, subnets, addresses, hosts files."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pytest_rootless.runtime import network
from pytest_rootless.runtime.child import holder
from pytest_rootless.runtime.options import OptionError, refuse_named_network, validate


@pytest.fixture
def networks() -> Iterator[network.Networks]:
    made = network.Networks()
    yield made
    made.close()


def test_a_name_is_a_valid_network_and_refused_for_an_isolated_test() -> None:
    options = validate({"network": "lab-1.b_2"})
    assert options.network == "lab-1.b_2"
    with pytest.raises(OptionError, match="isolated test is a single container"):
        refuse_named_network(options)
    refuse_named_network(validate({"network": "none"}))
    refuse_named_network(validate({"network": "host"}))
    with pytest.raises(OptionError, match="network"):
        validate({"network": "x" * 65})


def test_members_get_addresses_in_order_and_networks_get_subnets(
    networks: network.Networks,
) -> None:
    lab = networks.get("lab")
    first, second = lab.add("a"), lab.add("b")
    other = networks.get("other").add("a")  # the same name on another network: fine
    assert networks.get("lab") is lab
    assert [str(m.address) for m in (first, second, other)] == [
        "198.18.0.2/24",
        "198.18.0.3/24",
        "198.18.1.2/24",
    ]
    for member in (first, second, other):
        assert member.address.network.subnet_of(network.IPV4_BLOCK)
    if holder.has_ipv6():
        assert str(second.address6) == "fd52:6f6f:746c::3/64"
        assert str(other.address6) == "fd52:6f6f:746c:1::2/64"
    assert networks.describe()["lab"]["members"] == {"a": "198.18.0.2", "b": "198.18.0.3"}


def test_the_hosts_file_lists_every_member_and_only_grows(networks: network.Networks) -> None:
    lab = networks.get("lab")
    with open(lab.hosts_file) as f:
        assert f.read() == network.HOSTS_HEADER
    lab.add("server")
    with open(lab.hosts_file) as f:
        before = f.read()
    lab.add("client")
    with open(lab.hosts_file) as f:
        after = f.read()
    assert after.startswith(before)
    lines = [line.split("\t") for line in after.splitlines()[2:]]
    names = {name for _, name in lines}
    assert names == {"server", "client"}
    assert ["198.18.0.2", "server"] in lines
    assert ["198.18.0.3", "client"] in lines
    other = networks.get("other")
    with open(other.hosts_file) as f:
        assert "server" not in f.read()


def test_a_hostname_twice_on_one_network_is_refused(networks: network.Networks) -> None:
    lab = networks.get("lab")
    lab.add("sandbox")
    with pytest.raises(ValueError, match="has a container named 'sandbox' already"):
        lab.add("sandbox")


def test_closing_removes_the_hosts_files(networks: network.Networks) -> None:
    path = networks.get("lab").hosts_file
    networks.close()
    assert not os.path.exists(path)
