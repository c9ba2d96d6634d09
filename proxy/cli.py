"""`podnet proxy`: kube-proxy in iptables mode.

  podnet proxy --server URL | --kubeconfig F --node NAME [--mode iptables] [--cluster-cidr CIDR]
               [--min-sync-period 1s] [--sync-period 30s] [--healthz-bind-address 0.0.0.0:10256]
               [--metrics-bind-address 127.0.0.1:10249] [--masquerade-all] [--cleanup]
  podnet proxy status [--backend nft|legacy]

It programs netfilter of the network namespace it runs in.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from podnet.daemon import add_api_source_args, client_from_args, setup_logging, stop_on_signals
from proxy.errors import ProxyError
from proxy.health import ProxierHealth, utc_now
from proxy.healthcheck import ServiceHealthServer
from proxy.iptables import backend
from proxy.iptables.proxier import Proxier
from proxy.iptables.render import RenderOptions
from proxy.metrics import ProxyMetrics
from proxy.runner import BoundedFrequencyRunner, health_app, metrics_app, serve
from proxy.status import format_status, parse_status

log = logging.getLogger("podnet.proxy")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Go-style durations: 1s, 500ms, 1m30s, 2h (a bare number means seconds)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use e.g. 1s, 500ms, 1m)")
    return total


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podnet proxy", description="kube-proxy, iptables mode")
    add_api_source_args(p, required=False)  # --cleanup needs neither
    p.add_argument("--node", "--hostname-override", dest="node", default=socket.gethostname(),
                   help="this node's name (endpoints on it are local)")
    p.add_argument("--mode", default="iptables", choices=["iptables"], help="proxy mode")
    p.add_argument("--cluster-cidr", help="pod CIDR; traffic to ClusterIPs from outside it is masqueraded")
    p.add_argument("--min-sync-period", type=parse_duration, default=1.0)
    p.add_argument("--sync-period", type=parse_duration, default=30.0)
    p.add_argument("--healthz-bind-address", default="0.0.0.0:10256")
    p.add_argument("--metrics-bind-address", default="127.0.0.1:10249")
    p.add_argument("--masquerade-all", action="store_true")
    p.add_argument("--masquerade-bit", type=int, default=14)
    p.add_argument("--iptables-localhost-nodeports", default="true", choices=["true", "false"])
    p.add_argument("--iptables-backend", choices=["auto", "nft", "legacy"], default="auto",
                   help="iptables backend (auto: detect as kube-proxy does)")
    p.add_argument("--iptables-incremental", default="true", choices=["true", "false"],
                   help="partial syncs patch KUBE-SERVICES & co. with -D/-I instead of rewriting them "
                        "(false: upstream's behaviour)")
    p.add_argument("--cleanup", action="store_true", help="remove all kube-proxy rules and exit")
    p.add_argument("-v", "--v", dest="verbosity", type=int, default=0)
    return p


def main(argv: list[str]) -> int:
    if argv and argv[0] == "status":
        return status_main(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbosity >= 4 else logging.INFO,
                  fmt="%(asctime)s proxy %(levelname)s %(message)s")
    if args.cleanup:
        return cleanup_main(args.iptables_backend)
    if not (args.server or args.kubeconfig):
        print("podnet proxy: one of --server or --kubeconfig is required", file=sys.stderr)
        return 2
    try:
        cidr = ipaddress.ip_network(args.cluster_cidr, strict=False) if args.cluster_cidr else None
    except ValueError:
        print(f"podnet proxy: invalid --cluster-cidr {args.cluster_cidr!r}", file=sys.stderr)
        return 2
    from controlplane.client.kubeconfig import KubeConfigError
    from controlplane.errors import APIError

    try:
        return asyncio.run(run(args, cidr))
    except (ProxyError, KubeConfigError, APIError) as exc:
        print(f"podnet proxy: {exc}", file=sys.stderr)
        return 1


def cleanup_main(mode: str) -> int:
    modes = ["nft", "legacy"] if mode == "auto" else [mode]
    failed = False
    for m in modes:
        try:
            removed = backend.cleanup(backend.Iptables(m))
        except ProxyError as exc:
            print(f"podnet proxy --cleanup ({m}): {exc}", file=sys.stderr)
            failed = True
            continue
        for item in removed:
            print(f"removed ({m}) {item}")
    return 1 if failed else 0


def status_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="podnet proxy status",
                                description="Services with their endpoints and rule hit counters")
    p.add_argument("--backend", choices=["auto", "nft", "legacy"], default="auto")
    args = p.parse_args(list(argv))
    mode = backend.detect_backend() if args.backend == "auto" else args.backend
    try:
        text = backend.Iptables(mode).save(counters=True)
    except ProxyError as exc:
        print(f"podnet proxy status: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(format_status(parse_status(text)))
    return 0


def _sysctl_get(key: str) -> str | None:
    try:
        return Path("/proc/sys", key.replace(".", "/")).read_text().strip()
    except OSError:
        return None


def _sysctl_set(key: str, value: str) -> None:
    path = Path("/proc/sys", key.replace(".", "/"))
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
    except OSError as exc:
        log.warning("cannot set %s=%s: %s", key, value, exc)


def setup_kernel(localhost_nodeports: bool) -> bool:
    """What kube-proxy sets in its own namespace; returns nf_conntrack_tcp_be_liberal."""
    if localhost_nodeports:
        _sysctl_set("net.ipv4.conf.all.route_localnet", "1")
    if Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        _sysctl_set("net.bridge.bridge-nf-call-iptables", "1")
    return (_sysctl_get("net.netfilter.nf_conntrack_tcp_be_liberal") or "0") != "0"


async def run(args: argparse.Namespace, cidr: Any) -> int:
    from controlplane.client import Informer
    from controlplane.resources import ENDPOINTSLICES, NODES, SERVICES

    client = client_from_args(args)
    localhost_np = args.iptables_localhost_nodeports == "true"
    liberal = setup_kernel(localhost_np)
    mode = backend.detect_backend() if args.iptables_backend == "auto" else args.iptables_backend
    ipt = backend.Iptables(mode)
    options = RenderOptions(cluster_cidr=cidr, masquerade_all=args.masquerade_all,
                            masquerade_bit=args.masquerade_bit, random_fully=ipt.has_random_fully(),
                            localhost_nodeports=localhost_np, conntrack_tcp_liberal=liberal)
    if cidr is None and not args.masquerade_all:
        log.warning("no --cluster-cidr: traffic to ClusterIPs from outside the cluster is not masqueraded")
    metrics = ProxyMetrics()
    health = ProxierHealth(timeout=2 * args.sync_period)
    proxier = Proxier(args.node, ipt, options, metrics=metrics, health=health,
                      stale_chain_cleanup_period=args.sync_period,
                      incremental=args.iptables_incremental == "true")
    log.info("podnet proxy: node %s, iptables backend %s, pid %d", args.node, mode, os.getpid())

    stop = stop_on_signals()
    loop = asyncio.get_running_loop()

    async def do_sync() -> None:
        if time.monotonic() - proxier.last_full_sync >= args.sync_period:
            proxier.force_full_sync()  # periodic full resync repairs drift
        result = await asyncio.to_thread(proxier.sync_proxy_rules)
        if result is not None and not result.ok:
            sync_runner.retry_after(max(args.min_sync_period, 1.0))

    sync_runner = BoundedFrequencyRunner(do_sync, args.min_sync_period, args.sync_period, burst=2)
    service_health = ServiceHealthServer(health)

    def on_synced(ports: Any, local: Any) -> None:  # called from the sync thread
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(service_health.sync(ports, local)))

    proxier.on_synced = on_synced
    proxier.on_change = lambda: loop.call_soon_threadsafe(sync_runner.run)
    servers = []
    for app, bind, port in ((health_app(health, metrics), args.healthz_bind_address, 10256),
                            (metrics_app(metrics, health), args.metrics_bind_address, 10249)):
        if bind and not bind.endswith(":0"):
            try:
                servers.append(await serve(app, bind, port))
            except OSError as exc:
                log.error("cannot listen on %s: %s", bind, exc)
    health.updated(utc_now())  # like upstream SyncLoop: healthy until a queued update stalls

    informers: list[Any] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        svc_inf = Informer(client, SERVICES)
        svc_inf.add_handler(on_add=proxier.on_service_add, on_update=proxier.on_service_update,
                            on_delete=proxier.on_service_delete)
        eps_inf = Informer(client, ENDPOINTSLICES)
        eps_inf.add_handler(on_add=proxier.on_slice_add, on_update=proxier.on_slice_modify,
                            on_delete=proxier.on_slice_delete)
        node_inf = Informer(client, NODES, field_selector=f"metadata.name={args.node}")
        node_inf.add_handler(on_add=proxier.on_node, on_update=lambda _o, new: proxier.on_node(new),
                             on_delete=lambda _o: proxier.on_node(None))
        informers = [node_inf, svc_inf, eps_inf]
        for inf in informers:
            await inf.start()
        tasks.append(asyncio.create_task(sync_runner.loop(stop)))
        tasks.append(asyncio.create_task(_canary_loop(proxier, sync_runner, args.sync_period, stop)))
        while not stop.is_set():
            if all(inf.has_synced for inf in informers[1:]):
                break
            try:
                await asyncio.wait_for(stop.wait(), 0.05)
            except asyncio.TimeoutError:
                pass
        proxier.set_synced(services=True, slices=True)
        sync_runner.run()
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        for inf in informers:
            try:
                await inf.stop()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        await client.close()
        for srv in servers:
            await srv.cleanup()
        await service_health.close()
    log.info("podnet proxy stopped (rules stay installed; use --cleanup to remove them)")
    return 0


async def _canary_loop(proxier: Proxier, runner: BoundedFrequencyRunner, period: float,
                       stop: asyncio.Event) -> None:
    """upstream iptables.Monitor: if our canary chains vanish, something flushed iptables."""
    interval = max(1.0, min(period, 30.0))
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval)
            return
        except asyncio.TimeoutError:
            pass
        if proxier.syncs and not await asyncio.to_thread(proxier.check_canary):
            runner.run()
