"""ClusterIP / NodePort allocation: ranges, static band, errors, updates, release, speed."""

from __future__ import annotations

import copy
import ipaddress
import time
from typing import Any

import pytest

from controlplane import errors
from controlplane.allocators import AllocationPlan, RangeFull, ServiceAllocator
from controlplane.validation import default_object


def svc(name: str = "web", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"metadata": {"name": name, "namespace": "default"},
                            "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}
    base["spec"].update(spec)
    return default_object("Service", base)


def create(alloc: ServiceAllocator, obj: dict[str, Any]) -> dict[str, Any]:
    out, plan = alloc.plan(obj, None)
    alloc.commit(plan)
    return out


def invalid(alloc: ServiceAllocator, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(errors.Invalid) as info:
        alloc.plan(obj, old)
    assert info.value.code == 422 and info.value.kind == "Service"
    return [(c.field, c.message) for c in info.value.causes]


def test_dynamic_cluster_ip_from_upper_range() -> None:
    alloc = ServiceAllocator("10.96.0.0/12")
    net = ipaddress.ip_network("10.96.0.0/12")
    band_end = net.network_address + 256  # static band: min(max(16, 2^20/16), 256) = 256
    for i in range(200):
        out = create(alloc, svc(f"s{i}"))
        ip = ipaddress.ip_address(out["spec"]["clusterIP"])
        assert ip in net and ip > band_end, ip
        assert out["spec"]["clusterIPs"] == [str(ip)]
        assert out["spec"]["ipFamilies"] == ["IPv4"] and out["spec"]["ipFamilyPolicy"] == "SingleStack"
    assert alloc.allocated_ip_count == 200


def test_static_band_used_once_upper_is_full() -> None:
    alloc = ServiceAllocator("10.0.0.0/27")  # 30 usable, band 16, first (kubernetes) reserved
    seen = set()
    for i in range(29):
        seen.add(create(alloc, svc(f"s{i}"))["spec"]["clusterIP"])
    assert len(seen) == 29
    assert "10.0.0.0" not in seen and "10.0.0.31" not in seen  # network and broadcast
    assert alloc.kubernetes_ip == "10.0.0.1" and "10.0.0.1" not in seen  # reserved for `kubernetes`
    with pytest.raises(RangeFull):
        alloc.plan(svc("full"), None)
    assert create(alloc, svc("kubernetes", clusterIP="10.0.0.1"))["spec"]["clusterIP"] == "10.0.0.1"


def test_static_requests() -> None:
    alloc = ServiceAllocator("10.96.0.0/12")
    assert create(alloc, svc("a", clusterIP="10.96.0.10"))["spec"]["clusterIP"] == "10.96.0.10"
    assert invalid(alloc, svc("b", clusterIP="10.96.0.10")) == [
        ("spec.clusterIPs[0]", 'Invalid value: []string{"10.96.0.10"}: failed to allocate IP 10.96.0.10: '
                               "provided IP is already allocated")]
    assert invalid(alloc, svc("c", clusterIP="192.168.0.1")) == [
        ("spec.clusterIPs[0]", 'Invalid value: []string{"192.168.0.1"}: failed to allocate IP 192.168.0.1: the '
                               "provided IP (192.168.0.1) is not in the valid range. The range of valid IPs is "
                               "10.96.0.0/12")]
    out, plan = alloc.plan(svc("d", clusterIP="not-an-ip"), None)  # validation reports it, not the allocator
    assert plan.empty


def test_errors_are_invalid_status() -> None:
    alloc = ServiceAllocator("10.96.0.0/12")
    create(alloc, svc("a", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}]))
    with pytest.raises(errors.Invalid) as info:
        alloc.plan(svc("x", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}]), None)
    assert info.value.message == ('Service "x" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided '
                                  "port is already allocated")


def test_headless_and_external_name_get_nothing() -> None:
    alloc = ServiceAllocator("10.96.0.0/12")
    out, plan = alloc.plan(svc("h", clusterIP="None"), None)
    assert out["spec"]["clusterIP"] == "None" and out["spec"]["clusterIPs"] == ["None"] and plan.empty
    out, plan = alloc.plan(default_object("Service", {"metadata": {"name": "e"}, "spec": {
        "type": "ExternalName", "externalName": "db.example.com"}}), None)
    assert "clusterIP" not in out["spec"] and plan.empty


