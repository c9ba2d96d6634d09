"""A node topology inside namespaces for proxy packet tests and the benchmark.

  client ns (10.99.0.2/24) --veth-- node ns (10.99.0.1/24; bridge cbr0 10.244.0.1/24) --veths-- backends
                                                                        (10.244.0.11, .12, ... /24)

The node namespace is where rules are applied, through the same Proxier/Iptables shell code that
`podnet proxy` runs. Backends run proxy_echo.py (TCP + UDP, answers "<name> <peer>").
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podnet import netns
from proxy.iptables import backend
from proxy.iptables.proxier import Proxier
from proxy.iptables.render import RenderOptions

HERE = Path(__file__).resolve().parent
ECHO = HERE / "proxy_echo.py"
CLIENT_SCRIPT = HERE / "proxy_client.py"
NODE_NAME = "node-a"
CLIENT_IP = "10.99.0.2"
NODE_IP = "10.99.0.1"
GATEWAY = "10.244.0.1"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
PORT = 8080


@dataclass
class Topo:
    box: netns.Sandbox
    node: str
    client: str
    backends: list[str] = field(default_factory=list)  # namespace names
    backend_ips: list[str] = field(default_factory=list)
    echo: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def backend_name(self, i: int) -> str:
        return f"b{i}"

    def proxier(self, **opts: Any) -> Proxier:
        opts.setdefault("cluster_cidr", __import__("ipaddress").ip_network(CLUSTER_CIDR))
        ipt = backend.Iptables(backend.detect_backend(self.node), netns=self.node)
        return Proxier(NODE_NAME, ipt, RenderOptions(random_fully=ipt.has_random_fully(), **opts))

    def client_run(self, *args: str, ns: str | None = None, timeout: float = 60) -> Any:
        """Run proxy_client.py in the client (or given) namespace; returns its JSON output."""
        proc = netns.run(ns or self.client, [sys.executable, str(CLIENT_SCRIPT), *args], timeout=timeout)
        return json.loads(proc.stdout)

    def iptables_save(self, counters: bool = True) -> str:
        return backend.Iptables(backend.detect_backend(self.node), netns=self.node).save(counters=counters)


def build(box: netns.Sandbox, backends: int = 3) -> Topo:
    node = box.netns("nd")
    client = box.netns("cl")
    topo = Topo(box, node, client)
    netns.add_veth(node, "nc0", client, "eth0")
    netns.add_addr(node, "nc0", f"{NODE_IP}/24")
    netns.add_addr(client, "eth0", f"{CLIENT_IP}/24")
    netns.add_route(client, "default", via=NODE_IP)
    netns.ip("link", "add", "cbr0", "type", "bridge", netns=node)
    netns.add_addr(node, "cbr0", f"{GATEWAY}/24")
    netns.ip("link", "set", "cbr0", "up", netns=node)
    netns.sysctl(node, "net.ipv4.ip_forward", "1")
    # a real node has a default route (Service IPs are routed, then DNATed or REJECTed): an uplink
    # namespace that does not forward (so unmatched traffic dies there)
    uplink = box.netns("up")
    netns.add_veth(node, "up0", uplink, "eth0")
    netns.add_addr(node, "up0", "10.98.0.1/24")
    netns.add_addr(uplink, "eth0", "10.98.0.2/24")
    netns.add_route(node, "default", via="10.98.0.2")
    for i in range(backends):
        add_backend(topo, i)
    return topo


def add_backend(topo: Topo, i: int) -> None:
    ns = topo.box.netns(f"b{i}")
    ip_ = f"10.244.0.{11 + i}"
    netns.add_veth(topo.node, f"vb{i}", ns, "eth0")
    netns.ip("link", "set", f"vb{i}", "master", "cbr0", netns=topo.node)
    # hairpin mode, as kubelet / the bridge CNI plugin set it: with br_netfilter a pod's packet DNATed
    # back to itself leaves through the port it came in on
    netns.ip("link", "set", f"vb{i}", "type", "bridge_slave", "hairpin", "on", netns=topo.node)
    netns.add_addr(ns, "eth0", f"{ip_}/24")
    netns.add_route(ns, "default", via=GATEWAY)
    proc = topo.box.popen(ns, [sys.executable, str(ECHO), f"b{i}", str(PORT)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    topo.backends.append(ns)
    topo.backend_ips.append(ip_)
    topo.echo.append(proc)
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready"


def service(name: str, cluster_ip: str, port: int = 80, protocol: str = "TCP", ns: str = "default",
            **spec: Any) -> dict[str, Any]:
    ports = spec.pop("ports", None) or [{"name": "p", "port": port, "protocol": protocol, "targetPort": PORT,
                                         **({"nodePort": spec.pop("node_port")} if "node_port" in spec else {})}]
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": "1"},
            "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": ports, **spec}}


def endpoint_slice(svc: str, ips: list[str], protocol: str = "TCP", ns: str = "default", node: str = "",
                   name: str = "", **extra: Any) -> dict[str, Any]:
    eps = [{"addresses": [ip_], "conditions": {"ready": True}, **({"nodeName": node} if node else {})} for ip_ in ips]
    return {"metadata": {"namespace": ns, "name": name or f"{svc}-x", "labels": {"kubernetes.io/service-name": svc},
                         **extra},
            "addressType": "IPv4", "endpoints": eps, "ports": [{"name": "p", "port": PORT, "protocol": protocol}]}

