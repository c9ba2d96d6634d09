"""DNS benchmark: podnet dns vs dnsmasq with dnsperf, same machine, same run; memory at 10k Services.

    .venv/bin/python -m bench.dns [--services 1000] [--seconds 10] [--rounds 2] [--workers 1,2]
                                  [--memory-services 10000]

Everything listens on 127.0.0.1 high ports and is stopped by pid at the end. The API server is
controlplane.client.fake.FakeAPIServer in its own process (bench/dns/fakeapi.py) serving
realistic Service/EndpointSlice objects; what is measured is the DNS server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.dns import cluster
from tests.conftest import REPO, free_port_number, podnet_argv, stop_process, wait_http_ok


def start_api(tmp: Path, n: int, stack: ExitStack) -> str:
    objs = tmp / f"objects-{n}.json"
    cluster.write_objects(n, objs)
    proc = subprocess.Popen([sys.executable, "-m", "bench.dns.fakeapi", "--objects", str(objs)],
                            stdout=subprocess.PIPE, cwd=REPO)
    stack.callback(stop_process, proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().split()
    if not line or line[0] != "ready":
        raise RuntimeError("fake API server did not start")
    return line[1]


def start_podnet(tmp: Path, api: str, workers: int, stack: ExitStack) -> tuple[int, subprocess.Popen[bytes]]:
    port, http = free_port_number(), free_port_number()
    log = open(tmp / f"podnet-{port}.log", "wb")
    stack.callback(log.close)
    proc = subprocess.Popen(
        podnet_argv("dns", "--server", api, "--listen", f"127.0.0.1:{port}", "--upstream", "none",
                    "--health-listen", "", "--metrics-listen", "", "--ready-listen", f"127.0.0.1:{http}",
                    "--workers", str(workers)), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    stack.callback(stop_process, proc)
    if not wait_http_ok(f"http://127.0.0.1:{http}/ready", timeout=60):
        raise RuntimeError("podnet dns did not become ready")
    time.sleep(0.5 if workers > 1 else 0.0)  # the other workers sync on their own
    return port, proc


def start_dnsmasq(tmp: Path, n: int, stack: ExitStack, srv: bool = True) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port_number()
    conf = cluster.dnsmasq_config(n, tmp, srv=srv)
    proc = subprocess.Popen(
        ["dnsmasq", "-k", f"--conf-file={conf}", "--no-resolv", "--no-hosts", "--listen-address=127.0.0.1",
         f"--port={port}", "--bind-interfaces", "--pid-file=", "--user=root", "--cache-size=10000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stack.callback(stop_process, proc)
    for _ in range(100):
        if dig_ok(port):
            return port, proc
        time.sleep(0.05)
    raise RuntimeError("dnsmasq did not answer")


def dig_ok(port: int) -> bool:
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+time=1", "+tries=1", "+short",
                          "svc-0.ns-0.svc.cluster.local"], capture_output=True, text=True).stdout
    return cluster.cluster_ip(0) in out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (and their children: --workers forks)."""
    total = 0.0
    for pid in pids:
        for task in [pid, *_children(pid)]:
            fields = Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def dnsperf(port: int, queries: Path, seconds: float, rate: int = 0) -> dict[str, Any]:
    limit = ["-Q", str(rate)] if rate else []
    out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds),
                          "-c", "10", "-q", "200", "-t", "2", *limit], capture_output=True, text=True,
                         timeout=seconds + 30).stdout

    def num(pattern: str) -> float:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else 0.0

    return {"qps": num(r"Queries per second:\s+([\d.]+)"), "latency_ms": num(r"Average Latency \(s\):\s+([\d.]+)") * 1e3,
            "completed": num(r"Queries completed:\s+(\d+)"), "lost": num(r"Queries lost:\s+(\d+)"),
            "codes": (re.search(r"Response codes:\s+(.*)", out) or re.search("()", "")).group(1)}  # type: ignore


def rss_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss / 1024, hwm / 1024


