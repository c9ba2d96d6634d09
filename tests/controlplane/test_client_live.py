"""The client and Informer against a live `podnet controlplane` (tests/conftest.py fixtures)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, AsyncIterator, Callable, Iterator

import pytest

from controlplane import errors
from controlplane.client import Client, ClientError, Informer, PatchType, WatchEvent
from controlplane.resources import ENDPOINTSLICES, NAMESPACES, NODES, PODS, SERVICES

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def _conftest() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "conftest.py"
    for mod in list(sys.modules.values()):
        if getattr(mod, "__file__", None) == str(path):
            return mod
    spec = importlib.util.spec_from_file_location("podnet_tests_conftest", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CONF = _conftest()


@pytest.fixture
def quiet_cp(tmp_path: Path) -> Iterator[Any]:
    """A control plane without in-process controllers (so only our writes change objects)."""
    cp = CONF.start_controlplane(tmp_path / "cp", CONF.free_port_number(), "--controllers", "",
                                 "--history", "50", "--bookmark-interval", "0.5")
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
async def client(quiet_cp: Any) -> AsyncIterator[Client]:
    async with Client.from_kubeconfig(quiet_cp.kubeconfig, timeout=10) as c:
        yield c


def pod(name: str, ns: str = "default", node: str = "", **labels: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": spec}


def service(name: str, *ports: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": f"p{p}", "port": p, "protocol": "TCP"} for p in ports]}}


async def until(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_crud_round_trip(client: Client) -> None:
    version = await client.request("GET", "/version")
    assert version["major"] == "1"
    created = await client.create(PODS, pod("web-1", app="web"))
    meta = created["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    got = await client.get(PODS, "web-1", namespace="default")
    assert got["metadata"]["uid"] == meta["uid"]
    with pytest.raises(errors.AlreadyExists):
        await client.create(PODS, pod("web-1"))
    got["metadata"]["labels"]["tier"] = "fe"
    updated = await client.update(PODS, got)
    assert updated["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    with pytest.raises(errors.Conflict, match="has been modified"):
        await client.update(PODS, got)
    deleted = await client.delete(PODS, "web-1", namespace="default")
    assert deleted["metadata"]["name"] == "web-1"
    with pytest.raises(errors.NotFound) as exc:
        await client.get(PODS, "web-1", namespace="default")
    assert exc.value.code == 404 and exc.value.name == "web-1"


async def test_list_selectors_and_cluster_scope(client: Client) -> None:
    await client.create(NAMESPACES, {"metadata": {"name": "other"}})
    await client.create(PODS, pod("a", node="n1", app="web"))
    await client.create(PODS, pod("b", node="n2", app="db"))
    await client.create(PODS, pod("c", "other", node="n1", app="web"))
    await client.create(NODES, {"metadata": {"name": "n1"}})
    names = lambda lst: sorted(o["metadata"]["name"] for o in lst.items)  # noqa: E731
    everything = await client.list(PODS)
    assert names(everything) == ["a", "b", "c"] and int(everything.resource_version) > 0
    assert names(await client.list(PODS, label_selector="app=web")) == ["a", "c"]
    assert names(await client.list(PODS, label_selector="app in (db),app!=web")) == ["b"]
    assert names(await client.list(PODS, namespace="default", field_selector="spec.nodeName=n1")) == ["a"]
    assert names(await client.list(PODS, field_selector="metadata.namespace=other")) == ["c"]
    assert names(await client.list(NODES)) == ["n1"]
    assert "default" in names(await client.list(NAMESPACES))
    with pytest.raises(errors.BadRequest):
        await client.list(PODS, field_selector="spec.bogus=x")


async def test_patch_types_and_status(client: Client) -> None:
    await client.create(SERVICES, service("web", 80, 81))
    out = await client.patch(SERVICES, "web", {"metadata": {"labels": {"a": "1"}}}, namespace="default")
    assert out["metadata"]["labels"] == {"a": "1"}
    out = await client.patch(SERVICES, "web", [{"op": "add", "path": "/metadata/labels/b", "value": "2"}],
                             namespace="default", patch_type=PatchType.JSON)
    assert out["metadata"]["labels"] == {"a": "1", "b": "2"}
    out = await client.patch(SERVICES, "web", {"spec": {"ports": [{"name": "p82", "port": 82},
                                                                  {"$patch": "delete", "port": 81}]}},
                             namespace="default", patch_type=PatchType.STRATEGIC)
    assert sorted(p["port"] for p in out["spec"]["ports"]) == [80, 82]
    applied = await client.patch(SERVICES, "api", service("api", 8080), namespace="default",
                                 patch_type=PatchType.APPLY, field_manager="test", force=True)
    assert applied["spec"]["ports"][0]["port"] == 8080 and applied["spec"]["clusterIP"]
    await client.create(PODS, pod("p"))
    st = await client.patch(PODS, "p", {"status": {"phase": "Running", "podIP": "10.244.0.5"}},
                            namespace="default", subresource="status")
    assert st["status"]["phase"] == "Running"
    p = await client.get(PODS, "p", namespace="default")
    p["status"]["phase"] = "Succeeded"
    done = await client.update(PODS, p, subresource="status")
    assert done["status"]["phase"] == "Succeeded"


async def test_invalid_carries_causes(client: Client) -> None:
    with pytest.raises(errors.Invalid) as exc:
        await client.create(SERVICES, service("bad", 70000))
    assert exc.value.code == 422 and any("port" in c.field for c in exc.value.causes)
    with pytest.raises(errors.Invalid):
        await client.create(PODS, pod("Not_A_Name"))
    with pytest.raises(errors.NotFound):
        await client.create(PODS, pod("x", "no-such-ns"))


async def test_watch_replay_resume_timeout_and_gone(client: Client) -> None:
    await client.create(PODS, pod("a"))
    lst = await client.list(PODS)
    events: list[WatchEvent] = []

    async def consume() -> None:
        async for ev in client.watch(PODS, namespace="default", resource_version=lst.resource_version):
            events.append(ev)
            if ev.type == "DELETED":
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    await client.patch(PODS, "a", {"metadata": {"labels": {"x": "1"}}}, namespace="default")
    await client.create(PODS, pod("b"))
    await client.delete(PODS, "a", namespace="default")
    await asyncio.wait_for(task, 15)
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    replay = [e async for e in client.watch(PODS, resource_version="0", timeout_seconds=1)]
    assert [(e.type, e.object["metadata"]["name"]) for e in replay if e.type != "BOOKMARK"] == [("ADDED", "b")]
    for i in range(80):  # push the first RV out of the 50-event history
        await client.patch(PODS, "b", {"metadata": {"labels": {"i": str(i)}}}, namespace="default")
    with pytest.raises(errors.Gone):
        async for _ in client.watch(PODS, resource_version=lst.resource_version, timeout_seconds=5):
            pass


async def test_watch_bookmarks(client: Client) -> None:
    rv = (await client.list(PODS)).resource_version
    kinds = [e.type async for e in client.watch(PODS, resource_version=rv, timeout_seconds=2,
                                                allow_bookmarks=True)]
    assert "BOOKMARK" in kinds


async def test_informer_sync_updates_deletes(client: Client) -> None:
    await client.create(PODS, pod("a", node="n1", app="web"))
    await client.create(PODS, pod("skip", node="n1", app="db"))
    inf = Informer(client, PODS, label_selector="app=web")
    inf.add_index("byNode", lambda o: [o["spec"].get("nodeName", "")])
    log: list[tuple[str, str]] = []
    inf.add_handler(on_add=lambda o: log.append(("add", o["metadata"]["name"])),
                    on_update=lambda old, new: log.append(("update", new["metadata"]["name"])),
                    on_delete=lambda o: log.append(("delete", o["metadata"]["name"])))
    async with inf:
        assert await inf.wait_synced(10)
        assert inf.keys() == ["default/a"] and log == [("add", "a")]
        await asyncio.sleep(0.2)
        await client.create(PODS, pod("b", node="n2", app="web"))
        await client.patch(PODS, "a", {"metadata": {"annotations": {"k": "v"}}}, namespace="default")
        await client.delete(PODS, "a", namespace="default")
        await client.patch(PODS, "skip", {"metadata": {"labels": {"app": "web"}}}, namespace="default")
        await until(lambda: len(log) == 5)
        assert log == [("add", "a"), ("add", "b"), ("update", "a"), ("delete", "a"), ("add", "skip")]
        assert inf.keys() == ["default/b", "default/skip"]
        assert inf.index_keys("byNode", "n1") == ["default/skip"]
        # leaving the selector is a delete for a label-selected informer
        await client.patch(PODS, "skip", {"metadata": {"labels": {"app": "db"}}}, namespace="default")
        await until(lambda: inf.keys() == ["default/b"])
        assert log[-1] == ("delete", "skip")


async def test_informer_cluster_scoped_and_slices(client: Client) -> None:
    async with Informer(client, NODES) as nodes, Informer(client, ENDPOINTSLICES, namespace="default") as slices:
        assert await nodes.wait_synced(10) and await slices.wait_synced(10)
        await client.create(NODES, {"metadata": {"name": "n1", "labels": {"zone": "a"}}})
        await client.create(ENDPOINTSLICES, {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}}]})
        await until(lambda: nodes.get("n1") is not None and slices.get("default/web-abc") is not None)


async def test_informer_survives_restart(quiet_cp: Any, client: Client) -> None:
    await client.create(PODS, pod("a"))
    inf = Informer(client, PODS, max_backoff=0.5)
    model: dict[str, str] = {}
    inf.add_handler(on_add=lambda o: model.__setitem__(o["metadata"]["name"], o["metadata"]["resourceVersion"]),
                    on_update=lambda old, new: model.__setitem__(new["metadata"]["name"],
                                                                 new["metadata"]["resourceVersion"]),
                    on_delete=lambda o: model.pop(o["metadata"]["name"], None))
    async with inf:
        assert await inf.wait_synced(10)
        for sig in (15, 9):
            quiet_cp.stop(sig)
            with pytest.raises(ClientError):
                await client.get(PODS, "a", namespace="default")
            new_cp = CONF.start_controlplane(quiet_cp.data_dir, quiet_cp.port, "--controllers", "",
                                             "--history", "50", "--bookmark-interval", "0.5")
            quiet_cp.proc = new_cp.proc
            await client.create(PODS, pod(f"after-{sig}"))
            await client.patch(PODS, "a", {"metadata": {"labels": {"sig": str(sig)}}}, namespace="default")
            await until(lambda: f"after-{sig}" in model)
        truth = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in (await client.list(PODS)).items}
        await until(lambda: model == truth)
        assert sorted(inf.keys()) == sorted(f"default/{n}" for n in truth)


async def test_big_objects_through_watch_and_informer(client: Client) -> None:
    async with Informer(client, PODS) as inf:
        assert await inf.wait_synced(10)
        big = pod("big")
        big["metadata"]["annotations"] = {"blob": "z" * (200 * 1024)}  # one watch line > 64 KiB (limit 256 KiB)
        await client.create(PODS, big)
        await until(lambda: inf.get("default/big") is not None)
        got = inf.get("default/big")
        assert got is not None and len(got["metadata"]["annotations"]["blob"]) == 200 * 1024


async def test_many_concurrent_watches_do_not_starve_requests(client: Client) -> None:
    rv = (await client.list(PODS)).resource_version
    streams = [client.watch(PODS, resource_version=rv, timeout_seconds=30) for _ in range(120)]
    firsts = [asyncio.ensure_future(s.__anext__()) for s in streams]
    try:
        await asyncio.sleep(0.5)
        await asyncio.wait_for(client.create(PODS, pod("x")), 10)  # a pool limit would block here
        done = await asyncio.wait_for(asyncio.gather(*firsts), 20)
        assert all(ev.object["metadata"]["name"] == "x" for ev in done)
    finally:
        for f in firsts:
            f.cancel()
        for s in streams:
            await s.aclose()  # type: ignore[attr-defined]


async def test_informer_field_selectors(client: Client) -> None:
    await client.create(NODES, {"metadata": {"name": "n1"}})
    await client.create(NODES, {"metadata": {"name": "n2"}})
    await client.create(PODS, pod("a", node="n1"))
    async with Informer(client, NODES, field_selector="metadata.name=n1") as node, \
            Informer(client, PODS, field_selector="spec.nodeName=n1") as pods:
        assert await node.wait_synced(10) and await pods.wait_synced(10)
        assert node.keys() == ["n1"] and pods.keys() == ["default/a"]
        await asyncio.sleep(0.2)
        await client.patch(NODES, "n2", {"metadata": {"labels": {"x": "1"}}})
        await client.patch(NODES, "n1", {"metadata": {"labels": {"x": "1"}}})
        await client.create(PODS, pod("b", node="n2"))
        await client.create(PODS, pod("c", node="n1"))
        await until(lambda: pods.keys() == ["default/a", "default/c"])
        await until(lambda: (node.get("n1") or {}).get("metadata", {}).get("labels") == {"x": "1"})
        assert node.keys() == ["n1"]
        # a pod on an existing node is deleted gracefully (deletionTimestamp, a MODIFIED event) ...
        await client.delete(PODS, "a", namespace="default")
        await until(lambda: bool((pods.get("default/a") or {}).get("metadata", {}).get("deletionTimestamp")))
        # ... and removed by a delete with gracePeriodSeconds=0 (what the node agent does)
        await client.delete(PODS, "a", namespace="default", grace_period_seconds=0)
        await until(lambda: pods.keys() == ["default/c"])
