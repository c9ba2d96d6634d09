"""Change trackers (upstream servicechangetracker / endpointschangetracker semantics) and the
pure conntrack, metrics, health and status cores."""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime, timedelta, timezone

import pytest

from controlplane.model import ObjectRef, Protocol, parse_endpoint_slice, parse_service
from proxy.changes import (
    EndpointInfo, EndpointsChangeTracker, EndpointsMap, ServiceChangeTracker, ServicePortMap, ServicePortName,
    categorize_endpoints,
)
from proxy.cli import parse_duration
from proxy.conntrack import stale_entries
from proxy.errors import ProxyError
from proxy.health import ProxierHealth, go_time
from proxy.iptables.render import render
from proxy.metrics import ProxyMetrics
from proxy.status import format_status, parse_status
from tests.proxy.proxy_helpers import NODE, service, slice_, state, tcp

REF = ObjectRef("ns", "s")
SPN = ServicePortName("ns", "s", "p", Protocol.TCP)
UDP = ServicePortName("ns", "s", "dns", Protocol.UDP)


def svc(**spec: object) -> object:
    return parse_service(service("ns", "s", "172.30.0.1", [tcp("p", 80)], **spec))


def eps(*ips: str, name: str = "s-1", proto: str = "TCP", port_name: str = "p", **ep: object) -> object:
    return parse_endpoint_slice(slice_("ns", "s", [{"addresses": [ip], **ep} for ip in ips],
                                       [{"name": port_name, "port": 80, "protocol": proto}], name=name))


def test_service_tracker_merges_changes_and_drops_noops() -> None:
    t = ServiceChangeTracker()
    smap = ServicePortMap()
    assert t.update(None, svc())
    assert t.update(svc(), svc(externalIPs=["1.1.1.1"]))
    assert t.pending() == 1
    res = smap.update_from(t)
    assert res.updated_services == {REF}
    assert smap[SPN].external_ips == (ipaddress.ip_address("1.1.1.1"),)
    # update then revert before a sync: nothing pending
    assert t.update(svc(externalIPs=["1.1.1.1"]), svc()) is True
    assert t.update(svc(), svc(externalIPs=["1.1.1.1"])) is False
    assert smap.update_from(t).updated_services == frozenset()
    # delete
    t.update(svc(externalIPs=["1.1.1.1"]), None)
    assert smap.update_from(t).updated_services == {REF} and SPN not in smap


def test_service_map_reports_deleted_udp_cluster_ips() -> None:
    t = ServiceChangeTracker()
    smap = ServicePortMap()
    udp = parse_service(service("ns", "s", "172.30.0.9", [{"name": "dns", "port": 53, "protocol": "UDP"}]))
    t.update(None, udp)
    smap.update_from(t)
    t.update(udp, None)
    assert smap.update_from(t).deleted_udp_cluster_ips == {ipaddress.ip_address("172.30.0.9")}


def test_endpoints_tracker_merges_slices_and_detects_changes() -> None:
    t = EndpointsChangeTracker(NODE)
    emap = EndpointsMap()
    assert t.endpoint_slice_update(eps("10.0.0.2", name="a"))
    assert t.endpoint_slice_update(eps("10.0.0.1", "10.0.0.2", name="b"))  # duplicate 10.0.0.2 merged
    res = emap.update_from(t)
    assert res.updated_services == {REF}
    assert [str(e) for e in emap[SPN]] == ["10.0.0.1:80", "10.0.0.2:80"]
    assert not t.endpoint_slice_update(eps("10.0.0.2", name="a"))  # unchanged: no-op
    t.endpoint_slice_update(eps("10.0.0.2", name="a"), removed=True)
    assert emap.update_from(t).updated_services == frozenset()  # b still has 10.0.0.2
    t.endpoint_slice_update(eps("10.0.0.1", "10.0.0.2", name="b"), removed=True)
    assert emap.update_from(t).updated_services == {REF} and SPN not in emap


