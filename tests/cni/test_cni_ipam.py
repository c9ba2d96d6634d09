"""IPAM core and disk store (host-local compatible), no root needed."""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from cni import errors, ipam
from cni.errors import CNIError
from cni.ipam_main import handle
from cni.spec import Attachment, Request, parse_netconf
from cni.store import DiskStore

ip = ipaddress.ip_address


def conf_of(ipam_block: dict[str, Any], **top: Any) -> Any:
    return parse_netconf(json.dumps({"cniVersion": "1.0.0", "name": "net", "type": "x", "ipam": ipam_block,
                                     **top}).encode())


def cfg(ipam_block: dict[str, Any], cni_args: str = "", **top: Any) -> ipam.IPAMConfig:
    req = Request("ADD", "c", "/n", "eth0", tuple(tuple(p.split("=", 1)) for p in cni_args.split(";") if p))  # type: ignore[misc]
    return ipam.parse_ipam_config(conf_of(ipam_block, **top), req)


@pytest.mark.parametrize("block,start,end,gw", [
    ({"subnet": "10.1.0.0/24"}, "10.1.0.1", "10.1.0.254", "10.1.0.1"),
    ({"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20"}, "10.1.0.10", "10.1.0.20", "10.1.0.1"),
    ({"subnet": "10.1.0.0/24", "gateway": "10.1.0.254"}, "10.1.0.1", "10.1.0.254", "10.1.0.254"),
    ({"subnet": "fd00::/120"}, "fd00::1", "fd00::ff", "fd00::1"),
])
def test_range_defaults(block: dict[str, str], start: str, end: str, gw: str) -> None:
    r = cfg(block).ranges[0][0]
    assert (str(r.range_start), str(r.range_end), str(r.gateway)) == (start, end, gw)


@pytest.mark.parametrize("block,needle", [
    ({}, "no IP ranges"),
    ({"subnet": "10.1.0.5/24"}, "host bits set"),
    ({"subnet": "10.1.0.0/31"}, "too small"),
    ({"subnet": "banana"}, "invalid subnet"),
    ({"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.1"}, "not in network"),
    ({"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.9", "rangeEnd": "10.1.0.5"}, "after RangeEnd"),
    ({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "10.1.0.0/25"}]]}, "overlaps"),
    ({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/24"}]]}, "range set 0 overlaps with 1"),
    ({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}, "mixed address families"),
    ({"ranges": [[{"gateway": "10.1.0.1"}]]}, "missing 'subnet'"),
    ({"ranges": [[]]}, "empty range set"),
])
def test_config_errors(block: dict[str, Any], needle: str) -> None:
    with pytest.raises(CNIError) as info:
        cfg(block)
    assert info.value.code == errors.INVALID_CONFIG and needle in str(info.value)


def test_requested_ips_from_all_sources() -> None:
    c = cfg({"subnet": "10.1.0.0/24"}, cni_args="IgnoreUnknown=1;IP=10.1.0.7,10.1.0.8",
            runtimeConfig={"ips": ["10.1.0.9/24"]}, args={"cni": {"ips": ["10.1.0.10"]}})
    assert [str(a) for a in c.requested] == ["10.1.0.7", "10.1.0.8", "10.1.0.10", "10.1.0.9"]


def test_runtime_ip_ranges_replace_static_ranges() -> None:
    c = cfg({"ranges": [[{"subnet": "10.1.0.0/24"}]]}, runtimeConfig={"ipRanges": [[{"subnet": "10.9.0.0/24"}]]})
    assert str(c.ranges[0][0].subnet) == "10.9.0.0/24"


def test_legacy_subnet_comes_first() -> None:
    c = cfg({"subnet": "10.1.0.0/24", "ranges": [[{"subnet": "fd00::/64"}]]})
    assert [str(rs[0].subnet) for rs in c.ranges] == ["10.1.0.0/24", "fd00::/64"]


# ---------------------------------------------------------------- allocator

SMALL = {"subnet": "10.1.0.0/29"}  # usable .1-.6, gateway .1 -> 5 addresses


def test_round_robin_skips_gateway_and_wraps() -> None:
    store = ipam.MemoryStore()
    c = cfg(SMALL)
    got = [str(ipam.allocate(c, store, f"c{i}", "eth0").ips[0].address) for i in range(5)]
    assert got == ["10.1.0.2/29", "10.1.0.3/29", "10.1.0.4/29", "10.1.0.5/29", "10.1.0.6/29"]
    with pytest.raises(CNIError) as info:
        ipam.allocate(c, store, "c5", "eth0")
    assert info.value.code == errors.NO_ADDRESSES and "no IP addresses available" in str(info.value)
    ipam.release(store, "c1", "eth0")  # frees .3; round robin continues after .6 and wraps to .3
    assert str(ipam.allocate(c, store, "c6", "eth0").ips[0].address) == "10.1.0.3/29"


def test_round_robin_does_not_reuse_just_released() -> None:
    store = ipam.MemoryStore()
    c = cfg({"subnet": "10.1.0.0/24"})
    a = ipam.allocate(c, store, "a", "eth0").ips[0].address
    ipam.release(store, "a", "eth0")
    b = ipam.allocate(c, store, "b", "eth0").ips[0].address
    assert a != b and int(b.ip) == int(a.ip) + 1


def test_result_has_gateway_routes_dns() -> None:
    c = cfg({"subnet": "10.1.0.0/24", "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.96.0.10"]}})
    res = ipam.allocate(c, ipam.MemoryStore(), "a", "eth0")
    assert str(res.ips[0].gateway) == "10.1.0.1" and str(res.routes[0].dst) == "0.0.0.0/0"
    assert res.dns == {"nameservers": ["10.96.0.10"]}


