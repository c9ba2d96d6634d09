"""Live: the real `podnet proxy` process in a node namespace against `podnet controlplane` running
in the same namespace (on its loopback), driven with kubectl through `ip netns exec`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from podnet import netns
from tests.conftest import REPO, free_port_number, requires_kubectl, requires_root
from tests.proxy import proxy_topo as t

pytestmark = [pytest.mark.root, pytest.mark.kubectl, pytest.mark.slow, requires_root, requires_kubectl]


def _http(ns: str, url: str) -> tuple[int, str]:
    code = ("import urllib.request,urllib.error,sys\n"
            "try:\n r=urllib.request.urlopen(sys.argv[1],timeout=2); print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n print(e.code); print(e.read().decode())\n")
    proc = netns.run(ns, [sys.executable, "-c", code, url], check=False, timeout=20)
    if proc.returncode != 0:
        return 0, proc.stderr
    status, _, body = proc.stdout.partition("\n")
    return int(status), body


class Live:
    def __init__(self, topo: t.Topo, data: Path) -> None:
        self.topo = topo
        self.data = data
        self.kubeconfig = data / "kubeconfig"
        self.health_port = free_port_number()
        self.metrics_port = free_port_number()
        self.proxy: subprocess.Popen[bytes] | None = None

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return netns.run(self.topo.node, ["kubectl", "--kubeconfig", str(self.kubeconfig), *args], input=input,
                         timeout=60)

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def start_proxy(self) -> None:
        log = open(self.data / "proxy.log", "ab")
        self.proxy = self.topo.box.popen(self.topo.node, [
            sys.executable, "-m", "podnet", "proxy", "--kubeconfig", str(self.kubeconfig), "--node", t.NODE_NAME,
            "--cluster-cidr", t.CLUSTER_CIDR, "--min-sync-period", "100ms", "--sync-period", "30s",
            "--healthz-bind-address", f"127.0.0.1:{self.health_port}",
            "--metrics-bind-address", f"127.0.0.1:{self.metrics_port}"], stdout=log, stderr=subprocess.STDOUT,
            cwd=REPO)

    def answers(self, ip: str, n: int = 3) -> list[str]:
        return [a.split()[0] for a in self.topo.client_run("tcp", ip, "80", str(n))["answers"]]

    def log(self) -> str:
        return (self.data / "proxy.log").read_text()[-3000:]


@pytest.fixture
def live(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Live]:
    controllers = getattr(request, "param", "")
    box = netns.Sandbox(prefix="pl")
    try:
        topo = t.build(box, backends=2)
        lv = Live(topo, tmp_path)
        port = free_port_number()
        cp_log = open(tmp_path / "cp.log", "ab")
        box.popen(topo.node, [sys.executable, "-m", "podnet", "controlplane", "--listen", f"127.0.0.1:{port}",
                              "--data-dir", str(tmp_path), "--controllers", controllers, "--service-cidr", "10.96.0.0/16"],
                  stdout=cp_log, stderr=subprocess.STDOUT, cwd=REPO)
        if not netns.wait_for(lambda: _http(topo.node, f"http://127.0.0.1:{port}/version")[0] == 200, timeout=30):
            pytest.fail("podnet controlplane did not start: " + (tmp_path / "cp.log").read_text()[-2000:])
        assert netns.wait_for(lv.kubeconfig.exists, timeout=10)
        yield lv
    finally:
        box.close()


def test_live_proxy_follows_the_api(live: Live) -> None:
    live.start_proxy()
    live.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                "spec": {"clusterIP": "10.96.5.5", "selector": {"app": "web"},
                         "ports": [{"name": "p", "port": 80, "targetPort": t.PORT}]}})
    slice_obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                 "metadata": {"name": "web-1", "namespace": "default",
                              "labels": {"kubernetes.io/service-name": "web"},
                              "annotations": {"endpoints.kubernetes.io/last-change-trigger-time":
                                              "2026-01-01T00:00:00Z"}},
                 "endpoints": [{"addresses": [live.topo.backend_ips[0]], "conditions": {"ready": True}}],
                 "ports": [{"name": "p", "port": t.PORT, "protocol": "TCP"}]}
    live.apply(slice_obj)
    assert netns.wait_for(lambda: live.answers("10.96.5.5", 1) == ["b0"], timeout=30), live.log()

    slice_obj["endpoints"] = [{"addresses": [live.topo.backend_ips[1]], "conditions": {"ready": True}}]
    live.apply(slice_obj)
    assert netns.wait_for(lambda: live.answers("10.96.5.5", 1) == ["b1"], timeout=15), live.log()

    code, body = _http(live.topo.node, f"http://127.0.0.1:{live.health_port}/healthz")
    assert code == 200 and set(json.loads(body)) >= {"lastUpdated", "currentTime"}
    assert _http(live.topo.node, f"http://127.0.0.1:{live.health_port}/livez")[0] == 200
    code, metrics = _http(live.topo.node, f"http://127.0.0.1:{live.metrics_port}/metrics")
    assert code == 200
    assert "kubeproxy_network_programming_duration_seconds_count 2" in metrics
    assert "kubeproxy_sync_proxy_rules_last_timestamp_seconds" in metrics
    count = next(line for line in metrics.splitlines()
                 if line.startswith("kubeproxy_sync_proxy_rules_duration_seconds_count"))
    assert int(count.split()[1]) >= 2

    status = netns.run(live.topo.node, [sys.executable, "-m", "podnet", "proxy", "status"], timeout=30).stdout
    assert "default/web:p (TCP)" in status and f"{live.topo.backend_ips[1]}:{t.PORT}" in status

    # restart: the rules stay while it is down, and the new process takes over
    assert live.proxy is not None
    netns.stop(live.proxy)
    assert live.answers("10.96.5.5", 1) == ["b1"]
    live.start_proxy()
    assert netns.wait_for(lambda: _http(live.topo.node, f"http://127.0.0.1:{live.metrics_port}/metrics")[0] == 200,
                          timeout=20)
    live.kubectl("delete", "service", "web")
    assert netns.wait_for(lambda: "default/web:p" not in live.topo.iptables_save(False), timeout=15), live.log()

    netns.stop(live.proxy)
    netns.run(live.topo.node, [sys.executable, "-m", "podnet", "proxy", "--cleanup"], timeout=60)
    assert "KUBE-" not in live.topo.iptables_save(False)


@pytest.mark.parametrize("live", ["endpoints"], indirect=True)
def test_live_proxy_with_the_endpoints_controller(live: Live) -> None:
    """Pods + a selector Service -> the endpoints controller writes EndpointSlices -> the proxy."""
    live.start_proxy()
    live.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app", "namespace": "default"},
                "spec": {"clusterIP": "10.96.5.7", "selector": {"app": "demo"},
                         "ports": [{"name": "p", "port": 80, "targetPort": t.PORT}]}})
    for i, ip_ in enumerate(live.topo.backend_ips):
        live.apply({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": f"demo-{i}", "namespace": "default", "labels": {"app": "demo"}},
                    "spec": {"nodeName": t.NODE_NAME, "containers": [{"name": "c", "image": "x"}]}})
        status = {"status": {"phase": "Running", "podIP": ip_, "podIPs": [{"ip": ip_}],
                             "conditions": [{"type": "Ready", "status": "True"}]}}
        live.kubectl("patch", "pod", f"demo-{i}", "--subresource=status", "--type=merge", "-p", json.dumps(status))
    assert netns.wait_for(lambda: set(live.answers("10.96.5.7", 20)) == {"b0", "b1"}, timeout=30), live.log()
    live.kubectl("delete", "pod", "demo-0", "--wait=false")
    assert netns.wait_for(lambda: set(live.answers("10.96.5.7", 10)) == {"b1"}, timeout=30), live.log()
