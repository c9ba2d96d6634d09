"""The controller shell against the in-memory FakeAPIServer: convergence, retries, no write loops;
plus the work queue and the write overlay on their own."""

from __future__ import annotations

import asyncio
import copy
import itertools
from typing import Any, Awaitable, Callable

import pytest
from aiohttp import web

from controlplane.client import Client
from controlplane.client.fake import FakeAPIServer
from controlplane.resources import ENDPOINTS, ENDPOINTSLICES, PODS, SERVICES, Resource
from endpoints.controller import Controller, pod_trigger_time, run
from endpoints.queue import WorkQueue
from endpoints.writes import WriteCache

pytestmark = pytest.mark.timeout(60)
NS = "default"


class Server(FakeAPIServer):
    """The fake plus metadata.generateName (the controller names slices that way)."""

    _suffix = itertools.count(1)

    def _create(self, resource: Resource, ns: str, body: Any) -> web.Response:
        if isinstance(body, dict) and not body.get("metadata", {}).get("name") and \
                body.get("metadata", {}).get("generateName"):
            body["metadata"]["name"] = f"{body['metadata']['generateName']}{next(self._suffix):05d}"
        return super()._create(resource, ns, body)

    async def __aenter__(self) -> "Server":
        await self.start()
        return self

    def of(self, resource: Resource, label: str = "") -> list[dict[str, Any]]:
        out = []
        for (plural, _, _), obj in sorted(self.objects.items()):
            labels = obj["metadata"].get("labels") or {}
            if plural == resource.plural and (not label or labels.get("kubernetes.io/service-name") == label):
                out.append(obj)
        return out


def svc(name: str = "web", selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    if selector is not False:  # type: ignore[comparison-overlap]
        spec["selector"] = selector or {"app": "web"}
    return {"metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"}, "spec": spec}


