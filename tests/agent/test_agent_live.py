"""The agent on a one-node cluster in a namespace: pods get a netns, an IP from CNI (the reference
bridge + host-local), resolv.conf, run, are probed, restarted, adopted and torn down."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import AsyncIterator

import pytest

from agent.runtime import exec_in_pod_argv, netns_name
from controlplane.client import Client
from controlplane.resources import NODES, PODS
from podnet import netns
from tests.agent.agent_helpers import NODE_IP, REPO, OneNode, is_ready, pod, wait_pod
from tests.conftest import free_port_number, is_root_with_netns

pytestmark = [pytest.mark.root, pytest.mark.skipif(not is_root_with_netns(), reason="needs root")]

HTTP = [sys.executable, "-m", "http.server", "8080"]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[OneNode]:
    box = netns.Sandbox(prefix="pta")
    stop = asyncio.Event()
    relay = None
    client = None
    try:
        ns = box.netns("n")
        netns.add_addr(ns, "lo", f"{NODE_IP}/32")
        cplog = open(tmp_path / "cp.log", "ab")
        cp = netns.popen_net(ns, [sys.executable, "-m", "podnet", "controlplane", "--listen", "127.0.0.1:6443",
                                  "--data-dir", str(tmp_path / "cp"), "--controllers", "nodeipam,scheduler"],
                             stdout=cplog, stderr=subprocess.STDOUT, cwd=REPO)
        box.processes.append(cp)
        port = free_port_number()
        relay = asyncio.create_task(netns.relay("127.0.0.1", port, ns, "127.0.0.1", 6443, stop))
        client = Client(f"http://127.0.0.1:{port}")
        for _ in range(200):
            try:
                await client.request("GET", "/version")
                break
            except Exception:  # noqa: BLE001
                await asyncio.sleep(0.05)
        one = OneNode(ns, tmp_path, client, cp, None, box, "bridge", "host-local", "/usr/lib/cni")
        one.start_agent()
        for _ in range(300):
            try:
                node = await client.get(NODES, "n1")
                if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]):
                    break
            except Exception:  # noqa: BLE001
                pass
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("node never Ready: " + one.log())
        yield one
        if one.agent is not None and one.agent.poll() is not None:
            raise AssertionError("agent died: " + one.log())
    finally:
        if client is not None:
            try:
                for p in (await client.list(PODS, namespace="default")).items:
                    await client.delete(PODS, p["metadata"]["name"], namespace="default")
                await asyncio.sleep(1.5)  # let the agent tear them down
            except Exception:  # noqa: BLE001
                pass
            await client.close()
        stop.set()
        if relay is not None:
            await relay
        for d in (tmp_path / "agent" / "pods").glob("*") if (tmp_path / "agent" / "pods").exists() else []:
            netns.delete(netns_name(d.name))
        box.close()


def in_node(one: OneNode, *argv: str) -> subprocess.CompletedProcess[str]:
    return netns.run(one.ns, list(argv), check=False, timeout=20)


async def test_pod_runs_with_ip_readiness_resolv_and_teardown(cluster: OneNode) -> None:
    c = cluster.client
    spec = pod("web", HTTP, containers=[{
        "name": "web", "command": HTTP, "ports": [{"name": "http", "containerPort": 8080}],
        "env": [{"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}}])
    await c.create(PODS, spec)
    p = await wait_pod(c, "web", is_ready, 30)
    st = p["status"]
    assert st["phase"] == "Running" and st["podIP"].startswith("10.244.0.")
    assert st["hostIP"] == NODE_IP and st["podIPs"] == [{"ip": st["podIP"]}]
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["restartCount"] == 0 and "running" in cs["state"]
    assert p["spec"]["nodeName"] == "n1"
    out = in_node(cluster, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{st['podIP']}:8080/")
    assert out.stdout == "200"
    uid = p["metadata"]["uid"]
    argv = exec_in_pod_argv(cluster.dir / "agent", uid, ["cat", "/etc/resolv.conf"])
    resolv = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    assert "nameserver 10.96.0.10" in resolv
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert "options ndots:5" in resolv
    env = subprocess.run(exec_in_pod_argv(cluster.dir / "agent", uid, ["sh", "-c", "hostname; ip -4 -o addr show eth0"]),
                         capture_output=True, text=True, timeout=10).stdout
    assert st["podIP"] in env
    # the container process sees its own resolv.conf and hostname
    pid = json.loads((cluster.dir / "agent" / "pods" / uid / "state.json").read_text())["containers"]["web"]["pid"]
    child = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    environ = Path(f"/proc/{child[0]}/environ").read_bytes().split(b"\0")
    assert b"MY_POD=web" in environ and b"KUBERNETES_SERVICE_HOST=10.96.0.1" in environ
    assert netns.exists(netns_name(uid))
    await c.delete(PODS, "web", namespace="default")
    assert netns.wait_for(lambda: not netns.exists(netns_name(uid)), 15), cluster.log()
    assert netns.wait_for(lambda: not (cluster.dir / "agent" / "pods" / uid).exists(), 5)
    assert not Path(f"/proc/{pid}").exists()
    links = in_node(cluster, "ip", "-o", "link").stdout
    assert "veth" not in links  # the host end went with the namespace
    ipam = list((cluster.dir / "agent" / "ipam").rglob("10.244.*"))
    assert ipam == []  # the IP was released


async def test_restart_policy_liveness_and_exit_codes(cluster: OneNode) -> None:
    c = cluster.client
    await c.create(PODS, pod("fail", ["sh", "-c", "exit 3"], restartPolicy="Never"))
    await c.create(PODS, pod("done", ["true"], restartPolicy="OnFailure"))
    await c.create(PODS, pod("crash", ["sh", "-c", "sleep 0.2; exit 1"], restartPolicy="Always"))
    await c.create(PODS, pod("live", [], containers=[{
        "name": "main", "command": ["sleep", "1000"],
        "livenessProbe": {"exec": {"command": ["test", "-e", "/nonexistent"]}, "periodSeconds": 1,
                          "failureThreshold": 1}}], terminationGracePeriodSeconds=1))
    p = await wait_pod(c, "fail", lambda p: p["status"].get("phase") == "Failed")
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    p = await wait_pod(c, "done", lambda p: p["status"].get("phase") == "Succeeded")
    assert p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    p = await wait_pod(c, "crash", lambda p: p["status"]["containerStatuses"][0]["restartCount"] >= 2)
    assert p["status"]["phase"] == "Running"
    p = await wait_pod(c, "live", lambda p: p["status"]["containerStatuses"][0]["restartCount"] >= 1, 30)
    assert p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] in (137, 143)
    # a finished pod gives its network back but keeps its status
    uid = (await c.get(PODS, "fail"))["metadata"]["uid"]
    assert netns.wait_for(lambda: not netns.exists(netns_name(uid)), 10)


async def test_agent_restart_adopts_running_pods(cluster: OneNode) -> None:
    c = cluster.client
    await c.create(PODS, pod("keep", ["sleep", "1000"]))
    p = await wait_pod(c, "keep", is_ready)
    uid = p["metadata"]["uid"]
    state = cluster.dir / "agent" / "pods" / uid / "state.json"
    pid = json.loads(state.read_text())["containers"]["main"]["pid"]
    cluster.stop_agent()
    assert Path(f"/proc/{pid}").exists()
    cluster.start_agent()
    await asyncio.sleep(2.0)
    p = await wait_pod(c, "keep", is_ready)
    assert p["status"]["containerStatuses"][0]["restartCount"] == 0
    assert json.loads(state.read_text())["containers"]["main"]["pid"] == pid
    assert Path(f"/proc/{pid}").exists()
    # and it still tears the adopted pod down
    await c.delete(PODS, "keep", namespace="default")
    assert netns.wait_for(lambda: not netns.exists(netns_name(uid)), 15), cluster.log()
    assert netns.wait_for(lambda: not Path(f"/proc/{pid}").exists(), 5)
    os.sync()


async def test_host_network_pod(cluster: OneNode) -> None:
    c = cluster.client
    await c.create(PODS, pod("hostnet", [sys.executable, "-m", "http.server", "8099", "--bind", NODE_IP],
                             hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"))
    p = await wait_pod(c, "hostnet", is_ready)
    assert p["status"]["podIP"] == NODE_IP
    uid = p["metadata"]["uid"]
    assert not netns.exists(netns_name(uid))
    assert netns.wait_for(lambda: in_node(cluster, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                          f"http://{NODE_IP}:8099/").stdout == "200", 10)
    resolv = subprocess.run(exec_in_pod_argv(cluster.dir / "agent", uid, ["cat", "/etc/resolv.conf"], cluster.ns),
                            capture_output=True, text=True, timeout=10).stdout
    assert "nameserver 10.96.0.10" in resolv
    await c.delete(PODS, "hostnet", namespace="default")
    assert netns.wait_for(lambda: in_node(cluster, "curl", "-s", "-m", "1", f"http://{NODE_IP}:8099/").returncode != 0,
                          15), cluster.log()


async def test_startup_probe_gates_readiness_and_restarts(cluster: OneNode) -> None:
    c = cluster.client
    flag = cluster.dir / "started"
    await c.create(PODS, pod("slow", [], containers=[{
        "name": "main", "command": ["sleep", "1000"],
        "startupProbe": {"exec": {"command": ["test", "-e", str(flag)]}, "periodSeconds": 1, "failureThreshold": 30},
        "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 100}}]))
    await c.create(PODS, pod("never", [], terminationGracePeriodSeconds=1, containers=[{
        "name": "main", "command": ["sleep", "1000"],
        "startupProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}}]))
    p = await wait_pod(c, "slow", lambda p: p["status"].get("phase") == "Running")
    await asyncio.sleep(1.5)
    p = await c.get(PODS, "slow")
    assert not is_ready(p) and p["status"]["containerStatuses"][0]["restartCount"] == 0
    flag.write_text("1")
    await wait_pod(c, "slow", is_ready, 10)
    p = await wait_pod(c, "never", lambda p: p["status"]["containerStatuses"][0]["restartCount"] >= 1, 20)
    assert not is_ready(p)


async def test_agent_crash_during_sandbox_setup_recovers(cluster: OneNode) -> None:
    c = cluster.client
    await c.create(PODS, pod("crashy", HTTP))
    p = await wait_pod(c, "crashy", is_ready)
    uid = p["metadata"]["uid"]
    state = cluster.dir / "agent" / "pods" / uid / "state.json"
    cluster.stop_agent()
    # as if the agent died after CNI ADD but before recording it: sandbox not ready, no container yet
    raw = json.loads(state.read_text())
    os.killpg(raw["containers"]["main"]["pid"], 9)
    raw.update(sandbox_ready=False, cni_result=None, pod_ips=[], containers={})
    state.write_text(json.dumps(raw))
    cluster.start_agent()

    def recovered(p: dict) -> bool:
        now = json.loads(state.read_text())
        return bool(now["sandbox_ready"] and now["pod_ips"] and is_ready(p)
                    and p["status"].get("podIP") == now["pod_ips"][0])
    p = await wait_pod(c, "crashy", recovered, 30)
    ip = p["status"]["podIP"]
    assert netns.wait_for(lambda: in_node(cluster, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                          f"http://{ip}:8080/").stdout == "200", 10), cluster.log()
    leases = [f.name for f in (cluster.dir / "agent" / "ipam").rglob("10.244.*")]
    assert leases == [ip]  # the interrupted attachment's IP was released, not leaked


async def test_init_containers_run_first(cluster: OneNode) -> None:
    c = cluster.client
    marker = cluster.dir / "init-order"
    await c.create(PODS, pod("withinit", [], initContainers=[
        {"name": "first", "command": ["sh", "-c", f"echo first >> {marker}"]},
        {"name": "second", "command": ["sh", "-c", f"sleep 0.3; echo second >> {marker}"]}],
        containers=[{"name": "app", "command": ["sh", "-c", f"echo app >> {marker}; exec sleep 1000"]}]))
    p = await wait_pod(c, "withinit", is_ready, 30)
    # Ready (no probe) means started, as with kubelet: the app's own echo may still be on its way.
    netns.wait_for(lambda: len(marker.read_text().split()) >= 3, timeout=10)
    assert marker.read_text().split() == ["first", "second", "app"]
    inits = p["status"]["initContainerStatuses"]
    assert [s["state"]["terminated"]["reason"] for s in inits] == ["Completed", "Completed"]
    await c.create(PODS, pod("badinit", ["sh", "-c", f"echo bad-app >> {marker}"], restartPolicy="Never",
                             initContainers=[{"name": "fail", "image": "host", "command": ["false"]}]))
    p = await wait_pod(c, "badinit", lambda p: p["status"].get("phase") == "Failed", 30)
    assert p["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    await asyncio.sleep(0.5)
    assert "bad-app" not in marker.read_text().split()  # the app container never ran


async def test_host_port_through_portmap_chain(cluster: OneNode) -> None:
    c = cluster.client
    conf = json.loads((cluster.dir / "net.d" / "10-podnet.conflist").read_text())
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap"]  # a real chain: prevResult flows
    await c.create(PODS, pod("hp", HTTP, containers=[{
        "name": "web", "command": HTTP, "ports": [{"containerPort": 8080, "hostPort": 18080}]}]))
    p = await wait_pod(c, "hp", is_ready)
    uid = p["metadata"]["uid"]
    state = json.loads((cluster.dir / "agent" / "pods" / uid / "state.json").read_text())
    assert state["runtime_config"] == {"portMappings": [{"hostPort": 18080, "containerPort": 8080,
                                                         "protocol": "tcp"}]}
    assert netns.wait_for(lambda: in_node(cluster, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                          f"http://{NODE_IP}:18080/").stdout == "200", 10)
    assert "18080" in in_node(cluster, "iptables-save", "-t", "nat").stdout
    await c.delete(PODS, "hp", namespace="default")
    assert netns.wait_for(lambda: not netns.exists(netns_name(uid)), 15)
    assert netns.wait_for(lambda: "18080" not in in_node(cluster, "iptables-save", "-t", "nat").stdout, 10)