def test_node_ports() -> None:
    alloc = ServiceAllocator("10.96.0.0/12")
    out = create(alloc, svc("np", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "name": "a"},
                                                           {"port": 81, "protocol": "TCP", "name": "b",
                                                            "nodePort": 30081}]))
    got = [p["nodePort"] for p in out["spec"]["ports"]]
    assert got[1] == 30081 and 30000 + 86 <= got[0] <= 32767  # dynamic from above the static band
    assert alloc.is_allocated_port(got[0]) and alloc.is_allocated_port(30081)
    assert invalid(alloc, svc("x", type="NodePort", ports=[{"port": 1, "protocol": "TCP", "nodePort": 40000}])) == [
        ("spec.ports[0].nodePort", "Invalid value: 40000: provided port is not in the valid range. The range of "
                                   "valid ports is 30000-32767")]
    assert invalid(alloc, svc("y", type="LoadBalancer", ports=[{"port": 1, "protocol": "TCP", "nodePort": 30081}])) \
        == [("spec.ports[0].nodePort", "Invalid value: 30081: provided port is already allocated")]
    # ClusterIP services get no node ports
    plain = create(alloc, svc("plain"))
    assert "nodePort" not in plain["spec"]["ports"][0]


def test_same_node_port_for_tcp_and_udp_of_one_port() -> None:
    alloc = ServiceAllocator("10.96.0.0/12")
    out = create(alloc, svc("dns", type="NodePort", ports=[{"port": 53, "protocol": "UDP", "name": "u"},
                                                            {"port": 53, "protocol": "TCP", "name": "t"}]))
    a, b = (p["nodePort"] for p in out["spec"]["ports"])
    assert a == b
    out = create(alloc, svc("dns2", type="NodePort", ports=[
        {"port": 53, "protocol": "UDP", "name": "u", "nodePort": 30053},
        {"port": 53, "protocol": "TCP", "name": "t", "nodePort": 30053}]))
    assert [p["nodePort"] for p in out["spec"]["ports"]] == [30053, 30053]


def test_load_balancer_options() -> None:
    alloc = ServiceAllocator("10.96.0.0/12")
    out = create(alloc, svc("lb", type="LoadBalancer", allocateLoadBalancerNodePorts=False))
    assert "nodePort" not in out["spec"]["ports"][0]
    out = create(alloc, svc("lb2", type="LoadBalancer", externalTrafficPolicy="Local"))
    hc = out["spec"]["healthCheckNodePort"]
    assert alloc.is_allocated_port(hc) and hc != out["spec"]["ports"][0]["nodePort"]


def test_no_side_effects_until_commit() -> None:
    alloc = ServiceAllocator("10.96.0.0/12")
    out, plan = alloc.plan(svc("a", type="NodePort"), None)
    assert not alloc.is_allocated_ip(out["spec"]["clusterIP"])
    assert not alloc.is_allocated_port(out["spec"]["ports"][0]["nodePort"])
    alloc.commit(plan)
    assert alloc.is_allocated_ip(out["spec"]["clusterIP"])
    assert alloc.is_allocated_port(out["spec"]["ports"][0]["nodePort"])