def qps_bench(args: argparse.Namespace, tmp: Path, srv: bool = True) -> dict[str, Any]:
    """One run: dnsmasq and each podnet dns variant in turn, `rounds` times (interleaved)."""
    queries = tmp / f"queries-{'srv' if srv else 'nosrv'}.txt"
    queries.write_text("\n".join(cluster.queries(args.services, srv=srv)) + "\n")
    results: dict[str, Any] = {"services": args.services, "seconds": args.seconds, "srv": srv, "rounds": []}
    with ExitStack() as stack:
        api = start_api(tmp, args.services, stack)
        masq_port, masq = start_dnsmasq(tmp, args.services, stack, srv=srv)
        started = {f"podnet-w{w}": start_podnet(tmp, api, w, stack) for w in args.workers}
        servers = {name: port for name, (port, _) in started.items()}
        pids = {"dnsmasq": masq.pid, **{name: proc.pid for name, (_, proc) in started.items()}}
        for port in [masq_port, *servers.values()]:
            dnsperf(port, queries, 1)  # warm-up (fills podnet's answer cache)
        # CPU per query at a fixed rate: a figure the machine's other load hardly changes
        results["cpu_us_per_query"] = {}
        for name, port in {"dnsmasq": masq_port, **servers}.items():
            before = cpu_seconds([pids[name]])
            run = dnsperf(port, queries, 5, rate=args.cpu_rate)
            used = cpu_seconds([pids[name]]) - before
            results["cpu_us_per_query"][name] = round(used / max(run["completed"], 1) * 1e6, 2)
        for r in range(args.rounds):
            row: dict[str, Any] = {"dnsmasq": dnsperf(masq_port, queries, args.seconds)}
            for name, port in servers.items():
                row[name] = dnsperf(port, queries, args.seconds)
            results["rounds"].append(row)
            print(f"{'mix' if srv else 'no-SRV mix'} round {r + 1}: "
                  + ", ".join(f"{k} {v['qps']:.0f} qps" for k, v in row.items()), flush=True)
    return results


def memory_bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    n = args.memory_services
    queries = tmp / "queries-mem.txt"
    queries.write_text("\n".join(cluster.queries(n, count=50000)) + "\n")
    with ExitStack() as stack:
        api = start_api(tmp, n, stack)
        t0 = time.monotonic()
        port, proc = start_podnet(tmp, api, 1, stack)
        sync_s = time.monotonic() - t0
        synced = rss_mb(proc.pid)
        load = dnsperf(port, queries, 5)
        after = rss_mb(proc.pid)
    formula = n / 1000 + 54
    return {"services": n, "startup_to_ready_s": round(sync_s, 2), "rss_synced_mb": round(synced[0], 1),
            "rss_after_load_mb": round(after[0], 1), "peak_rss_mb": round(after[1], 1),
            "coredns_formula_mb": formula, "ratio": round(after[0] / formula, 2), "load_qps": round(load["qps"])}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dns")
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rounds", type=int, default=2, help="0: memory only")
    p.add_argument("--workers", default="1,2", help="podnet dns --workers values to measure")
    p.add_argument("--memory-services", type=int, default=10000)
    p.add_argument("--cpu-rate", type=int, default=10000, help="queries/s for the CPU-per-query measure")
    p.add_argument("--no-srv", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the mix without SRV (dnsmasq's best case: hosts only)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    args.workers = [int(w) for w in args.workers.split(",") if w]
    for tool in ("dnsperf", "dnsmasq", "dig"):
        if shutil.which(tool) is None:
            print(f"bench.dns: {tool} not found", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="bench-dns-") as d:
        tmp = Path(d)
        qps = qps_bench(args, tmp) if args.rounds else None
        nosrv = qps_bench(args, tmp, srv=False) if args.no_srv and args.rounds else None
        mem = memory_bench(args, tmp) if args.memory_services else {}
    summary = {**({"mix": summarize(qps)} if qps else {}), **({"no_srv_mix": summarize(nosrv)} if nosrv else {})}
    for key, run in (("mix", qps), ("no_srv_mix", nosrv)):
        if run:
            summary[key]["cpu_us_per_query"] = run["cpu_us_per_query"]
    print(json.dumps({"qps": summary, "memory": mem}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": [qps, nosrv], "summary": summary, "memory": mem}, indent=2))
    return 0


def summarize(qps: dict[str, Any]) -> dict[str, Any]:
    names = list(qps["rounds"][0])
    out: dict[str, Any] = {}
    for name in names:
        runs = [r[name] for r in qps["rounds"]]
        out[name] = {"qps": round(sum(x["qps"] for x in runs) / len(runs)),
                     "latency_ms": round(sum(x["latency_ms"] for x in runs) / len(runs), 2),
                     "lost": int(sum(x["lost"] for x in runs)), "codes": runs[-1]["codes"]}
    base = out["dnsmasq"]["qps"] or 1
    for name in names:
        out[name]["ratio_to_dnsmasq"] = round(out[name]["qps"] / base, 2)
        # the machine's load changes over a run: the ratio within each round, then the median
        per_round = sorted(r[name]["qps"] / (r["dnsmasq"]["qps"] or 1) for r in qps["rounds"])
        out[name]["round_ratios"] = [round(x, 2) for x in per_round]
        out[name]["median_round_ratio"] = round(statistics.median(per_round), 2)
    return out


if __name__ == "__main__":
    sys.exit(main())
