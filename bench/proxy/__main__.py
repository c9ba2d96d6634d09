"""kube-proxy iptables-mode benchmark, entirely inside namespaces it creates.

  .venv/bin/python -m bench.proxy [--sizes 1000,10000] [--endpoints 5] [--backends nft,legacy]
                                  [--datapath-sizes 100,10000] [--connections 2000] [--json out.json]

1. Sync: for each size and backend, a fresh worker process feeds N Services x E endpoints into the
   Proxier and measures a full sync (render + one iptables-restore), a one-Service endpoint change
   and a one-Service add (partial syncs), a forced full resync, and its peak RSS.
2. Data path: client ns -> node ns (rules) -> backend ns; TCP connect latency (first-packet round
   trip) and sequential connection rate through a ClusterIP vs straight to the pod IP, same run.
   The measured Service sorts last in KUBE-SERVICES (worst case for iptables' linear match).
Anchors (upstream, from the reference): first-packet p50 ~0.049 ms at 5k Services, ~0.061 ms at
10k, ~0.274 ms at 30k (iptables mode); adding one Service on top of 10k: ~141 ms (nftables mode).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.proxy import scale
from podnet import netns

REPO = Path(__file__).resolve().parents[2]
ANCHOR_P50_MS = {5000: 0.049, 10000: 0.061, 30000: 0.274}
ANCHOR_ADD_ONE_10K_MS = 141.0


def sync_bench(size: int, endpoints: int, mode: str) -> dict[str, Any]:
    with netns.Sandbox(prefix="pbs") as box:
        ns = box.netns("n")
        proc = subprocess.run([sys.executable, "-m", "bench.proxy.sync_worker", "--netns", ns, "--backend", mode,
                               "--services", str(size), "--endpoints", str(endpoints)],
                              capture_output=True, text=True, cwd=REPO, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"sync worker failed: {proc.stderr[-2000:]}")
        return dict(json.loads(proc.stdout))


def datapath_bench(size: int, mode: str, connections: int) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from proxy.iptables import backend
    from proxy.iptables.proxier import Proxier
    from proxy.iptables.render import RenderOptions
    from tests.proxy import proxy_topo as t

    with netns.Sandbox(prefix="pbd") as box:
        topo = t.build(box, backends=1)
        ipt = backend.Iptables(mode, netns=topo.node, timeout=3600)
        p = Proxier(t.NODE_NAME, ipt, RenderOptions(cluster_cidr=ipaddress.ip_network(t.CLUSTER_CIDR),
                                                    random_fully=ipt.has_random_fully()), conntrack_cleanup=False)
        for i in range(size - 1):
            p.on_service_add(scale.service(i))
            p.on_slice_add(scale.endpoint_slice(i, scale.fake_endpoints(i, 5)))
        vip = scale.cluster_ip(size)
        target = scale.service(size, "zzz-target")
        target["spec"]["ports"][0]["targetPort"] = t.PORT
        p.on_service_add(target)
        sl = scale.endpoint_slice(size, [topo.backend_ips[0]], "zzz-target")
        sl["ports"][0]["port"] = t.PORT
        p.on_slice_add(sl)
        p.set_synced(services=True, slices=True)
        start = time.perf_counter()
        r = p.sync_proxy_rules()
        assert r is not None and r.ok, r
        sync_s = time.perf_counter() - start
        out = netns.run(topo.client, [sys.executable, str(REPO / "bench/proxy/dpclient.py"), vip, "80",
                                      topo.backend_ips[0], str(t.PORT), str(connections)], timeout=1200)
        res = dict(json.loads(out.stdout))
        res["services"] = size
        res["backend"] = mode
        res["sync_s"] = sync_s
        return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.proxy")
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--endpoints", type=int, default=5)
    ap.add_argument("--backends", default="nft,legacy")
    ap.add_argument("--datapath-sizes", default="100,10000")
    ap.add_argument("--datapath-backend", default="legacy")
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--skip-sync", action="store_true")
    ap.add_argument("--skip-datapath", action="store_true")
    ap.add_argument("--json", help="also write all results here")
    args = ap.parse_args(argv)
    print(f"# machine: {platform.node()} {platform.machine()} kernel {platform.release()}, "
          f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores; "
          f"{subprocess.run(['iptables', '-V'], capture_output=True, text=True).stdout.strip()}", flush=True)
    results: dict[str, list[dict[str, Any]]] = {"sync": [], "datapath": []}
    if not args.skip_sync:
        print("\n## sync (render + one iptables-restore --noflush)")
        print("| backend | Services x eps | restore lines | full sync s (restore s) | one-Service change ms, median of 5"
              " (restore ms) | one-Service add ms, median of 3 | full resync s | peak RSS MiB | render-only s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for size in (int(s) for s in args.sizes.split(",") if s):
            for mode in (m for m in args.backends.split(",") if m):
                r = sync_bench(size, args.endpoints, mode)
                results["sync"].append(r)
                f, c, a, rs = r["full_sync"], r["partial_change_one"], r["partial_add_one"], r["full_resync"]
                print(f"| {mode} | {size} x {args.endpoints} | {f['lines']} | {f['total_s']:.2f} ({f['restore_s']:.2f})"
                      f" | {c['total_s'] * 1000:.0f} ({c['restore_s'] * 1000:.0f}) | {a['total_s'] * 1000:.0f}"
                      f" | {rs['total_s']:.2f} | {r['maxrss_mb']:.0f} | {r['render_only_s']:.2f} |", flush=True)
                print(f"|   | runs (ms): change {r['partial_change_one_runs_ms']}, add {r['partial_add_one_runs_ms']}"
                      " | | | | | | | |", flush=True)
                if size == 10000:
                    print(f"|   | ratio to anchor (add one @10k, 141 ms) | | | | "
                          f"{a['total_s'] * 1000 / ANCHOR_ADD_ONE_10K_MS:.1f}x | | | |", flush=True)
    if not args.skip_datapath:
        print(f"\n## data path ({args.datapath_backend} backend, {args.connections} connections each, alternating)")
        print("| Services | ClusterIP connect p50 / p99 ms | pod IP connect p50 / p99 ms | ClusterIP - pod p50 ms |"
              " ClusterIP conn/s | pod conn/s | rate ratio |")
        print("|---|---|---|---|---|---|---|")
        for size in (int(s) for s in args.datapath_sizes.split(",") if s):
            r = datapath_bench(size, args.datapath_backend, args.connections)
            results["datapath"].append(r)
            c, d = r["cluster_ip"], r["pod_ip"]
            print(f"| {size} | {c['connect_p50_ms']:.3f} / {c['connect_p99_ms']:.3f} | {d['connect_p50_ms']:.3f} / "
                  f"{d['connect_p99_ms']:.3f} | {c['connect_p50_ms'] - d['connect_p50_ms']:.3f} | "
                  f"{c['conn_per_s']:.0f} | {d['conn_per_s']:.0f} | {c['conn_per_s'] / d['conn_per_s']:.2f} |",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
