# mypy: disable-error-code="index"
"""Table-driven tests of the pure core: reconcile(service, pods, existing) -> Desired. No server."""

from __future__ import annotations

import copy
import itertools
import random
from datetime import datetime, timezone
from typing import Any

import pytest

from controlplane.model import parse_pod, parse_service
from endpoints.core import EndpointsError, format_trigger_time, parse_time
from endpoints.reconcile import Action, Desired, Existing, reconcile

NS = "default"
UID = "svc-uid-1"
T0 = datetime(2026, 11, 24, 8, 30, 0, 123456, tzinfo=timezone.utc)
_names = itertools.count(1)


def svc(name: str = "web", *, selector: dict[str, str] | None = None, ports: list[dict[str, Any]] | None = None,
        cluster_ip: str = "10.96.0.10", families: list[str] | None = None, labels: dict[str, str] | None = None,
        type_: str = "ClusterIP", publish: bool = False, no_selector: bool = False, uid: str = UID,
        traffic: str = ""):
    spec: dict[str, Any] = {"type": type_, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                            "ports": ports if ports is not None else [{"name": "http", "port": 80,
                                                                       "targetPort": 8080}]}
    if not no_selector:
        spec["selector"] = selector or {"app": "web"}
    if families:
        spec["ipFamilies"] = families
    if publish:
        spec["publishNotReadyAddresses"] = True
    if traffic:
        spec["trafficDistribution"] = traffic
    if type_ == "ExternalName":
        spec = {"type": "ExternalName", "externalName": "example.com"}
    return parse_service({"metadata": {"name": name, "namespace": NS, "uid": uid, "labels": labels or {}},
                          "spec": spec})