def test_update_keeps_and_releases() -> None:
    alloc = ServiceAllocator("10.96.0.0/12")
    old = create(alloc, svc("np", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "name": "a"},
                                                           {"port": 81, "protocol": "TCP", "name": "b"}]))
    ip = old["spec"]["clusterIP"]
    np_a, np_b = (p["nodePort"] for p in old["spec"]["ports"])
    # kubectl replace with a file that has neither clusterIP nor nodePorts: both kept, a new port gets one
    new = svc("np", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "name": "a"},
                                            {"port": 82, "protocol": "TCP", "name": "c"}])
    out, plan = alloc.plan(new, old)
    assert out["spec"]["clusterIP"] == ip and out["spec"]["clusterIPs"] == [ip]
    assert out["spec"]["ports"][0]["nodePort"] == np_a
    np_c = out["spec"]["ports"][1]["nodePort"]
    assert plan == AllocationPlan(allocate_ports=(np_c,), release_ports=(np_b,))
    alloc.commit(plan)
    assert not alloc.is_allocated_port(np_b) and alloc.is_allocated_port(np_c)
    # type change to ClusterIP: all node ports go
    to_cip = copy.deepcopy(out)
    to_cip["spec"]["type"] = "ClusterIP"
    out2, plan2 = alloc.plan(to_cip, out)
    assert all("nodePort" not in p for p in out2["spec"]["ports"])
    assert sorted(plan2.release_ports) == sorted([np_a, np_c]) and not plan2.release_ips
    alloc.commit(plan2)
    # type change to ExternalName: the IP goes
    to_en = copy.deepcopy(out2)
    to_en["spec"].update(type="ExternalName", externalName="x.example.com")
    out3, plan3 = alloc.plan(to_en, out2)
    assert "clusterIP" not in out3["spec"] and plan3.release_ips == (ip,)
    alloc.commit(plan3)
    assert not alloc.is_allocated_ip(ip)
    # and back: a new IP
    back = copy.deepcopy(out3)
    back["spec"]["type"] = "ClusterIP"
    out4, plan4 = alloc.plan(back, out3)
    assert out4["spec"]["clusterIP"] and len(plan4.allocate_ips) == 1


def test_update_moving_a_node_port() -> None:
    alloc = ServiceAllocator("10.96.0.0/12")
    old = create(alloc, svc("np", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30100}]))
    new = copy.deepcopy(old)
    new["spec"]["ports"][0]["nodePort"] = 30101
    out, plan = alloc.plan(new, old)
    assert plan.allocate_ports == (30101,) and plan.release_ports == (30100,)


def test_release_and_load() -> None:
    alloc = ServiceAllocator("10.96.0.0/12")
    a = create(alloc, svc("a", type="NodePort"))
    alloc.release(a)
    assert alloc.allocated_ip_count == 0 and not alloc.ports.taken
    fresh = ServiceAllocator("10.96.0.0/12")
    fresh.load([a, svc("h", clusterIP="None"), svc("out", clusterIP="1.2.3.4"), {"spec": "garbage"}])
    assert fresh.is_allocated_ip(a["spec"]["clusterIP"])
    assert fresh.is_allocated_port(a["spec"]["ports"][0]["nodePort"])
    assert fresh.allocated_ip_count == 1


def test_ipv6_cidr() -> None:
    alloc = ServiceAllocator("fd00:10:96::/112")
    out = create(alloc, svc("v6"))
    ip = ipaddress.ip_address(out["spec"]["clusterIP"])
    assert ip.version == 6 and out["spec"]["ipFamilies"] == ["IPv6"]


def test_ten_thousand_services_fast() -> None:
    alloc = ServiceAllocator("10.96.0.0/12")
    start = time.perf_counter()
    ips, ports = set(), set()
    for i in range(10_000):
        out = create(alloc, svc(f"s{i}", type="NodePort" if i < 2500 else "ClusterIP"))
        ips.add(out["spec"]["clusterIP"])
        if i < 2500:
            ports.add(out["spec"]["ports"][0]["nodePort"])
    assert len(ips) == 10_000 and len(ports) == 2500
    assert time.perf_counter() - start < 5.0


def test_single_stack_cluster_rejects_dual_stack_and_other_family() -> None:
    alloc = ServiceAllocator("10.96.0.0/12")
    assert invalid(alloc, svc("a", ipFamilyPolicy="RequireDualStack"))[0] == (
        "spec.ipFamilyPolicy", 'Invalid value: "RequireDualStack": this cluster is not configured for dual-stack '
                               "services")
    assert invalid(alloc, svc("b", ipFamilies=["IPv6"]))[0] == (
        "spec.ipFamilies[0]", 'Invalid value: "IPv6": not configured on this cluster')
    assert "spec.clusterIPs" in [f for f, _ in invalid(alloc, svc("c", clusterIPs=["10.96.0.5", "fd00::5"]))]
    assert all("not configured on this cluster" in m for _, m in invalid(alloc, svc("d", clusterIP="fd00::5")))
    out = create(alloc, svc("e", ipFamilyPolicy="PreferDualStack"))
    assert out["spec"]["ipFamilies"] == ["IPv4"] and out["spec"]["ipFamilyPolicy"] == "PreferDualStack"
