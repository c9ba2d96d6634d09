"""Control plane benchmark: `podnet controlplane` vs etcd itself, same workloads, same run.

    python -m bench.controlplane [--objects 10000] [--concurrency 16] [--watchers 100]
                                 [--watch-events 200] [--watch-rate 20] [--profile]

For each system, in turn (the other one stopped):
1. create: `--sequential` objects one at a time (unloaded latency), then the rest of `--objects`
   with `--concurrency` requests in flight (throughput, loaded latency);
2. update: every object once more, `--concurrency` in flight, each conditional on the version
   the writer last saw (PUT with resourceVersion / txn on mod_revision);
3. list: all `--objects` objects, 5 times (median, max), the response fully JSON-decoded;
4. watch: `--watchers` concurrent watch streams; a writer creates `--watch-events` objects at
   `--watch-rate`/s; delivery latency = time the event is decoded by a watcher minus the time just
   before the create was sent (p50/p99 over every watcher x event).

The objects are Pods as podnet stores them (~1.1 KB JSON); etcd gets exactly those bytes.
Every process is started here and stopped by pid; the data dirs are temporary.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile  # noqa: F401  (documented: --profile runs the server under cProfile)
import platform
import pstats
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.controlplane.servers import Backend, EtcdKV, PodnetAPI


def pod(name: str, ns: str = "bench", gen: int = 0) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": "bench", "gen": str(gen)},
                         "annotations": {"bench.podnet.io/note": "x" * 64}},
            "spec": {"nodeName": "node-1", "containers": [
                {"name": "app", "image": "registry.example/app:1.0", "ports": [{"containerPort": 8080, "name": "http"}],
                 "env": [{"name": "MODE", "value": "bench"}], "resources": {"requests": {"cpu": "10m"}}}]}}


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


@dataclass
class Result:
    name: str
    seq_create: list[float] = field(default_factory=list)
    conc_create: list[float] = field(default_factory=list)
    conc_create_rate: float = 0.0
    seq_create_rate: float = 0.0
    update: list[float] = field(default_factory=list)
    update_rate: float = 0.0
    list_times: list[float] = field(default_factory=list)
    listed: int = 0
    watch: list[float] = field(default_factory=list)
    watch_expected: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # phase -> server CPU seconds


async def run_concurrent(n: int, concurrency: int, start: int, fn: Any) -> tuple[list[float], float]:
    lat: list[float] = []
    it = iter(range(start, start + n))

    async def worker() -> None:
        for i in it:
            t0 = time.perf_counter()
            await fn(i)
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, n / (time.perf_counter() - t0)


async def phase_create_sequential(b: Backend, args: argparse.Namespace, res: Result) -> None:
    seq = min(args.sequential, args.objects)
    t0 = time.perf_counter()
    for i in range(seq):
        t = time.perf_counter()
        await b.create(f"p{i:05d}", pod(f"p{i:05d}"))
        res.seq_create.append(time.perf_counter() - t)
    res.seq_create_rate = seq / (time.perf_counter() - t0)


async def phase_create_concurrent(b: Backend, args: argparse.Namespace, res: Result) -> None:
    seq = min(args.sequential, args.objects)
    res.conc_create, res.conc_create_rate = await run_concurrent(
        args.objects - seq, args.concurrency, seq, lambda i: b.create(f"p{i:05d}", pod(f"p{i:05d}")))


async def phase_update(b: Backend, args: argparse.Namespace, res: Result) -> None:
    res.update, res.update_rate = await run_concurrent(
        args.objects, args.concurrency, 0, lambda i: b.update(f"p{i:05d}", pod(f"p{i:05d}", gen=1)))


async def phase_list(b: Backend, args: argparse.Namespace, res: Result) -> None:
    t = time.perf_counter()
    res.listed = await b.list()
    res.list_times.append(time.perf_counter() - t)


async def watch_workload(b: Backend, args: argparse.Namespace, res: Result) -> None:
    since = await b.watch_start()
    sent: dict[str, float] = {}
    pending: list[tuple[str, float]] = []
    ready_count = 0
    all_ready = asyncio.Event()

    def ready() -> None:
        nonlocal ready_count
        ready_count += 1
        if ready_count >= args.watchers:
            all_ready.set()

    def on_event(name: str, t: float) -> None:
        pending.append((name, t))

    tasks = [asyncio.create_task(b.watch(since, ready, on_event)) for _ in range(args.watchers)]
    try:
        await asyncio.wait_for(all_ready.wait(), 60)
        await asyncio.sleep(0.5)
        interval = 1.0 / args.watch_rate
        start = time.perf_counter()
        for i in range(args.watch_events):
            name = f"w{i:05d}"
            due = start + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[name] = time.perf_counter()
            await b.create(name, pod(name, "watch"), ns="watch")
        res.watch_expected = args.watch_events * args.watchers
        deadline = time.monotonic() + 60
        while len(pending) < res.watch_expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    res.watch = [t - sent[name] for name, t in pending if name in sent]
    print(f"  {b.name}: watch deliveries {len(res.watch)}/{res.watch_expected}", flush=True)


PHASES = (("create-seq", phase_create_sequential, 1), ("create-conc", phase_create_concurrent, 1),
          ("update", phase_update, 1), ("list", phase_list, 5), ("watch", watch_workload, 1))


async def measure(backends: list[Backend], args: argparse.Namespace) -> dict[str, Result]:
    """Each phase on every system in turn (both servers up, the idle one idle), so that load from
    elsewhere on the machine drifts over both alike."""
    results = {b.name: Result(b.name) for b in backends}
    for b in backends:
        await b.open()
    try:
        for label, phase, times in PHASES:
            if label not in args.phases.split(","):
                continue
            for _ in range(times):
                for b in backends:
                    cpu0 = b.proc.cpu_seconds()
                    await phase(b, args, results[b.name])
                    used = results[b.name].cpu
                    used[label] = used.get(label, 0.0) + b.proc.cpu_seconds() - cpu0
                    if b is backends[0]:
                        await asyncio.sleep(0.2)
            print(f"  {label}: done", flush=True)
    finally:
        for b in backends:
            await b.close()
    return results


def med(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def top(values: list[float]) -> float:
    return max(values) * 1000 if values else float("nan")


def row(label: str, ours: float, anchor: float, unit: str, fmt: str = "{:.2f}") -> str:
    if (ours != ours or not ours) and (anchor != anchor or not anchor):  # NaN/0: phase not run
        return ""
    ratio = ours / anchor if anchor else float("nan")
    return f"| {label} | {fmt.format(ours)} {unit} | {fmt.format(anchor)} {unit} | {ratio:.2f}x |"


def report(p: Result, e: Result, args: argparse.Namespace) -> str:
    lines = ["| measure | podnet | etcd | ratio (podnet/etcd) |", "|---|---|---|---|"]
    seq = min(args.sequential, args.objects)
    lines += [
        row(f"create p50, sequential ({seq})", pct(p.seq_create, 50), pct(e.seq_create, 50), "ms"),
        row("create p99, sequential", pct(p.seq_create, 99), pct(e.seq_create, 99), "ms"),
        row("creates/s, sequential", p.seq_create_rate, e.seq_create_rate, "/s", "{:.0f}"),
        row(f"creates/s, {args.concurrency} in flight ({args.objects - seq})", p.conc_create_rate,
            e.conc_create_rate, "/s", "{:.0f}"),
        row(f"create p50, {args.concurrency} in flight", pct(p.conc_create, 50), pct(e.conc_create, 50), "ms"),
        row(f"create p99, {args.concurrency} in flight", pct(p.conc_create, 99), pct(e.conc_create, 99), "ms"),
        row(f"updates/s, {args.concurrency} in flight ({args.objects})", p.update_rate, e.update_rate, "/s",
            "{:.0f}"),
        row("update p50", pct(p.update, 50), pct(e.update, 50), "ms"),
        row("update p99", pct(p.update, 99), pct(e.update, 99), "ms"),
        row(f"list {p.listed} objects, median of 5", med(p.list_times), med(e.list_times), "ms", "{:.0f}"),
        row("list, max of 5", top(p.list_times), top(e.list_times), "ms", "{:.0f}"),
        row(f"watch delivery p50 ({args.watchers} watchers, {args.watch_events} events at {args.watch_rate}/s)",
            pct(p.watch, 50), pct(e.watch, 50), "ms"),
        row("watch delivery p99", pct(p.watch, 99), pct(e.watch, 99), "ms"),
        f"| watch deliveries received | {len(p.watch)}/{p.watch_expected} | {len(e.watch)}/{e.watch_expected} | |",
    ]
    per = {"create-seq": seq, "create-conc": args.objects - seq, "update": args.objects, "list": 5,
           "watch": args.watch_events * args.watchers}
    what = {"create-seq": "per create", "create-conc": "per create", "update": "per update", "list": "per list",
            "watch": "per delivered event"}
    for phase, count in per.items():
        if phase in p.cpu and phase in e.cpu and count:
            unit, scale = ("ms", 1e3) if phase == "list" else ("us", 1e6)
            lines.append(row(f"server CPU {what[phase]} ({phase})", p.cpu[phase] / count * scale,
                             e.cpu[phase] / count * scale, unit, "{:.0f}"))
    return "\n".join(line for line in lines if line)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    etcd = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.splitlines()
    return (f"{cpu}, {len(os_cpus())} cores, kernel {platform.release()}, Python {platform.python_version()}, "
            f"{etcd[0] if etcd else 'etcd ?'}")


def os_cpus() -> list[int]:
    import os
    return sorted(os.sched_getaffinity(0))


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.controlplane", description=__doc__.split("\n")[0])
    ap.add_argument("--objects", type=int, default=10000)
    ap.add_argument("--sequential", type=int, default=1000, help="of --objects, created one at a time")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--watchers", type=int, default=100)
    ap.add_argument("--watch-events", type=int, default=200)
    ap.add_argument("--watch-rate", type=float, default=20.0)
    ap.add_argument("--only", choices=("podnet", "etcd"), help="run one system only")
    ap.add_argument("--profile", action="store_true", help="run podnet under cProfile and print the top entries")
    ap.add_argument("--server-script", type=Path, help="run this script (argv as `podnet`) instead of -m podnet, "
                    "for A/B experiments on the server")
    ap.add_argument("--phases", default="create-seq,create-conc,update,list,watch",
                    help="comma-separated subset of create-seq,create-conc,update,list,watch")
    args = ap.parse_args()
    load_before = Path("/proc/loadavg").read_text().split()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-cp-"))
    prof = tmp / "podnet.prof" if args.profile else None
    backends: list[Backend] = []
    try:
        if args.only != "etcd":
            (tmp / "podnet").mkdir()
            backends.append(PodnetAPI(tmp / "podnet", prof, args.server_script))
        if args.only != "podnet":
            (tmp / "etcd").mkdir()
            etcd = EtcdKV(tmp / "etcd")
            backends.append(etcd)
            if backends[0] is not etcd:
                etcd.values = backends[0].stored  # type: ignore[union-attr]
        results = asyncio.run(measure(backends, args))
    finally:
        for b in backends:
            b.stop()
        if prof is not None and prof.exists():
            pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(35)
            pstats.Stats(str(prof)).sort_stats("tottime").print_stats(25)
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"machine: {machine()}; 1-min load average {load_before} at start, "
          f"{Path('/proc/loadavg').read_text().split()[0]} at end")
    print(f"command: python -m bench.controlplane --objects {args.objects} --sequential {args.sequential} "
          f"--concurrency {args.concurrency} --watchers {args.watchers} --watch-events {args.watch_events} "
          f"--watch-rate {args.watch_rate:g}")
    if len(results) == 2:
        print(report(results["podnet"], results["etcd"], args))
    else:
        for r in results.values():
            print(r.name, "create p50/p99 ms", pct(r.seq_create, 50), pct(r.seq_create, 99),
                  "conc/s", round(r.conc_create_rate), "upd/s", round(r.update_rate),
                  "list ms", med(r.list_times),
                  "watch p50/p99 ms", pct(r.watch, 50), pct(r.watch, 99), len(r.watch), r.watch_expected,
                  "server CPU s", {k: round(v, 2) for k, v in r.cpu.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