def pod(name: str, ip: str, ready: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1"},
            "status": {"phase": "Running", "podIP": ip, "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


def ready_of(server: Server, name: str = "web") -> dict[str, bool]:
    return {e["targetRef"]["name"]: e["conditions"]["ready"]
            for s in server.of(ENDPOINTSLICES, name) for e in s.get("endpoints") or []}


async def until(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = check()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}: {check()!r}")


async def with_controller(server: Server, body: Callable[[Controller], Awaitable[None]], **kw: Any) -> None:
    async with Client(server.url) as client:
        ctl = Controller(client, **kw)
        stop = asyncio.Event()
        task = asyncio.create_task(ctl.run(stop))
        try:
            await body(ctl)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


async def test_converges_and_does_not_loop() -> None:
    async with Server() as server:
        server.put(SERVICES, svc())
        for i in range(5):
            server.put(PODS, pod(f"p{i}", f"10.0.0.{i + 1}", ready=i != 0))

        async def body(ctl: Controller) -> None:
            await until("5 endpoints", lambda: len(ready_of(server)) == 5)
            await until("Endpoints", lambda: server.of(ENDPOINTS))
            await asyncio.sleep(0.3)
            writes = ctl.writes
            await asyncio.sleep(0.5)
            assert ctl.writes == writes  # own writes do not trigger more writes
            assert ready_of(server)["p0"] is False
            p = copy.deepcopy(server.objects[("pods", NS, "p0")])
            p["status"]["conditions"][0]["status"] = "True"
            server.put(PODS, p)
            await until("p0 ready", lambda: ready_of(server)["p0"])
            await until("one slice update and one Endpoints update", lambda: ctl.writes == writes + 2)

        await with_controller(server, body, max_endpoints_per_slice=2)
        assert len(server.of(ENDPOINTSLICES, "web")) == 3


async def test_conflict_rereads_and_retries() -> None:
    async with Server() as server:
        server.put(SERVICES, svc())
        server.put(PODS, pod("p0", "10.0.0.1"))

        async def body(ctl: Controller) -> None:
            await until("slice", lambda: ready_of(server) == {"p0": True})
            server.fail_next(1, 409, "Conflict")
            p = copy.deepcopy(server.objects[("pods", NS, "p0")])
            p["status"]["conditions"][0]["status"] = "False"
            server.put(PODS, p)
            await until("p0 not ready after the conflict", lambda: ready_of(server) == {"p0": False})
            fresh = [r for r in server.requests if r.method == "GET" and
                     "kubernetes.io/service-name=web" in r.query.get("labelSelector", "")]
            assert fresh, "the controller re-read the Service's slices after the 409"

        await with_controller(server, body)


async def test_server_errors_are_retried_with_backoff() -> None:
    async with Server() as server:
        server.put(PODS, pod("p0", "10.0.0.1"))

        async def body(ctl: Controller) -> None:
            await asyncio.sleep(0.2)
            server.fail_next(4, 500)
            server.put(SERVICES, svc())
            await until("slice despite failures", lambda: ready_of(server) == {"p0": True})

        await with_controller(server, body)


async def test_stale_cache_after_create_does_not_duplicate() -> None:
    """Events for our own writes arrive late: the overlay keeps the next sync from re-creating."""
    async with Server() as server:
        server.put(SERVICES, svc())
        server.put(PODS, pod("p0", "10.0.0.1"))

        async def body(ctl: Controller) -> None:
            await until("slice", lambda: ready_of(server))
            for i in range(1, 8):  # a quick series of changes, each a separate sync
                server.put(PODS, pod(f"p{i}", f"10.0.0.{i + 1}"))
                await asyncio.sleep(0.01)
            await until("8 endpoints", lambda: len(ready_of(server)) == 8)
            await asyncio.sleep(0.3)
            assert len(server.of(ENDPOINTSLICES, "web")) == 1

        await with_controller(server, body)


async def test_orphans_deleted_on_start_and_service_delete() -> None:
    async with Server() as server:
        managed = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
        server.put(ENDPOINTSLICES, {"metadata": {"name": "old-x", "namespace": NS, "labels": {
            "kubernetes.io/service-name": "old", **managed}}, "addressType": "IPv4", "endpoints": []})
        server.put(ENDPOINTS, {"metadata": {"name": "old", "namespace": NS, "labels": {
            "endpoints.kubernetes.io/managed-by": "endpoint-controller"}}})
        server.put(ENDPOINTS, {"metadata": {"name": "user", "namespace": NS}, "subsets": []})
        server.put(SERVICES, svc())
        server.put(PODS, pod("p0", "10.0.0.1"))

        async def body(ctl: Controller) -> None:
            await until("orphans gone", lambda: not server.of(ENDPOINTSLICES, "old")
                        and ("endpoints", NS, "old") not in server.objects)
            assert ("endpoints", NS, "user") in server.objects
            await until("web slice", lambda: ready_of(server))
            server.remove(SERVICES, NS, "web")
            await until("web objects gone", lambda: not server.of(ENDPOINTSLICES, "web")
                        and ("endpoints", NS, "web") not in server.objects)

        await with_controller(server, body)


async def test_watches_dropped_then_changes_still_flow() -> None:
    async with Server() as server:
        server.put(SERVICES, svc())
        server.put(PODS, pod("p0", "10.0.0.1"))

        async def body(ctl: Controller) -> None:
            await until("slice", lambda: ready_of(server))
            server.drop_watches(abrupt=True)
            await asyncio.sleep(0.2)
            server.put(PODS, pod("p1", "10.0.0.2"))
            await until("p1 after reconnect", lambda: ready_of(server).get("p1") is True)

        await with_controller(server, body)


async def test_run_signature_ignores_other_controllers_options() -> None:
    async with Server() as server:
        async with Client(server.url) as client:
            stop = asyncio.Event()
            task = asyncio.create_task(run(client, stop, max_endpoints_per_slice=50, workers=2,
                                           service_cidr="10.96.0.0/12"))
            await asyncio.sleep(0.2)
            stop.set()
            await asyncio.wait_for(task, 10)


def test_pod_trigger_time_prefers_ready_transition() -> None:
    old = pod("a", "10.0.0.1", ready=False)
    new = pod("a", "10.0.0.1", ready=True)
    new["status"]["conditions"][0]["lastTransitionTime"] = "2026-11-24T08:00:01Z"
    assert pod_trigger_time(old, new).isoformat() == "2026-11-24T08:00:01+00:00"
    created = pod("b", "10.0.0.2")
    created["metadata"]["creationTimestamp"] = "2026-11-24T07:00:00Z"
    assert pod_trigger_time(None, created).isoformat() == "2026-11-24T07:00:00+00:00"


# ------------------------------------------------------------------ queue and overlay

async def test_work_queue_dedups_and_requeues_dirty_keys() -> None:
    q = WorkQueue(base_delay=0.01)
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    key = await q.get()
    assert key == "a"
    q.add("a")  # while processing: queued again after done()
    assert len(q) == 1
    q.done("a")
    assert [await q.get(), await q.get()] == ["b", "a"]
    q.done("a")
    q.done("b")
    assert q.add_rate_limited("c") == pytest.approx(0.01)
    assert q.add_rate_limited("c") == pytest.approx(0.02)
    assert await asyncio.wait_for(q.get(), 1) == "c"
    q.forget("c")
    assert q.failures("c") == 0
    q.shutdown()
    assert await q.get() is None


def _obj(name: str, rv: str, owner: str = "web") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "resourceVersion": rv,
                         "labels": {"kubernetes.io/service-name": owner}}}


def test_write_cache_overlay() -> None:
    cache = WriteCache()
    cache.wrote("default/web", _obj("web-1", "10"))
    assert [o["metadata"]["resourceVersion"] for o in cache.merge("default/web", [])] == ["10"]
    assert cache.merge("default/web", [_obj("web-1", "9")])[0]["metadata"]["resourceVersion"] == "10"
    assert cache.observe("default/web-1", _obj("web-1", "9")) is True  # older than ours: ignore
    assert cache.observe("default/web-1", _obj("web-1", "10")) is True  # our echo
    assert len(cache) == 0
    cache.wrote("default/web", _obj("web-1", "11"))
    assert cache.observe("default/web-1", _obj("web-1", "12")) is False  # someone else's newer write
    cache.deleted("default/web", _obj("web-2", "5"))
    assert cache.merge("default/web", [_obj("web-2", "5")]) == []
    assert cache.observe("default/web-2", None) is True
    cache.wrote("default/web", _obj("web-3", "20"))
    cache.forget_owner("default/web")
    assert len(cache) == 0
