"""The scheduler inside a live `podnet controlplane`: binds through pods/binding, spreads by pod
count, honours nodeSelector, marks unschedulable pods and retries them when Nodes change."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from controlplane.client import Client
from controlplane.resources import NODES, PODS
from tests.conftest import ControlPlane, free_port_number, start_controlplane


@pytest.fixture
async def cp(tmp_path: Path) -> AsyncIterator[tuple[ControlPlane, Client]]:
    plane = start_controlplane(tmp_path / "cp", free_port_number(), "--controllers", "scheduler,nodeipam")
    client = Client(plane.url)
    try:
        yield plane, client
    finally:
        await client.close()
        plane.stop()


async def add_node(c: Client, name: str, labels: dict[str, str] | None = None, ready: bool = True) -> None:
    await c.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}})
    await c.patch(NODES, name, {"status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}},
                  subresource="status")


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "x"}], **spec}}


async def wait_for(fn: Any, timeout: float = 10) -> Any:
    for _ in range(int(timeout / 0.05)):
        got = await fn()
        if got:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def node_of(c: Client, name: str) -> str:
    return str((await c.get(PODS, name, namespace="default"))["spec"].get("nodeName") or "")


async def test_binds_spreads_and_honours_selectors(cp: tuple[ControlPlane, Client]) -> None:
    _, c = cp
    await add_node(c, "a", {"disk": "ssd"})
    await add_node(c, "b")
    await add_node(c, "down", ready=False)
    for i in range(6):
        await c.create(PODS, pod(f"p{i}"), namespace="default")
    nodes = [await wait_for(lambda i=i: node_of(c, f"p{i}")) for i in range(6)]
    assert sorted(nodes) == ["a", "a", "a", "b", "b", "b"]
    await c.create(PODS, pod("ssd", nodeSelector={"disk": "ssd"}), namespace="default")
    assert await wait_for(lambda: node_of(c, "ssd")) == "a"
    # nodeipam gave every Node a podCIDR
    cidrs = {(await c.get(NODES, n))["spec"].get("podCIDR") for n in ("a", "b", "down")}
    assert len(cidrs) == 3 and all(x and x.startswith("10.244.") for x in cidrs)


async def test_unschedulable_then_retried_when_a_node_fits(cp: tuple[ControlPlane, Client]) -> None:
    _, c = cp
    await add_node(c, "a")
    await c.create(PODS, pod("gpu", nodeSelector={"gpu": "yes"}), namespace="default")

    async def marked() -> bool:
        p = await c.get(PODS, "gpu", namespace="default")
        conds = {x["type"]: x for x in (p.get("status") or {}).get("conditions") or []}
        cond = conds.get("PodScheduled") or {}
        return cond.get("status") == "False" and cond.get("reason") == "Unschedulable"
    await wait_for(marked)
    p = await c.get(PODS, "gpu", namespace="default")
    msg = next(x["message"] for x in p["status"]["conditions"] if x["type"] == "PodScheduled")
    assert msg.startswith("0/1 nodes are available") and "selector" in msg
    await add_node(c, "g", {"gpu": "yes"})
    assert await wait_for(lambda: node_of(c, "gpu")) == "g"
