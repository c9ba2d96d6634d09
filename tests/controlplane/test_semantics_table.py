"""Server-side Table printing: columns and cells as kubectl's printers produce them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from controlplane.resources import ENDPOINTS, ENDPOINTSLICES, NAMESPACES, NODES, PODS, SERVICES, Resource
from controlplane.table import human_duration, render_table

NOW = dt.datetime(2026, 1, 10, 12, 0, 0, tzinfo=dt.timezone.utc)
CREATED = "2026-01-10T11:58:00Z"  # 2m before NOW


@pytest.mark.parametrize("seconds,text", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"), (182, "3m2s"),
    (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 25 * 60, "3h25m"), (8 * 3600, "8h"),
    (47 * 3600, "47h"), (2 * 86400, "2d"), (2 * 86400 + 5 * 3600, "2d5h"), (8 * 86400, "8d"),
    (400 * 86400, "400d"), (3 * 365 * 86400, "3y"), (3 * 365 * 86400 + 20 * 86400, "3y20d"),
    (9 * 365 * 86400, "9y"),
])
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def table(resource: Resource, *objs: dict[str, Any]) -> dict[str, Any]:
    return render_table(resource, list(objs), "42", now=NOW)


def cells(resource: Resource, obj: dict[str, Any]) -> list[Any]:
    return table(resource, obj)["rows"][0]["cells"]  # type: ignore[no-any-return]


def test_table_shape() -> None:
    t = table(PODS, {"metadata": {"name": "p", "namespace": "default", "creationTimestamp": CREATED,
                                  "managedFields": [{"manager": "x"}], "labels": {"a": "b"}},
                     "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}})
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "42"}
    cols = t["columnDefinitions"]
    assert [c["name"] for c in cols] == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node",
                                         "Nominated Node", "Readiness Gates"]
    assert [c["priority"] for c in cols] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert cols[0]["format"] == "name" and all(set(c) == {"name", "type", "format", "description", "priority"}
                                               for c in cols)
    obj = t["rows"][0]["object"]
    assert obj["kind"] == "PartialObjectMetadata" and obj["apiVersion"] == "meta.k8s.io/v1"
    assert obj["metadata"]["labels"] == {"a": "b"} and "managedFields" not in obj["metadata"]
    assert render_table(PODS, [], "1")["rows"] == []
    full = render_table(PODS, [{"metadata": {"name": "x"}}], "1", include_object="Object")
    assert full["rows"][0]["object"] == {"metadata": {"name": "x"}}


def pod(status: dict[str, Any], spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default", "creationTimestamp": CREATED, **meta},
            "spec": spec or {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"}, "status": status}


RUNNING = {"running": {"startedAt": CREATED}}

POD_CASES = [
    ("pending", pod({"phase": "Pending"}), ["web", "0/2", "Pending", "0", "2m", "<none>", "n1", "<none>", "<none>"]),
    ("running and ready", pod({"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                               "containerStatuses": [{"name": "a", "ready": True, "restartCount": 0, "state": RUNNING},
                                                     {"name": "b", "ready": True, "restartCount": 0,
                                                      "state": RUNNING}]}),
     ["web", "2/2", "Running", "0", "2m", "10.244.1.5", "n1", "<none>", "<none>"]),
    ("crash loop", pod({"phase": "Running", "containerStatuses": [
        {"name": "a", "ready": False, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-10T11:59:30Z"}}},
        {"name": "b", "ready": True, "restartCount": 1, "state": RUNNING}]}),
     ["web", "1/2", "CrashLoopBackOff", "5 (30s ago)", "2m", "<none>", "n1", "<none>", "<none>"]),
    ("exit code", pod({"phase": "Failed", "containerStatuses": [
        {"name": "a", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}]}),
     ["web", "0/2", "ExitCode:3", "0", "2m", "<none>", "n1", "<none>", "<none>"]),
    ("completed", pod({"phase": "Succeeded", "containerStatuses": [
        {"name": "a", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 0,
                                                                                "reason": "Completed"}}}]}),
     ["web", "0/2", "Completed", "0", "2m", "<none>", "n1", "<none>", "<none>"]),
    ("terminating", pod({"phase": "Running"}, deletionTimestamp="2026-01-10T11:59:00Z"),
     ["web", "0/2", "Terminating", "0", "2m", "<none>", "n1", "<none>", "<none>"]),
    ("init waiting", pod({"phase": "Pending", "initContainerStatuses": [
        {"name": "i", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]},
        {"initContainers": [{"name": "i"}, {"name": "j"}], "containers": [{"name": "a"}]}),
     ["web", "0/1", "Init:0/2", "0", "2m", "<none>", "<none>", "<none>", "<none>"]),
    ("init failed", pod({"phase": "Pending", "initContainerStatuses": [
        {"name": "i", "restartCount": 2, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]},
        {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}),
     ["web", "0/1", "Init:Error", "2", "2m", "<none>", "<none>", "<none>", "<none>"]),
    ("readiness gates", pod({"phase": "Running", "nominatedNodeName": "n2",
                             "conditions": [{"type": "example.com/gate", "status": "True"}]},
                            {"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "example.com/gate"},
                                                                               {"conditionType": "other"}]}),
     ["web", "0/1", "Running", "0", "2m", "<none>", "<none>", "n2", "1/2"]),
    ("no creationTimestamp", {"metadata": {"name": "x"}, "spec": {}, "status": {}},
     ["x", "0/0", "", "0", "<unknown>", "<none>", "<none>", "<none>", "<none>"]),
]


@pytest.mark.parametrize("title,obj,expected", POD_CASES, ids=[c[0] for c in POD_CASES])
def test_pod_rows(title: str, obj: dict[str, Any], expected: list[Any]) -> None:
    assert cells(PODS, obj) == expected


def test_completed_pod_row_condition() -> None:
    row = table(PODS, pod({"phase": "Succeeded"}))["rows"][0]
    assert row["conditions"][0]["type"] == "Completed"


def service(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default", "creationTimestamp": CREATED}, "spec": spec,
            "status": status or {}}


SERVICE_CASES = [
    ("cluster ip", service({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                            "selector": {"b": "2", "a": "1"}}),
     ["web", "ClusterIP", "10.96.0.10", "<none>", "80/TCP,53/UDP", "2m", "a=1,b=2"]),
    ("node port", service({"type": "NodePort", "clusterIPs": ["10.96.0.11"],
                           "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}),
     ["web", "NodePort", "10.96.0.11", "<none>", "80:30080/TCP", "2m", "<none>"]),
    ("headless without ports", service({"clusterIP": "None", "clusterIPs": ["None"]}),
     ["web", "ClusterIP", "None", "<none>", "<none>", "2m", "<none>"]),
    ("external IPs", service({"type": "ClusterIP", "clusterIPs": ["10.96.0.12"], "externalIPs": ["1.2.3.4", "1.2.3.5"],
                              "ports": [{"port": 80}]}),
     ["web", "ClusterIP", "10.96.0.12", "1.2.3.4,1.2.3.5", "80/TCP", "2m", "<none>"]),
    ("load balancer pending", service({"type": "LoadBalancer", "clusterIPs": ["10.96.0.13"],
                                       "ports": [{"port": 80, "nodePort": 31000}]}),
     ["web", "LoadBalancer", "10.96.0.13", "<pending>", "80:31000/TCP", "2m", "<none>"]),
    ("load balancer ingress", service({"type": "LoadBalancer", "clusterIPs": ["10.96.0.13"],
                                       "ports": [{"port": 80, "nodePort": 31000}]},
                                      {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example"}]}}),
     ["web", "LoadBalancer", "10.96.0.13", "5.6.7.8,lb.example", "80:31000/TCP", "2m", "<none>"]),
    ("external name", service({"type": "ExternalName", "externalName": "db.example.com"}),
     ["web", "ExternalName", "<none>", "db.example.com", "<none>", "2m", "<none>"]),
]


@pytest.mark.parametrize("title,obj,expected", SERVICE_CASES, ids=[c[0] for c in SERVICE_CASES])
def test_service_rows(title: str, obj: dict[str, Any], expected: list[Any]) -> None:
    t = table(SERVICES, obj)
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)",
                                                           "Age", "Selector"]
    assert t["rows"][0]["cells"] == expected


def test_namespace_and_node_rows() -> None:
    ns = {"metadata": {"name": "default", "creationTimestamp": "2026-01-08T12:00:00Z"}, "status": {"phase": "Active"}}
    assert cells(NAMESPACES, ns) == ["default", "Active", "2d"]
    node = {"metadata": {"name": "n1", "creationTimestamp": CREATED,
                         "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                                    "kernelVersion": "6.18.0", "containerRuntimeVersion": "podnet://0.1"}}}
    t = table(NODES, node)
    assert [c["name"] for c in t["columnDefinitions"]][:5] == ["Name", "Status", "Roles", "Age", "Version"]
    assert t["rows"][0]["cells"] == ["n1", "Ready,SchedulingDisabled", "control-plane,worker", "2m", "v1.32.0",
                                     "10.0.0.1", "<none>", "Debian GNU/Linux 12 (bookworm)", "6.18.0", "podnet://0.1"]
    bare = {"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}
    assert cells(NODES, bare)[:3] == ["n2", "NotReady", "<none>"]
    assert cells(NODES, {"metadata": {"name": "n3"}})[1] == "Unknown"


@pytest.mark.parametrize("subsets,text", [
    ([], "<none>"),
    ([{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}], "10.0.0.1:80"),
    ([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}],
     "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."),
    ([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 53}]}], "[fd00::1]:53"),
    ([{"addresses": [{"ip": "10.0.0.1"}]}], "10.0.0.1"),
    ([{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}], "<none>"),
    ([{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)], "ports": [{"port": 80}]}],
     "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."),
])
def test_endpoints_rows(subsets: list[Any], text: str) -> None:
    obj = {"metadata": {"name": "web", "creationTimestamp": CREATED}, "subsets": subsets}
    assert cells(ENDPOINTS, obj) == ["web", text, "2m"]


def test_endpointslice_rows() -> None:
    obj = {"metadata": {"name": "web-abc", "creationTimestamp": CREATED}, "addressType": "IPv4",
           "ports": [{"port": 80}, {"name": "x"}, {"port": 81}, {"port": 82}],
           "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}
    t = table(ENDPOINTSLICES, obj)
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    assert t["rows"][0]["cells"] == ["web-abc", "IPv4", "80,x,81 + 1 more...", "10.0.0.1,10.0.0.2", "2m"]
    empty = {"metadata": {"name": "e"}, "addressType": "IPv4"}
    assert cells(ENDPOINTSLICES, empty) == ["e", "IPv4", "<unset>", "<unset>", "<unknown>"]


def test_unknown_resource_name_and_age() -> None:
    res = Resource("example.com", "v1", "widgets", "Widget", "widget", True)
    t = table(res, {"metadata": {"name": "w", "creationTimestamp": CREATED}})
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Age"]
    assert t["rows"][0]["cells"] == ["w", "2m"]


def test_garbage_does_not_crash() -> None:
    for res in (PODS, SERVICES, NODES, NAMESPACES, ENDPOINTS, ENDPOINTSLICES):
        render_table(res, [{}, {"metadata": None, "spec": [], "status": "x", "subsets": [None],
                                "endpoints": [None], "ports": [None]}], "1", now=NOW)