def test_endpoint_locality_and_conditions() -> None:
    t = EndpointsChangeTracker(NODE)
    emap = EndpointsMap()
    t.endpoint_slice_update(eps("10.0.0.1", nodeName=NODE, conditions={"ready": False, "serving": True,
                                                                        "terminating": True}))
    emap.update_from(t)
    (ep,) = emap[SPN]
    assert ep.is_local and not ep.ready and ep.serving and ep.terminating


def test_slice_without_service_label_is_an_error() -> None:
    bad = parse_endpoint_slice({"metadata": {"namespace": "ns", "name": "x"}, "addressType": "IPv4"})
    with pytest.raises(ProxyError, match="ns/x"):
        EndpointsChangeTracker(NODE).endpoint_slice_update(bad)


def test_trigger_times_reported_for_changed_services() -> None:
    t = EndpointsChangeTracker(NODE)
    emap = EndpointsMap()
    sl = slice_("ns", "s", [{"addresses": ["10.0.0.1"]}], [tcp("p", 80)],
                annotations={"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-02T03:04:05Z"})
    t.endpoint_slice_update(parse_endpoint_slice(sl))
    res = emap.update_from(t)
    assert res.last_change_trigger_times[REF] == [datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)]


def test_udp_stale_endpoints_and_newly_active() -> None:
    t = EndpointsChangeTracker(NODE)
    emap = EndpointsMap()
    t.endpoint_slice_update(eps("10.0.0.1", proto="UDP", port_name="dns"))
    res = emap.update_from(t)
    assert res.newly_active_udp_services == (UDP,) and res.deleted_udp_endpoints == ()
    t.endpoint_slice_update(eps("10.0.0.2", proto="UDP", port_name="dns"))
    res = emap.update_from(t)
    assert [(s, str(e)) for s, e in res.deleted_udp_endpoints] == [(UDP, "10.0.0.1:80")]
    assert res.newly_active_udp_services == ()


def test_conntrack_filters() -> None:
    smap = ServicePortMap()
    st = ServiceChangeTracker()
    st.update(None, parse_service(service("ns", "s", "172.30.0.1", [{"name": "dns", "port": 53, "protocol": "UDP",
                                                                       "nodePort": 30053}], type="NodePort",
                                          externalIPs=["192.168.1.1"])))
    svc_res = smap.update_from(st)
    et = EndpointsChangeTracker(NODE)
    emap = EndpointsMap()
    et.endpoint_slice_update(eps("10.0.0.1", proto="UDP", port_name="dns"))
    ep_res = emap.update_from(et)
    assert stale_entries(smap, svc_res, ep_res) == [
        ("--orig-dst", "172.30.0.1", "-p", "udp"), ("--orig-dst", "192.168.1.1", "-p", "udp"),
        ("-p", "udp", "--dport", "30053")]
    et.endpoint_slice_update(eps("10.0.0.2", proto="UDP", port_name="dns"))
    ep_res = emap.update_from(et)
    svc_res = smap.update_from(st)
    assert stale_entries(smap, svc_res, ep_res) == [
        ("-p", "udp", "--dport", "30053", "--dst-nat", "10.0.0.1"),
        ("--orig-dst", "172.30.0.1", "--dst-nat", "10.0.0.1", "-p", "udp"),
        ("--orig-dst", "192.168.1.1", "--dst-nat", "10.0.0.1", "-p", "udp")]


def test_categorize_cluster_and_local() -> None:
    info = ServiceChangeTracker()
    info.update(None, parse_service(service("ns", "s", "172.30.0.1", [tcp("p", 80, nodePort=30000)],
                                            type="NodePort", externalTrafficPolicy="Local")))
    smap = ServicePortMap()
    smap.update_from(info)
    ip = ipaddress.ip_address
    local = EndpointInfo(ip("10.0.0.1"), 80, is_local=True)
    remote = EndpointInfo(ip("10.0.0.2"), 80)
    cat = categorize_endpoints([remote, local], smap[SPN])
    assert cat.cluster == (remote, local) and cat.local == (local,) and cat.has_any
    assert [str(e) for e in cat.all_reachable] == ["10.0.0.1:80", "10.0.0.2:80"]


