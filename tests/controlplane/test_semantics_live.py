"""The API semantics through the real kubectl against a live `podnet controlplane`: strategic
merge patches kubectl apply computes, server-side apply, validation and allocation errors as
kubectl prints them, selectors, and server-side tables."""

from __future__ import annotations

import json
import subprocess
import uuid
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
    name = "s-" + uuid.uuid4().hex[:8]
    apply(cp, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    cp.kubectl("delete", "ns", name, "--wait=false")


def apply(cp: ControlPlane, *objs: dict[str, Any], args: tuple[str, ...] = (),
          check: bool = True) -> subprocess.CompletedProcess[str]:
    return cp.kubectl("apply", *args, "-f", "-", input=yaml.safe_dump_all(list(objs)), check=check)


def kget(cp: ControlPlane, *args: str) -> Any:
    return json.loads(cp.kubectl("get", *args, "-o", "json", check=True).stdout)


def service(name: str, ns: str, ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": ports, **spec}}


def test_apply_changes_ports_by_strategic_merge(cp: ControlPlane, ns: str) -> None:
    apply(cp, service("web", ns, [{"name": "a", "port": 80}, {"name": "b", "port": 81}]))
    first = kget(cp, "-n", ns, "svc", "web")
    apply(cp, service("web", ns, [{"name": "a", "port": 80, "targetPort": 8080}, {"name": "c", "port": 82}]))
    svc = kget(cp, "-n", ns, "svc", "web")
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("a", 80, 8080), ("c", 82, 82)]
    assert svc["spec"]["clusterIP"] == first["spec"]["clusterIP"]  # kept across the patch


def test_patch_types_via_kubectl(cp: ControlPlane, ns: str) -> None:
    apply(cp, service("web", ns, [{"name": "a", "port": 80}]))
    cp.kubectl("-n", ns, "patch", "svc", "web", "-p", '{"spec":{"ports":[{"port":80,"targetPort":9090}]}}',
               check=True)
    cp.kubectl("-n", ns, "patch", "svc", "web", "--type=json", "-p",
               '[{"op":"add","path":"/metadata/labels","value":{"x":"1"}}]', check=True)
    cp.kubectl("-n", ns, "patch", "svc", "web", "--type=merge", "-p", '{"spec":{"selector":{"tier":"t"}}}',
               check=True)
    svc = kget(cp, "-n", ns, "svc", "web")
    assert svc["spec"]["ports"][0]["targetPort"] == 9090 and svc["metadata"]["labels"] == {"x": "1"}
    assert svc["spec"]["selector"] == {"app": "web", "tier": "t"}
    bad = cp.kubectl("-n", ns, "patch", "svc", "web", "--type=json", "-p",
                     '[{"op":"test","path":"/metadata/name","value":"nope"}]')
    assert bad.returncode != 0 and "test failed" in bad.stderr


def test_server_side_apply_conflict_and_force(cp: ControlPlane, ns: str) -> None:
    apply(cp, service("ssa", ns, [{"name": "a", "port": 80}]), args=("--server-side",))
    other = service("ssa", ns, [{"name": "a", "port": 80}])
    other["spec"]["selector"] = {"app": "other"}
    res = apply(cp, other, args=("--server-side", "--field-manager=ci"), check=False)
    assert res.returncode != 0 and "conflict" in res.stderr.lower() and ".spec.selector.app" in res.stderr
    apply(cp, other, args=("--server-side", "--field-manager=ci", "--force-conflicts"))
    svc = kget(cp, "-n", ns, "svc", "ssa", "--show-managed-fields")
    assert svc["spec"]["selector"] == {"app": "other"}
    managers = {m["manager"] for m in svc["metadata"].get("managedFields", [])}
    assert {"kubectl", "ci"} <= managers


def test_validation_errors_as_kubectl_prints_them(cp: ControlPlane, ns: str) -> None:
    res = apply(cp, service("bad", ns, [{"port": 70000}, {"port": 81}]), check=False)
    assert res.returncode != 0
    assert 'The Service "bad" is invalid' in res.stderr
    assert "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive" in res.stderr
    assert "spec.ports[1].name: Required value" in res.stderr
    res = apply(cp, service("Bad-Name", ns, [{"port": 80}]), check=False)
    assert res.returncode != 0 and "a DNS-1035 label must consist of" in res.stderr
    res = apply(cp, service("cip", ns, [{"port": 80, "nodePort": 30080}]), check=False)
    assert "may not be used when `type` is 'ClusterIP'" in res.stderr


def test_allocation_errors(cp: ControlPlane, ns: str) -> None:
    apply(cp, service("np1", ns, [{"port": 80, "nodePort": 30111}], type="NodePort", clusterIP="10.96.7.7"))
    res = apply(cp, service("np2", ns, [{"port": 80, "nodePort": 30111}], type="NodePort"), check=False)
    assert "spec.ports[0].nodePort: Invalid value: 30111: provided port is already allocated" in res.stderr
    res = apply(cp, service("np3", ns, [{"port": 80, "nodePort": 40000}], type="NodePort"), check=False)
    assert "provided port is not in the valid range. The range of valid ports is 30000-32767" in res.stderr
    res = apply(cp, service("ip2", ns, [{"port": 80}], clusterIP="10.96.7.7"), check=False)
    assert "provided IP is already allocated" in res.stderr
    res = apply(cp, service("ip3", ns, [{"port": 80}], clusterIP="192.168.1.1"), check=False)
    assert "The range of valid IPs is 10.96.0.0/12" in res.stderr
    # switching to ClusterIP frees the node port for someone else
    apply(cp, service("np1", ns, [{"port": 80}], type="ClusterIP", clusterIP="10.96.7.7"))
    apply(cp, service("np2", ns, [{"port": 80, "nodePort": 30111}], type="NodePort"))
    immut = apply(cp, service("np1", ns, [{"port": 80}], clusterIP="10.96.7.8"), check=False)
    assert "field is immutable" in immut.stderr


def test_selectors_and_tables(cp: ControlPlane, ns: str) -> None:
    for name, tier in (("a", "front"), ("b", "back"), ("c", "front")):
        apply(cp, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns,
                                                                   "labels": {"tier": tier, "n": name}},
                   "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    names = lambda *a: sorted(p["metadata"]["name"] for p in kget(cp, "-n", ns, "pods", *a)["items"])  # noqa: E731
    assert names("-l", "tier=front") == ["a", "c"]
    assert names("-l", "tier in (back),n!=x") == ["b"]
    assert names("-l", "!tier") == []
    assert names("--field-selector", "metadata.name=b") == ["b"]
    assert names("--field-selector", "status.phase=Pending,metadata.name!=a") == ["b", "c"]
    bad = cp.kubectl("-n", ns, "get", "pods", "--field-selector", "spec.foo=1")
    assert bad.returncode != 0 and "field label not supported: spec.foo" in bad.stderr
    bad = cp.kubectl("-n", ns, "get", "pods", "-l", "a in (")
    assert bad.returncode != 0
    out = cp.kubectl("-n", ns, "get", "pods", check=True).stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert out[1].split()[:4] == ["a", "0/1", "Pending", "0"]
    wide = cp.kubectl("-n", ns, "get", "pods", "-o", "wide", check=True).stdout.splitlines()[0]
    assert "NOMINATED NODE" in wide and "IP" in wide


def test_service_table(cp: ControlPlane, ns: str) -> None:
    apply(cp, service("tbl", ns, [{"name": "a", "port": 80, "nodePort": 30222}, {"name": "b", "port": 53,
                                                                                 "protocol": "UDP"}],
                      type="NodePort"))
    lines = cp.kubectl("-n", ns, "get", "svc", "-o", "wide", check=True).stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    cols = lines[1].split()
    assert cols[0] == "tbl" and cols[1] == "NodePort" and cols[3] == "<none>"
    assert cols[4].startswith("80:30222/TCP,53:") and cols[4].endswith("/UDP") and cols[6] == "app=tbl"


def test_type_changes_through_apply(cp: ControlPlane, ns: str) -> None:
    apply(cp, service("tc", ns, [{"name": "a", "port": 80}], type="LoadBalancer"))
    lb = kget(cp, "-n", ns, "svc", "tc")
    assert lb["spec"]["ports"][0]["nodePort"] and lb["spec"]["allocateLoadBalancerNodePorts"] is True
    apply(cp, service("tc", ns, [{"name": "a", "port": 80}], type="ClusterIP"))
    cip = kget(cp, "-n", ns, "svc", "tc")
    assert "nodePort" not in cip["spec"]["ports"][0] and "allocateLoadBalancerNodePorts" not in cip["spec"]
    assert cip["spec"]["clusterIP"] == lb["spec"]["clusterIP"]
    en = service("tc", ns, [{"name": "a", "port": 80}], type="ExternalName", externalName="db.example.com")
    apply(cp, en)
    got = kget(cp, "-n", ns, "svc", "tc")
    assert "clusterIP" not in got["spec"] and "ipFamilies" not in got["spec"]
    lines = cp.kubectl("-n", ns, "get", "svc", "tc", check=True).stdout.splitlines()
    assert lines[1].split()[1:4] == ["ExternalName", "<none>", "db.example.com"]
    apply(cp, service("tc", ns, [{"name": "a", "port": 80}], type="ClusterIP"))
    back = kget(cp, "-n", ns, "svc", "tc")
    assert back["spec"]["clusterIP"] and back["spec"]["ipFamilies"] == ["IPv4"]