def test_duplicate_allocation_rejected_other_ifname_fine() -> None:
    store, c = ipam.MemoryStore(), cfg(SMALL)
    ipam.allocate(c, store, "a", "eth0")
    with pytest.raises(CNIError) as info:
        ipam.allocate(c, store, "a", "eth0")
    assert info.value.code == errors.DUPLICATE_ALLOCATION and "duplicate allocation is not allowed" in str(info.value)
    ipam.allocate(c, store, "a", "net1")


def test_requested_ip() -> None:
    store = ipam.MemoryStore()
    c = cfg(SMALL, cni_args="IP=10.1.0.5")
    assert str(ipam.allocate(c, store, "a", "eth0").ips[0].address) == "10.1.0.5/29"
    with pytest.raises(CNIError, match="not available"):
        ipam.allocate(c, store, "b", "eth0")
    with pytest.raises(CNIError, match="gateway"):
        ipam.allocate(cfg(SMALL, cni_args="IP=10.1.0.1"), store, "c", "eth0")
    with pytest.raises(CNIError, match="failed to allocate all requested IPs: 10.9.9.9"):
        ipam.allocate(cfg(SMALL, cni_args="IP=10.9.9.9"), store, "d", "eth0")
    assert Attachment("d", "eth0") not in store.allocations().values()  # nothing leaked


def test_dual_stack_one_ip_per_set_all_or_nothing() -> None:
    store = ipam.MemoryStore()
    c = cfg({"ranges": [[{"subnet": "10.1.0.0/30"}], [{"subnet": "fd00::/120"}]]})
    res = ipam.allocate(c, store, "a", "eth0")
    assert [str(i.address) for i in res.ips] == ["10.1.0.2/30", "fd00::2/120"]
    with pytest.raises(CNIError, match="range 0"):   # v4 set exhausted: the v6 address is not kept
        ipam.allocate(c, store, "b", "eth0")
    assert sorted(str(a) for a in store.allocations()) == ["10.1.0.2", "fd00::2"]


def test_multi_range_set_moves_to_next_range() -> None:
    store = ipam.MemoryStore()
    c = cfg({"ranges": [[{"subnet": "10.1.0.0/30"}, {"subnet": "10.2.0.0/30"}]]})
    got = [str(ipam.allocate(c, store, f"c{i}", "eth0").ips[0].address) for i in range(2)]
    assert got == ["10.1.0.2/30", "10.2.0.2/30"]


def test_gc_check_status() -> None:
    store, c = ipam.MemoryStore(), cfg(SMALL)
    for i in range(5):
        ipam.allocate(c, store, f"c{i}", "eth0")
    with pytest.raises(CNIError) as info:
        ipam.status(c, store)
    assert info.value.code == errors.NOT_AVAILABLE
    ipam.check(store, "c1", "eth0", [ip("10.1.0.3")])
    with pytest.raises(CNIError):
        ipam.check(store, "c1", "eth0", [ip("10.1.0.4")])
    with pytest.raises(CNIError):
        ipam.check(store, "zz", "eth0")
    released = ipam.gc(store, frozenset({Attachment("c0", "eth0"), Attachment("c4", "net1")}))
    assert [str(a) for a in released] == ["10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
    ipam.status(c, store)
    assert ipam.release(store, "nobody", "eth0") == []


# ---------------------------------------------------------------- disk store

def test_disk_store_layout_matches_reference(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path), "net")
    c = cfg({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]})
    ipam.allocate(c, store, "abc", "eth0")
    d = tmp_path / "net"
    assert sorted(os.listdir(d)) == ["10.1.0.2", "fd00::2", "last_reserved_ip.0", "last_reserved_ip.1", "lock"]
    assert (d / "10.1.0.2").read_bytes() == b"abc\r\neth0"
    assert (d / "last_reserved_ip.1").read_text() == "fd00::2"
    assert store.allocations()[ip("fd00::2")] == Attachment("abc", "eth0")
    ipam.release(store, "abc", "eth0")
    assert sorted(os.listdir(d)) == ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]
    assert store.writable() == ""


def test_disk_store_threads_never_share_an_ip(tmp_path: Path) -> None:
    c = cfg({"subnet": "10.1.0.0/24"})
    got: list[str] = []
    def worker(n: int) -> None:
        for k in range(5):
            res = ipam.allocate(c, DiskStore(str(tmp_path), "net"), f"c{n}-{k}", "eth0")
            got.append(str(res.ips[0].address))
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 30 and len(set(got)) == 30


def test_ipam_plugin_handle_add_check_del(tmp_path: Path) -> None:
    raw = {"cniVersion": "1.0.0", "name": "net", "type": "podnet-ipam",
           "ipam": {"type": "podnet-ipam", "subnet": "10.1.0.0/24", "dataDir": str(tmp_path)}}
    conf = parse_netconf(json.dumps(raw).encode())
    out = handle(Request("ADD", "abc", "/n", "eth0"), conf)
    assert out is not None and out["ips"] == [{"address": "10.1.0.2/24", "gateway": "10.1.0.1"}]
    check_conf = parse_netconf(json.dumps({**raw, "prevResult": out}).encode(), "CHECK")
    handle(Request("CHECK", "abc", "/n", "eth0"), check_conf)
    handle(Request("DEL", "abc", "/n", "eth0"), conf)
    handle(Request("DEL", "abc", "/n", "eth0"), conf)  # repeated DEL succeeds
    with pytest.raises(CNIError):
        handle(Request("CHECK", "abc", "/n", "eth0"), check_conf)