def test_metrics_exposition_names() -> None:
    m = ProxyMetrics()
    m.sync_duration.observe(0.003)
    m.restore_failures.inc()
    m.iptables_total.set(12, table="nat")
    text = m.render()
    assert 'kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.004"} 1' in text
    assert 'kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.002"} 0' in text
    assert "kubeproxy_sync_proxy_rules_iptables_restore_failures_total 1" in text
    assert 'kubeproxy_sync_proxy_rules_iptables_total{table="nat"} 12' in text
    for name in ("kubeproxy_network_programming_duration_seconds", "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                 "kubeproxy_sync_full_proxy_rules_duration_seconds", "kubeproxy_sync_partial_proxy_rules_duration_seconds",
                 "kubeproxy_sync_proxy_rules_endpoint_changes_total", "kubeproxy_sync_proxy_rules_service_changes_pending"):
        assert f"# TYPE {name} " in text


def test_health_goes_503_when_a_queued_update_stalls() -> None:
    h = ProxierHealth(timeout=60)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    h.updated(t0)
    code, body = h.healthz(t0 + timedelta(seconds=1))
    assert code == 200 and json.loads(body)["lastUpdated"] == "2026-01-01 00:00:00 +0000 UTC"
    h.queued_update(t0 + timedelta(seconds=2))
    assert h.healthz(t0 + timedelta(seconds=30))[0] == 200
    assert h.healthz(t0 + timedelta(seconds=63))[0] == 503 and h.livez(t0 + timedelta(seconds=63))[0] == 503
    h.updated(t0 + timedelta(seconds=64))
    assert h.healthz(t0 + timedelta(seconds=65))[0] == 200
    assert go_time(datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc)) == "2026-01-01 00:00:00.5 +0000 UTC"


def test_status_from_save_with_counters() -> None:
    st = state([service("ns", "s", "172.30.0.1", [tcp("p", 80, nodePort=30001)], type="NodePort"),
                service("ns", "empty", "172.30.0.2", [tcp("p", 80)])],
               [slice_("ns", "s", [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}], [tcp("p", 8080)])])
    dump = "\n".join(("[7:420] " + ln if "DNAT --to-destination 10.0.0.1" in ln else
                      "[3:180] " + ln if ln.startswith("-A") else ln) for ln in render(st).text.splitlines())
    statuses = parse_status(dump)
    assert [s.name for s in statuses] == ["ns/empty:p", "ns/s:p"]
    s = statuses[1]
    assert ("cluster IP", "172.30.0.1:80", 3, 180) in s.frontends and ("node port", "*:30001", 3, 180) in s.frontends
    assert [(e.endpoint, e.packets) for e in s.endpoints] == [("10.0.0.1:8080", 7), ("10.0.0.2:8080", 3)]
    assert statuses[0].note == "has no endpoints" and statuses[0].rejected == 3
    out = format_status(statuses)
    assert "10.0.0.1:8080" in out and "(no endpoints)" in out


def test_parse_duration() -> None:
    assert parse_duration("1s") == 1 and parse_duration("500ms") == 0.5 and parse_duration("1m30s") == 90
    assert parse_duration("2") == 2
    with pytest.raises(Exception, match="invalid duration"):
        parse_duration("soon")


def test_proxier_ignores_unparsable_objects() -> None:
    from proxy.iptables.backend import Iptables
    from proxy.iptables.proxier import Proxier
    from proxy.iptables.render import RenderOptions

    p = Proxier(NODE, Iptables("nft", netns="unused"), RenderOptions(), conntrack_cleanup=False)
    p.on_service_add(service("ns", "bad", "172.30.0.1", [{"name": "p", "port": 80, "protocol": "ICMP"}]))
    p.on_slice_add({"metadata": {"namespace": "ns", "name": "x", "labels": {"kubernetes.io/service-name": "s"}},
                    "addressType": "IPv4", "ports": [{"port": 1, "protocol": "BOGUS"}]})
    assert p.service_changes.pending() == 0 and p.endpoint_changes.pending() == 0