def pod(name: str, ip: str | list[str] | None = "10.0.0.1", *, ready: bool = True, phase: str = "Running",
        labels: dict[str, str] | None = None, ns: str = NS, node: str = "n1", terminating: bool = False,
        ports: list[dict[str, Any]] | None = None, hostname: str = "", subdomain: str = "", uid: str = ""):
    ips = [ip] if isinstance(ip, str) else (ip or [])
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": uid or f"uid-{name}",
                            "labels": labels if labels is not None else {"app": "web"}}
    if terminating:
        meta["deletionTimestamp"] = "2026-11-24T08:30:00Z"
    spec: dict[str, Any] = {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    status: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ips:
        status["podIP"] = ips[0]
        status["podIPs"] = [{"ip": i} for i in ips]
    return parse_pod({"metadata": meta, "spec": spec, "status": status})


def pods(n: int, *, start: int = 1, **kw: Any) -> list[Any]:
    return [pod(f"p{i}", f"10.0.{i // 250}.{i % 250 + 1}", **kw) for i in range(start, start + n)]


def apply(existing: Existing, d: Desired) -> Existing:
    """What a server would hold after the plan: names for created slices, resourceVersions bumped."""
    slices = {s["metadata"]["name"]: s for s in existing.slices}
    for s in d.delete:
        del slices[s["metadata"]["name"]]
    for s in d.update:
        new = copy.deepcopy(s)
        new["metadata"]["resourceVersion"] = str(next(_names))
        slices[s["metadata"]["name"]] = new
    for s in d.create:
        new = copy.deepcopy(s)
        new["metadata"]["name"] = new["metadata"].pop("generateName") + f"x{next(_names)}"
        new["metadata"]["resourceVersion"] = str(next(_names))
        slices[new["metadata"]["name"]] = new
    ep = existing.endpoints
    if d.endpoints_action in (Action.CREATE, Action.UPDATE):
        ep = copy.deepcopy(d.endpoints)
    elif d.endpoints_action is Action.DELETE:
        ep = None
    return Existing(endpoints=ep, slices=tuple(slices.values()))


def converge(service, pod_list, existing=Existing(), **kw) -> tuple[Existing, Desired]:
    d = reconcile(service, pod_list, existing, **kw)
    return apply(existing, d), d


def eps(state: Existing) -> list[dict[str, Any]]:
    return [e for s in state.slices for e in s["endpoints"]]


def ips_of(state: Existing, field: str = "addresses") -> list[str]:
    return sorted(a["ip"] for s in state.endpoints["subsets"] for a in s.get(field, []))


def real_slices(state: Existing) -> list[dict[str, Any]]:
    return [s for s in state.slices if s["endpoints"]]


# ------------------------------------------------------------------ which Services are managed

@pytest.mark.parametrize("service", [svc(no_selector=True), svc(type_="ExternalName")], ids=["no-selector",
                                                                                            "external-name"])
def test_unmanaged_services_get_nothing_and_user_objects_are_untouched(service) -> None:
    user_ep = {"metadata": {"name": "web", "namespace": NS, "labels": {}}, "subsets": [{"addresses": [{"ip": "1.2.3.4"}]}]}
    user_slice = {"metadata": {"name": "web-user", "namespace": NS, "labels": {
        "kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "me"}}, "addressType": "IPv4"}
    d = reconcile(service, pods(3), Existing(user_ep, (user_slice,)))
    assert not d.changed


def test_service_losing_selector_deletes_only_managed_objects() -> None:
    state, _ = converge(svc(), pods(2))
    user_slice = {"metadata": {"name": "web-user", "namespace": NS, "labels": {
        "kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "someone-else"}}}
    d = reconcile(svc(no_selector=True), pods(2), Existing(state.endpoints, state.slices + (user_slice,)))
    assert d.endpoints_action is Action.DELETE
    assert {s["metadata"]["name"] for s in d.delete} == {s["metadata"]["name"] for s in state.slices}


def test_deleted_service_deletes_managed_objects() -> None:
    state, _ = converge(svc(), pods(2))
    d = reconcile(None, [], state)
    assert d.endpoints_action is Action.DELETE and len(d.delete) == 1 and not d.create


# ------------------------------------------------------------------ basic shape

def test_basic_slice_and_endpoints_shape() -> None:
    service = svc(labels={"team": "a"})
    state, d = converge(service, pods(3), trigger_time=T0)
    assert len(d.create) == 1 and d.endpoints_action is Action.CREATE
    sl = d.create[0]
    assert sl["apiVersion"] == "discovery.k8s.io/v1" and sl["kind"] == "EndpointSlice"
    assert sl["metadata"]["generateName"] == "web-" and sl["metadata"]["namespace"] == NS
    assert sl["metadata"]["labels"] == {"kubernetes.io/service-name": "web", "team": "a",
                                        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    assert sl["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": UID,
                                                  "controller": True, "blockOwnerDeletion": True}]
    assert sl["metadata"]["annotations"] == {"endpoints.kubernetes.io/last-change-trigger-time":
                                             "2026-11-24T08:30:00.123456Z"}
    assert sl["addressType"] == "IPv4"
    assert sl["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert sl["endpoints"][0] == {
        "addresses": ["10.0.0.2"], "conditions": {"ready": True, "serving": True, "terminating": False},
        "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": NS, "name": "p1", "uid": "uid-p1"}}
    ep = d.endpoints
    assert ep["metadata"]["name"] == "web" and ep["metadata"]["labels"] == {
        "team": "a", "endpoints.kubernetes.io/managed-by": "endpoint-controller"}
    assert ep["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"] == \
        "2026-11-24T08:30:00.123456Z"
    assert ep["subsets"] == [{"addresses": [
        {"ip": f"10.0.0.{i + 1}", "nodeName": "n1",
         "targetRef": {"kind": "Pod", "namespace": NS, "name": f"p{i}", "uid": f"uid-p{i}"}} for i in (1, 2, 3)],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]


@pytest.mark.parametrize("p,counted", [
    (pod("a", None), False),                               # no IP yet
    (pod("a", phase="Succeeded"), False),                  # terminal
    (pod("a", phase="Failed"), False),
    (pod("a", phase="Pending"), True),                     # has an IP, not terminal
    (pod("a", labels={"app": "other"}), False),            # selector does not match
    (pod("a", ns="other"), False),                         # other namespace
])
def test_which_pods_count(p, counted: bool) -> None:
    d = reconcile(svc(), [p])
    assert bool(eps(apply(Existing(), d))) is counted
    assert bool(d.endpoints["subsets"]) is counted


def test_not_ready_pods() -> None:
    state, _ = converge(svc(), [pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready=False)])
    assert ips_of(state) == ["10.0.0.1"] and ips_of(state, "notReadyAddresses") == ["10.0.0.2"]
    conds = {e["targetRef"]["name"]: e["conditions"] for e in eps(state)}
    assert conds["b"] == {"ready": False, "serving": False, "terminating": False}


@pytest.mark.parametrize("publish,ready,want_ep,want_cond", [
    (False, True, None, {"ready": False, "serving": True, "terminating": True}),
    (False, False, None, {"ready": False, "serving": False, "terminating": True}),
    (True, True, "addresses", {"ready": True, "serving": True, "terminating": True}),
    (True, False, "addresses", {"ready": True, "serving": False, "terminating": True}),
])
def test_terminating_pods(publish: bool, ready: bool, want_ep: str | None, want_cond: dict[str, bool]) -> None:
    state, _ = converge(svc(publish=publish), [pod("t", "10.0.0.9", ready=ready, terminating=True)])
    assert eps(state)[0]["conditions"] == want_cond
    if want_ep is None:
        assert state.endpoints["subsets"] == []
    else:
        assert ips_of(state, want_ep) == ["10.0.0.9"]


def test_publish_not_ready_makes_unready_pods_ready() -> None:
    state, _ = converge(svc(publish=True), [pod("a", ready=False)])
    assert ips_of(state) == ["10.0.0.1"] and eps(state)[0]["conditions"]["ready"] is True
    assert eps(state)[0]["conditions"]["serving"] is False


# ------------------------------------------------------------------ ports

NAMED = [{"name": "http", "port": 80, "targetPort": "web"}]


def test_named_target_port_resolves_per_pod_and_splits_slices() -> None:
    a = pod("a", "10.0.0.1", ports=[{"name": "web", "containerPort": 8080}])
    b = pod("b", "10.0.0.2", ports=[{"name": "web", "containerPort": 9090}])
    c = pod("c", "10.0.0.3", ports=[{"name": "web", "containerPort": 8080}])
    u = pod("u", "10.0.0.4", ports=[{"name": "web", "containerPort": 7070, "protocol": "UDP"}])  # wrong protocol
    state, _ = converge(svc(ports=NAMED), [a, b, c, u])
    by_port = {tuple(p["port"] for p in s["ports"]): sorted(e["targetRef"]["name"] for e in s["endpoints"])
               for s in state.slices}
    assert by_port == {(8080,): ["a", "c"], (9090,): ["b"], (): ["u"]}
    subsets = {s["ports"][0]["port"]: [x["ip"] for x in s["addresses"]] for s in state.endpoints["subsets"]}
    assert subsets == {8080: ["10.0.0.1", "10.0.0.3"], 9090: ["10.0.0.2"]}  # u offers no port: left out


def test_endpoints_subsets_repacked_by_port_set() -> None:
    ports = [{"name": "http", "port": 80, "targetPort": "web"}, {"name": "m", "port": 9100, "targetPort": 9100}]
    a = pod("a", "10.0.0.1", ports=[{"name": "web", "containerPort": 8080}])
    b = pod("b", "10.0.0.2")
    state, _ = converge(svc(ports=ports), [a, b])
    got = sorted((tuple(p["name"] for p in s["ports"]), tuple(x["ip"] for x in s["addresses"]))
                 for s in state.endpoints["subsets"])
    assert got == [(("http",), ("10.0.0.1",)), (("m",), ("10.0.0.1", "10.0.0.2"))]
    slice_ports = sorted(tuple(p["name"] for p in s["ports"]) for s in state.slices)
    assert slice_ports == [("http", "m"), ("m",)]


def test_sidecar_init_container_ports_resolve() -> None:
    raw = {"metadata": {"name": "s", "namespace": NS, "uid": "u", "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "c"}], "initContainers": [
               {"name": "side", "restartPolicy": "Always", "ports": [{"name": "web", "containerPort": 8081}]},
               {"name": "init", "ports": [{"name": "web", "containerPort": 1}]}]},
           "status": {"phase": "Running", "podIP": "10.0.0.5", "conditions": [{"type": "Ready", "status": "True"}]}}
    state, _ = converge(svc(ports=NAMED), [parse_pod(raw)])
    assert state.slices[0]["ports"][0]["port"] == 8081


def test_headless_service_without_ports() -> None:
    state, _ = converge(svc(cluster_ip="None", ports=[], families=["IPv4"]), pods(2))
    assert state.slices[0]["ports"] == [] and len(eps(state)) == 2
    assert state.endpoints["subsets"][0].get("ports") is None and len(state.endpoints["subsets"][0]["addresses"]) == 2


def test_port_rename_updates_slice_in_place() -> None:
    state, _ = converge(svc(), pods(3))
    renamed = svc(ports=[{"name": "web", "port": 80, "targetPort": 8080}])
    state2, d = converge(renamed, pods(3), state)
    assert not d.create and not d.delete and len(d.update) == 1
    assert d.update[0]["metadata"]["name"] == state.slices[0]["metadata"]["name"]
    assert state2.slices[0]["ports"][0]["name"] == "web" and len(state2.slices[0]["endpoints"]) == 3
    assert state2.endpoints["subsets"][0]["ports"][0]["name"] == "web"


# ------------------------------------------------------------------ families, hostname, labels

def test_dual_stack_pods_get_one_slice_set_per_family() -> None:
    dual = [pod("a", ["10.0.0.1", "fd00::1"]), pod("b", ["10.0.0.2", "fd00::2"])]
    state, _ = converge(svc(families=["IPv4", "IPv6"]), dual)
    by_type = {s["addressType"]: sorted(a for e in s["endpoints"] for a in e["addresses"]) for s in state.slices}
    assert by_type == {"IPv4": ["10.0.0.1", "10.0.0.2"], "IPv6": ["fd00::1", "fd00::2"]}
    assert ips_of(state) == ["10.0.0.1", "10.0.0.2"]  # Endpoints: the primary family only
    state6, _ = converge(svc(families=["IPv6", "IPv4"], cluster_ip="fd00::a"), dual)
    assert ips_of(state6) == ["fd00::1", "fd00::2"]


def test_address_type_from_cluster_ip_and_headless_default() -> None:
    state, _ = converge(svc(cluster_ip="fd00::10"), [pod("a", ["10.0.0.1", "fd00::1"])])
    assert [s["addressType"] for s in state.slices] == ["IPv6"]
    state, _ = converge(svc(cluster_ip="None"), [pod("a", "10.0.0.1")])
    types = sorted((s["addressType"], len(s["endpoints"])) for s in state.slices)
    assert types == [("IPv4", 1), ("IPv6", 0)]  # the IPv6 set is a placeholder


def test_family_removed_deletes_its_slices() -> None:
    dual = [pod("a", ["10.0.0.1", "fd00::1"])]
    state, _ = converge(svc(families=["IPv4", "IPv6"]), dual)
    _, d = converge(svc(families=["IPv4"]), dual, state)
    assert [s["addressType"] for s in d.delete] == ["IPv6"] and not d.create and not d.update


@pytest.mark.parametrize("hostname,subdomain,want", [("h0", "web", "h0"), ("h0", "other", None), ("", "web", None)])
def test_hostname_when_subdomain_matches(hostname: str, subdomain: str, want: str | None) -> None:
    state, _ = converge(svc(cluster_ip="None", families=["IPv4"]),
                        [pod("a", hostname=hostname, subdomain=subdomain)])
    assert eps(state)[0].get("hostname") == want
    assert state.endpoints["subsets"][0]["addresses"][0].get("hostname") == want


def test_headless_label_and_reserved_labels() -> None:
    labels = {"team": "a", "kubernetes.io/service-name": "evil", "endpointslice.kubernetes.io/managed-by": "evil"}
    state, _ = converge(svc(cluster_ip="None", families=["IPv4"], labels=labels), pods(1))
    sl = state.slices[0]["metadata"]["labels"]
    assert sl == {"team": "a", "service.kubernetes.io/headless": "", "kubernetes.io/service-name": "web",
                  "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    assert state.endpoints["metadata"]["labels"]["service.kubernetes.io/headless"] == ""


def test_service_label_change_updates_labels_only() -> None:
    state, _ = converge(svc(labels={"v": "1"}), pods(3))
    state2, d = converge(svc(labels={"v": "2"}), pods(3), state, trigger_time=T0)
    assert len(d.update) == 1 and d.endpoints_action is Action.UPDATE
    assert state2.slices[0]["metadata"]["labels"]["v"] == "2" and state2.endpoints["metadata"]["labels"]["v"] == "2"


# ------------------------------------------------------------------ slicing and churn

def test_max_endpoints_per_slice() -> None:
    state, d = converge(svc(), pods(250))
    assert sorted(len(s["endpoints"]) for s in d.create) == [50, 100, 100]
    state, d = converge(svc(), pods(25), max_endpoints_per_slice=10)
    assert sorted(len(s["endpoints"]) for s in d.create) == [5, 10, 10]


@pytest.mark.parametrize("bad", [0, -1, 1001])
def test_bad_max_endpoints_per_slice(bad: int) -> None:
    with pytest.raises(EndpointsError, match=str(bad)):
        reconcile(svc(), [], max_endpoints_per_slice=bad)


def test_one_pod_change_updates_only_its_slice() -> None:
    all_pods = pods(250)
    state, _ = converge(svc(), all_pods)
    flipped = list(all_pods)
    flipped[137] = pod("p138", "10.0.0.139", ready=False)
    holder = next(s["metadata"]["name"] for s in state.slices
                  if any(e["targetRef"]["name"] == "p138" for e in s["endpoints"]))
    _, d = converge(svc(), flipped, state, trigger_time=T0)
    assert not d.create and not d.delete and [s["metadata"]["name"] for s in d.update] == [holder]
    assert d.endpoints_action is Action.UPDATE


def test_new_pod_fills_existing_slice_before_creating() -> None:
    state, _ = converge(svc(), pods(250))  # 100 + 100 + 50
    _, d = converge(svc(), pods(251), state)
    assert not d.create and len(d.update) == 1 and len(d.update[0]["endpoints"]) == 51


def test_removed_and_added_pods_share_the_updated_slice() -> None:
    state, _ = converge(svc(), pods(200))  # two full slices
    fewer = [p for p in pods(200) if p.name != "p5"] + [pod("new", "10.9.9.9")]
    _, d = converge(svc(), fewer, state)
    assert not d.create and len(d.update) == 1
    assert any(e["targetRef"]["name"] == "new" for e in d.update[0]["endpoints"])


def test_scale_down_to_zero_leaves_a_placeholder() -> None:
    state, _ = converge(svc(), pods(3))
    state, d = converge(svc(), [], state)
    assert not d.create and not d.delete and len(d.update) == 1  # the slice becomes the placeholder
    assert state.slices[0]["ports"] == [] and state.slices[0]["endpoints"] == []
    assert state.endpoints["subsets"] == []
    _, d = converge(svc(), [], state)
    assert not d.changed


def test_placeholder_for_service_without_pods() -> None:
    state, d = converge(svc(), [])
    assert len(d.create) == 1 and d.create[0]["endpoints"] == [] and d.create[0]["ports"] == []
    assert d.endpoints_action is Action.CREATE and d.endpoints["subsets"] == []
    _, d = converge(svc(), [], state)
    assert not d.changed


def test_slices_not_owned_by_this_service_are_replaced() -> None:
    state, _ = converge(svc(uid="old-uid"), pods(2))
    _, d = converge(svc(uid="new-uid"), pods(2), state)
    assert len(d.delete) == 1 and len(d.create) == 1 and not d.update
    assert d.create[0]["metadata"]["ownerReferences"][0]["uid"] == "new-uid"


def test_duplicate_endpoints_across_slices_are_collapsed() -> None:
    state, _ = converge(svc(), pods(3))
    dup = copy.deepcopy(state.slices[0])
    dup["metadata"]["name"] = "web-dup"
    _, d = converge(svc(), pods(3), Existing(state.endpoints, state.slices + (dup,)))
    assert [s["metadata"]["name"] for s in d.delete] == ["web-dup"] or \
        [s["metadata"]["name"] for s in d.delete] == [state.slices[0]["metadata"]["name"]]
    assert not d.create and not d.update


# ------------------------------------------------------------------ Endpoints capacity

def test_endpoints_truncated_at_1000_ready_first() -> None:
    many = pods(900) + [pod(f"nr{i}", f"10.8.{i // 250}.{i % 250 + 1}", ready=False) for i in range(300)]
    state, d = converge(svc(), many)
    assert len(ips_of(state)) == 900 and len(ips_of(state, "notReadyAddresses")) == 100
    assert d.endpoints["metadata"]["annotations"]["endpoints.kubernetes.io/over-capacity"] == "truncated"
    assert len(eps(state)) == 1200  # slices are not capped
    state2, d2 = converge(svc(), pods(1100), state)
    assert len(ips_of(state2)) == 1000 and ips_of(state2, "notReadyAddresses") == []
    state3, d3 = converge(svc(), pods(10), state2)
    assert "endpoints.kubernetes.io/over-capacity" not in d3.endpoints["metadata"].get("annotations", {})


# ------------------------------------------------------------------ trigger time and no-op writes

def test_trigger_time_only_on_changed_objects() -> None:
    all_pods = pods(150)
    state, _ = converge(svc(), all_pods, trigger_time=T0)
    t1 = datetime(2026, 11, 24, 9, 0, 0, tzinfo=timezone.utc)
    flipped = list(all_pods)
    flipped[0] = pod("p1", "10.0.0.2", ready=False)
    state2, d = converge(svc(), flipped, state, trigger_time=t1)
    stamps = {s["metadata"]["name"]: s["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
              for s in state2.slices}
    assert sorted(stamps.values()) == ["2026-11-24T08:30:00.123456Z", "2026-11-24T09:00:00Z"]
    assert stamps[d.update[0]["metadata"]["name"]] == "2026-11-24T09:00:00Z"
    assert state2.endpoints["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"] == \
        "2026-11-24T09:00:00Z"


def test_no_write_when_nothing_changed_ignoring_order() -> None:
    all_pods = pods(230) + [pod("nr", "10.7.0.1", ready=False)]
    state, _ = converge(svc(families=["IPv4"]), all_pods, trigger_time=T0)
    shuffled = copy.deepcopy(state)
    rnd = random.Random(7)
    for s in shuffled.slices:
        rnd.shuffle(s["endpoints"])
        for e in s["endpoints"]:
            e["conditions"] = dict(reversed(list(e["conditions"].items())))
    for sub in shuffled.endpoints["subsets"]:
        rnd.shuffle(sub.get("addresses", []))
    rnd.shuffle(shuffled.endpoints["subsets"])
    ordered = Existing(shuffled.endpoints, tuple(reversed(shuffled.slices)))
    d = reconcile(svc(families=["IPv4"]), list(reversed(all_pods)), ordered, trigger_time=T0)
    assert not d.changed


def test_uid_change_of_same_pod_updates() -> None:
    state, _ = converge(svc(), [pod("a", uid="u1")])
    _, d = converge(svc(), [pod("a", uid="u2")], state)
    assert len(d.update) == 1 and d.endpoints_action is Action.UPDATE


@pytest.mark.parametrize("when,text", [
    (datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "2026-01-02T03:04:05Z"),
    (datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=timezone.utc), "2026-01-02T03:04:05.5Z"),
    (datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05Z"),
])
def test_trigger_time_format(when: datetime, text: str) -> None:
    assert format_trigger_time(when) == text
    assert parse_time(text) == when.replace(tzinfo=timezone.utc)


def test_parse_time_nanoseconds() -> None:
    assert parse_time("2026-01-02T03:04:05.123456789Z") == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    assert parse_time("garbage") is None and parse_time(None) is None


def test_reconcile_does_not_modify_its_inputs() -> None:
    """Existing objects come straight from the informer cache: they must stay untouched."""
    state, _ = converge(svc(labels={"v": "1"}), pods(25), max_endpoints_per_slice=10, trigger_time=T0)
    before = copy.deepcopy(state)
    changed = [p for p in pods(30) if p.name != "p3"]
    changed[4] = pod("p5", "10.0.0.6", ready=False)
    d = reconcile(svc(labels={"v": "2"}, ports=[{"name": "web", "port": 80, "targetPort": 8080}]), changed, state,
                  max_endpoints_per_slice=10, trigger_time=T0)
    assert d.changed and state == before
    d = reconcile(None, [], state)
    assert state == before


def test_zone_and_prefer_close_hints() -> None:
    zones = {"n1": "zone-a", "n2": "zone-b"}
    pl = [pod("a", "10.0.0.1", node="n1"), pod("b", "10.0.0.2", node="n2", ready=False),
          pod("c", "10.0.0.3", node="n3")]
    state, _ = converge(svc(traffic="PreferClose"), pl, zones=zones)
    got = {e["targetRef"]["name"]: (e.get("zone"), e.get("hints")) for e in eps(state)}
    assert got == {"a": ("zone-a", {"forZones": [{"name": "zone-a"}]}), "b": ("zone-b", None), "c": (None, None)}
    _, d = converge(svc(traffic="PreferClose"), pl, state, zones=zones)
    assert not d.changed  # hints do not cause churn
    state2, d = converge(svc(), pl, state, zones=zones)
    assert len(d.update) == 1 and all("hints" not in e for e in eps(state2))
    _, d = converge(svc(), pl, state2, zones=zones)
    assert not d.changed
