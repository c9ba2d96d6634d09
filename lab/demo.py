"""`podnet demo` (what `make demo` runs): a 2-node lab, an HTTP echo app as 3 pods behind a ClusterIP
and a NodePort Service, and a report showing it working: ClusterIP spread, the DNS name, NodePort
from outside the cluster, a pod deleted while traffic continues, and network programming latency.
Tears the lab down (also on failure) unless --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from lab.lab import Lab
from lab.topology import LabError
from podnet.netns import NetnsError

REPO = Path(__file__).resolve().parent.parent
NODEPORT = 30080


def echo_pod(name: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "echo"}},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 5,
                     "containers": [{"name": "echo", "image": "podnet/echo",
                                     "command": [sys.executable, "-m", "lab.echo", "8080"], "workingDir": str(REPO),
                                     "ports": [{"name": "http", "containerPort": 8080}],
                                     # keep serving while the proxies drop the endpoint (upstream practice)
                                     "lifecycle": {"preStop": {"sleep": {"seconds": 2}}},
                                     "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                                        "periodSeconds": 1}}]}}


def service(name: str, svc_type: str = "ClusterIP", node_port: int = 0) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": "http"}
    if node_port:
        port["nodePort"] = node_port
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": svc_type, "selector": {"app": "echo"}, "ports": [port]}}


class Demo:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.summary: list[str] = []

    def note(self, what: str, counts: Counter[str]) -> None:
        pods = sorted(k for k in counts if k != "FAILED")
        failed = counts.get("FAILED", 0)
        self.summary.append(f"{what}: {sum(counts.values()) - failed}/{sum(counts.values())} answered by "
                            f"{len(pods)} pods ({', '.join(pods)})")

    # -- plumbing -----------------------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, show: bool = False) -> str:
        cmd = ["kubectl", "--kubeconfig", str(self.lab.kubeconfig), *args]
        if show:
            print(f"  $ kubectl {' '.join(args)}")
        out = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=60)
        if out.returncode != 0:
            raise LabError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
        if show:
            print("    " + out.stdout.rstrip().replace("\n", "\n    "))
        return out.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def run_in(self, target: str, script: str, timeout: float = 60) -> str:
        argv = asyncio.run(self.lab.exec_argv(target, ["sh", "-c", script]))
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout).stdout

    def requests(self, target: str, url: str, n: int) -> Counter[str]:
        out = self.run_in(target, f"for i in $(seq {n}); do curl -s -m 2 {url} || echo FAILED; echo; done")
        return Counter(line.split()[0] for line in out.splitlines() if line.strip())

    def wait(self, pred: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if pred():
                    return
            except (LabError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise LabError(f"timed out waiting for {what}")

    # -- the story ------------------------------------------------------------------------------------
    def deploy(self) -> None:
        heading("2. Deploy an HTTP echo app: 3 pods, a ClusterIP and a NodePort Service (with the real kubectl)")
        for i, node in ((1, "node-1"), (2, "node-2"), (3, "node-1")):
            self.kubectl("apply", "-f", "-", input=json.dumps(echo_pod(f"echo-{i}", node)))
        self.kubectl("apply", "-f", "-", input=json.dumps(service("echo")))
        self.kubectl("apply", "-f", "-", input=json.dumps(service("echo-nodeport", "NodePort", NODEPORT)))
        self.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "toolbox"},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": "node-2"},
                     "containers": [{"name": "sh", "image": "podnet/toolbox", "command": ["sleep", "infinity"]}]}}))

        def ready() -> bool:
            pods = self.get("pods")["items"]
            return len(pods) == 4 and all(_ready(p) for p in pods)
        self.wait(ready, 60, "the pods to be Ready")
        ips = [p["status"]["podIP"] for p in self.get("pods", "-l", "app=echo")["items"]]
        self.wait(lambda: all(self.rules_have(n, ip) for n in self.lab.t.nodes for ip in ips), 30,
                  "both proxies to program the echo endpoints")
        self.kubectl("get", "pods", "-o", "wide", show=True)
        self.kubectl("get", "services", show=True)
        self.kubectl("get", "endpointslices", show=True)

    def clusterip(self) -> None:
        vip = self.get("service", "echo")["spec"]["clusterIP"]
        heading(f"3. 30 requests from pod 'toolbox' (node-2) to the ClusterIP http://{vip}/")
        counts = self.requests("toolbox", f"http://{vip}/", 30)
        show_counts(counts)
        self.note("ClusterIP", counts)

    def dns(self) -> None:
        heading("4. The same through cluster DNS (kube-dns pods behind 10.96.0.10, reached through the proxy)")
        print("  pod 'toolbox' /etc/resolv.conf:")
        print("    " + self.run_in("toolbox", "cat /etc/resolv.conf").rstrip().replace("\n", "\n    "))
        answer = self.run_in("toolbox", "dig +short echo.default.svc.cluster.local").strip()
        print(f"  dig +short echo.default.svc.cluster.local -> {answer}")
        short = self.run_in("toolbox", "getent hosts echo").strip()
        print(f"  getent hosts echo (search path)            -> {short}")
        print("  30 requests to http://echo/ (short name):")
        counts = self.requests("toolbox", "http://echo/", 30)
        show_counts(counts)
        self.note("DNS name http://echo/", counts)

    def nodeport(self) -> None:
        heading(f"5. NodePort {NODEPORT} from namespace '{self.lab.t.client}' (outside the cluster, on the underlay)")
        for node in self.lab.t.nodes:
            print(f"  20 requests to {node.name} {node.ip}:{NODEPORT}:")
            counts = self.requests("client", f"http://{node.ip}:{NODEPORT}/", 20)
            show_counts(counts)
            self.note(f"NodePort via {node.name} from outside", counts)

    def delete_pod(self) -> None:
        vip = self.get("service", "echo")["spec"]["clusterIP"]
        heading("6. Delete pod echo-2 while pod 'toolbox' keeps sending requests to the Service")
        argv = asyncio.run(self.lab.exec_argv("toolbox", ["sh", "-c",
                           f"for i in $(seq 60); do curl -s -m 2 http://{vip}/ || echo FAILED; echo; sleep 0.05; done"]))
        traffic = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        t0 = time.monotonic()
        self.kubectl("delete", "pod", "echo-2", show=True)
        gone = time.monotonic() - t0
        out, _ = traffic.communicate(timeout=60)
        counts = Counter(line.split()[0] for line in out.splitlines() if line.strip())
        print(f"  echo-2 deleted in {gone:.2f}s; the agent ran its preStop (sleep 2s), SIGTERM, CNI DEL, removed "
              "its namespace; 60 requests during it:")
        show_counts(counts)
        print("  after the deletion, 20 more requests:")
        after = self.requests("toolbox", f"http://{vip}/", 20)
        show_counts(after)
        self.note("during the deletion of echo-2", counts)
        self.note("after it", after)
        if "echo-2" in after or after.get("FAILED"):
            raise LabError("traffic still reached the deleted pod or failed after the deletion")

    def latency(self, rounds: int = 5) -> None:
        heading("7. Network programming latency: create a Service -> first successful connection through its "
                "ClusterIP from the other node")
        samples = []
        time.sleep(2.0)  # start from a quiet proxy (the pod deletion above just synced)
        for i in range(rounds):
            name = f"latency-{i}"
            t0 = time.monotonic()
            self.kubectl("apply", "-f", "-", input=json.dumps(service(name)))
            vip = self.get("service", name)["spec"]["clusterIP"]
            argv = asyncio.run(self.lab.exec_argv("node-2", ["sh", "-c",
                               f"until curl -s -m 1 -o /dev/null http://{vip}/; do sleep 0.01; done"]))
            subprocess.run(argv, timeout=30)
            samples.append(time.monotonic() - t0)
            time.sleep(2.0)  # one change at a time: let the proxies' sync burst refill (min-sync-period 1s)
        for i in range(rounds):
            self.kubectl("delete", "service", f"latency-{i}")
        ms = sorted(s * 1000 for s in samples)
        self.summary.append(f"network programming (Service create -> first connection from the other node): "
                            f"p50 {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms")
        print(f"  {rounds} Services: p50 {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms "
              f"(includes kubectl apply + get, ~{_kubectl_cost(self)*1000:.0f} ms of it; changes closer than the "
              "proxy's 1s min-sync-period wait for it)")
        time.sleep(2.0)  # again from a quiet proxy: the deletions above just synced
        self.endpoint_change()
        metric = self.run_in("node-2", "curl -s -m 2 http://127.0.0.1:10249/metrics")
        values = {}
        for line in metric.splitlines():
            for suffix in ("_sum", "_count"):
                if line.startswith(f"kubeproxy_network_programming_duration_seconds{suffix} "):
                    values[suffix] = float(line.split()[-1])
        if values.get("_count"):
            print(f"  node-2 kube-proxy network_programming_duration_seconds (EndpointSlice trigger time -> rules "
                  f"synced): {int(values['_count'])} changes, mean {values['_sum'] / values['_count'] * 1000:.0f} ms")

    def rules_have(self, node: Any, ip: str) -> bool:
        """The node's kube-proxy nat rules DNAT to ip (the endpoint is programmed)."""
        out = subprocess.run(["ip", "netns", "exec", node.netns, "iptables-save", "-t", "nat"],
                             capture_output=True, text=True).stdout
        return f"--to-destination {ip}:" in out

    def endpoint_change(self) -> None:
        """Scale up by one pod: its Ready -> its endpoint's DNAT rule present on both nodes."""
        self.kubectl("apply", "-f", "-", input=json.dumps(echo_pod("echo-4", "node-2")))
        ip = ""
        while True:
            p = self.get("pod", "echo-4")
            if _ready(p):
                ip = p["status"]["podIP"]
                t_ready = time.monotonic()
                break
            time.sleep(0.02)
        seen: dict[str, float] = {}
        argv = {n.name: ["ip", "netns", "exec", n.netns, "iptables-save", "-t", "nat"] for n in self.lab.t.nodes}
        deadline = time.monotonic() + 10
        while len(seen) < len(argv) and time.monotonic() < deadline:
            for node, cmd in argv.items():
                if node not in seen and f"--to-destination {ip}:" in subprocess.run(
                        cmd, capture_output=True, text=True).stdout:
                    seen[node] = time.monotonic() - t_ready
            time.sleep(0.01)
        where = ", ".join(f"{n} {d * 1000:.0f} ms" for n, d in sorted(seen.items()))
        print(f"  endpoint change: pod echo-4 Ready (seen by kubectl) -> its DNAT rule in place: {where}")
        self.summary.append(f"endpoint change (new pod Ready -> its DNAT rule on each node): {where}")


