"""Unit tests of the client's pure parts: the informer store, the watch line splitter, kubeconfig."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from controlplane import errors
from controlplane.client import DeltaType, KubeConfigError, Store, StoreError, object_key, status_error
from controlplane.client.kubeconfig import load
from controlplane.client.stream import LineSplitter, StreamError, parse_event


def pod(name: str, rv: int, ns: str = "default", node: str = "", **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv), "labels": labels},
            "spec": {"nodeName": node}}


def test_object_key() -> None:
    assert object_key(pod("a", 1)) == "default/a"
    assert object_key({"metadata": {"name": "n1"}}) == "n1"
    with pytest.raises(StoreError, match="metadata.name"):
        object_key({"metadata": {}})


def test_apply_events() -> None:
    s = Store()
    d = s.apply("ADDED", pod("a", 1))
    assert d and d.type is DeltaType.ADDED and d.key == "default/a" and d.old is None
    assert s.resource_version == "1"
    d = s.apply("MODIFIED", pod("a", 2))
    assert d and d.type is DeltaType.UPDATED and d.old and d.old["metadata"]["resourceVersion"] == "1"
    assert s.apply("ADDED", pod("a", 2)) is None  # replayed, unchanged
    d = s.apply("ADDED", pod("a", 3))  # ADDED for a known key is an update
    assert d and d.type is DeltaType.UPDATED
    d = s.apply("MODIFIED", pod("b", 4))  # MODIFIED for an unknown key is an add
    assert d and d.type is DeltaType.ADDED
    assert s.apply("BOOKMARK", {"metadata": {"resourceVersion": "9"}}) is None
    assert s.resource_version == "9"
    d = s.apply("DELETED", pod("a", 10))
    assert d and d.type is DeltaType.DELETED and d.old and d.old["metadata"]["resourceVersion"] == "3"
    assert s.apply("DELETED", pod("zz", 11)) is None
    assert s.keys() == ["default/b"] and s.resource_version == "11"
    with pytest.raises(StoreError):
        s.apply("WHAT", pod("b", 12))


def test_indexes_follow_updates_and_deletes() -> None:
    s = Store()
    s.apply("ADDED", pod("a", 1, node="n1"))
    s.add_index("byNode", lambda o: [o["spec"]["nodeName"]])  # added after objects exist
    s.add_index("byLabel", lambda o: [f"{k}={v}" for k, v in o["metadata"]["labels"].items()])
    s.apply("ADDED", pod("b", 2, node="n1", app="web", tier="fe"))
    s.apply("ADDED", pod("c", 3, "other", node="n2", app="web"))
    assert [object_key(o) for o in s.by_index("byNode", "n1")] == ["default/a", "default/b"]
    assert s.index_keys("byLabel", "app=web") == ["default/b", "other/c"]
    s.apply("MODIFIED", pod("b", 4, node="n2"))
    assert s.index_keys("byNode", "n1") == ["default/a"]
    assert s.index_keys("byNode", "n2") == ["default/b", "other/c"]
    assert s.index_keys("byLabel", "app=web") == ["other/c"]
    s.apply("DELETED", pod("c", 5, "other"))
    assert s.index_keys("byLabel", "app=web") == [] and s.index_values("byLabel") == []
    assert s.index_values("byNode") == ["n1", "n2"]
    with pytest.raises(StoreError, match="no index named 'nope'"):
        s.by_index("nope", "x")
    with pytest.raises(StoreError, match="already exists"):
        s.add_index("byNode", lambda o: [])


def test_replace_delivers_diff() -> None:
    s = Store()
    s.add_index("byNode", lambda o: [o["spec"]["nodeName"]])
    for d in s.replace([pod("a", 1, node="n1"), pod("b", 2), pod("c", 3)], "3"):
        assert d.type is DeltaType.ADDED
    deltas = s.replace([pod("b", 2), pod("c", 7), pod("d", 8, node="n1")], "8")
    assert [(d.type, d.key) for d in deltas] == [
        (DeltaType.DELETED, "default/a"), (DeltaType.UPDATED, "default/c"), (DeltaType.ADDED, "default/d")]
    assert s.resource_version == "8"
    assert s.index_keys("byNode", "n1") == ["default/d"]
    assert [object_key(o) for o in s.list()] == ["default/b", "default/c", "default/d"]


def test_changed_without_resource_version_compares_content() -> None:
    s = Store()
    s.apply("ADDED", {"metadata": {"name": "x"}, "v": 1})
    assert s.apply("MODIFIED", {"metadata": {"name": "x"}, "v": 1}) is None
    d = s.apply("MODIFIED", {"metadata": {"name": "x"}, "v": 2})
    assert d and d.type is DeltaType.UPDATED


def test_line_splitter_reassembles_chunks() -> None:
    sp = LineSplitter()
    ev = [json.dumps({"type": "ADDED", "object": pod(f"p{i}", i)}).encode() + b"\n" for i in range(5)]
    stream = b"".join(ev)
    lines: list[bytes] = []
    for i in range(0, len(stream), 7):
        lines.extend(sp.feed(stream[i:i + 7]))
    assert lines == [e.rstrip(b"\n") for e in ev]
    assert sp.feed(b"\n\n") == [] and sp.finish() == []
    assert sp.feed(b'{"a":1}\n{"b"') == [b'{"a":1}'] and sp.finish() == [b'{"b"']


def test_line_splitter_long_lines_and_limit() -> None:
    sp = LineSplitter()
    big = b"x" * (300 * 1024)
    out = sp.feed(big[:100000]) + sp.feed(big[100000:]) + sp.feed(b"\n")
    assert out == [big]
    small = LineSplitter(max_line=10)
    with pytest.raises(StreamError, match="longer than 10 bytes"):
        small.feed(b"0123456789abc")


def test_parse_event() -> None:
    ev = parse_event(b'{"type":"MODIFIED","object":{"metadata":{"name":"a"}}}')
    assert ev.type == "MODIFIED" and ev.object["metadata"]["name"] == "a"
    for bad in (b"nope", b"[1]", b'{"type":"X","object":{}}', b'{"type":"ADDED"}'):
        with pytest.raises(StreamError):
            parse_event(bad)


def test_status_error_mapping() -> None:
    gone = status_error({"kind": "Status", "reason": "Expired", "code": 410, "message": "too old"}, 200)
    assert isinstance(gone, errors.Gone)
    gone2 = status_error({"kind": "Status", "reason": "Gone", "code": 410, "message": "gone"}, 410)
    assert isinstance(gone2, errors.Gone)
    nf = status_error(errors.NotFound.of("pods", "x").status(), 404)
    assert isinstance(nf, errors.NotFound) and nf.name == "x" and nf.kind == "pods"
    inv = status_error({"kind": "Status", "reason": "Invalid", "code": 422, "message": "bad",
                        "details": {"causes": [{"field": "spec.ports[0].port", "message": "m"}]}}, 422)
    assert isinstance(inv, errors.Invalid) and inv.causes[0].field == "spec.ports[0].port"
    plain = status_error("<html>oops</html>", 502)
    assert type(plain) is errors.APIError and plain.code == 502 and "oops" in plain.message
    assert isinstance(status_error("no", 404), errors.NotFound)
    forbidden = status_error({"kind": "Status", "reason": "Forbidden", "code": 403, "message": "no"}, 403)
    assert isinstance(forbidden, errors.Forbidden) and forbidden.code == 403
    assert isinstance(status_error("denied", 403), errors.Forbidden)


KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: main
clusters:
- name: local
  cluster: {server: "http://127.0.0.1:6443/"}
- name: secure
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: sekret}
- name: filer
  user: {tokenFile: tok.txt}
contexts:
- name: main
  context: {cluster: local, user: admin, namespace: kube-system}
- name: other
  context: {cluster: secure, user: filer}
- name: broken
  context: {cluster: missing, user: admin}
"""


