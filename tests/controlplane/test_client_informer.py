"""Informer against the fake API server: sync, handlers, indexes, reconnects, 410 relists."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Callable

import pytest

from controlplane.client import Client, Informer
from controlplane.client.fake import FakeAPIServer
from controlplane.resources import NODES, PODS

pytestmark = pytest.mark.timeout(60)


def pod(name: str, ns: str = "default", node: str = "", **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": {"nodeName": node}}


class Recorder:
    """Handlers that log (event, key, rv) and keep a model of what the informer told us."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.model: dict[str, str] = {}
        self.errors: list[str] = []

    @staticmethod
    def _k(o: dict[str, Any]) -> str:
        m = o["metadata"]
        return f"{m['namespace']}/{m['name']}" if m.get("namespace") else m["name"]

    def add(self, o: dict[str, Any]) -> None:
        k = self._k(o)
        if k in self.model:
            self.errors.append(f"add of known {k}")
        self.model[k] = o["metadata"]["resourceVersion"]
        self.events.append(("add", k, o["metadata"]["resourceVersion"]))

    async def update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        k = self._k(new)
        if self.model.get(k) != old["metadata"]["resourceVersion"]:
            self.errors.append(f"update of {k} from {old['metadata']['resourceVersion']}, model {self.model.get(k)}")
        self.model[k] = new["metadata"]["resourceVersion"]
        self.events.append(("update", k, new["metadata"]["resourceVersion"]))

    def delete(self, o: dict[str, Any]) -> None:
        k = self._k(o)
        if self.model.pop(k, None) is None:
            self.errors.append(f"delete of unknown {k}")
        self.events.append(("delete", k, o["metadata"]["resourceVersion"]))

    def attach(self, inf: Informer) -> None:
        inf.add_handler(on_add=self.add, on_update=self.update, on_delete=self.delete)


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def truth(fake: FakeAPIServer, plural: str = "pods") -> dict[str, str]:
    return {(f"{ns}/{name}" if ns else name): o["metadata"]["resourceVersion"]
            for (p, ns, name), o in fake.objects.items() if p == plural}


@pytest.fixture
async def fake() -> AsyncIterator[FakeAPIServer]:
    async with FakeAPIServer() as server:
        yield server


@pytest.fixture
async def client(fake: FakeAPIServer) -> AsyncIterator[Client]:
    async with Client(fake.url, timeout=5) as c:
        yield c


async def test_sync_then_events_in_order(fake: FakeAPIServer, client: Client) -> None:
    fake.put(PODS, pod("a", node="n1"))
    fake.put(PODS, pod("b", "other", node="n2"))
    inf = Informer(client, PODS)
    rec = Recorder()
    rec.attach(inf)
    inf.add_index("byNode", lambda o: [o["spec"].get("nodeName", "")])
    assert not inf.has_synced
    await inf.start()
    try:
        assert await inf.wait_synced(timeout=10) and inf.has_synced
        assert rec.model == truth(fake) and inf.keys() == ["default/a", "other/b"]
        assert inf.get("other/b") is not None and inf.get_by("a", "default") is not None
        await until(lambda: fake.watcher_count == 1)
        assert fake.requests[-1].query["resourceVersion"] == inf.resource_version
        assert fake.requests[-1].query["allowWatchBookmarks"] == "true"
        await client.patch(PODS, "a", {"spec": {"nodeName": "n2"}}, namespace="default")
        await client.create(PODS, pod("c", node="n1"))
        await client.delete(PODS, "b", namespace="other")
        await until(lambda: rec.model == truth(fake))
        assert [(e, k) for e, k, _ in rec.events] == [
            ("add", "default/a"), ("add", "other/b"), ("update", "default/a"), ("add", "default/c"),
            ("delete", "other/b")]
        assert [o["metadata"]["name"] for o in inf.by_index("byNode", "n1")] == ["c"]
        assert inf.index_keys("byNode", "n2") == ["default/a"]
        assert rec.errors == [] and inf.resource_version == str(fake.rv)
    finally:
        await inf.stop()
    await until(lambda: fake.watcher_count == 0)  # stop() closed the watch connection


