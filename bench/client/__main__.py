"""Client benchmark: podnet's asyncio Client/Informer vs the official `kubernetes` Python client.

Both talk to the same `podnet controlplane` (no controllers) on a loopback port started here;
the server is the same for both, so the ratios measure the client side:

- create / get latency: sequential single-object calls (p50, p99);
- concurrent creates: 16 in flight (asyncio.gather for us, 16 threads for the anchor);
- list of N pods (median of 5);
- watch delivery: a writer creates and patches pods at a steady rate while our Informer and the
  anchor's `watch.Watch().stream` (in a thread) watch; latency = handler/stream time minus the time
  just before the write was sent (p50, p99).

    python -m bench.client [--objects 500] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from controlplane.client import Client, Informer
from controlplane.resources import NAMESPACES, PODS
from tests.conftest import running_controlplane


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


def pod(name: str, ns: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": "b"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80}]}]}}


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


async def ours(url: str, n: int, ns: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"create": [], "get": [], "list": [], "conc": []}
    async with Client(url) as c:
        await c.create(NAMESPACES, {"metadata": {"name": ns}})
        for i in range(n):
            t0 = time.perf_counter()
            await c.create(PODS, pod(f"p{i}", ns))
            out["create"].append(time.perf_counter() - t0)
        for i in range(n):
            t0 = time.perf_counter()
            await c.get(PODS, f"p{i}", namespace=ns)
            out["get"].append(time.perf_counter() - t0)
        for _ in range(5):
            t0 = time.perf_counter()
            lst = await c.list(PODS, namespace=ns)
            out["list"].append(time.perf_counter() - t0)
            assert len(lst.items) == n
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with sem:
                await c.create(PODS, pod(f"c{i}", ns))

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        out["conc"].append(n / (time.perf_counter() - t0))
    return out


def anchor(kubeconfig: Path, n: int, ns: str) -> dict[str, list[float]]:
    from kubernetes import client as kclient, config as kconfig

    api_client = kconfig.new_client_from_config(config_file=str(kubeconfig))
    v1: Any = kclient.CoreV1Api(api_client)  # it takes plain dicts as bodies too
    out: dict[str, list[float]] = {"create": [], "get": [], "list": [], "conc": []}
    v1.create_namespace({"metadata": {"name": ns}})
    for i in range(n):
        out["create"].append(timed(lambda: v1.create_namespaced_pod(ns, pod(f"p{i}", ns))))
    for i in range(n):
        out["get"].append(timed(lambda: v1.read_namespaced_pod(f"p{i}", ns)))
    for _ in range(5):
        out["list"].append(timed(lambda: v1.list_namespaced_pod(ns)))
    with ThreadPoolExecutor(16) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda i: v1.create_namespaced_pod(ns, pod(f"c{i}", ns)), range(n)))
        out["conc"].append(n / (time.perf_counter() - t0))
    api_client.close()
    return out


async def watch_latency(url: str, kubeconfig: Path, n: int, rate: float) -> tuple[list[float], list[float]]:
    """Writer creates n pods then patches each once; both watchers time every event."""
    from kubernetes import client as kclient, config as kconfig, watch as kwatch

    ns = "watchbench"
    sent: dict[tuple[str, int], float] = {}
    ours_lat: list[float] = []
    anchor_lat: list[float] = []
    total = 2 * n
    async with Client(url) as c:
        await c.create(NAMESPACES, {"metadata": {"name": ns}})
        inf = Informer(c, PODS, namespace=ns)

        def seen(obj: dict[str, Any], gen: int) -> None:
            t = time.perf_counter()
            ours_lat.append(t - sent[(obj["metadata"]["name"], gen)])

        inf.add_handler(on_add=lambda o: seen(o, 0), on_update=lambda old, new: seen(new, 1))
        await inf.start()
        await inf.wait_synced(10)
        rv = inf.resource_version
        api_client = kconfig.new_client_from_config(config_file=str(kubeconfig))
        v1 = kclient.CoreV1Api(api_client)
        ready = threading.Event()
        w = kwatch.Watch()

        def anchor_watch() -> None:
            ready.set()
            got = 0
            for ev in w.stream(v1.list_namespaced_pod, ns, resource_version=rv, timeout_seconds=120):
                t = time.perf_counter()
                gen = 0 if ev["type"] == "ADDED" else 1
                anchor_lat.append(t - sent[(ev["object"].metadata.name, gen)])
                got += 1
                if got >= total:
                    w.stop()

        th = threading.Thread(target=anchor_watch, daemon=True)
        th.start()
        ready.wait(10)
        await asyncio.sleep(0.5)
        interval = 1.0 / rate
        for gen in (0, 1):
            for i in range(n):
                name = f"w{i}"
                sent[(name, gen)] = time.perf_counter()
                if gen == 0:
                    await c.create(PODS, pod(name, ns))
                else:
                    await c.patch(PODS, name, {"metadata": {"labels": {"gen": "1"}}}, namespace=ns)
                await asyncio.sleep(interval)
        deadline = time.monotonic() + 30
        while (len(ours_lat) < total or len(anchor_lat) < total) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await inf.stop()
        w.stop()
        await asyncio.to_thread(th.join, 10)
        api_client.close()
    return ours_lat, anchor_lat


def row(name: str, ours_v: float, anchor_v: float, unit: str, higher_better: bool = False) -> str:
    ratio = (ours_v / anchor_v) if anchor_v else float("nan")
    note = "x (higher is better)" if higher_better else "x (lower is better)"
    return f"| {name} | {ours_v:.2f} {unit} | {anchor_v:.2f} {unit} | {ratio:.2f}{note} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.client", description=__doc__.split("\n")[0])
    ap.add_argument("--objects", type=int, default=500)
    ap.add_argument("--rate", type=float, default=200.0, help="writes/s in the watch test")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="podnet-bench-client-") as tmp:
        with running_controlplane(Path(tmp), "--controllers", "") as server:
            a = anchor(server.kubeconfig, args.objects, "anchor")
            o = asyncio.run(ours(server.url, args.objects, "ours"))
            ow, aw = asyncio.run(watch_latency(server.url, server.kubeconfig, args.objects, args.rate))
    n = args.objects
    print(f"podnet client vs kubernetes Python client, same podnet controlplane, {n} pods\n")
    print("| measure | podnet client | kubernetes client | ratio |")
    print("|---|---|---|---|")
    print(row("create p50", pct(o["create"], 50), pct(a["create"], 50), "ms"))
    print(row("create p99", pct(o["create"], 99), pct(a["create"], 99), "ms"))
    print(row("get p50", pct(o["get"], 50), pct(a["get"], 50), "ms"))
    print(row("get p99", pct(o["get"], 99), pct(a["get"], 99), "ms"))
    print(row(f"list {n} pods (median of 5)", statistics.median(o["list"]) * 1000,
              statistics.median(a["list"]) * 1000, "ms"))
    print(row("creates/s, 16 in flight", o["conc"][0], a["conc"][0], "/s", higher_better=True))
    print(row(f"watch delivery p50 ({2 * n} events @ {args.rate:g}/s)", pct(ow, 50), pct(aw, 50), "ms"))
    print(row("watch delivery p99", pct(ow, 99), pct(aw, 99), "ms"))
    print(f"\nevents delivered: podnet {len(ow)}/{2 * n}, kubernetes {len(aw)}/{2 * n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