def test_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    path.write_text(KUBECONFIG)
    (tmp_path / "tok.txt").write_text("filetoken\n")
    cfg = load(path)
    assert (cfg.server, cfg.token, cfg.namespace) == ("http://127.0.0.1:6443", "sekret", "kube-system")
    assert cfg.ssl_context() is None
    other = load(path, "other")
    assert other.token == "filetoken" and other.namespace == "default" and other.ssl_context() is False
    with pytest.raises(KubeConfigError, match="no cluster named 'missing'"):
        load(path, "broken")
    with pytest.raises(KubeConfigError, match="no context named 'nope'"):
        load(path, "nope")
    with pytest.raises(KubeConfigError, match="cannot read kubeconfig"):
        load(tmp_path / "absent")
    (tmp_path / "bad").write_text("a: [")
    with pytest.raises(KubeConfigError, match="not valid YAML"):
        load(tmp_path / "bad")


def test_kubeconfig_ca_data(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    (tmp_path / "tok.txt").write_text("t")
    path.write_text(KUBECONFIG.replace("insecure-skip-tls-verify: true", f"certificate-authority-data: {ca}"))
    cfg = load(path, "other")
    assert cfg.ca_data and cfg.ca_data.startswith(b"-----BEGIN") and not cfg.insecure_skip_tls_verify


def test_kubeconfig_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from controlplane.client import Client
    from controlplane.client.kubeconfig import default_path

    path = tmp_path / "kc"
    path.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", f"{path}:/nonexistent")
    assert default_path() == path
    client = Client.from_kubeconfig()
    assert client.server == "http://127.0.0.1:6443" and client.token == "sekret" and client.namespace == "kube-system"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_path() == tmp_path / ".kube" / "config"