async def test_selectors_and_namespace(fake: FakeAPIServer, client: Client) -> None:
    fake.put(PODS, pod("a", app="web"))
    fake.put(PODS, pod("b", app="db"))
    fake.put(PODS, pod("c", "other", app="web"))
    async with Informer(client, PODS, namespace="default", label_selector="app=web") as inf:
        assert await inf.wait_synced(5)
        assert inf.keys() == ["default/a"]
        await until(lambda: fake.watcher_count == 1)
        fake.put(PODS, pod("d", app="web"))
        fake.put(PODS, pod("e", app="db"))
        await until(lambda: "default/d" in inf.keys())
        assert inf.keys() == ["default/a", "default/d"]
    lst = [r for r in fake.requests if "watch" not in r.query]
    assert lst[0].path == "/api/v1/namespaces/default/pods" and lst[0].query["labelSelector"] == "app=web"


async def test_cluster_scoped_keys(fake: FakeAPIServer, client: Client) -> None:
    fake.put(NODES, {"metadata": {"name": "n1"}})
    async with Informer(client, NODES, namespace="ignored") as inf:
        assert await inf.wait_synced(5)
        assert inf.keys() == ["n1"] and inf.get("n1") is not None
    assert fake.requests[0].path == "/api/v1/nodes"


async def test_reconnect_resumes_without_duplicates(fake: FakeAPIServer, client: Client) -> None:
    fake.put(PODS, pod("a"))
    inf = Informer(client, PODS)
    rec = Recorder()
    rec.attach(inf)
    async with inf:
        await inf.wait_synced(5)
        for round_ in range(3):
            await until(lambda: fake.watcher_count == 1)
            watches = sum(1 for r in fake.requests if r.query.get("watch"))
            fake.drop_watches(abrupt=bool(round_ % 2))
            fake.put(PODS, pod(f"x{round_}"))  # happens while nobody watches
            fake.put(PODS, pod("a", node=f"n{round_}"))
            await until(lambda: sum(1 for r in fake.requests if r.query.get("watch")) > watches)
        await until(lambda: rec.model == truth(fake))
        assert rec.errors == []
        # no relist: one list, the rest resumed watches from the last RV seen
        assert sum(1 for r in fake.requests if not r.query.get("watch")) == 1
        watch_rvs = [int(r.query["resourceVersion"]) for r in fake.requests if r.query.get("watch")]
        assert watch_rvs == sorted(watch_rvs) and inf.reconnects >= 3 and inf.relists == 0


async def test_bookmark_advances_resume_point(fake: FakeAPIServer, client: Client) -> None:
    fake.put(PODS, pod("a"))
    async with Informer(client, PODS) as inf:
        await inf.wait_synced(5)
        await until(lambda: fake.watcher_count == 1)
        fake.bookmark()
        await until(lambda: inf.resource_version == str(fake.rv))
        bookmark_rv = fake.rv
        fake.drop_watches()
        await until(lambda: sum(1 for r in fake.requests if r.query.get("watch")) == 2)
        assert fake.requests[-1].query["resourceVersion"] == str(bookmark_rv)


async def test_gone_relists_and_delivers_diff(fake: FakeAPIServer, client: Client) -> None:
    for name in ("a", "b", "c"):
        fake.put(PODS, pod(name))
    inf = Informer(client, PODS)
    rec = Recorder()
    rec.attach(inf)
    async with inf:
        await inf.wait_synced(5)
        await until(lambda: fake.watcher_count == 1)
        fake.drop_watches()
        # while disconnected: delete a, change b, add d, and forget history
        fake.remove(PODS, "default", "a")
        fake.put(PODS, pod("b", node="n9"))
        fake.put(PODS, pod("d"))
        fake.compact()
        await until(lambda: inf.relists == 1)
        await until(lambda: rec.model == truth(fake))
        assert rec.events[3:] == [("delete", "default/a", rec.events[0][2]),
                                  ("update", "default/b", truth(fake)["default/b"]),
                                  ("add", "default/d", truth(fake)["default/d"])]
        assert rec.errors == []
        await until(lambda: fake.watcher_count == 1)
        fake.put(PODS, pod("e"))
        await until(lambda: "default/e" in rec.model)


