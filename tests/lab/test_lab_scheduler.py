"""Scheduler core (controlplane/scheduler.py): choose_node."""

from typing import Any

from controlplane.scheduler import binding, choose_node, needs_scheduling


def node(name: str, ready: bool = True, unschedulable: bool = False, labels: dict[str, str] | None = None,
         taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"unschedulable": unschedulable, "taints": taints or []},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pod(name: str, node_name: str = "", phase: str = "Pending", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "uid": "u-" + name},
            "spec": {"nodeName": node_name, **spec}, "status": {"phase": phase}}


def test_fewest_pods_first() -> None:
    pods = [pod("a", "n1", "Running"), pod("b", "n1", "Running"), pod("c", "n2", "Running")]
    assert choose_node(pod("x"), [node("n1"), node("n2"), node("n3")], pods).node == "n3"
    assert choose_node(pod("x"), [node("n1"), node("n2")], pods).node == "n2"


def test_terminal_pods_do_not_count() -> None:
    pods = [pod("a", "n1", "Succeeded"), pod("b", "n1", "Failed"), pod("c", "n2", "Running")]
    assert choose_node(pod("x"), [node("n1"), node("n2")], pods).node == "n1"


def test_ties_by_name() -> None:
    assert choose_node(pod("x"), [node("n2"), node("n1")], []).node == "n1"


def test_not_ready_and_cordoned_nodes_skipped() -> None:
    d = choose_node(pod("x"), [node("n1", ready=False), node("n2", unschedulable=True)], [])
    assert d.node is None
    assert d.reason.startswith("0/2 nodes are available")
    assert "not ready" in d.reason and "unschedulable" in d.reason


def test_node_selector() -> None:
    nodes = [node("n1", labels={"disk": "hdd"}), node("n2", labels={"disk": "ssd"})]
    assert choose_node(pod("x", nodeSelector={"disk": "ssd"}), nodes, []).node == "n2"
    assert choose_node(pod("x", nodeSelector={"disk": "nvme"}), nodes, []).node is None


def test_taints_and_tolerations() -> None:
    taint = {"key": "dedicated", "value": "dns", "effect": "NoSchedule"}
    nodes = [node("n1", taints=[taint])]
    assert choose_node(pod("x"), nodes, []).node is None
    tol = [{"key": "dedicated", "operator": "Equal", "value": "dns", "effect": "NoSchedule"}]
    assert choose_node(pod("x", tolerations=tol), nodes, []).node == "n1"
    assert choose_node(pod("x", tolerations=[{"operator": "Exists"}]), nodes, []).node == "n1"
    prefer = {"key": "k", "effect": "PreferNoSchedule"}
    assert choose_node(pod("x"), [node("n2", taints=[prefer])], []).node == "n2"


def test_no_nodes() -> None:
    assert choose_node(pod("x"), [], []).node is None


def test_needs_scheduling() -> None:
    assert needs_scheduling(pod("x"))
    assert not needs_scheduling(pod("x", "n1"))
    assert not needs_scheduling(pod("x", phase="Succeeded"))
    assert not needs_scheduling(pod("x", schedulerName="other"))
    gone = pod("x")
    gone["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert not needs_scheduling(gone)


def test_binding_object() -> None:
    b = binding(pod("x"), "n1")
    assert b["kind"] == "Binding" and b["target"] == {"apiVersion": "v1", "kind": "Node", "name": "n1"}
    assert b["metadata"]["namespace"] == "default"