def _kubectl_cost(demo: Demo) -> float:
    t0 = time.monotonic()
    demo.kubectl("get", "service", "echo", "-o", "name")
    return time.monotonic() - t0


def _ready(p: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (p.get("status") or {}).get("conditions") or [])


def heading(text: str) -> None:
    print(f"\n== {text}", flush=True)


def show_counts(counts: Counter[str]) -> None:
    total = sum(counts.values())
    for name, n in sorted(counts.items()):
        print(f"    {name:<10} {n:>3}  {'#' * n}")
    print(f"    ({total} requests, {len([k for k in counts if k != 'FAILED'])} pods answered, "
          f"{counts.get('FAILED', 0)} failed)", flush=True)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="podnet demo", description=__doc__)
    p.add_argument("--keep", action="store_true", help="leave the lab running and print how to explore it")
    p.add_argument("--name", default="demo", help="lab name (default demo)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("podnet demo: needs root (it builds network namespaces)", file=sys.stderr)
        return 1
    lab = Lab(args.name, 2, log=lambda m: print(f"  {m}", flush=True))
    if lab.is_up():
        print(f"podnet demo: a lab named {args.name!r} is running; `podnet lab down --name {args.name}` or use "
              "--name", file=sys.stderr)
        return 1
    ok = False
    try:
        heading(f"1. Build a 2-node lab '{args.name}' in network namespaces (control plane, agents, proxies, DNS)")
        t0 = time.monotonic()
        lab.up()
        print(f"  lab up in {time.monotonic() - t0:.1f}s")
        demo = Demo(lab)
        demo.kubectl("get", "nodes", "-o", "wide", show=True)
        demo.deploy()
        demo.clusterip()
        demo.dns()
        demo.nodeport()
        demo.delete_pod()
        demo.latency()
        heading("Summary")
        for line in demo.summary:
            print(f"  {line}")
        ok = True
    except (LabError, NetnsError, subprocess.SubprocessError, OSError) as exc:
        print(f"\npodnet demo failed: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
    finally:
        if args.keep and ok:
            k = f"kubectl --kubeconfig {lab.kubeconfig}"
            heading("The lab is still running. Explore it:")
            print(f"  {k} get nodes,pods,services,endpointslices -A -o wide")
            print(f"  {k} delete pod echo-1; {k} get endpointslices -w")
            print(f"  podnet lab exec --name {args.name} toolbox -- curl -s http://echo/")
            print(f"  podnet lab exec --name {args.name} node-1 -- iptables-save -t nat | grep KUBE-SVC")
            print(f"  podnet lab status --name {args.name}")
            print(f"  podnet lab down --name {args.name}     # removes everything")
        else:
            heading("Tearing the lab down")
            removed = lab.down()
            print(f"  removed {len(removed)} things (processes, namespaces, files); the machine is as it was")
    return 0 if ok else 1