async def test_server_errors_back_off_and_recover(fake: FakeAPIServer, client: Client) -> None:
    fake.fail_next(3, 503, "ServiceUnavailable")
    fake.put(PODS, pod("a"))
    async with Informer(client, PODS, max_backoff=0.5) as inf:
        assert await inf.wait_synced(10)
        assert inf.keys() == ["default/a"]
    assert sum(1 for r in fake.requests if not r.query.get("watch")) == 4


async def test_server_restart_same_port(client: Client, fake: FakeAPIServer) -> None:
    fake.put(PODS, pod("a"))
    inf = Informer(client, PODS, max_backoff=0.5)
    rec = Recorder()
    rec.attach(inf)
    async with inf:
        await inf.wait_synced(5)
        await until(lambda: fake.watcher_count == 1)
        port = fake.port
        await fake.stop()
        await asyncio.sleep(0.5)  # the informer retries against a closed port meanwhile
        fake2 = FakeAPIServer(port=port)
        fake2.objects, fake2.rv, fake2.history = fake.objects, fake.rv, fake.history
        await fake2.start()
        try:
            await until(lambda: fake2.watcher_count == 1)
            fake2.put(PODS, pod("b"))
            await until(lambda: "default/b" in rec.model)
            assert rec.errors == []
        finally:
            await inf.stop()
            await fake2.stop()


async def test_handler_errors_are_logged_not_fatal(fake: FakeAPIServer, client: Client,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def bad(o: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    async def good(o: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        seen.append(o["metadata"]["name"])

    fake.put(PODS, pod("a"))
    inf = Informer(client, PODS)
    inf.add_handler(on_add=bad)
    inf.add_handler(on_add=good)
    with caplog.at_level(logging.ERROR, logger="podnet.informer"):
        async with inf:
            await inf.wait_synced(5)
            fake.put(PODS, pod("b"))
            await until(lambda: seen == ["a", "b"])
    assert "boom" in caplog.text


async def test_late_handler_gets_existing_objects_first(fake: FakeAPIServer, client: Client) -> None:
    fake.put(PODS, pod("a"))
    fake.put(PODS, pod("b"))
    async with Informer(client, PODS) as inf:
        await inf.wait_synced(5)
        rec = Recorder()
        rec.attach(inf)
        await until(lambda: len(rec.model) == 2)
        fake.put(PODS, pod("a", node="n1"))
        await until(lambda: rec.model == truth(fake))
        assert [e for e, _, _ in rec.events] == ["add", "add", "update"] and rec.errors == []


async def test_wait_synced_times_out_when_unreachable() -> None:
    async with Client("http://127.0.0.1:9", timeout=1) as c:
        inf = Informer(c, PODS, max_backoff=0.2)
        await inf.start()
        try:
            assert await inf.wait_synced(0.5) is False and not inf.has_synced
        finally:
            await inf.stop()


async def test_churn_consistency(fake: FakeAPIServer, client: Client) -> None:
    """Random churn with drops and compactions: the handler model always converges to the truth."""
    import random

    rnd = random.Random(7)
    inf = Informer(client, PODS, max_backoff=0.2)
    rec = Recorder()
    rec.attach(inf)
    async with inf:
        await inf.wait_synced(5)
        for step in range(300):
            name = f"p{rnd.randrange(20)}"
            if ("default", name) in {(k[1], k[2]) for k in fake.objects} and rnd.random() < 0.3:
                fake.remove(PODS, "default", name)
            else:
                fake.put(PODS, pod(name, node=f"n{step}"))
            if step % 50 == 25:
                fake.drop_watches(abrupt=step % 100 == 25)
            if step % 120 == 60:
                fake.compact()
            if step % 10 == 0:
                await asyncio.sleep(0.01)
        await until(lambda: rec.model == truth(fake), timeout=20)
        assert rec.errors == []
        assert {k: o["metadata"]["resourceVersion"] for k, o in zip(inf.keys(), inf.list())} == truth(fake)
