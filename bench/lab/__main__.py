"""`python -m bench.lab`: pod start latency and end-to-end network programming latency on a 2-node lab.

1. Pod start: N pods (default 50) created at once through the API; per pod, create -> Running with
   a podIP, and create -> Ready, seen by a watch (the upstream pod-startup SLI, images excluded).
2. Network programming: M Services (default 20) over 2 ready echo pods, created one at a time;
   create -> first successful TCP connection to the ClusterIP from node-2 (sockets created inside
   node-2's namespace, polled every 5 ms). Then a burst of B Services created back to back, which
   shows the proxies' min-sync-period (1 s, burst 2) batching.
Anchor: upstream's published figures (no kubelet/kube-proxy can run here): pod startup SLO p99 <= 5 s;
network programming has no threshold, 5000-node runs show p50 of several seconds; issue goal p99 <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from controlplane.resources import PODS, SERVICES
from lab.lab import Lab
from podnet import netns

REPO = Path(__file__).resolve().parents[2]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


def sleeper(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "start"}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": "podnet/pause", "command": ["sleep", "infinity"]}]}}


def echo(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench-echo"}},
            "spec": {"containers": [{"name": "echo", "image": "podnet/echo", "workingDir": str(REPO),
                                     "command": [sys.executable, "-m", "lab.echo", "8080"],
                                     "ports": [{"name": "http", "containerPort": 8080}],
                                     "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}


def service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "bench-echo"}, "ports": [{"port": 80, "targetPort": 8080}]}}


def ready(p: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (p.get("status") or {}).get("conditions") or [])


async def pod_start(c: Any, n: int, rate: float = 0.0, prefix: str = "start") -> tuple[list[float], ...]:
    """n pods created at once (rate 0) or at `rate` per second; per-pod latencies seen by a watch."""
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    readied: dict[str, float] = {}
    bound: dict[str, float] = {}
    acked: dict[str, float] = {}
    lst = await c.list(PODS, namespace="default")

    async def watch() -> None:
        async for ev in c.watch(PODS, namespace="default", resource_version=lst.resource_version,
                                label_selector="bench=start"):
            now = time.monotonic()
            name = ev.object["metadata"]["name"]
            if not name.startswith(prefix + "-") or ev.type == "DELETED":
                continue
            st = ev.object.get("status") or {}
            if (ev.object.get("spec") or {}).get("nodeName") and name not in bound:
                bound[name] = now
            if st.get("phase") == "Running" and st.get("podIP") and name not in running:
                running[name] = now
            if ready(ev.object) and name not in readied:
                readied[name] = now
            if len(readied) == n:
                return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)

    async def make(i: int) -> None:
        name = f"{prefix}-{i:03d}"
        if rate:
            await asyncio.sleep(i / rate)
        created[name] = time.monotonic()
        await c.create(PODS, sleeper(name), namespace="default")
        acked[name] = time.monotonic()
    await asyncio.gather(*(make(i) for i in range(n)))
    await asyncio.wait_for(watcher, 120)
    to_running = [running[k] - created[k] for k in created]
    to_ready = [readied[k] - created[k] for k in created]
    to_bound = [bound[k] - created[k] for k in created]
    for i in range(n):
        await c.delete(PODS, f"{prefix}-{i:03d}", namespace="default")
    return [acked[k] - created[k] for k in created], to_bound, to_running, to_ready


def connect_once(ns: str, ip: str, port: int, timeout: float) -> bool:
    s = netns.socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        return s.connect_ex((ip, port)) == 0
    except OSError:
        return False
    finally:
        s.close()


async def first_connect(ns: str, ip: str, port: int, t0: float, limit: float = 30) -> float:
    while time.monotonic() - t0 < limit:
        if await asyncio.to_thread(connect_once, ns, ip, port, 0.2):
            return time.monotonic() - t0
        await asyncio.sleep(0.005)
    raise RuntimeError(f"no connection to {ip}:{port} within {limit}s")


async def programming(c: Any, ns: str, count: int, gap: float, prefix: str) -> list[float]:
    samples = []
    for i in range(count):
        t0 = time.monotonic()
        svc = await c.create(SERVICES, service(f"{prefix}-{i}"), namespace="default")
        samples.append(await first_connect(ns, svc["spec"]["clusterIP"], 80, t0))
        if gap:
            await asyncio.sleep(gap)
    return samples


async def burst(c: Any, ns: str, count: int, prefix: str) -> list[float]:
    t0s, ips = [], []
    for i in range(count):
        t0s.append(time.monotonic())
        svc = await c.create(SERVICES, service(f"{prefix}-{i}"), namespace="default")
        ips.append(svc["spec"]["clusterIP"])
    return list(await asyncio.gather(*(first_connect(ns, ip, 80, t0) for ip, t0 in zip(ips, t0s))))


async def run(lab: Lab, args: argparse.Namespace) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    async with lab.client() as c:
        to_ack, to_bound, to_running, to_ready = await pod_start(c, args.pods)
        out["pod create -> API acknowledged (all created at once)"] = to_ack
        out["pod create -> bound to a node (scheduler)"] = to_bound
        out["pod create -> Running with IP"] = to_running
        out["pod create -> Ready"] = to_ready
        await asyncio.sleep(5)
        _, _, paced_running, paced_ready = await pod_start(c, args.pods, args.rate, "paced")
        out[f"pod create -> Running with IP ({args.rate:g} pods/s)"] = paced_running
        out[f"pod create -> Ready ({args.rate:g} pods/s)"] = paced_ready
        await asyncio.sleep(3)
        for i in (1, 2):
            await c.create(PODS, echo(f"bench-echo-{i}"), namespace="default")
        for _ in range(300):
            pods = (await c.list(PODS, namespace="default", label_selector="app=bench-echo")).items
            if len(pods) == 2 and all(ready(p) for p in pods):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        ns = lab.t.nodes[1].netns
        out["Service create -> first connection (one at a time)"] = await programming(c, ns, args.services,
                                                                                       args.gap, "np")
        await asyncio.sleep(2)
        out[f"Service create -> first connection (burst of {args.burst})"] = await burst(c, ns, args.burst, "nb")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lab")
    p.add_argument("--pods", type=int, default=50)
    p.add_argument("--rate", type=float, default=10.0, help="pods/s of the paced pod-start run (upstream's "
                   "density test creates its latency pods slowly, after the saturation burst)")
    p.add_argument("--services", type=int, default=20)
    p.add_argument("--gap", type=float, default=2.0, help="seconds between one-at-a-time Services")
    p.add_argument("--burst", type=int, default=10)
    p.add_argument("--cni", default="podnet,reference",
                   help="comma-separated lab CNI plugin sets to run: podnet, reference (side by side)")
    args = p.parse_args(argv)
    for cni in [c for c in args.cni.split(",") if c]:
        lab = Lab(f"bench-{secrets.token_hex(2)}", 2, log=lambda m: print(f"  {m}", flush=True))
        try:
            t0 = time.monotonic()
            lab.up(cni=cni)
            print(f"lab up ({cni} CNI) in {time.monotonic() - t0:.1f}s", flush=True)
            results = asyncio.run(run(lab, args))
        finally:
            lab.down()
        print(f"\n[{cni} CNI plugins] {'measure':<55} {'n':>3} {'p50':>8} {'p99':>8} {'max':>8}")
        for name, values in results.items():
            ms = [v * 1000 for v in values]
            print(f"[{cni}] {name:<55} {len(ms):>3} {statistics.median(ms):>6.0f}ms {pct(ms, 99):>6.0f}ms "
                  f"{max(ms):>6.0f}ms", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
