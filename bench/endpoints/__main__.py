"""Benchmark: pod readiness change -> updated EndpointSlice visible to a watcher.

`python -m bench.endpoints [--services 1000] [--pods 10] [--flips 300] [--mode standalone|inprocess]`

Starts its own `podnet controlplane` on a free loopback port with a temp data dir, creates
SERVICES x PODS pods (with status: podIP, Running, Ready) and the Services, runs the endpoints
controller (standalone `podnet endpoints --server URL`, or in-process in the server), waits for
convergence, then flips one random pod's readiness at a time (PATCH pods/NAME/status) and times
until a watcher on EndpointSlices sees that pod's new `conditions.ready`. There is no upstream
controller on this machine to compare with; the goal is p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from controlplane.client import Client, PatchType
from controlplane.resources import ENDPOINTSLICES, PODS, SERVICES
from tests.conftest import REPO, free_port_number, podnet_argv, start_controlplane, stop_process

NS = "default"
MANAGED = "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))]


async def bounded(coros: list[Any], limit: int = 24) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(c: Any) -> None:
        async with sem:
            await c

    await asyncio.gather(*(one(c) for c in coros))


def pod_ip(s: int, p: int) -> str:
    n = s * 64 + p
    return f"10.{64 + n // 65536}.{n // 256 % 256}.{n % 256}"


def status_patch(ip: str, ready: bool) -> dict[str, Any]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now}]}}


async def populate(client: Client, services: int, pods: int) -> None:
    async def make_pod(s: int, p: int) -> None:
        name = f"svc{s}-{p}"
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "namespace": NS, "labels": {"app": f"svc{s}", "bench": "endpoints"}},
            "spec": {"nodeName": f"node-{p % 4}", "containers": [
                {"name": "c", "image": "app", "ports": [{"name": "http", "containerPort": 8080}]}]}})
        await client.patch(PODS, name, status_patch(pod_ip(s, p), True), namespace=NS, subresource="status")

    await bounded([make_pod(s, p) for s in range(services) for p in range(pods)])


async def create_services(client: Client, services: int) -> None:
    await bounded([client.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": f"svc{s}", "namespace": NS}, "spec": {"selector": {"app": f"svc{s}"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http"}]}}) for s in range(services)])


async def converged(client: Client, services: int, pods: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        lst = await client.list(ENDPOINTSLICES, namespace=NS, label_selector=MANAGED)
        full = sum(1 for s in lst.items if len(s.get("endpoints") or []) == pods)
        if full >= services:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise RuntimeError(f"controller did not converge within {timeout}s")


class Watcher:
    """Watches managed EndpointSlices; resolves futures waiting for (pod, ready)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.waiting: dict[tuple[str, bool], asyncio.Future[float]] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rv = (await self.client.list(ENDPOINTSLICES, namespace=NS, label_selector=MANAGED, limit=1)).resource_version
        self.task = asyncio.create_task(self._run(rv))

    async def _run(self, rv: str) -> None:
        async for ev in self.client.watch(ENDPOINTSLICES, namespace=NS, resource_version=rv, label_selector=MANAGED):
            now = time.perf_counter()
            if not self.waiting:
                continue
            for ep in ev.object.get("endpoints") or []:
                key = ((ep.get("targetRef") or {}).get("name", ""), bool((ep.get("conditions") or {}).get("ready")))
                fut = self.waiting.pop(key, None)
                if fut is not None and not fut.done():
                    fut.set_result(now)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def flips(client: Client, watcher: Watcher, services: int, pods: int, count: int,
                ready: dict[str, bool]) -> list[float]:
    rnd = random.Random(42)
    latencies: list[float] = []
    for _ in range(count):
        s, p = rnd.randrange(services), rnd.randrange(pods)
        name = f"svc{s}-{p}"
        new = not ready.get(name, True)
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        watcher.waiting[(name, new)] = fut
        t0 = time.perf_counter()
        await client.patch(PODS, name, status_patch(pod_ip(s, p), new), namespace=NS, subresource="status",
                           patch_type=PatchType.MERGE)
        t1 = await asyncio.wait_for(fut, 10)
        latencies.append((t1 - t0) * 1000)
        ready[name] = new
        await asyncio.sleep(rnd.uniform(0.005, 0.02))
    return latencies


