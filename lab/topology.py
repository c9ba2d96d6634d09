"""The lab's pure core: names, addresses and the argv of every process a lab runs.

A lab NAME with N nodes is:
- namespace `pnlab-NAME-hub`: bridge `br0` (the underlay, 10.250.0.0/24), the control plane on
  10.250.0.1:6443 (its advertised address);
- namespaces `pnlab-NAME-node-I`: `eth0` on the underlay (10.250.0.(10+I)), default route via the
  hub (which has no uplink), running `podnet cni daemon`, `podnet agent` and `podnet proxy`;
- namespace `pnlab-NAME-client`: an outside-the-cluster client on the underlay (10.250.0.200);
- in the root namespace only a loopback TCP relay 127.0.0.1:PORT -> hub 10.250.0.1:6443 for kubectl.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

STATE_ROOT = Path("/run/podnet/lab")
UNDERLAY = "10.250.0.0/24"
HUB_IP = "10.250.0.1"
CLIENT_IP = "10.250.0.200"
API_PORT = 6443
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
CLUSTER_DNS = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
MAX_NODES = 9

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$")


class LabError(Exception):
    """The lab's one base error; the message says what to do."""


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise LabError(f"lab name {name!r} must be 1-20 lowercase letters, digits or '-'")
    return name


@dataclass(frozen=True)
class NodePlan:
    name: str  # Kubernetes Node name
    netns: str
    ip: str
    hub_if: str  # veth end on the hub bridge
    root_dir: Path

    @property
    def cni_conf_dir(self) -> Path:
        return self.root_dir / "net.d"

    @property
    def cni_socket(self) -> Path:
        return self.root_dir / "cni.sock"


@dataclass(frozen=True)
class Topology:
    name: str
    state_dir: Path
    hub: str
    client: str
    nodes: tuple[NodePlan, ...]

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.hub, *(n.netns for n in self.nodes), self.client)

    @property
    def api_url(self) -> str:
        return f"http://{HUB_IP}:{API_PORT}"

    @property
    def cni_bin_dir(self) -> Path:
        return self.state_dir / "cni" / "bin"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def node(self, name: str) -> NodePlan | None:
        return next((n for n in self.nodes if n.name == name), None)


def plan(name: str, nodes: int, state_root: Path = STATE_ROOT) -> Topology:
    check_name(name)
    if not 1 <= nodes <= MAX_NODES:
        raise LabError(f"--nodes {nodes}: a lab has 1 to {MAX_NODES} nodes")
    state = state_root / name
    prefix = f"pnlab-{name}"
    return Topology(
        name=name,
        state_dir=state,
        hub=f"{prefix}-hub",
        client=f"{prefix}-client",
        nodes=tuple(NodePlan(f"node-{i}", f"{prefix}-node-{i}", f"10.250.0.{10 + i}", f"n{i}",
                             state / "nodes" / f"node-{i}") for i in range(1, nodes + 1)),
    )


def controlplane_argv(t: Topology, python: str = sys.executable) -> list[str]:
    return [python, "-m", "podnet", "controlplane", "--listen", f"{HUB_IP}:{API_PORT}",
            "--data-dir", str(t.state_dir / "controlplane"), "--advertise-address", HUB_IP,
            "--service-cidr", SERVICE_CIDR, "--cluster-cidr", CLUSTER_CIDR]


def cni_daemon_argv(n: NodePlan, python: str = sys.executable) -> list[str]:
    return [python, "-m", "podnet", "cni", "daemon", "--socket", str(n.cni_socket)]


REFERENCE_CNI_DIR = "/usr/lib/cni"  # Debian containernetworking-plugins


def agent_argv(t: Topology, n: NodePlan, python: str = sys.executable, cni: str = "podnet") -> list[str]:
    """cni: "podnet" (podnet-bridge + podnet-ipam with the node's CNI daemon) or "reference"
    (containernetworking-plugins bridge + host-local)."""
    plugins = (["--cni-plugin", "bridge", "--cni-ipam", "host-local"] if cni == "reference" else
               ["--cni-daemon-socket", str(n.cni_socket)])
    return [python, "-m", "podnet", "agent", "--server", t.api_url, "--node", n.name, "--node-ip", n.ip,
            "--cni-bin-dir", f"{t.cni_bin_dir}:{REFERENCE_CNI_DIR}", "--cni-conf-dir", str(n.cni_conf_dir),
            "--write-cni-conf", "--cni-portmap", *plugins,
            "--non-masquerade-cidr", CLUSTER_CIDR, "--cluster-dns", CLUSTER_DNS,
            "--cluster-domain", CLUSTER_DOMAIN, "--root-dir", str(n.root_dir)]


def proxy_argv(t: Topology, n: NodePlan, python: str = sys.executable) -> list[str]:
    return [python, "-m", "podnet", "proxy", "--server", t.api_url, "--node", n.name,
            "--cluster-cidr", CLUSTER_CIDR]


def relay_argv(t: Topology, port: int, python: str = sys.executable) -> list[str]:
    return [python, "-m", "lab.relay", "--listen", f"127.0.0.1:{port}", "--netns", t.hub,
            "--upstream", f"{HUB_IP}:{API_PORT}"]


def kubeconfig_text(server: str, name: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: {name}\n  cluster:\n    server: {server}\n"
        f"contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: default\n"
        f"current-context: {name}\npreferences: {{}}\n"
        f"users:\n- name: {name}\n  user: {{}}\n")


def dns_objects(python: str = sys.executable, replicas: int = 2) -> list[dict[str, object]]:
    """The kube-dns Service and its pods (kube-system), as kubeadm names them."""
    svc: dict[str, object] = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
        "spec": {"clusterIP": CLUSTER_DNS, "selector": {"k8s-app": "kube-dns"},
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                           {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]}}
    pods: list[dict[str, object]] = []
    for i in range(1, replicas + 1):
        pods.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"kube-dns-{i}", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {"dnsPolicy": "Default", "containers": [{
                "name": "dns", "image": "podnet/dns",
                "command": [python, "-m", "podnet", "dns", "--server", "http://$(KUBERNETES_SERVICE_HOST):"
                            "$(KUBERNETES_SERVICE_PORT)", "--listen", "0.0.0.0:53", "--upstream", "none",
                            "--zone", CLUSTER_DOMAIN, "--ttl", "5"],
                "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                          {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                          {"name": "metrics", "containerPort": 9153, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 1},
                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10,
                                  "failureThreshold": 5, "initialDelaySeconds": 10}}]}})
    return pods and [svc, *pods]
