"""A slim scheduler: binds pods without spec.nodeName to a Ready, schedulable Node.

Pure core: `choose_node(pod, nodes, pods)` filters Nodes (Ready, not unschedulable,
nodeSelector matches, NoSchedule/NoExecute taints tolerated) and scores them by fewest
non-terminal pods, ties broken by name. Shell: `run(client, stop, **options)` watches Pods
and Nodes and binds through POST pods/<name>/binding as kube-scheduler does; a pod that fits
nowhere gets PodScheduled=False/Unschedulable and is retried when Nodes change.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Coroutine, Mapping, Sequence

from controlplane.model import parse_node
from controlplane.resources import NODES, PODS
from podnet.daemon import queue_items

log = logging.getLogger("podnet.scheduler")

SCHEDULER_NAME = "default-scheduler"


@dataclass(frozen=True)
class Decision:
    node: str | None  # None: unschedulable
    reason: str  # message for the PodScheduled condition when node is None


def _tolerates(tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    for tol in tolerations:
        effect = tol.get("effect") or ""
        if effect and effect != taint.get("effect"):
            continue
        key = tol.get("key") or ""
        op = tol.get("operator") or "Equal"
        if not key and op == "Exists":
            return True
        if key != taint.get("key"):
            continue
        if op == "Exists" or (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def node_fits(pod: Mapping[str, Any], node: Mapping[str, Any]) -> str:
    """"" when the pod may run on the node, else why not (kube-scheduler's wording)."""
    view = parse_node(node)
    spec = pod.get("spec") or {}
    if not view.ready:
        return "node(s) were not ready"
    if view.unschedulable:
        return "node(s) were unschedulable"
    labels = dict(view.labels)
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return "node(s) didn't match Pod's node affinity/selector"
    tolerations = spec.get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(tolerations, taint):
            return "node(s) had untolerated taint {%s: %s}" % (taint.get("key"), taint.get("value", ""))
    return ""


def pod_counts(pods: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Non-terminal pods per node."""
    counts: dict[str, int] = {}
    for p in pods:
        node = (p.get("spec") or {}).get("nodeName") or ""
        phase = (p.get("status") or {}).get("phase") or "Pending"
        if node and phase not in ("Succeeded", "Failed"):
            counts[node] = counts.get(node, 0) + 1
    return counts


def choose_node(pod: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]],
                pods: Sequence[Mapping[str, Any]]) -> Decision:
    """Pick the feasible Node with the fewest pods (ties by name)."""
    if not nodes:
        return Decision(None, "0/0 nodes are available: no nodes available to schedule pods.")
    counts = pod_counts(pods)
    reasons: dict[str, int] = {}
    feasible: list[tuple[int, str]] = []
    for node in nodes:
        name = str(node["metadata"]["name"])
        why = node_fits(pod, node)
        if why:
            reasons[why] = reasons.get(why, 0) + 1
        else:
            feasible.append((counts.get(name, 0), name))
    if feasible:
        return Decision(min(feasible)[1], "")
    detail = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
    return Decision(None, f"0/{len(nodes)} nodes are available: {detail}.")


def needs_scheduling(pod: Mapping[str, Any], scheduler_name: str = SCHEDULER_NAME) -> bool:
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    return (not spec.get("nodeName") and not meta.get("deletionTimestamp")
            and phase not in ("Succeeded", "Failed")
            and (spec.get("schedulerName") or SCHEDULER_NAME) == scheduler_name)


def binding(pod: Mapping[str, Any], node: str) -> dict[str, Any]:
    meta = pod["metadata"]
    return {"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "default"),
                         "uid": meta.get("uid", "")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}


# ---------------------------------------------------------------- shell

async def run(client: Any, stop: asyncio.Event, **options: Any) -> None:
    """The scheduler loop. Options: scheduler_name (others ignored)."""
    from controlplane.client import Informer

    name = str(options.get("scheduler_name") or SCHEDULER_NAME)
    pods = Informer(client, PODS)
    nodes = Informer(client, NODES)
    queue: asyncio.Queue[str] = asyncio.Queue()
    queued: set[str] = set()
    unschedulable: set[str] = set()
    assumed: dict[str, str] = {}  # pod key -> node, until the informer shows the binding

    def enqueue(obj: Mapping[str, Any]) -> None:
        key = pods.key_of(obj)
        if needs_scheduling(obj, name) and key not in queued:
            queued.add(key)
            queue.put_nowait(key)

    def retry_unschedulable(*_: Any) -> None:
        for key in list(unschedulable):
            unschedulable.discard(key)
            obj = pods.get(key)
            if obj is not None:
                enqueue(obj)

    def on_pod(obj: Mapping[str, Any]) -> None:
        if pods.key_of(obj) not in unschedulable:  # those wait for a Node change
            enqueue(obj)

    def on_pod_delete(obj: Mapping[str, Any]) -> None:
        key = pods.key_of(obj)
        assumed.pop(key, None)
        unschedulable.discard(key)

    pods.add_handler(on_add=on_pod, on_update=lambda old, new: on_pod(new), on_delete=on_pod_delete)
    nodes.add_handler(on_add=retry_unschedulable, on_update=retry_unschedulable)
    await pods.start()
    await nodes.start()
    inflight: set[asyncio.Task[None]] = set()
    slots = asyncio.Semaphore(16)  # bindings in flight; decisions stay sequential (assumed counts)
    try:
        async for key in queue_items(queue, stop):
            queued.discard(key)
            bind = _schedule_one(client, pods, nodes, key, name, assumed, unschedulable)
            if bind is not None:
                await slots.acquire()
                task = asyncio.create_task(bind)
                inflight.add(task)
                task.add_done_callback(lambda t: _done(t, inflight, slots))
    finally:
        for t in inflight:
            t.cancel()
        await pods.stop()
        await nodes.stop()


def _done(task: "asyncio.Task[None]", inflight: "set[asyncio.Task[None]]", slots: asyncio.Semaphore) -> None:
    inflight.discard(task)
    slots.release()


def _schedule_one(client: Any, pods: Any, nodes: Any, key: str, name: str,
                  assumed: dict[str, str], unschedulable: set[str]) -> Coroutine[Any, Any, None] | None:
    """Decide now (so the next decision counts this one); return the API call to make."""
    pod = pods.get(key)
    if pod is None or not needs_scheduling(pod, name) or key in assumed:
        return None
    all_pods: list[Mapping[str, Any]] = []
    for p in pods.list():  # count bindings we made that the cache has not seen yet
        k = pods.key_of(p)
        if k in assumed and not (p.get("spec") or {}).get("nodeName"):
            p = {**p, "spec": {**(p.get("spec") or {}), "nodeName": assumed[k]}}  # the cached pod stays as is
        elif k in assumed:
            assumed.pop(k, None)
        all_pods.append(p)
    decision = choose_node(pod, nodes.list(), all_pods)
    ns, pod_name = pod["metadata"].get("namespace", "default"), pod["metadata"]["name"]
    if decision.node is None:
        unschedulable.add(key)
        return _set_unschedulable(client, ns, pod_name, decision.reason)
    node = decision.node
    assumed[key] = node
    return _bind(client, pod, key, node, assumed, unschedulable)


async def _bind(client: Any, pod: Mapping[str, Any], key: str, node: str, assumed: dict[str, str],
                unschedulable: set[str]) -> None:
    ns, pod_name = pod["metadata"].get("namespace", "default"), pod["metadata"]["name"]
    try:
        await client.request("POST", PODS.path(ns, pod_name, "binding"), body=binding(pod, node))
        log.info("bound %s to %s", key, node)
    except Exception as exc:  # noqa: BLE001 - a conflict means someone else bound it
        assumed.pop(key, None)
        if getattr(exc, "code", 0) not in (404, 409):
            log.warning("binding %s to %s failed: %s", key, node, exc)
            unschedulable.add(key)


async def _set_unschedulable(client: Any, ns: str, pod: str, message: str) -> None:
    from controlplane.client import PatchType

    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    try:
        await client.patch(PODS, pod, {"status": {"conditions": [cond]}}, namespace=ns,
                           patch_type=PatchType.STRATEGIC, subresource="status")
    except Exception as exc:  # noqa: BLE001
        log.debug("could not mark %s/%s unschedulable: %s", ns, pod, exc)
