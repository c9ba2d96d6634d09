"""End to end on a 2-node lab driven by the real kubectl: pod-to-pod across nodes, ClusterIP and
NodePort from every node, DNS through the pod's resolv.conf, scaling, readiness flips, agent
restart adoption, and `lab down` leaving the machine as it was."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from lab import topology as topo
from lab.lab import Lab
from tests.conftest import is_root_with_netns
from tests.e2e.e2e_helpers import (apply, echo_pod, kget, kubectl, lab_exec, leftovers, pod_ready, ready_addresses,
                                   wait)

pytestmark = [pytest.mark.root, pytest.mark.kubectl, pytest.mark.slow,
              pytest.mark.skipif(not is_root_with_netns(), reason="needs root and iproute2")]

NODEPORT = 30123


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    name = f"e2e-{secrets.token_hex(3)}"
    lab = Lab(name, 2)
    try:
        lab.up(timeout=120)
        for i, node in ((1, "node-1"), (2, "node-2"), (3, "node-1")):
            apply(lab, echo_pod(f"echo-{i}", node=node))
        apply(lab, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
                    "spec": {"type": "NodePort", "selector": {"app": "echo"},
                             "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": NODEPORT}]}})
        wait(lambda: len(ready_addresses(lab, "echo")) == 3, 60, "3 ready echo endpoints")
        vip = str(kget(lab, "service", "echo")["spec"]["clusterIP"])
        for node in ("node-1", "node-2"):  # the proxies have programmed the Service
            wait(lambda: lab_exec(lab, node, "curl", "-s", "-m", "2", f"http://{vip}/").returncode == 0, 20,
                 f"the echo Service on {node}")
        yield lab
    finally:
        lab.down()
        assert leftovers(name) == []


def cluster_ip(lab: Lab) -> str:
    return str(kget(lab, "service", "echo")["spec"]["clusterIP"])


def pod_ip(lab: Lab, name: str) -> str:
    return str(kget(lab, "pod", name)["status"]["podIP"])


def curl(lab: Lab, where: str, url: str) -> str:
    out = lab_exec(lab, where, "curl", "-s", "-m", "3", url)
    assert out.returncode == 0, f"curl {url} from {where}: rc {out.returncode} {out.stderr}"
    return out.stdout.strip()


def test_nodes_and_pods_via_kubectl(lab: Lab) -> None:
    nodes = kget(lab, "nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["node-1", "node-2"]
    cidrs = {n["spec"]["podCIDR"] for n in nodes}
    assert len(cidrs) == 2 and all(c.startswith("10.244.") for c in cidrs)
    pods = kget(lab, "pods", "-l", "app=echo")["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {"node-1", "node-2"}
    assert all(pod_ready(p) and p["status"]["phase"] == "Running" for p in pods)
    by_name = {n["metadata"]["name"]: n for n in nodes}
    for me, other in (("node-1", "node-2"), ("node-2", "node-1")):  # host-gw routes from the Node objects
        routes = lab_exec(lab, me, "ip", "route", "show", "proto", "188").stdout
        ip = lab.t.node(other).ip  # type: ignore[union-attr]
        assert f"{by_name[other]['spec']['podCIDR']} via {ip}" in routes
    table = kubectl(lab, "get", "pods", "-o", "wide")
    assert "echo-1" in table and "Running" in table


def test_pod_to_pod_across_nodes(lab: Lab) -> None:
    ip2 = pod_ip(lab, "echo-2")  # on node-2
    answer = curl(lab, "echo-1", f"http://{ip2}:8080/")  # from node-1
    name, source = answer.split()
    assert name == "echo-2"
    assert source == pod_ip(lab, "echo-1")  # no SNAT between pods (host-gw)
    back = curl(lab, "echo-2", f"http://{pod_ip(lab, 'echo-3')}:8080/")
    assert back.split()[0] == "echo-3"


def test_clusterip_from_every_node_and_pod_spreads(lab: Lab) -> None:
    vip = cluster_ip(lab)
    for where in ("node-1", "node-2", "echo-1", "echo-2"):
        seen = Counter(curl(lab, where, f"http://{vip}/").split()[0] for _ in range(12))
        assert set(seen) <= {"echo-1", "echo-2", "echo-3"}
        assert len(seen) >= 2, f"no spread from {where}: {seen}"


def test_nodeport_from_every_node_and_outside(lab: Lab) -> None:
    for node in lab.t.nodes:
        for where in ("client", "node-1", "node-2"):
            answer = curl(lab, where, f"http://{node.ip}:{NODEPORT}/")
            assert answer.split()[0].startswith("echo-")
    seen = {curl(lab, "client", f"http://{lab.t.nodes[0].ip}:{NODEPORT}/").split()[0] for _ in range(15)}
    assert len(seen) >= 2


def test_dns_from_pod_through_resolv_conf(lab: Lab) -> None:
    resolv = lab_exec(lab, "echo-1", "cat", "/etc/resolv.conf").stdout
    assert resolv.splitlines() == ["nameserver 10.96.0.10",
                                   "search default.svc.cluster.local svc.cluster.local cluster.local",
                                   "options ndots:5"]
    vip = cluster_ip(lab)
    assert lab_exec(lab, "echo-1", "getent", "hosts", "echo").stdout.split()[0] == vip  # search path
    assert lab_exec(lab, "echo-2", "getent", "hosts", "kube-dns.kube-system").stdout.split()[0] == topo.CLUSTER_DNS
    fqdn = lab_exec(lab, "echo-2", "dig", "+short", "echo.default.svc.cluster.local").stdout.split()
    assert fqdn == [vip]
    tcp = lab_exec(lab, "echo-2", "dig", "+tcp", "+short", "+search", "echo").stdout.split()
    assert tcp == [vip]
    assert curl(lab, "echo-2", "http://echo/").split()[0].startswith("echo-")
    assert curl(lab, "echo-1", "http://kubernetes.default.svc:443/version").startswith("{")


def test_scale_up_and_down(lab: Lab) -> None:
    before = ready_addresses(lab, "echo")
    for i in (4, 5):
        apply(lab, echo_pod(f"echo-{i}"))
    wait(lambda: len(ready_addresses(lab, "echo")) == 5, 30, "5 endpoints")
    new = {pod_ip(lab, "echo-4"), pod_ip(lab, "echo-5")}
    assert ready_addresses(lab, "echo") == before | new
    vip = cluster_ip(lab)
    wait(lambda: "echo-4" in {curl(lab, "node-2", f"http://{vip}/").split()[0] for _ in range(15)}, 20,
         "traffic to the new pod")
    echo4 = kget(lab, "pod", "echo-4")
    uid, ip4, node4 = echo4["metadata"]["uid"], echo4["status"]["podIP"], echo4["spec"]["nodeName"]
    ipam_dir = lab.t.node(node4).root_dir / "ipam"  # type: ignore[union-attr]
    assert [f for f in ipam_dir.rglob(ip4)]  # the IP is reserved while the pod runs
    kubectl(lab, "delete", "pod", "echo-4", "echo-5", "--wait=true")
    wait(lambda: ready_addresses(lab, "echo") == before, 20, "endpoints back to 3")
    wait(lambda: subprocess.run(["ip", "netns", "pids", f"pod-{uid}"], capture_output=True).returncode != 0, 20,
         "the deleted pod's namespace to go")
    wait(lambda: not list(ipam_dir.rglob(ip4)), 10, "the deleted pod's IP to be released")
    # once the proxies have synced (min-sync-period), only the remaining pods answer
    wait(lambda: {curl(lab, "node-1", f"http://{vip}/").split()[0] for _ in range(12)} <= {"echo-1", "echo-2",
                                                                                          "echo-3"},
         10, "traffic only to the remaining pods")


def test_readiness_flips_drive_endpoints(lab: Lab) -> None:
    flag = Path(tempfile.mkdtemp(prefix="podnet-e2e-")) / "ready"
    try:
        apply(lab, echo_pod("flip", app="flip", readiness_file=str(flag)))
        apply(lab, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "flip"},
                    "spec": {"selector": {"app": "flip"}, "ports": [{"port": 80, "targetPort": 8080}]}})
        wait(lambda: kget(lab, "pod", "flip")["status"].get("podIP"), 30, "flip to get an IP")
        assert not pod_ready(kget(lab, "pod", "flip"))
        assert ready_addresses(lab, "flip") == set()
        flag.write_text("1")
        wait(lambda: pod_ready(kget(lab, "pod", "flip")), 20, "flip Ready")
        wait(lambda: ready_addresses(lab, "flip") == {pod_ip(lab, "flip")}, 20, "flip endpoint ready")
        vip = str(kget(lab, "service", "flip")["spec"]["clusterIP"])
        wait(lambda: curl(lab, "node-1", f"http://{vip}/").startswith("flip"), 20, "traffic to flip")
        flag.unlink()
        wait(lambda: not pod_ready(kget(lab, "pod", "flip")), 20, "flip NotReady")
        wait(lambda: ready_addresses(lab, "flip") == set(), 20, "flip endpoint not ready")
        # no ready endpoint: the proxy rejects instead of black-holing
        wait(lambda: lab_exec(lab, "node-1", "curl", "-s", "-m", "2", f"http://{vip}/").returncode == 7, 20,
             "connection refused")
    finally:
        kubectl(lab, "delete", "pod", "flip", "--wait=false", check=False)
        kubectl(lab, "delete", "service", "flip", check=False)
        flag.unlink(missing_ok=True)
        flag.parent.rmdir()


def test_agent_restart_adopts_pods(lab: Lab) -> None:
    node = kget(lab, "pod", "echo-1")["spec"]["nodeName"]
    uid = kget(lab, "pod", "echo-1")["metadata"]["uid"]
    state = lab.t.node(node).root_dir / "pods" / uid / "state.json"  # type: ignore[union-attr]
    pid = json.loads(state.read_text())["containers"]["echo"]["pid"]
    old = lab.pid_of(f"{node}-agent")
    new = lab.restart(f"{node}-agent")
    assert new != old
    # the container process survives and is adopted, not restarted
    assert Path(f"/proc/{pid}").exists()
    wait(lambda: "adopting pod default/echo-1" in (lab.t.state_dir / "logs" / f"{node}-agent.log").read_text(), 20,
         "adoption")
    p = kget(lab, "pod", "echo-1")
    assert pod_ready(p) and p["status"]["containerStatuses"][0]["restartCount"] == 0
    assert json.loads(state.read_text())["containers"]["echo"]["pid"] == pid
    assert curl(lab, "echo-2", f"http://{pod_ip(lab, 'echo-1')}:8080/").startswith("echo-1")
    # the restarted agent still manages it: a delete tears it down
    apply(lab, echo_pod("adopt-me", node=node))
    wait(lambda: pod_ready(kget(lab, "pod", "adopt-me")), 30, "a new pod on the restarted agent")
    kubectl(lab, "delete", "pod", "adopt-me")


def test_zz_lab_down_leaves_nothing(lab: Lab) -> None:
    name = lab.t.name
    pod_namespaces = [f"pod-{d.name}" for n in lab.t.nodes for d in (n.root_dir / "pods").iterdir()]
    assert pod_namespaces
    out = subprocess.run([sys.executable, "-m", "podnet", "lab", "down", "--name", name],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert leftovers(name) == []
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listed for ns in pod_namespaces)
    root_rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout.splitlines()
    assert [r for r in root_rules if any(k in r for k in ("KUBE-", "CNI-", "PODNET-"))] == []
    assert subprocess.run(["curl", "-s", "-m", "1", f"http://127.0.0.1:{lab.state.relay_port}/version"],
                          capture_output=True).returncode != 0
