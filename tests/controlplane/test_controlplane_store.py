"""Unit tests of the store core (state.py), the SQLite shell (storage.py) and the watch hub."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Mapping

import pytest

from controlplane import errors
from controlplane.state import (ADDED, DELETED, MODIFIED, Event, History, Key, ObjectIndex, Entry, WatchFilter,
                                catch_up, parse_rv, replay)
from controlplane.storage import Change, Store
from controlplane.watch import Hub

PODS = "/pods"


def pod(name: str, ns: str = "default", **labels: str) -> dict[str, Any]:
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns, "labels": labels}}


class Eq:
    """A tiny label matcher: all given pairs must match."""

    def __init__(self, **want: str) -> None:
        self.want = want

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.want.items())


def ev(rv: int, type_: str, obj: dict[str, Any], prev: dict[str, Any] | None = None) -> Event:
    m = obj["metadata"]
    return Event(rv, Key(PODS, m["namespace"], m["name"]), type_, obj, prev)


# ---------------------------------------------------------------- pure core

def test_index_orders_by_namespace_and_name() -> None:
    idx = ObjectIndex()
    for ns, name in [("b", "x"), ("a", "z"), ("a", "y")]:
        idx.put(Key(PODS, ns, name), Entry(pod(name, ns), "", 1))
    assert [e.obj["metadata"]["name"] for e in idx.entries(PODS)] == ["y", "z", "x"]
    assert [e.obj["metadata"]["name"] for e in idx.entries(PODS, "a")] == ["y", "z"]
    assert idx.count(PODS) == 3
    idx.remove(Key(PODS, "b", "x"))
    assert idx.namespaces_with(PODS) == ["a"]
    assert idx.entries("/services") == []


def test_history_since_and_gone() -> None:
    h = History(capacity=10)
    for rv in range(1, 31):
        h.append(ev(rv, ADDED, pod(f"p{rv}")))
    assert len(h) <= 11 and h.compacted >= 19
    assert [e.rv for e in h.since(25, 30)] == [26, 27, 28, 29, 30]
    assert h.since(30, 30) == []
    with pytest.raises(errors.Gone) as exc:
        h.since(3, 30)
    assert exc.value.status()["message"] == "too old resource version: 3 (30)"
    assert exc.value.code == 410 and exc.value.reason == "Expired"
    with pytest.raises(ValueError):
        h.append(ev(30, ADDED, pod("again")))


def test_selector_transitions_become_added_and_deleted() -> None:
    f = WatchFilter(PODS, "default", label=Eq(app="web"))
    web, db = pod("a", app="web"), pod("a", app="db")
    assert f.translate(ev(1, ADDED, web)) == ADDED
    assert f.translate(ev(2, MODIFIED, db, web)) == DELETED  # stopped matching
    assert f.translate(ev(3, MODIFIED, web, db)) == ADDED  # started matching
    assert f.translate(ev(4, MODIFIED, web, web)) == MODIFIED
    assert f.translate(ev(5, MODIFIED, db, db)) is None
    assert f.translate(ev(6, DELETED, web, web)) == DELETED
    assert f.translate(ev(7, ADDED, pod("a", "other", app="web"))) is None  # other namespace
    assert WatchFilter("/services").translate(ev(8, ADDED, web)) is None


def test_event_line_is_encoded_once() -> None:
    e = ev(1, ADDED, pod("a"))
    line = e.line()
    assert line.startswith(b'{"type":"ADDED","object":{') and line.endswith(b"}\n")
    assert e.line() is line
    assert e.line(DELETED).startswith(b'{"type":"DELETED"')


def test_replay_and_catch_up() -> None:
    idx = ObjectIndex()
    for name, app in [("a", "web"), ("b", "db"), ("c", "web")]:
        idx.put(Key(PODS, "default", name), Entry(pod(name, app=app), "", 1))
    f = WatchFilter(PODS, None, label=Eq(app="web"))
    assert [e.obj["metadata"]["name"] for e in replay(idx, f)] == ["a", "c"]
    h = History()
    h.append(ev(5, ADDED, pod("d", app="web")))
    h.append(ev(6, ADDED, pod("e", app="db")))
    assert [(e.rv, t) for e, t in catch_up(h, f, 4, 6)] == [(5, ADDED)]


def test_parse_rv() -> None:
    assert parse_rv(None) is None and parse_rv("") is None and parse_rv("0") == 0 and parse_rv("12") == 12
    for bad in ("x", "-1", "1.5"):
        with pytest.raises(errors.BadRequest):
            parse_rv(bad)


# ---------------------------------------------------------------- SQLite shell

def test_commit_assigns_rvs_and_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    s = Store(db)
    evs = s.commit([Change(Key(PODS, "default", "a"), ADDED, pod("a")),
                    Change(Key(PODS, "default", "b"), ADDED, pod("b"))])
    assert [e.rv for e in evs] == [1, 2] and s.rv == 2
    assert s.get(Key(PODS, "default", "a")).obj["metadata"]["resourceVersion"] == "1"  # type: ignore[union-attr]
    final = dict(pod("a"))
    s.commit([Change(Key(PODS, "default", "a"), DELETED, final)])
    assert s.get(Key(PODS, "default", "a")) is None and final["metadata"]["resourceVersion"] == "3"
    s.close()
    s2 = Store(db)
    assert s2.rv == 3
    assert [e.obj["metadata"]["name"] for e in s2.list_entries(PODS)[0]] == ["b"]
    kept = s2.history.since(0, s2.rv)
    assert [(e.rv, e.type) for e in kept] == [(1, ADDED), (2, ADDED), (3, DELETED)]
    assert kept[2].prev is not None and kept[2].prev["metadata"]["resourceVersion"] == "1"
    s2.close()


def test_failed_commit_changes_nothing(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db")
    s.commit([Change(Key(PODS, "default", "a"), ADDED, pod("a"))])
    seen: list[Event] = []
    s.listeners.append(seen.extend)
    bad = pod("b")
    bad["metadata"]["labels"] = {"x": object()}  # not serializable: fails before the transaction
    with pytest.raises(TypeError):
        s.commit([Change(Key(PODS, "default", "c"), ADDED, pod("c")), Change(Key(PODS, "default", "b"), ADDED, bad)])
    assert s.rv == 1 and s.get(Key(PODS, "default", "c")) is None and not seen
    s.db.execute("CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.name = 'd' "
                 "BEGIN SELECT RAISE(ABORT, 'boom'); END")
    with pytest.raises(sqlite3.IntegrityError):
        s.commit([Change(Key(PODS, "default", "c"), ADDED, pod("c")), Change(Key(PODS, "default", "d"), ADDED, pod("d"))])
    assert s.rv == 1 and s.get(Key(PODS, "default", "c")) is None and not seen
    assert s.db.execute("SELECT count(*) FROM objects").fetchone()[0] == 1
    s.close()


def test_history_compaction_persists(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db", history_capacity=20)
    for i in range(60):
        s.commit([Change(Key(PODS, "default", f"p{i}"), ADDED, pod(f"p{i}"))])
    assert s.history.compacted > 0
    compacted = s.history.compacted
    s.close()
    s2 = Store(tmp_path / "state.db", history_capacity=20)
    assert s2.history.compacted >= compacted and s2.rv == 60
    with pytest.raises(errors.Gone):
        s2.history.since(1, s2.rv)
    assert [e.rv for e in s2.history.since(55, 60)] == [56, 57, 58, 59, 60]
    assert s2.db.execute("SELECT min(rv) FROM events").fetchone()[0] > compacted
    s2.close()


def test_same_key_twice_in_one_commit(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db")
    k = Key(PODS, "default", "a")
    evs = s.commit([Change(k, ADDED, pod("a")), Change(k, MODIFIED, pod("a", x="1")), Change(k, DELETED, pod("a"))])
    assert [e.type for e in evs] == [ADDED, MODIFIED, DELETED]
    assert evs[1].prev is not None and evs[2].prev == evs[1].obj
    assert s.get(k) is None and s.db.execute("SELECT count(*) FROM objects").fetchone()[0] == 0
    s.close()


# ---------------------------------------------------------------- hub

async def test_hub_fans_out_to_matching_watchers(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db")
    hub = Hub(s)
    every = [hub.subscribe(WatchFilter(PODS), None) for _ in range(150)]
    web = hub.subscribe(WatchFilter(PODS, "default", label=Eq(app="web")), None)
    svc = hub.subscribe(WatchFilter("/services"), None)
    s.commit([Change(Key(PODS, "default", "a"), ADDED, pod("a", app="web"))])
    s.commit([Change(Key(PODS, "default", "a"), MODIFIED, pod("a", app="db"))])
    for w in every:
        batch = await w.next_batch(1)
        assert batch is not None and [t for _, t in batch] == [ADDED, MODIFIED]
    assert every[0].items == every[1].items  # drained
    got = await web.next_batch(1)
    assert got is not None and [t for _, t in got] == [ADDED, DELETED]
    assert got[0][0].line() is (await every[0].next_batch(0.01) or [(got[0][0], "")])[0][0].line()
    assert await svc.next_batch(0.01) == []
    hub.unsubscribe(svc)
    assert await svc.next_batch(0.01) is None
    assert hub.count == 151
    hub.close_all()
    s.close()


async def test_hub_resume_and_gone(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db", history_capacity=10)
    hub = Hub(s)
    for i in range(30):
        s.commit([Change(Key(PODS, "default", f"p{i}"), ADDED, pod(f"p{i}"))])
    w = hub.subscribe(WatchFilter(PODS), 27)
    batch = await w.next_batch(1)
    assert batch is not None and [e.rv for e, _ in batch] == [28, 29, 30]
    with pytest.raises(errors.Gone):
        hub.subscribe(WatchFilter(PODS), 2)
    s.close()


async def test_slow_watcher_is_closed(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db")
    hub = Hub(s, max_queue=5)
    w = hub.subscribe(WatchFilter(PODS), None)
    for i in range(10):
        s.commit([Change(Key(PODS, "default", f"p{i}"), ADDED, pod(f"p{i}"))])
    assert w.overflowed and w.closed
    batch = await w.next_batch(0.1)
    assert batch is not None and len(batch) == 5
    assert await w.next_batch(0.1) is None
    s.close()


async def test_next_batch_wakes_on_commit(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db")
    hub = Hub(s)
    w = hub.subscribe(WatchFilter(PODS), None)
    waiter = asyncio.create_task(w.next_batch(5))
    await asyncio.sleep(0.01)
    s.commit([Change(Key(PODS, "default", "a"), ADDED, pod("a"))])
    batch = await asyncio.wait_for(waiter, 1)
    assert batch is not None and len(batch) == 1
    s.close()


def test_schema_unknown_fields() -> None:
    from controlplane.schema import unknown_fields

    pod_obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"any": "x"}, "bad": 1},
               "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 1, "hostPortt": 2}],
                                        "livenessProbe": {"httpGet": {"port": 1, "pth": "/"}}}],
                        "hostNetwork": True, "nodeSelector": {"free": "form"}},
               "status": {"podIPs": [{"ip": "1.2.3.4", "x": 1}], "containerStatuses": [{"anything": 1}]}}
    assert unknown_fields("Pod", pod_obj) == ["metadata.bad", "spec.containers[0].ports[0].hostPortt",
                                              "spec.containers[0].livenessProbe.httpGet.pth", "status.podIPs[0].x"]
    sl = {"addressType": "IPv4", "endpoints": [{"addresses": ["1.1.1.1"], "conditions": {"ready": True, "x": 1}}],
          "ports": [{"port": 80, "name": "", "protocol": "TCP"}], "extra": []}
    assert unknown_fields("EndpointSlice", sl) == ["endpoints[0].conditions.x", "extra"]
    assert unknown_fields("Service", {"spec": {"ports": "not-a-list"}}) == []
    assert unknown_fields("Widget", {"x": 1}) == []


def test_index_tracks_dependents() -> None:
    idx = ObjectIndex()
    dep = pod("d")
    dep["metadata"]["ownerReferences"] = [{"uid": "u1"}, {"uid": "u2"}]
    k = Key(PODS, "default", "d")
    idx.put(k, Entry(dep, "", 1))
    assert idx.dependents("u1") == [k] and idx.dependents("u2") == [k]
    moved = pod("d")
    moved["metadata"]["ownerReferences"] = [{"uid": "u2"}]
    idx.put(k, Entry(moved, "", 2))
    assert idx.dependents("u1") == [] and idx.dependents("u2") == [k]
    idx.remove(k)
    assert idx.dependents("u2") == []


def test_old_events_are_slimmed_but_equivalent() -> None:
    h = History(capacity=10_000)
    h.HOT = 3
    f = WatchFilter(PODS, None, label=Eq(app="web"))
    prev = None
    for rv in range(1, 11):
        obj = pod("a", app="web" if rv % 2 else "db")
        obj["metadata"]["resourceVersion"] = str(rv)
        h.append(Event(rv, Key(PODS, "default", "a"), MODIFIED if prev else ADDED, obj, prev))
        prev = obj
    old, new = h.since(0, 10)[1], h.since(0, 10)[-1]
    assert old._obj is None and new._obj is not None  # slimmed vs hot
    assert old.obj["metadata"]["resourceVersion"] == "2" and old.prev is not None
    assert old.prev["metadata"]["resourceVersion"] == "1"
    assert [t for _, t in catch_up(h, f, 0, 10)] == [ADDED, DELETED, ADDED, DELETED, ADDED, DELETED, ADDED,
                                                     DELETED, ADDED, DELETED][:10]
    assert old.line() == Event(2, old.key, MODIFIED, old.obj).line()


# ---------------------------------------------------------------- group commit

async def test_group_commit_visibility_and_batching(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db")
    seen: list[list[Event]] = []
    s.listeners.append(seen.append)
    s.start_writer()
    try:
        ka, kb = Key(PODS, "default", "a"), Key(PODS, "default", "b")
        s.submit([Change(ka, ADDED, pod("a"))])
        s.submit([Change(kb, ADDED, pod("b")), Change(ka, MODIFIED, pod("a", x="1"))])
        # writers see the queued state at once, readers only once durable
        assert s.latest(ka) is not None and s.latest(ka).obj["metadata"]["labels"] == {"x": "1"}  # type: ignore[union-attr]
        assert s.assigned == 3
        assert s.latest_entries(PODS) and [e.obj["metadata"]["name"] for e in s.latest_entries(PODS)] == ["a", "b"]
        await s.wait_durable(s.assigned)
        assert s.rv == 3 and s.get(kb) is not None and s.get(ka).rv == 3  # type: ignore[union-attr]
        assert [e.rv for batch in seen for e in batch] == [1, 2, 3]
        assert not s._overlay
        s.submit([Change(ka, DELETED, pod("a"))])
        assert s.latest(ka) is None and s.get(ka) is not None
        assert s.latest_entries(PODS, "default")[0].obj["metadata"]["name"] == "b"
        await s.wait_durable(s.assigned)
        assert s.get(ka) is None
        with pytest.raises(RuntimeError):
            s.commit([Change(ka, ADDED, pod("a"))])
    finally:
        await s.stop_writer()
    s.close()
    s2 = Store(tmp_path / "state.db")
    assert s2.rv == 4 and [e.obj["metadata"]["name"] for e in s2.list_entries(PODS)[0]] == ["b"]
    s2.close()


async def test_group_commit_many_writes_few_transactions(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db")
    transactions = 0
    original = s._write

    def counting(batch: Any, compacted: Any) -> None:
        nonlocal transactions
        transactions += 1
        original(batch, compacted)

    s._write = counting  # type: ignore[method-assign]
    s.start_writer()
    try:
        for i in range(200):
            s.submit([Change(Key(PODS, "default", f"p{i}"), ADDED, pod(f"p{i}"))])
        await s.wait_durable(s.assigned)
        assert s.rv == 200 and transactions < 20
    finally:
        await s.stop_writer()
    s.close()


async def test_failed_group_commit_is_fail_stop(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db")
    s.commit([Change(Key(PODS, "default", "a"), ADDED, pod("a"))])
    s.db.execute("CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.name = 'bad' "
                 "BEGIN SELECT RAISE(ABORT, 'boom'); END")
    s.start_writer()
    try:
        s.submit([Change(Key(PODS, "default", "bad"), ADDED, pod("bad"))])
        with pytest.raises(errors.APIError) as exc:
            await s.wait_durable(s.assigned)
        assert "storage failure" in exc.value.message and exc.value.code == 500
        assert s.broken is not None and s.rv == 1 and s.assigned == 1
        assert s.get(Key(PODS, "default", "bad")) is None and s.latest(Key(PODS, "default", "bad")) is None
        with pytest.raises(errors.APIError):
            s.submit([Change(Key(PODS, "default", "c"), ADDED, pod("c"))])
    finally:
        await s.stop_writer()
    assert s.db.execute("SELECT count(*) FROM objects").fetchone()[0] == 1
    s.close()


def test_snapshot_rewinds_and_paginate() -> None:
    from controlplane.state import paginate, snapshot

    idx, h = ObjectIndex(), History()
    rv = 0

    def apply(type_: str, name: str, **labels: str) -> None:
        nonlocal rv
        rv += 1
        k = Key(PODS, "default", name)
        prev = idx.get(k)
        obj = pod(name, **labels)
        obj["metadata"]["resourceVersion"] = str(rv)
        h.append(Event(rv, k, type_, obj, prev.obj if prev else None))
        if type_ == DELETED:
            idx.remove(k)
        else:
            idx.put(k, Entry(obj, "", rv))

    apply(ADDED, "a", v="1")
    apply(ADDED, "b", v="1")
    apply(MODIFIED, "a", v="2")
    apply(DELETED, "b")
    apply(ADDED, "c")
    names = lambda es: [(e.obj["metadata"]["name"], e.obj["metadata"]["labels"]) for e in es]  # noqa: E731
    assert names(snapshot(idx, h, PODS, None, 2, rv)) == [("a", {"v": "1"}), ("b", {"v": "1"})]
    assert names(snapshot(idx, h, PODS, None, 5, rv)) == [("a", {"v": "2"}), ("c", {})]
    assert snapshot(idx, h, PODS, "other", 2, rv) == []
    entries = snapshot(idx, h, PODS, None, 2, rv)
    assert snapshot(idx, h, PODS, None, 3, rv)[0].rv == 3
    page, after, remaining = paginate(entries, None, 1)
    assert names(page) == [("a", {"v": "1"})] and after == ("default", "a") and remaining == 1
    page, after, remaining = paginate(entries, after, 1)
    assert names(page) == [("b", {"v": "1"})] and after is None and remaining == 0


def test_pod_qos() -> None:
    from controlplane.objects import pod_qos

    def spec(*resources: dict[str, Any]) -> dict[str, Any]:
        return {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}

    both = {"cpu": "1", "memory": "1Gi"}
    assert pod_qos(spec({})) == "BestEffort"
    assert pod_qos({}) == "BestEffort"
    assert pod_qos(spec({"limits": both})) == "Guaranteed"  # requests default to limits
    assert pod_qos(spec({"limits": both, "requests": both}, {"limits": both})) == "Guaranteed"
    assert pod_qos(spec({"limits": both, "requests": {"cpu": "500m"}})) == "Burstable"
    assert pod_qos(spec({"requests": {"memory": "1Gi"}}, {})) == "Burstable"
    assert pod_qos(spec({"limits": {"cpu": "1"}})) == "Burstable"
    assert pod_qos(spec({"requests": {"cpu": "0"}})) == "BestEffort"
