"""EndpointSlice mirroring core: hand-written Endpoints of selector-less Services -> slices."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controlplane.model import parse_service
from endpoints.mirror import reconcile_mirror

NS = "default"


def svc(selector: dict[str, str] | None = None) -> Any:
    spec: dict[str, Any] = {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}
    if selector:
        spec["selector"] = selector
    return parse_service({"metadata": {"name": "ext", "namespace": NS, "uid": "svc-uid"}, "spec": spec})


def eps(subsets: list[dict[str, Any]], labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "ext", "namespace": NS, "uid": "ep-uid", "resourceVersion": "7",
                         "labels": labels or {"team": "a"}, "annotations": annotations or {}},
            "subsets": subsets}


SUBSET: dict[str, Any] = {"addresses": [{"ip": "192.0.2.10", "nodeName": "n1"}, {"ip": "192.0.2.11"}],
          "notReadyAddresses": [{"ip": "192.0.2.12"}],
          "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def named(changes: Any) -> list[dict[str, Any]]:
    out = []
    for i, s in enumerate(changes.create):
        s = copy.deepcopy(s)
        s["metadata"]["name"] = f"ext-m{i}"
        s["metadata"]["resourceVersion"] = "1"
        out.append(s)
    return out + [copy.deepcopy(s) for s in changes.update + changes.unchanged]


def test_mirrors_selectorless_endpoints() -> None:
    ch = reconcile_mirror(eps([SUBSET], annotations={"endpoints.kubernetes.io/last-change-trigger-time": "x",
                                                     "note": "y"}), svc(), [])
    assert len(ch.create) == 1 and not ch.update and not ch.delete
    sl = ch.create[0]
    assert sl["metadata"]["generateName"] == "ext-" and sl["addressType"] == "IPv4"
    assert sl["metadata"]["labels"] == {"team": "a", "kubernetes.io/service-name": "ext",
                                        "endpointslice.kubernetes.io/managed-by":
                                            "endpointslicemirroring-controller.k8s.io"}
    assert sl["metadata"]["annotations"] == {"note": "y"}
    assert sl["metadata"]["ownerReferences"][0]["kind"] == "Endpoints"
    assert sl["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert sl["endpoints"] == [
        {"addresses": ["192.0.2.10"], "conditions": {"ready": True}, "nodeName": "n1"},
        {"addresses": ["192.0.2.11"], "conditions": {"ready": True}},
        {"addresses": ["192.0.2.12"], "conditions": {"ready": False}}]


def test_no_write_when_unchanged_and_update_in_place() -> None:
    state = named(reconcile_mirror(eps([SUBSET]), svc(), []))
    again = reconcile_mirror(eps([SUBSET]), svc(), state)
    assert not again.create and not again.update and not again.delete
    changed = copy.deepcopy(SUBSET)
    changed["addresses"].append({"ip": "192.0.2.13"})
    ch = reconcile_mirror(eps([changed]), svc(), state)
    assert len(ch.update) == 1 and ch.update[0]["metadata"]["name"] == "ext-m0" and not ch.create


def test_families_and_port_sets_get_separate_slices_and_bad_ips_skipped() -> None:
    other = {"addresses": [{"ip": "2001:db8::1"}, {"ip": "not-an-ip"}, {"ip": "192.0.2.20"}],
             "ports": [{"name": "metrics", "port": 9100}]}
    ch = reconcile_mirror(eps([SUBSET, other]), svc(), [])
    got = sorted((s["addressType"], s["ports"][0]["port"], len(s["endpoints"])) for s in ch.create)
    assert got == [("IPv4", 8080, 3), ("IPv4", 9100, 1), ("IPv6", 9100, 1)]


def test_max_per_subset() -> None:
    big = {"addresses": [{"ip": f"192.0.2.{i}"} for i in range(1, 51)], "ports": [{"port": 80}]}
    ch = reconcile_mirror(eps([big]), svc(), [], max_per_subset=20)
    assert len(ch.create[0]["endpoints"]) == 20


@pytest.mark.parametrize("endpoints,service", [
    (eps([SUBSET], labels={"endpointslice.kubernetes.io/skip-mirror": "true"}), svc()),
    (eps([SUBSET], annotations={"control-plane.alpha.kubernetes.io/leader": "{}"}), svc()),
    (eps([SUBSET]), svc(selector={"app": "x"})),  # the endpoints controller's own object
    (eps([SUBSET]), None),  # no Service
    (None, svc()),  # no Endpoints
], ids=["skip-mirror", "leader", "selector", "no-service", "no-endpoints"])
def test_not_mirrored_and_existing_mirrors_deleted(endpoints: Any, service: Any) -> None:
    state = named(reconcile_mirror(eps([SUBSET]), svc(), []))
    ch = reconcile_mirror(endpoints, service, state)
    assert not ch.create and not ch.update and [s["metadata"]["name"] for s in ch.delete] == ["ext-m0"]


def test_subset_gone_deletes_its_slice() -> None:
    other = {"addresses": [{"ip": "192.0.2.20"}], "ports": [{"name": "metrics", "port": 9100}]}
    state = named(reconcile_mirror(eps([SUBSET, other]), svc(), []))
    ch = reconcile_mirror(eps([SUBSET]), svc(), state)
    assert len(ch.delete) == 1 and ch.delete[0]["ports"][0]["port"] == 9100