async def burst(client: Client, watcher: Watcher, services: int, pods: int, size: int,
                ready: dict[str, bool]) -> list[float]:
    """Flip one pod in each of `size` distinct Services at once; per-pod latency to visibility."""
    targets = [(s, s % pods) for s in random.Random(7).sample(range(services), min(size, services))]
    loop = asyncio.get_running_loop()
    futs = {}
    for s, p in targets:
        new = not ready.get(f"svc{s}-{p}", True)
        futs[(s, p)] = watcher.waiting[(f"svc{s}-{p}", new)] = loop.create_future()
        ready[f"svc{s}-{p}"] = new
    t0 = time.perf_counter()
    await bounded([client.patch(PODS, f"svc{s}-{p}", status_patch(pod_ip(s, p), ready[f"svc{s}-{p}"]),
                                namespace=NS, subresource="status") for s, p in targets], limit=16)
    done = await asyncio.wait_for(asyncio.gather(*futs.values()), 60)
    return [(t - t0) * 1000 for t in done]


def cpu_s(pid: int | None) -> float:
    """utime + stime of a process, in seconds."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def bench(args: argparse.Namespace, url: str, server_pid: int, log: Path) -> dict[str, Any]:
    ctl: subprocess.Popen[bytes] | None = None
    async with Client(url, timeout=60) as client:
        t = time.monotonic()
        await populate(client, args.services, args.pods)
        populate_s = time.monotonic() - t
        if args.mode == "standalone":
            with open(log, "ab") as out:
                argv = podnet_argv("endpoints")
                if os.environ.get("BENCH_PROFILE"):  # cProfile the controller into this file
                    argv = [sys.executable, "-m", "cProfile", "-o", os.environ["BENCH_PROFILE"], "-m", "podnet",
                            "endpoints"]
                ctl = subprocess.Popen(argv + ["--server", url, "--workers", str(args.workers),
                                               "--log-level", os.environ.get("BENCH_CONTROLLER_LOG", "WARNING")],
                                       stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            t = time.monotonic()
            await create_services(client, args.services)
            await converged(client, args.services, args.pods, timeout=600)
            converge_s = time.monotonic() - t
            watcher = Watcher(client)
            await watcher.start()
            await asyncio.sleep(0.5)
            ready: dict[str, bool] = {}
            cpu0 = (cpu_s(ctl.pid if ctl else None), cpu_s(server_pid))
            latencies = await flips(client, watcher, args.services, args.pods, args.flips, ready)
            cpu1 = (cpu_s(ctl.pid if ctl else None), cpu_s(server_pid))
            bursts = await burst(client, watcher, args.services, args.pods, args.burst, ready) if args.burst else [0.0]
            await watcher.stop()
            ctl_rss = rss_mb(ctl.pid) if ctl else 0.0
        finally:
            if ctl is not None:
                stop_process(ctl)
    return {"mode": args.mode, "services": args.services, "pods_per_service": args.pods, "flips": len(latencies),
            "p50_ms": round(statistics.median(latencies), 2), "p90_ms": round(pct(latencies, 90), 2),
            "p99_ms": round(pct(latencies, 99), 2), "max_ms": round(max(latencies), 2),
            "populate_s": round(populate_s, 1), "converge_s": round(converge_s, 1),
            "controller_rss_mb": round(ctl_rss, 1),
            "controller_cpu_ms_per_flip": round((cpu1[0] - cpu0[0]) * 1000 / max(1, len(latencies)), 2),
            "server_cpu_ms_per_flip": round((cpu1[1] - cpu0[1]) * 1000 / max(1, len(latencies)), 2),
            "load_avg_1m": os.getloadavg()[0], "server_rss_mb": round(rss_mb(server_pid), 1),
            "burst_pods": args.burst, "burst_p50_ms": round(statistics.median(bursts), 1),
            "burst_all_visible_ms": round(max(bursts), 1), "workers": args.workers,
            "goal_p99_ms": 100, "meets_goal": pct(latencies, 99) <= 100}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.endpoints", description=__doc__.split("\n\n")[0])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--pods", type=int, default=10, help="pods per Service")
    p.add_argument("--flips", type=int, default=300)
    p.add_argument("--mode", choices=("standalone", "inprocess"), default="standalone")
    p.add_argument("--burst", type=int, default=200, help="then flip this many Services' pods at once (0: skip)")
    p.add_argument("--workers", type=int, default=1, help="controller workers (standalone mode)")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-endpoints-"))
    extra = ("--controllers", "") if args.mode == "standalone" else ("--controllers", "endpoints")
    cp = start_controlplane(tmp / "cp", free_port_number(), *extra, "--log-level", "WARNING")
    try:
        result = asyncio.run(bench(args, cp.url, cp.proc.pid, tmp / "endpoints.log"))
    finally:
        cp.stop()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
