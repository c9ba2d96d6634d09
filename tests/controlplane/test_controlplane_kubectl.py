"""kubectl 1.32 against a live `podnet controlplane` (one server for the module, a namespace per test)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.conftest import ControlPlane, requires_kubectl

pytestmark = [requires_kubectl, pytest.mark.kubectl]


@pytest.fixture(scope="module")
def cp(bare_controlplane: ControlPlane) -> ControlPlane:
    return bare_controlplane


@pytest.fixture
def ns(cp: ControlPlane) -> Iterator[str]:
    name = "t-" + uuid.uuid4().hex[:8]
    apply(cp, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    cp.kubectl("delete", "ns", name, "--wait=false")


def apply(cp: ControlPlane, *objs: dict[str, Any], args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    text = yaml.safe_dump_all(list(objs))
    return cp.kubectl("apply", *args, "-f", "-", input=text, check=True)


def kget(cp: ControlPlane, *args: str) -> Any:
    return json.loads(cp.kubectl("get", *args, "-o", "json", check=True).stdout)


def pod(name: str, ns: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]}}


def service(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    body = {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": body}


def test_discovery_short_names_and_get_all(cp: ControlPlane) -> None:
    out = cp.kubectl("api-resources", check=True).stdout
    for short in ("po", "svc", "ep", "ns", "no"):
        assert f" {short} " in out
    assert "endpointslices" in out and "discovery.k8s.io/v1" in out
    version = cp.kubectl("version", "-o", "json", check=True).stdout
    assert json.loads(version)["serverVersion"]["minor"] == "32"
    out = cp.kubectl("get", "all", "-n", "default", "-o", "name", check=True).stdout
    assert "service/kubernetes" in out
    req = urllib.request.Request(cp.url + "/apis", headers={
        "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"})
    with urllib.request.urlopen(req) as resp:
        assert resp.headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    for short in ("ns", "svc"):
        assert cp.kubectl("get", short, check=True).returncode == 0


def test_system_objects_exist(cp: ControlPlane) -> None:
    names = {i["metadata"]["name"] for i in kget(cp, "ns")["items"]}
    assert {"default", "kube-system"} <= names
    svc = kget(cp, "svc", "kubernetes", "-n", "default")
    assert svc["spec"]["clusterIP"] == "10.96.0.1"
    assert svc["spec"]["ports"][0] == {"name": "https", "port": 443, "protocol": "TCP", "targetPort": cp.port}
    ep = kget(cp, "endpoints", "kubernetes", "-n", "default")
    assert ep["subsets"][0]["addresses"][0]["ip"] == "127.0.0.1"
    assert ep["subsets"][0]["ports"][0]["port"] == cp.port
    sl = kget(cp, "endpointslices", "kubernetes", "-n", "default")
    assert sl["endpoints"][0]["addresses"] == ["127.0.0.1"] and sl["ports"][0]["port"] == cp.port


def test_apply_get_yaml_json(cp: ControlPlane, ns: str) -> None:
    ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ext", "namespace": ns},
          "subsets": [{"addresses": [{"ip": "10.1.2.3"}], "ports": [{"port": 80}]}]}
    sl = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": {"name": "ext-1", "namespace": ns, "labels": {"kubernetes.io/service-name": "ext"}},
          "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.2.3"]}], "ports": [{"port": 80}]}
    out = apply(cp, pod("web-1", ns, app="web"), service("web", ns), ep, sl).stdout
    assert "pod/web-1 created" in out and "service/web created" in out
    assert "endpoints/ext created" in out and "endpointslice.discovery.k8s.io/ext-1 created" in out
    assert "unchanged" in apply(cp, pod("web-1", ns, app="web")).stdout
    p = kget(cp, "pod", "web-1", "-n", ns)
    assert p["metadata"]["uid"] and p["metadata"]["creationTimestamp"] and p["status"]["phase"] == "Pending"
    assert "kubectl.kubernetes.io/last-applied-configuration" in p["metadata"]["annotations"]
    y = yaml.safe_load(cp.kubectl("get", "svc", "web", "-n", ns, "-o", "yaml", check=True).stdout)
    assert y["spec"]["type"] == "ClusterIP" and y["spec"]["ports"][0]["protocol"] == "TCP"
    assert y["spec"]["clusterIP"].startswith("10.") and y["spec"]["clusterIPs"] == [y["spec"]["clusterIP"]]
    lst = kget(cp, "pods", "-n", ns)
    assert lst["kind"] == "List" and [i["metadata"]["name"] for i in lst["items"]] == ["web-1"]
    assert kget(cp, "ep", "ext", "-n", ns)["subsets"][0]["addresses"][0]["ip"] == "10.1.2.3"
    assert kget(cp, "endpointslice", "ext-1", "-n", ns)["addressType"] == "IPv4"
    out = cp.kubectl("get", "all", "-n", ns, check=True).stdout
    assert "pod/web-1" in out and "service/web" in out
    assert cp.kubectl("get", "pods", "-A", "-l", "app=web", check=True).stdout.count("web-1") == 1
    out = cp.kubectl("get", "pods", "-n", ns, "--field-selector", "metadata.name=nope", check=True)
    assert "web-1" not in out.stdout


def test_apply_change_uses_strategic_merge(cp: ControlPlane, ns: str) -> None:
    svc = service("web", ns, ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81}])
    apply(cp, svc)
    ip = kget(cp, "svc", "web", "-n", ns)["spec"]["clusterIP"]
    svc["spec"]["ports"] = [{"name": "a", "port": 80}, {"name": "c", "port": 82}]
    assert "configured" in apply(cp, svc).stdout
    got = kget(cp, "svc", "web", "-n", ns)
    assert [p["port"] for p in got["spec"]["ports"]] == [80, 82]
    assert got["spec"]["clusterIP"] == ip and got["metadata"]["generation"] == 2


def test_label_annotate_patch_replace_delete(cp: ControlPlane, ns: str) -> None:
    apply(cp, pod("p", ns, app="web"), service("s", ns))
    assert "labeled" in cp.kubectl("label", "pod", "p", "-n", ns, "tier=front", check=True).stdout
    assert "annotated" in cp.kubectl("annotate", "svc", "s", "-n", ns, "note=hi", check=True).stdout
    cp.kubectl("patch", "svc", "s", "-n", ns, "--type=merge", "-p", '{"metadata":{"labels":{"m":"1"}}}', check=True)
    cp.kubectl("patch", "svc", "s", "-n", ns, "--type=json",
               "-p", '[{"op":"add","path":"/metadata/labels/j","value":"2"}]', check=True)
    cp.kubectl("patch", "svc", "s", "-n", ns, "-p",
               '{"spec":{"ports":[{"port":80,"name":"http"},{"port":443,"name":"https"}]}}', check=True)
    cp.kubectl("patch", "pod", "p", "-n", ns, "-p",
               '{"spec":{"containers":[{"name":"c","image":"nginx:2"}]}}', check=True)
    s = kget(cp, "svc", "s", "-n", ns)
    assert s["metadata"]["labels"] == {"m": "1", "j": "2"} and s["metadata"]["annotations"]["note"] == "hi"
    assert [(p["port"], p.get("name")) for p in s["spec"]["ports"]] == [(80, "http"), (443, "https")]
    p = kget(cp, "pod", "p", "-n", ns)
    assert p["metadata"]["labels"]["tier"] == "front"
    assert p["spec"]["containers"][0]["image"] == "nginx:2" and p["spec"]["containers"][0]["ports"]
    s["metadata"]["labels"] = {"replaced": "yes"}
    out = cp.kubectl("replace", "-f", "-", input=json.dumps(s), check=True).stdout
    assert "replaced" in out
    assert kget(cp, "svc", "s", "-n", ns)["metadata"]["labels"] == {"replaced": "yes"}
    stale = dict(s)
    out = cp.kubectl("replace", "-f", "-", input=json.dumps(stale))
    assert out.returncode == 1 and "the object has been modified" in out.stderr
    assert 'pod "p" deleted' in cp.kubectl("delete", "pod", "p", "-n", ns, check=True).stdout
    assert 'service "s" deleted' in cp.kubectl("delete", "svc", "s", "-n", ns, check=True).stdout
    r = cp.kubectl("get", "pod", "p", "-n", ns)
    assert r.returncode == 1 and 'Error from server (NotFound): pods "p" not found' in r.stderr


def test_get_watch_streams_changes(cp: ControlPlane, ns: str) -> None:
    apply(cp, pod("w1", ns))
    killer = threading.Timer(30, lambda: proc.kill())  # never hang the suite on a blocked readline
    proc = subprocess.Popen(["kubectl", "--kubeconfig", str(cp.kubeconfig), "get", "pods", "-n", ns, "-w",
                             "--output-watch-events"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killer.start()
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]  # header, then the replayed w1
        assert lines[0].split()[:2] == ["EVENT", "NAME"] and lines[1].split()[:2] == ["ADDED", "w1"], lines
        apply(cp, pod("w2", ns))
        cp.kubectl("delete", "pod", "w1", "-n", ns, check=True)
        events: list[list[str]] = []
        while len(events) < 2:  # kubectl repeats the header when the columns are the default ones
            words = proc.stdout.readline().split()[:2]
            assert words, "kubectl get -w ended early"
            if words != ["EVENT", "NAME"]:
                events.append(words)
        assert events == [["ADDED", "w2"], ["DELETED", "w1"]], events
    finally:
        killer.cancel()
        proc.kill()
        proc.wait(5)


def test_server_side_apply(cp: ControlPlane, ns: str) -> None:
    cm = service("ssa", ns)
    out = apply(cp, cm, args=("--server-side",)).stdout
    assert "serverside-applied" in out
    cm["spec"]["ports"] = [{"port": 80, "targetPort": 9090}]
    apply(cp, cm, args=("--server-side",))
    got = kget(cp, "svc", "ssa", "-n", ns)
    assert got["spec"]["ports"][0]["targetPort"] == 9090


def test_conflict_notfound_invalid_exists(cp: ControlPlane, ns: str) -> None:
    apply(cp, pod("p", ns))
    r = cp.kubectl("label", "pod", "p", "-n", ns, "x=y", "--resource-version=1")
    assert r.returncode == 1
    assert ('Error from server (Conflict): Operation cannot be fulfilled on pods "p": the object has been '
            'modified; please apply your changes to the latest version and try again') in r.stderr
    r = cp.kubectl("get", "svc", "nope", "-n", ns)
    assert r.returncode == 1 and 'services "nope" not found' in r.stderr
    r = cp.kubectl("apply", "-f", "-", input=json.dumps(service("bad", ns, ports=[{"port": 70000}])))
    assert r.returncode == 1 and "spec.ports[0].port" in r.stderr and "Invalid" in r.stderr
    np = service("np1", ns, type="NodePort", ports=[{"port": 80, "nodePort": 30555}])
    apply(cp, np)
    r = cp.kubectl("apply", "-f", "-", input=json.dumps(service("np2", ns, type="NodePort",
                                                                 ports=[{"port": 80, "nodePort": 30555}])))
    assert r.returncode == 1 and "provided port is already allocated" in r.stderr
    r = cp.kubectl("create", "-f", "-", input=json.dumps(pod("p", ns)))
    assert r.returncode == 1 and 'Error from server (AlreadyExists): error when creating "STDIN": pods "p" ' \
        'already exists' in r.stderr
    r = cp.kubectl("apply", "-f", "-", input=json.dumps(pod("p", "no-such-ns")))
    assert r.returncode == 1 and 'namespaces "no-such-ns" not found' in r.stderr


def test_protobuf_create_is_415_and_workaround(cp: ControlPlane) -> None:
    name = "pb-" + uuid.uuid4().hex[:6]
    r = cp.kubectl("create", "namespace", name)
    assert r.returncode == 1 and "UnsupportedMediaType" in r.stderr and "JSON" in r.stderr
    gen = cp.kubectl("create", "namespace", name, "--dry-run=client", "-o", "yaml", check=True).stdout
    assert "created" in cp.kubectl("apply", "-f", "-", input=gen, check=True).stdout
    cp.kubectl("delete", "ns", name, check=True)


def test_delete_namespace_cascades(cp: ControlPlane) -> None:
    name = "gone-" + uuid.uuid4().hex[:6]
    apply(cp, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    apply(cp, pod("a", name), service("b", name))
    start = time.monotonic()
    r = cp.kubectl("delete", "ns", name, timeout=30)
    assert r.returncode == 0 and f'namespace "{name}" deleted' in r.stdout
    assert time.monotonic() - start < 15
    assert kget(cp, "pods", "-n", name)["items"] == []
    assert cp.kubectl("get", "ns", name).returncode == 1


def test_nodes_and_status_subresource(cp: ControlPlane, tmp_path: Path) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n-" + uuid.uuid4().hex[:6]},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.9"}]}}
    apply(cp, node)
    name = node["metadata"]["name"]
    cp.kubectl("patch", "node", name, "--subresource=status", "--type=merge",
               "-p", '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}', check=True)
    got = kget(cp, "node", name)
    assert got["status"]["conditions"][0]["type"] == "Ready"
    cp.kubectl("patch", "node", name, "--type=merge", "-p", '{"status":{"conditions":[]}}', check=True)
    assert kget(cp, "node", name)["status"]["conditions"][0]["status"] == "True"  # main path ignores status
    assert "no/" + name in cp.kubectl("get", "no", "-o", "name", check=True).stdout.replace("node/", "no/")
    cp.kubectl("delete", "node", name, check=True)


def test_verbs_on_namespaces_endpoints_endpointslices(cp: ControlPlane, ns: str) -> None:
    ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e", "namespace": ns},
          "subsets": [{"addresses": [{"ip": "10.1.2.3"}], "ports": [{"port": 80, "name": "http"}]}]}
    sl = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": {"name": "e-1", "namespace": ns, "labels": {"kubernetes.io/service-name": "e"}},
          "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.2.3"], "conditions": {"ready": True}}],
          "ports": [{"port": 80, "name": "http", "protocol": "TCP"}]}
    apply(cp, ep, sl)
    for kind, name, extra in (("ns", ns, ()), ("ep", "e", ("-n", ns)), ("endpointslice", "e-1", ("-n", ns))):
        cp.kubectl("label", kind, name, *extra, "team=net", check=True)
        cp.kubectl("annotate", kind, name, *extra, "note=x", check=True)
        cp.kubectl("patch", kind, name, *extra, "--type=merge", "-p", '{"metadata":{"labels":{"m":"1"}}}',
                   check=True)
        got = kget(cp, kind, name, *extra)
        assert got["metadata"]["labels"]["team"] == "net" and got["metadata"]["labels"]["m"] == "1"
        assert got["metadata"]["annotations"]["note"] == "x"
    cp.kubectl("patch", "ep", "e", "-n", ns, "--type=json", "-p",
               '[{"op":"replace","path":"/subsets/0/addresses/0/ip","value":"10.1.2.4"}]', check=True)
    cp.kubectl("patch", "endpointslice", "e-1", "-n", ns, "-p",
               '{"endpoints":[{"addresses":["10.1.2.5"],"conditions":{"ready":false}}]}', check=True)
    assert kget(cp, "ep", "e", "-n", ns)["subsets"][0]["addresses"][0]["ip"] == "10.1.2.4"
    got = kget(cp, "endpointslice", "e-1", "-n", ns)
    assert got["endpoints"] == [{"addresses": ["10.1.2.5"], "conditions": {"ready": False}}]
    got["ports"][0]["port"] = 8080
    cp.kubectl("replace", "-f", "-", input=json.dumps(got), check=True)
    assert kget(cp, "endpointslice", "e-1", "-n", ns)["ports"][0]["port"] == 8080
    r = cp.kubectl("label", "ns", ns, "x=y", "--resource-version=1")
    assert r.returncode == 1 and f'Operation cannot be fulfilled on namespaces "{ns}"' in r.stderr
    assert 'endpoints "e" deleted' in cp.kubectl("delete", "ep", "e", "-n", ns, check=True).stdout
    out = cp.kubectl("delete", "endpointslice", "e-1", "-n", ns, check=True).stdout
    assert 'endpointslice.discovery.k8s.io "e-1" deleted' in out
    r = cp.kubectl("delete", "ep", "e", "-n", ns)
    assert r.returncode == 1 and 'endpoints "e" not found' in r.stderr


def test_chunked_get(cp: ControlPlane, ns: str) -> None:
    apply(cp, *(pod(f"c{i}", ns) for i in range(7)))
    out = cp.kubectl("get", "pods", "-n", ns, "--chunk-size=3", "-o", "name", check=True).stdout.split()
    assert out == [f"pod/c{i}" for i in range(7)]
    table = cp.kubectl("get", "pods", "-n", ns, "--chunk-size=2", check=True).stdout.splitlines()
    assert len(table) == 8 and table[0].split()[:2] == ["NAME", "READY"]


def test_auth_can_i_and_whoami(cp: ControlPlane) -> None:
    r = cp.kubectl("auth", "can-i", "delete", "pods", "-A")
    assert r.returncode == 0 and r.stdout.strip() == "yes"
    assert "podnet-admin" in cp.kubectl("auth", "whoami", check=True).stdout
    assert "*.*" in cp.kubectl("auth", "can-i", "--list", check=True).stdout
