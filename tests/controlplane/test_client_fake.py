"""Client against the in-memory fake API server (controlplane/client/fake.py)."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest

from controlplane import errors
from controlplane.client import Client, ClientError, PatchType, WatchEvent
from controlplane.client.fake import FakeAPIServer
from controlplane.resources import ENDPOINTSLICES, NODES, PODS

pytestmark = pytest.mark.timeout(60)


def pod(name: str, ns: str = "default", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeAPIServer]:
    async with FakeAPIServer() as server:
        yield server


@pytest.fixture
async def client(fake: FakeAPIServer) -> AsyncIterator[Client]:
    async with Client(fake.url, token="tok", timeout=5) as c:
        yield c


async def test_crud_round_trip(fake: FakeAPIServer, client: Client) -> None:
    created = await client.create(PODS, pod("web-1", app="web"))
    assert created["metadata"]["resourceVersion"] and created["metadata"]["uid"]
    got = await client.get(PODS, "web-1", namespace="default")
    assert got == created
    got["metadata"]["labels"]["x"] = "y"
    updated = await client.update(PODS, got)
    assert updated["metadata"]["labels"]["x"] == "y"
    with pytest.raises(errors.Conflict, match="has been modified"):
        await client.update(PODS, got)  # stale resourceVersion
    with pytest.raises(errors.AlreadyExists):
        await client.create(PODS, pod("web-1"))
    deleted = await client.delete(PODS, "web-1", namespace="default", propagation_policy="Background")
    assert deleted["metadata"]["name"] == "web-1"
    with pytest.raises(errors.NotFound) as exc:
        await client.get(PODS, "web-1", namespace="default")
    assert exc.value.name == "web-1" and exc.value.code == 404
    req = fake.requests[-2]
    assert req.method == "DELETE" and req.body["propagationPolicy"] == "Background"
    assert all(r.path.startswith("/api/v1/namespaces/default/pods") for r in fake.requests)


async def test_namespace_defaults_and_cluster_scope(fake: FakeAPIServer, client: Client) -> None:
    await client.create(PODS, {"metadata": {"name": "p"}})  # no namespace anywhere: the default one
    await client.create(PODS, {"metadata": {"name": "q"}}, namespace="ns2")
    await client.create(NODES, {"metadata": {"name": "n1"}}, namespace="ignored")
    assert [r.path for r in fake.requests] == [
        "/api/v1/namespaces/default/pods", "/api/v1/namespaces/ns2/pods", "/api/v1/nodes"]
    await client.create(ENDPOINTSLICES, {"metadata": {"name": "s", "namespace": "default"}, "addressType": "IPv4"})
    assert fake.requests[-1].path == "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
    assert (await client.get(NODES, "n1"))["metadata"]["name"] == "n1"


async def test_list_with_selectors(fake: FakeAPIServer, client: Client) -> None:
    for name, ns, app in (("a", "default", "web"), ("b", "default", "db"), ("c", "other", "web")):
        await client.create(PODS, pod(name, ns, app=app))
    everything = await client.list(PODS)
    assert [p["metadata"]["name"] for p in everything.items] == ["a", "b", "c"]
    assert everything.resource_version == str(fake.rv) and everything.kind == "PodList"
    web = await client.list(PODS, label_selector="app=web")
    assert [p["metadata"]["name"] for p in web.items] == ["a", "c"]
    scoped = await client.list(PODS, namespace="default", field_selector="metadata.name=b")
    assert [p["metadata"]["name"] for p in scoped.items] == ["b"]
    assert fake.requests[-1].query == {"fieldSelector": "metadata.name=b"}
    assert fake.requests[-2].query == {"labelSelector": "app=web"} and fake.requests[-2].path == "/api/v1/pods"
    with pytest.raises(errors.BadRequest, match="field label not supported"):
        await client.list(PODS, field_selector="spec.bogus=1")


async def test_patch_content_types(fake: FakeAPIServer, client: Client) -> None:
    await client.create(PODS, pod("p", app="a"))
    out = await client.patch(PODS, "p", {"metadata": {"labels": {"b": "2", "app": None}}}, namespace="default")
    assert out["metadata"]["labels"] == {"b": "2"}
    assert fake.requests[-1].content_type == "application/merge-patch+json"
    await client.patch(PODS, "p", [{"op": "add", "path": "/metadata/labels/c", "value": "3"}],
                       namespace="default", patch_type=PatchType.JSON)
    assert fake.requests[-1].content_type == "application/json-patch+json"
    await client.patch(PODS, "p", {"status": {"phase": "Running"}}, namespace="default",
                       patch_type=PatchType.STRATEGIC, subresource="status")
    req = fake.requests[-1]
    assert req.content_type == "application/strategic-merge-patch+json"
    assert req.path == "/api/v1/namespaces/default/pods/p/status"
    await client.patch(PODS, "new", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "new"}},
                       namespace="default", patch_type=PatchType.APPLY, force=True)
    req = fake.requests[-1]
    assert req.content_type == "application/apply-patch+yaml"
    assert req.query == {"fieldManager": "podnet", "force": "true"}
    got = await client.get(PODS, "p", namespace="default")
    assert got["metadata"]["labels"] == {"b": "2", "c": "3"} and got["status"]["phase"] == "Running"
    assert (await client.get(PODS, "new", namespace="default"))["metadata"]["name"] == "new"


async def test_token_and_user_agent_sent(fake: FakeAPIServer, client: Client) -> None:
    assert await client.request("GET", "/version") == {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake"}
    headers = fake.requests[-1].headers
    assert headers["Authorization"] == "Bearer tok" and headers["User-Agent"].startswith("podnet-client/")
    async with Client(fake.url) as anon:
        await anon.request("GET", "/version")
    assert "Authorization" not in fake.requests[-1].headers


async def test_server_errors_and_unreachable(fake: FakeAPIServer, client: Client) -> None:
    fake.fail_next(1, 500)
    with pytest.raises(errors.APIError) as exc:
        await client.get(PODS, "x", namespace="default")
    assert exc.value.code == 500 and "injected" in exc.value.message
    fake.fail_next(1, 409, "Conflict")
    with pytest.raises(errors.Conflict):
        await client.get(PODS, "x", namespace="default")
    dead = Client("http://127.0.0.1:9", timeout=2)
    try:
        with pytest.raises(ClientError, match="127.0.0.1:9") as cexc:
            await dead.list(PODS)
        assert isinstance(cexc.value, errors.APIError) and cexc.value.code == 503
        with pytest.raises(ClientError):
            async for _ in dead.watch(PODS):
                pass
    finally:
        await dead.close()
    with pytest.raises(errors.BadRequest, match="http://"):
        Client("127.0.0.1:6443")


async def collect(agen: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    async for ev in agen:
        out.append(ev)
        if len(out) == n:
            break
    return out


async def test_watch_replay_then_live(fake: FakeAPIServer, client: Client) -> None:
    await client.create(PODS, pod("a"))
    await client.create(PODS, pod("b"))
    stream = client.watch(PODS, namespace="default")
    task = asyncio.create_task(collect(stream, 5))
    while fake.watcher_count == 0:
        await asyncio.sleep(0.01)
    await client.patch(PODS, "a", {"metadata": {"labels": {"x": "1"}}}, namespace="default")
    await client.delete(PODS, "b", namespace="default")
    await client.create(PODS, pod("c"))
    events = await asyncio.wait_for(task, 10)
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c")]
    assert fake.requests[-4].query["watch"] == "true" and fake.requests[-4].query["resourceVersion"] == "0"


async def test_watch_from_resource_version_and_timeout(fake: FakeAPIServer, client: Client) -> None:
    await client.create(PODS, pod("a"))
    rv = (await client.list(PODS)).resource_version
    await client.create(PODS, pod("b"))
    events = [e async for e in client.watch(PODS, resource_version=rv, timeout_seconds=1)]
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [("ADDED", "b")]
    q = fake.requests[-1].query
    assert q["timeoutSeconds"] == "1" and q["resourceVersion"] == rv and "allowWatchBookmarks" not in q


async def test_watch_split_and_long_lines(client: Client) -> None:
    async with FakeAPIServer(chunk_size=5) as tiny:
        async with Client(tiny.url) as c:
            big = pod("big")
            big["metadata"]["annotations"] = {"blob": "z" * (200 * 1024)}
            tiny.put(PODS, big)
            tiny.put(PODS, pod("small"))
    async with FakeAPIServer() as fake:
        fake.put(PODS, big)
        fake.put(PODS, pod("small"))
        async with Client(fake.url) as c:
            events = await collect(c.watch(PODS), 2)
            assert events[0].object["metadata"]["annotations"]["blob"] == "z" * (200 * 1024)
            assert events[1].object["metadata"]["name"] == "small"
    async with FakeAPIServer(chunk_size=7) as tiny:
        for i in range(20):
            tiny.put(PODS, pod(f"p{i}"))
        async with Client(tiny.url) as c:
            events = await collect(c.watch(PODS), 20)
            assert [e.object["metadata"]["name"] for e in events] == [f"p{i}" for i in range(20)] or \
                sorted(e.object["metadata"]["name"] for e in events) == sorted(f"p{i}" for i in range(20))


async def test_watch_gone_and_bookmarks(fake: FakeAPIServer, client: Client) -> None:
    await client.create(PODS, pod("a"))
    old = (await client.list(PODS)).resource_version
    await client.create(PODS, pod("b"))
    fake.compact()
    with pytest.raises(errors.Gone, match="too old resource version"):
        async for _ in client.watch(PODS, resource_version=old):
            pass
    now = (await client.list(PODS)).resource_version
    task = asyncio.create_task(collect(client.watch(PODS, resource_version=now, allow_bookmarks=True), 1))
    while fake.watcher_count == 0:
        await asyncio.sleep(0.01)
    fake.bookmark()
    (ev,) = await asyncio.wait_for(task, 10)
    assert ev.type == "BOOKMARK" and ev.object["metadata"]["resourceVersion"] == str(fake.rv)
    assert fake.requests[-1].query["allowWatchBookmarks"] == "true"


async def test_watch_break_closes_connection(fake: FakeAPIServer, client: Client) -> None:
    await client.create(PODS, pod("a"))
    async for ev in client.watch(PODS):
        assert ev.type == "ADDED"
        break
    for _ in range(200):
        if fake.watcher_count == 0:
            break
        await asyncio.sleep(0.02)
    # the generator is closed on break in the same task only when garbage collected; aclose explicitly:
    agen = client.watch(PODS)
    await agen.__anext__()
    await agen.aclose()  # type: ignore[attr-defined]
    for _ in range(200):
        if fake.watcher_count == 0:
            break
        await asyncio.sleep(0.02)
    assert fake.watcher_count == 0


async def test_watch_abrupt_disconnect_raises_client_error(fake: FakeAPIServer, client: Client) -> None:
    await client.create(PODS, pod("a"))

    async def consume() -> list[str]:
        seen = []
        async for ev in client.watch(PODS):
            seen.append(ev.type)
        return seen

    task = asyncio.create_task(consume())
    while fake.watcher_count == 0:
        await asyncio.sleep(0.01)
    fake.drop_watches()  # clean end: the iterator just stops
    assert await asyncio.wait_for(task, 10) == ["ADDED"]
    task = asyncio.create_task(consume())
    while fake.watcher_count == 0:
        await asyncio.sleep(0.01)
    fake.drop_watches(abrupt=True)
    try:
        result = await asyncio.wait_for(task, 10)
        assert result == ["ADDED"]  # a FIN after the last chunk may look like a clean end
    except ClientError:
        pass


async def test_requests_survive_server_restart_on_pooled_connections() -> None:
    fake = FakeAPIServer()
    await fake.start()
    client = Client(fake.url, timeout=5)
    try:
        await client.create(PODS, pod("a"))  # leaves a keep-alive connection in the pool
        await fake.stop()
        fake2 = FakeAPIServer(port=fake.port)
        await fake2.start()
        try:
            await client.create(PODS, pod("b"))  # the stale pooled connection is not an error
            await client.get(PODS, "b", namespace="default")
            await fake2.stop()
            fake3 = FakeAPIServer(port=fake.port)
            await fake3.start()
            try:
                with pytest.raises(errors.NotFound):
                    await client.get(PODS, "b", namespace="default")
            finally:
                await fake3.stop()
        finally:
            await fake2.stop()
    finally:
        await client.close()


def test_stale_connection_retry_policy() -> None:
    import aiohttp

    from controlplane.client.client import _stale_connection

    write_failed = aiohttp.ClientOSError(None, "Can not write request body for http://x/")
    hung_up = aiohttp.ServerDisconnectedError()
    refused = aiohttp.ClientConnectorError(None, OSError(111, "refused"))  # type: ignore[arg-type]
    assert _stale_connection("POST", write_failed) and _stale_connection("GET", write_failed)
    assert _stale_connection("GET", hung_up) and _stale_connection("PUT", hung_up)
    assert not _stale_connection("POST", hung_up)  # the server may have created it
    assert not _stale_connection("GET", refused)


def test_client_reused_across_event_loops() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", timeout=5)

    async def once() -> Any:
        async with FakeAPIServer(port=port):
            return await client.request("GET", "/version")

    assert asyncio.run(once())["major"] == "1"
    assert asyncio.run(once())["major"] == "1"  # a new loop: the old loop's session is not reused
    asyncio.run(client.close())


async def test_list_items_carry_kind(fake: FakeAPIServer, client: Client) -> None:
    fake.put(PODS, {"metadata": {"name": "a", "namespace": "default"}})
    fake.objects[("pods", "default", "a")].pop("kind")
    (item,) = (await client.list(PODS)).items
    assert item["kind"] == "Pod" and item["apiVersion"] == "v1"


async def test_delete_preconditions_and_list_iteration(fake: FakeAPIServer, client: Client) -> None:
    created = await client.create(PODS, pod("a"))
    assert [p["metadata"]["name"] for p in await client.list(PODS)] == ["a"]
    await client.delete(PODS, "a", namespace="default", uid=created["metadata"]["uid"],
                        resource_version=created["metadata"]["resourceVersion"], grace_period_seconds=0)
    body = fake.requests[-1].body
    assert body["preconditions"] == {"uid": created["metadata"]["uid"],
                                     "resourceVersion": created["metadata"]["resourceVersion"]}
    assert body["gracePeriodSeconds"] == 0 and body["kind"] == "DeleteOptions"
    await client.create(PODS, pod("b"))
    await client.delete(PODS, "b", namespace="default")
    assert fake.requests[-1].body is None
