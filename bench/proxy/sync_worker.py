"""One sync-benchmark run in a fresh process (so its peak RSS is the proxy's memory for that scale).

  python -m bench.proxy.sync_worker --netns NS --backend nft|legacy --services N --endpoints E
prints JSON. Rules go into namespace NS through the Proxier shell (ip netns exec NS iptables-restore).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import resource
import time
import tracemalloc

from bench.proxy import scale
from proxy.iptables import backend
from proxy.iptables.proxier import Proxier
from proxy.iptables.render import RenderOptions


def _median(runs: list[dict[str, object]]) -> dict[str, object]:
    return sorted(runs, key=lambda r: float(r["total_s"]))[len(runs) // 2]  # type: ignore[arg-type,call-overload]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--netns", required=True)
    ap.add_argument("--backend", default="nft")
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=5)
    args = ap.parse_args()
    ipt = backend.Iptables(args.backend, netns=args.netns, timeout=1800)
    p = Proxier("bench-node", ipt, RenderOptions(cluster_cidr=ipaddress.ip_network("10.244.0.0/16"),
                                                 random_fully=True), conntrack_cleanup=False)
    t0 = time.perf_counter()
    for i in range(args.services):
        p.on_service_add(scale.service(i))
        p.on_slice_add(scale.endpoint_slice(i, scale.fake_endpoints(i, args.endpoints)))
    p.set_synced(services=True, slices=True)
    feed = time.perf_counter() - t0
    out: dict[str, object] = {"backend": args.backend, "services": args.services, "endpoints": args.endpoints,
                              "feed_s": feed}

    def sync(label: str) -> None:
        r = p.sync_proxy_rules()
        assert r is not None and r.ok, r
        restore = ipt.last_restore_seconds
        out[label] = {"total_s": r.seconds, "restore_s": restore, "full": r.full,
                      "lines": r.rendered.text.count("\n") if r.rendered else 0}

    sync("full_sync")
    time.sleep(2)  # let the kernel settle after the big transaction
    # one Service's endpoints change (partial sync), 5 times: median
    runs: list[dict[str, object]] = []
    for k in range(5):
        i = args.services // 2 + k
        p.on_slice_modify({}, scale.endpoint_slice(i, scale.fake_endpoints(i, args.endpoints)[1:]))
        sync("partial_change_one")
        runs.append(dict(out["partial_change_one"]))  # type: ignore[arg-type,call-overload]
    out["partial_change_one"] = _median(runs)
    out["partial_change_one_runs_ms"] = [round(float(r["total_s"]) * 1000) for r in runs]  # type: ignore[arg-type,call-overload]
    # one Service added on top (the anchor's scenario), 3 times: median
    runs = []
    for k in range(3):
        j = args.services + k
        p.on_service_add(scale.service(j, f"svc-added-{k}"))
        p.on_slice_add(scale.endpoint_slice(j, scale.fake_endpoints(j, args.endpoints), f"svc-added-{k}"))
        sync("partial_add_one")
        runs.append(dict(out["partial_add_one"]))  # type: ignore[arg-type,call-overload]
    out["partial_add_one"] = _median(runs)
    out["partial_add_one_runs_ms"] = [round(float(r["total_s"]) * 1000) for r in runs]  # type: ignore[arg-type,call-overload]
    p.force_full_sync()
    sync("full_resync")
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # render-only peak Python heap (tracemalloc) for the full ruleset
    from proxy.iptables.render import ProxyState, render
    import gc
    gc.disable()
    t1 = time.perf_counter()
    render(ProxyState(p.svc_map, p.endpoints_map, p.options))
    out["render_only_s"] = time.perf_counter() - t1
    gc.enable()
    tracemalloc.start()
    r = render(ProxyState(p.svc_map, p.endpoints_map, p.options))
    out["render_peak_heap_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    out["payload_mb"] = len(r.text) / 2**20
    tracemalloc.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
