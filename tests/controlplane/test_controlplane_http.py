"""Raw HTTP against a live server: bad inputs (never 500), watch protocol details, restart durability."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import signal
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ControlPlane, free_port_number, start_controlplane


class HTTP:
    def __init__(self, cp: ControlPlane) -> None:
        self.port = cp.port

    def req(self, method: str, path: str, body: bytes | str | dict[str, Any] | list[Any] | None = None,
            ctype: str | None = "application/json", headers: dict[str, str] | None = None,
            timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if isinstance(body, (dict, list)) else (
                body.encode() if isinstance(body, str) else body)
            hdrs = dict(headers or {})
            if ctype and data is not None:
                hdrs["Content-Type"] = ctype
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any = None, ctype: str | None = "application/json",
             expect: int | None = None) -> tuple[int, Any]:
        status, _, raw = self.req(method, path, body, ctype)
        assert status < 500, (method, path, status, raw)
        if expect is not None:
            assert status == expect, (method, path, status, raw)
        return status, json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    server = start_controlplane(tmp_path_factory.mktemp("hcp") / "cp", free_port_number(), "--controllers", "",
                                "--history", "50", "--bookmark-interval", "0.5", "--pod-gc-margin", "0")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def h(cp: ControlPlane) -> HTTP:
    return HTTP(cp)


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
       "spec": {"containers": [{"name": "c", "image": "x"}]}}


def pods(ns: str = "default", name: str = "") -> str:
    return f"/api/v1/namespaces/{ns}/pods" + (f"/{name}" if name else "")


def test_bad_bodies_are_4xx_with_reasons(h: HTTP) -> None:
    status, body = h.json("POST", pods(), b'{"kind": "Pod", ', expect=400)
    assert body["kind"] == "Status" and body["reason"] == "BadRequest" and "not valid JSON" in body["message"]
    _, body = h.json("POST", pods(), dict(POD, kind="Service"), expect=400)
    assert "kind" in body["message"] and "Service" in body["message"]
    _, body = h.json("POST", pods(), dict(POD, apiVersion="apps/v1"), expect=400)
    assert "apps/v1" in body["message"]
    _, body = h.json("POST", pods(), [1, 2], expect=400)
    _, body = h.json("POST", pods(), "null", expect=400)
    _, body = h.json("POST", pods(), POD, ctype="application/vnd.kubernetes.protobuf", expect=415)
    assert body["reason"] == "UnsupportedMediaType" and "JSON" in body["message"]
    _, body = h.json("POST", pods(), POD, ctype="text/csv", expect=415)
    _, body = h.json("POST", pods("nowhere"), POD, expect=404)
    assert body["message"] == 'namespaces "nowhere" not found' and body["details"]["kind"] == "namespaces"
    _, body = h.json("POST", pods(), dict(POD, metadata={"name": "p", "namespace": "other"}), expect=400)
    _, body = h.json("POST", pods(), dict(POD, metadata={"name": "Bad_Name"}), expect=422)
    assert body["reason"] == "Invalid" and body["details"]["causes"][0]["field"] == "metadata.name"
    _, body = h.json("POST", pods(), dict(POD, metadata={}), expect=422)
    _, body = h.json("POST", pods(), dict(POD, metadata={"name": "x", "resourceVersion": "5"}), expect=400)


def test_no_content_type_is_json_and_dry_run(h: HTTP) -> None:
    body = dict(POD, metadata={"name": "dry"})
    h.json("POST", pods() + "?dryRun=All", body, ctype=None, expect=201)
    h.json("GET", pods(name="dry"), expect=404)
    h.json("POST", pods() + "?dryRun=Maybe", body, expect=400)
    _, created = h.json("POST", pods(), body, ctype=None, expect=201)
    assert created["metadata"]["uid"]
    _, again = h.json("POST", pods(), body, expect=409)
    assert again["reason"] == "AlreadyExists" and again["message"] == 'pods "dry" already exists'
    h.json("DELETE", pods(name="dry") + "?dryRun=All", expect=200)
    h.json("GET", pods(name="dry"), expect=200)
    h.json("DELETE", pods(name="dry"), {"propagationPolicy": "Background"}, expect=200)


def test_put_and_patch_errors(h: HTTP) -> None:
    _, p = h.json("POST", pods(), dict(POD, metadata={"name": "pp"}), expect=201)
    _, body = h.json("PUT", pods(name="pp"), dict(p, metadata=dict(p["metadata"], name="other")), expect=400)
    stale = dict(p, metadata=dict(p["metadata"], resourceVersion="1"))
    _, body = h.json("PUT", pods(name="pp"), stale, expect=409)
    assert body["reason"] == "Conflict" and body["message"] == (
        'Operation cannot be fulfilled on pods "pp": the object has been modified; please apply your changes to '
        "the latest version and try again")
    unconditional = dict(p, metadata={k: v for k, v in p["metadata"].items() if k != "resourceVersion"})
    unconditional["metadata"]["labels"] = {"u": "1"}
    _, put = h.json("PUT", pods(name="pp"), unconditional, expect=200)
    assert put["metadata"]["labels"] == {"u": "1"} and put["metadata"]["uid"] == p["metadata"]["uid"]
    h.json("PATCH", pods(name="pp"), {"metadata": {}}, ctype="application/json", expect=415)
    h.json("PATCH", pods(name="pp"), b"{nope", ctype="application/merge-patch+json", expect=400)
    h.json("PATCH", pods(name="pp"), [{"op": "explode", "path": "/x"}], ctype="application/json-patch+json")
    h.json("PATCH", pods(name="pp"), [{"op": "test", "path": "/metadata/name", "value": "zz"}],
           ctype="application/json-patch+json")
    h.json("PATCH", pods(name="missing"), {}, ctype="application/merge-patch+json", expect=404)
    h.json("PATCH", pods(name="pp"), {"metadata": {"name": "renamed"}}, ctype="application/merge-patch+json",
           expect=400)
    h.json("PATCH", pods(name="pp"), b"a: [", ctype="application/apply-patch+yaml")
    h.json("PUT", pods(name="nothere"), dict(POD, metadata={"name": "nothere"}), expect=404)
    h.json("DELETE", pods(name="pp"), b"{bad", expect=400)
    h.json("DELETE", pods(name="pp"), {"preconditions": {"resourceVersion": "1"}}, expect=409)
    h.json("DELETE", pods(name="pp"), expect=200)


def test_service_update_with_garbage_port_is_422(h: HTTP) -> None:
    svc_path = "/api/v1/namespaces/default/services"
    _, created = h.json("POST", svc_path, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gp"},
                                            "spec": {"type": "NodePort", "ports": [{"port": 80}]}}, expect=201)
    bad = dict(created, spec=dict(created["spec"], ports=[{"port": [[]], "nodePort": [1]}]))
    _, body = h.json("PUT", f"{svc_path}/gp", bad, expect=422)
    assert body["reason"] == "Invalid"
    h.json("DELETE", f"{svc_path}/gp", expect=200)


def test_unknown_paths_and_params(h: HTTP) -> None:
    for path in ("/api/v1/widgets", "/apis/apps/v1/deployments", "/api/v2/pods", "/nothing",
                 "/api/v1/namespaces/default/pods/p/exec", "/apis/nope", "/openapi/v3/apis/nope/v1"):
        status, _, raw = h.req("GET", path)
        assert status == 404, path
        assert json.loads(raw)["kind"] == "Status"
    h.json("GET", "/api/v1/pods?labelSelector=" + urllib.parse.quote("a in (b"), expect=400)
    h.json("GET", "/api/v1/services?fieldSelector=spec.bogus%3D1", expect=400)
    h.json("GET", "/api/v1/pods?watch=1&resourceVersion=abc", expect=400)
    h.json("GET", "/api/v1/pods?watch=1&timeoutSeconds=x", expect=400)
    h.json("POST", "/api/v1/pods", POD, expect=405)
    h.json("PUT", "/api/v1/namespaces/default/pods", POD, expect=405)
    h.json("DELETE", "/api/v1/namespaces", expect=405)
    h.json("GET", "/api/v1/namespaces/default/pods/x/binding", expect=405)
    _, body = h.json("DELETE", "/api/v1/namespaces/default", expect=403)
    assert body["reason"] == "Forbidden"
    status, _, _ = h.req("POST", pods(), b"{" + b" " * (4 * 1024 * 1024) + b"}")
    assert status == 413


def test_fuzz_never_500(h: HTTP) -> None:
    rnd = random.Random(7)
    paths = [pods(), pods(name="f"), pods(name="f") + "/status", pods(name="f") + "/binding",
             "/api/v1/namespaces", "/api/v1/namespaces/fz", "/api/v1/namespaces/default/services",
             "/api/v1/namespaces/default/services/s", "/api/v1/nodes/n",
             "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/e"]
    bodies: list[Any] = [b"", b"{}", b"[]", b"\xff\xfe", b"42", b'"s"', {"metadata": 5}, {"metadata": {"name": 5}},
                         {"metadata": {"name": "f", "labels": ["x"]}}, {"spec": "x", "metadata": {"name": "f"}},
                         {"kind": "Pod", "metadata": {"name": "f"}, "spec": {"containers": "no"}},
                         {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "s"},
                          "spec": {"ports": [{"port": "eighty"}], "clusterIP": 7}},
                         {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "fz", "finalizers": 3}},
                         {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n"}, "status": [1]},
                         {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "metadata": {"name": "e"},
                          "addressType": 5, "endpoints": [{}]},
                         {"target": {"name": 5}}, [{"op": "add", "path": 5}], {"$patch": "delete"}]
    ctypes = ["application/json", "application/merge-patch+json", "application/json-patch+json",
              "application/strategic-merge-patch+json", "application/apply-patch+yaml", "application/yaml"]
    for _ in range(250):
        method = rnd.choice(["POST", "PUT", "PATCH", "DELETE", "GET"])
        path = rnd.choice(paths) + rnd.choice(["", "?fieldManager=f", "?dryRun=All", "?force=true&fieldManager=f"])
        body = rnd.choice(bodies)
        status, _, raw = h.req(method, path, body, rnd.choice(ctypes))
        assert status < 500, (method, path, body, status, raw)
    h.json("GET", "/api/v1/pods", expect=200)


def _watch_lines(h: HTTP, path: str, timeout: float = 10) -> list[dict[str, Any]]:
    status, headers, raw = h.req("GET", path, timeout=timeout)
    assert status == 200, raw
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


def test_watch_too_old_gets_410_event(h: HTTP) -> None:
    for i in range(60):  # --history 50: the earliest events fall out
        h.json("POST", "/api/v1/namespaces", {"metadata": {"name": f"old-{i}"}}, expect=201)
    events = _watch_lines(h, "/api/v1/namespaces?watch=true&resourceVersion=2&timeoutSeconds=5")
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    st = events[0]["object"]
    assert st["code"] == 410 and st["reason"] == "Expired" and st["message"].startswith("too old resource version: 2 (")
    for i in range(60):
        h.json("DELETE", f"/api/v1/namespaces/old-{i}", expect=200)


def test_watch_bookmarks_selectors_and_timeout(h: HTTP) -> None:
    _, lst = h.json("GET", pods(), expect=200)
    rv = lst["metadata"]["resourceVersion"]
    h.json("POST", pods(), dict(POD, metadata={"name": "sel", "labels": {"app": "web"}}), expect=201)
    h.json("PATCH", pods(name="sel"), {"metadata": {"labels": {"app": "db"}}}, "application/merge-patch+json", 200)
    h.json("PATCH", pods(name="sel"), {"metadata": {"labels": {"app": "web"}}}, "application/merge-patch+json", 200)
    h.json("DELETE", pods(name="sel"), expect=200)
    start = time.monotonic()
    events = _watch_lines(h, pods() + f"?watch=1&resourceVersion={rv}&labelSelector=app%3Dweb"
                          "&allowWatchBookmarks=true&timeoutSeconds=2")
    assert 1.5 < time.monotonic() - start < 6
    kinds = [e["type"] for e in events if e["type"] != "BOOKMARK"]
    assert kinds == ["ADDED", "DELETED", "ADDED", "DELETED"]
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks and bookmarks[-1]["object"]["kind"] == "Pod"
    assert int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) >= int(events[-2]["object"]["metadata"]
                                                                              ["resourceVersion"])
    deleted = [e for e in events if e["type"] == "DELETED"][-1]["object"]
    assert int(deleted["metadata"]["resourceVersion"]) > int(rv)
    events = _watch_lines(h, pods() + f"?watch=1&resourceVersion={rv}&timeoutSeconds=1")
    assert not any(e["type"] == "BOOKMARK" for e in events)
    events = _watch_lines(h, "/api/v1/namespaces?watch=1&timeoutSeconds=1&sendInitialEvents=true"
                          "&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan")
    assert events[0]["type"] == "ADDED"
    end = [e for e in events if e["type"] == "BOOKMARK"][0]
    assert end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"


def test_tables_and_status_subresource(h: HTTP) -> None:
    status, headers, raw = h.req("GET", "/api/v1/namespaces/default/services", headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
                  "g=meta.k8s.io,application/json"})
    assert status == 200
    body = json.loads(raw)
    assert body["kind"] in ("Table", "ServiceList")
    h.json("POST", pods(), dict(POD, metadata={"name": "st"}), expect=201)
    _, got = h.json("PUT", pods(name="st") + "/status", dict(POD, metadata={"name": "st"},
                                                            status={"phase": "Running"},
                                                            spec={"containers": [{"name": "z", "image": "z"}]}), 200)
    assert got["status"]["phase"] == "Running" and got["spec"]["containers"][0]["name"] == "c"
    _, got = h.json("GET", pods(name="st") + "/status", expect=200)
    assert got["status"]["phase"] == "Running"
    h.json("DELETE", pods(name="st"), expect=200)


def test_graceful_pod_deletion(h: HTTP) -> None:
    h.json("POST", "/api/v1/nodes", {"metadata": {"name": "gn"}}, expect=201)
    bound = dict(POD, metadata={"name": "g1"}, spec={"nodeName": "gn", "containers": [{"name": "c", "image": "x"}]})
    h.json("POST", pods(), bound, expect=201)
    _, marked = h.json("DELETE", pods(name="g1"), expect=200)
    assert marked["metadata"]["deletionTimestamp"] and marked["metadata"]["deletionGracePeriodSeconds"] == 30
    _, again = h.json("DELETE", pods(name="g1"), expect=200)  # a second delete changes nothing
    assert again["metadata"]["resourceVersion"] == marked["metadata"]["resourceVersion"]
    _, st = h.json("PATCH", pods(name="g1") + "/status", {"status": {"phase": "Running"}},
                   "application/merge-patch+json", 200)  # the node agent may still report status
    assert st["metadata"]["deletionTimestamp"]
    h.json("DELETE", pods(name="g1"), {"gracePeriodSeconds": 0}, expect=200)  # the agent's final delete
    h.json("GET", pods(name="g1"), expect=404)
    orphan = dict(bound, metadata={"name": "g2"}, spec=dict(bound["spec"], nodeName="no-such-node"))
    h.json("POST", pods(), orphan, expect=201)
    h.json("DELETE", pods(name="g2"), expect=200)
    h.json("GET", pods(name="g2"), expect=404)
    short = dict(bound, metadata={"name": "g3"}, spec=dict(bound["spec"], terminationGracePeriodSeconds=1))
    h.json("POST", pods(), short, expect=201)
    _, marked = h.json("DELETE", pods(name="g3"), expect=200)
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 1
    deadline = time.monotonic() + 15  # nobody finishes it: the server's sweep does (--pod-gc-margin 0)
    while h.json("GET", pods(name="g3"))[0] != 404:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    h.json("DELETE", "/api/v1/nodes/gn", expect=200)


def test_finalizers_hold_deletion(h: HTTP) -> None:
    h.json("POST", "/api/v1/namespaces/default/services", {"metadata": {"name": "fin", "finalizers": ["x/y"]},
           "spec": {"ports": [{"port": 80}]}}, expect=201)
    _, marked = h.json("DELETE", "/api/v1/namespaces/default/services/fin", expect=200)
    assert marked["metadata"]["deletionTimestamp"]
    h.json("GET", "/api/v1/namespaces/default/services/fin", expect=200)
    h.json("PATCH", "/api/v1/namespaces/default/services/fin", {"metadata": {"finalizers": None}},
           "application/merge-patch+json", 200)
    h.json("GET", "/api/v1/namespaces/default/services/fin", expect=404)


# ---------------------------------------------------------------- restart durability

def test_kill9_restart_keeps_acknowledged_writes_and_resumes_watch(tmp_path: Path) -> None:
    port = free_port_number()
    data = tmp_path / "cp"
    server = start_controlplane(data, port, "--controllers", "")
    try:
        h = HTTP(server)
        h.json("POST", "/api/v1/namespaces", {"metadata": {"name": "dur"}}, expect=201)
        acked: dict[str, str] = {}
        mid_rv = ""
        for i in range(40):
            _, obj = h.json("POST", pods("dur"), dict(POD, metadata={"name": f"p{i}"}), expect=201)
            acked[f"p{i}"] = obj["metadata"]["resourceVersion"]
            if i == 19:
                mid_rv = obj["metadata"]["resourceVersion"]
        _, deleted = h.json("DELETE", pods("dur", "p0"), expect=200)
        del acked["p0"]
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
    finally:
        server.stop()
    server = start_controlplane(data, free_port_number(), "--controllers", "")  # a new port: the old one may be taken
    try:
        h = HTTP(server)
        _, lst = h.json("GET", pods("dur"), expect=200)
        got = {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in lst["items"]}
        assert got == acked
        assert int(lst["metadata"]["resourceVersion"]) >= int(deleted["metadata"]["resourceVersion"])
        events = _watch_lines(h, pods("dur") + f"?watch=1&resourceVersion={mid_rv}&timeoutSeconds=1")
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == (
            [("ADDED", f"p{i}") for i in range(20, 40)] + [("DELETED", "p0")])
        _, svc = h.json("GET", "/api/v1/namespaces/default/services/kubernetes", expect=200)
        assert svc["spec"]["clusterIP"] == "10.96.0.1"
        _, created = h.json("POST", pods("dur"), dict(POD, metadata={"name": "after"}), expect=201)
        assert int(created["metadata"]["resourceVersion"]) > int(lst["metadata"]["resourceVersion"])
    finally:
        server.stop()


def test_restart_on_new_port_updates_kubernetes_service_and_lock(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "cp"
    first = start_controlplane(data, free_port_number(), "--controllers", "")
    try:
        second = subprocess.run([sys.executable, "-m", "podnet", "controlplane", "--listen",
                                 f"127.0.0.1:{free_port_number()}", "--data-dir", str(data), "--controllers", ""],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode != 0 and "in use by another podnet controlplane" in second.stderr
    finally:
        first.stop()
    port = free_port_number()
    server = start_controlplane(data, port, "--controllers", "", "--advertise-address", "10.0.0.7")
    try:
        h = HTTP(server)
        _, svc = h.json("GET", "/api/v1/namespaces/default/services/kubernetes", expect=200)
        assert svc["spec"]["ports"][0]["targetPort"] == port and svc["spec"]["clusterIP"] == "10.96.0.1"
        _, ep = h.json("GET", "/api/v1/namespaces/default/endpoints/kubernetes", expect=200)
        assert ep["subsets"][0]["addresses"] == [{"ip": "10.0.0.7"}] and ep["subsets"][0]["ports"][0]["port"] == port
        _, sl = h.json("GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes", expect=200)
        assert sl["endpoints"][0]["addresses"] == ["10.0.0.7"] and sl["ports"][0]["port"] == port
    finally:
        server.stop()


def test_sigterm_is_clean(tmp_path: Path) -> None:
    server = start_controlplane(tmp_path / "cp", free_port_number(), "--controllers", "")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0
    kubeconfig = (tmp_path / "cp" / "kubeconfig").read_text()
    assert f"server: http://127.0.0.1:{server.port}" in kubeconfig and "current-context: podnet" in kubeconfig


def test_abandoned_watches_are_dropped(cp: ControlPlane, h: HTTP) -> None:
    import socket

    def watchers() -> int:
        status, _, raw = h.req("GET", "/metrics")
        assert status == 200
        for line in raw.decode().splitlines():
            if line.startswith("podnet_apiserver_watchers "):
                return int(float(line.split()[1]))
        raise AssertionError(raw)

    base = watchers()
    socks = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", cp.port))
        s.sendall(b"GET /api/v1/nodes?watch=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    deadline = time.monotonic() + 10
    while watchers() < base + 20:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for s in socks:
        s.close()
    deadline = time.monotonic() + 10
    while watchers() > base:
        assert time.monotonic() < deadline, watchers()
        time.sleep(0.1)


def test_field_validation_modes(h: HTTP) -> None:
    bad = dict(POD, metadata={"name": "fv"}, spec={"containers": [{"name": "c", "image": "x", "imagee": "y"}],
                                                   "bogus": 1})
    _, body = h.json("POST", pods() + "?fieldValidation=Strict", bad, expect=400)
    assert body["message"] == ('Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
                               'unknown field "spec.containers[0].imagee", unknown field "spec.bogus"')
    h.json("POST", pods() + "?fieldValidation=Loose", bad, expect=400)
    status, headers, raw = h.req("POST", pods(), bad)  # default Warn: stored, with warnings
    assert status == 201 and 'unknown field \\"spec.bogus\\"' in headers["warning"]
    h.json("POST", pods() + "?fieldValidation=Ignore", dict(bad, metadata={"name": "fv2"}), expect=201)
    # fields that were already there do not fail unrelated strict patches
    h.json("PATCH", pods(name="fv") + "?fieldValidation=Strict", {"metadata": {"labels": {"a": "b"}}},
           "application/merge-patch+json", 200)
    h.json("PATCH", pods(name="fv") + "?fieldValidation=Strict", {"spec": {"nope": 1}},
           "application/merge-patch+json", 400)
    good = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fvs"}, "spec": {
        "type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30999, "appProtocol": "http"}],
        "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
        "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Cluster"}}
    h.json("POST", "/api/v1/namespaces/default/services?fieldValidation=Strict", good, expect=201)
    for name in ("fv", "fv2"):
        h.json("DELETE", pods(name=name), expect=200)
    h.json("DELETE", "/api/v1/namespaces/default/services/fvs", expect=200)


def test_owner_references_cascade(h: HTTP) -> None:
    svc_path = "/api/v1/namespaces/default/services"
    slices = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"

    def make_service(name: str) -> dict[str, Any]:
        return h.json("POST", svc_path, {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}}, expect=201)[1]

    def make_slice(name: str, *owners: dict[str, Any]) -> None:
        refs = [{"apiVersion": o.get("apiVersion", "v1"), "kind": o.get("kind", "Service"),
                 "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]} for o in owners]
        h.json("POST", slices, {"metadata": {"name": name, "ownerReferences": refs}, "addressType": "IPv4",
                                "endpoints": [], "ports": []}, expect=201)

    a, b = make_service("own-a"), make_service("own-b")
    make_slice("dep-a", a)
    make_slice("dep-ab", a, b)
    make_slice("dep-foreign", a, {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs",
                                                                                             "uid": "u-rs"}})
    h.json("DELETE", f"{svc_path}/own-a", {"propagationPolicy": "Background"}, expect=200)
    h.json("GET", f"{slices}/dep-a", expect=404)
    _, left = h.json("GET", f"{slices}/dep-ab", expect=200)  # b still owns it
    h.json("GET", f"{slices}/dep-foreign", expect=200)  # an owner we cannot see keeps it
    h.json("DELETE", f"{svc_path}/own-b", {"propagationPolicy": "Orphan"}, expect=200)
    _, orphaned = h.json("GET", f"{slices}/dep-ab", expect=200)
    assert [r["name"] for r in orphaned["metadata"]["ownerReferences"]] == ["own-a"]
    h.json("DELETE", f"{svc_path}/own-b", {"propagationPolicy": "Sideways"}, expect=400)
    for name in ("dep-ab", "dep-foreign"):
        h.json("DELETE", f"{slices}/{name}", expect=200)


def test_watch_from_future_rv_is_504_too_large(h: HTTP) -> None:
    status, _, raw = h.req("GET", "/api/v1/pods?watch=1&resourceVersion=999999999&timeoutSeconds=1")
    assert status == 504
    body = json.loads(raw)
    assert body["reason"] == "Timeout" and body["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


async def test_concurrent_writes_behave_serially(cp: ControlPlane) -> None:
    import aiohttp

    url = cp.url
    async with aiohttp.ClientSession() as s:
        async def post(path: str, body: dict[str, Any]) -> int:
            async with s.post(url + path, json=body) as r:
                await r.read()
                return r.status

        codes = await asyncio.gather(*(post(pods(), dict(POD, metadata={"name": "race"})) for _ in range(30)))
        assert sorted(codes) == [201] + [409] * 29
        async with s.get(url + pods(name="race")) as r:
            obj = await r.json()

        async def put(i: int) -> int:
            body = json.loads(json.dumps(obj))
            body["metadata"]["labels"] = {"writer": str(i)}
            async with s.put(url + pods(name="race"), json=body) as r:
                await r.read()
                return r.status

        codes = await asyncio.gather(*(put(i) for i in range(30)))
        assert sorted(codes) == [200] + [409] * 29
        # a namespace deleted while pods are being created in it keeps nothing
        await post("/api/v1/namespaces", {"metadata": {"name": "racens"}})
        creates = [post(pods("racens"), dict(POD, metadata={"name": f"r{i}"})) for i in range(40)]

        async def delete_ns() -> int:
            await asyncio.sleep(0.005)
            async with s.delete(url + "/api/v1/namespaces/racens") as r:
                await r.read()
                return r.status

        results = await asyncio.gather(*creates, delete_ns())
        assert results[-1] == 200 and set(results[:-1]) <= {201, 404}
        async with s.get(url + "/api/v1/pods?fieldSelector=metadata.namespace%3Dracens") as r:
            assert (await r.json())["items"] == []
        async with s.delete(url + pods(name="race")) as r:
            assert r.status == 200


def test_list_pagination_is_one_snapshot(h: HTTP) -> None:
    h.json("POST", "/api/v1/namespaces", {"metadata": {"name": "pages"}}, expect=201)
    for i in range(25):
        h.json("POST", pods("pages"), dict(POD, metadata={"name": f"p{i:02d}", "labels": {"v": "1"}}), expect=201)
    _, first = h.json("GET", pods("pages") + "?limit=10", expect=200)
    rv = first["metadata"]["resourceVersion"]
    assert [i["metadata"]["name"] for i in first["items"]] == [f"p{i:02d}" for i in range(10)]
    assert first["metadata"]["remainingItemCount"] == 15 and first["metadata"]["continue"]
    # changes after the first page do not show in the later pages
    h.json("PATCH", pods("pages", "p12"), {"metadata": {"labels": {"v": "2"}}}, "application/merge-patch+json", 200)
    h.json("DELETE", pods("pages", "p13"), expect=200)
    h.json("POST", pods("pages"), dict(POD, metadata={"name": "p105"}), expect=201)
    cont = urllib.parse.quote(first["metadata"]["continue"])
    _, second = h.json("GET", pods("pages") + f"?limit=10&continue={cont}", expect=200)
    names = [i["metadata"]["name"] for i in second["items"]]
    assert names == [f"p{i:02d}" for i in range(10, 20)] and second["metadata"]["resourceVersion"] == rv
    p12 = next(i for i in second["items"] if i["metadata"]["name"] == "p12")
    assert p12["metadata"]["labels"] == {"v": "1"}
    cont = urllib.parse.quote(second["metadata"]["continue"])
    _, third = h.json("GET", pods("pages") + f"?limit=10&continue={cont}", expect=200)
    assert [i["metadata"]["name"] for i in third["items"]] == [f"p{i:02d}" for i in range(20, 25)]
    assert "continue" not in third["metadata"]
    _, exact = h.json("GET", pods("pages") + f"?resourceVersion={rv}&resourceVersionMatch=Exact", expect=200)
    assert len(exact["items"]) == 25 and exact["metadata"]["resourceVersion"] == rv
    _, now = h.json("GET", pods("pages"), expect=200)
    assert len(now["items"]) == 25 and "p13" not in [i["metadata"]["name"] for i in now["items"]]
    _, sel = h.json("GET", pods("pages") + "?limit=2&labelSelector=v%3D1", expect=200)
    assert len(sel["items"]) == 2 and "remainingItemCount" not in sel["metadata"]
    h.json("GET", pods("pages") + "?continue=garbage", expect=400)
    h.json("GET", pods("pages") + f"?continue={cont}&resourceVersion=5", expect=400)
    h.json("GET", pods("pages") + "?resourceVersionMatch=Exact", expect=400)
    h.json("GET", pods("pages") + "?resourceVersion=0&resourceVersionMatch=Exact", expect=400)
    h.json("GET", pods("pages") + "?limit=x", expect=400)
    for i in range(60):  # --history 50: the first page's snapshot falls out of the history
        h.json("PATCH", pods("pages", "p00"), {"metadata": {"labels": {"n": str(i)}}}, "application/merge-patch+json")
    _, body = h.json("GET", pods("pages") + f"?limit=10&continue={cont}", expect=410)
    assert body["reason"] == "Expired" and "continue parameter is too old" in body["message"]
    h.json("GET", pods("pages") + f"?resourceVersion={rv}&resourceVersionMatch=Exact", expect=410)
    h.json("DELETE", "/api/v1/namespaces/pages", expect=200)


async def test_kill9_during_concurrent_writes_loses_nothing_acknowledged(tmp_path: Path) -> None:
    import aiohttp

    data, port = tmp_path / "cp", free_port_number()
    server = start_controlplane(data, port, "--controllers", "")
    acked: set[str] = set()
    try:
        async with aiohttp.ClientSession() as s:
            stop = asyncio.Event()

            async def writer(w: int) -> None:
                i = 0
                while not stop.is_set():
                    name = f"w{w}-{i}"
                    try:
                        async with s.post(server.url + pods(), json=dict(POD, metadata={"name": name})) as r:
                            await r.read()
                            if r.status == 201:
                                acked.add(name)
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        return
                    i += 1

            tasks = [asyncio.create_task(writer(w)) for w in range(8)]
            await asyncio.sleep(1.5)
            os.kill(server.proc.pid, signal.SIGKILL)  # while writes are in flight
            stop.set()
            await asyncio.gather(*tasks)
            server.proc.wait(10)
    finally:
        server.stop()
    assert len(acked) > 20
    server = start_controlplane(data, free_port_number(), "--controllers", "")  # a new port: the old one may be taken
    try:
        _, lst = HTTP(server).json("GET", pods(), expect=200)
        stored = {i["metadata"]["name"] for i in lst["items"]}
        assert acked <= stored, sorted(acked - stored)[:10]
        assert all(int(i["metadata"]["resourceVersion"]) <= int(lst["metadata"]["resourceVersion"])
                   for i in lst["items"])
    finally:
        server.stop()


def test_partial_object_metadata(h: HTTP) -> None:
    accept = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"}
    status, _, raw = h.req("GET", "/api/v1/namespaces", headers=accept)
    body = json.loads(raw)
    assert status == 200 and body["kind"] == "PartialObjectMetadataList" and body["metadata"]["resourceVersion"]
    assert body["items"][0]["kind"] == "PartialObjectMetadata" and "spec" not in body["items"][0]
    one = {"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"}
    status, _, raw = h.req("GET", "/api/v1/namespaces/default", headers=one)
    assert json.loads(raw) == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": json.loads(raw)["metadata"]}
    status, _, raw = h.req("GET", "/api/v1/namespaces?watch=1&timeoutSeconds=1", headers=one)
    events = [json.loads(line) for line in raw.decode().splitlines() if line]
    assert events and all(e["object"]["kind"] == "PartialObjectMetadata" for e in events)
