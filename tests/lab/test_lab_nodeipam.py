"""Node IPAM allocator core (controlplane/nodeipam.py)."""

import ipaddress

import pytest

from controlplane.nodeipam import CIDRAllocator, NodeIPAMError, rebuild


def test_allocates_consecutive_24s_from_default_cluster_cidr() -> None:
    a = CIDRAllocator("10.244.0.0/16")
    assert [str(a.allocate()) for _ in range(3)] == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
    assert a.used == 3


def test_release_and_reuse_round_robin() -> None:
    a = CIDRAllocator("10.244.0.0/16")
    first = a.allocate()
    a.allocate()
    assert a.release(first)
    assert not a.release(first)
    # round-robin: the freed block is reused only after the rest
    assert str(a.allocate()) == "10.244.2.0/24"


def test_exhaustion_names_the_cidr() -> None:
    a = CIDRAllocator("10.0.0.0/23", 24)
    a.allocate(), a.allocate()
    with pytest.raises(NodeIPAMError, match="10.0.0.0/23"):
        a.allocate()


def test_rebuild_from_existing_nodes() -> None:
    a = CIDRAllocator("10.244.0.0/16")
    nodes = [
        {"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}},
        {"metadata": {"name": "n2"}, "spec": {}},
        {"metadata": {"name": "n0"}, "spec": {"podCIDR": "10.244.5.0/24"}},
    ]
    assert rebuild(a, nodes) == ["n2"]
    assert a.used == 2
    got = {str(a.allocate()) for _ in range(5)}
    assert "10.244.0.0/24" not in got and "10.244.5.0/24" not in got


@pytest.mark.parametrize("cidr,mask", [("nonsense", None), ("10.0.0.0/24", 16), ("10.0.0.0/24", 33)])
def test_bad_config(cidr: str, mask: int | None) -> None:
    with pytest.raises(NodeIPAMError):
        CIDRAllocator(cidr, mask)


def test_foreign_cidr_is_not_occupied() -> None:
    a = CIDRAllocator("10.244.0.0/16")
    assert not a.occupy("192.168.0.0/24")
    assert not a.occupy("10.244.0.0/25")
    assert a.contains(ipaddress.ip_network("10.244.9.0/24"))


def test_ipv6_default_mask() -> None:
    a = CIDRAllocator("fd00:10::/48")
    assert str(a.allocate()) == "fd00:10::/64"
