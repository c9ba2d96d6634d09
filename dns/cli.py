"""`podnet dns`: the cluster DNS server (see dns/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from podnet.daemon import add_api_source_args, client_from_args, setup_logging, stop_on_signals
from dns.answer import Options, PodMode
from dns.forward import Forwarder, ForwardError, parse_upstreams
from dns.http import serve, split_hostport
from dns.server import DNSServer

log = logging.getLogger("podnet.dns")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="podnet dns", description="Cluster DNS (Kubernetes DNS spec 1.1.0).")
    add_api_source_args(p)
    p.add_argument("--listen", default="0.0.0.0:53", help="UDP+TCP address (default 0.0.0.0:53)")
    p.add_argument("--zone", default="cluster.local", help="cluster domain (default cluster.local)")
    p.add_argument("--upstream", default="/etc/resolv.conf",
                   help="resolv.conf path or ADDR[:PORT][,ADDR...] for other names; 'none' to refuse")
    p.add_argument("--pods", default="disabled", choices=[m.value for m in PodMode],
                   help="pod records a-b-c-d.<ns>.pod.<zone> (default disabled)")
    p.add_argument("--ttl", type=int, default=5, help="TTL of cluster answers (default 5; kubeadm uses 30)")
    p.add_argument("--cache-ttl", type=int, default=30, help="max TTL of cached upstream answers (default 30)")
    p.add_argument("--forward-timeout", type=float, default=2.0, help="upstream timeout, seconds (default 2)")
    p.add_argument("--max-concurrent", type=int, default=1000, help="upstream queries in flight (default 1000)")
    p.add_argument("--cache-size", type=int, default=10000,
                   help="answer-cache entries for cluster names (wire format; default 10000, as CoreDNS's cache)")
    p.add_argument("--health-listen", default=":8080", help="/health address ('' to disable)")
    p.add_argument("--ready-listen", default=":8181", help="/ready address ('' to disable)")
    p.add_argument("--metrics-listen", default=":9153", help="/metrics address ('' to disable)")
    p.add_argument("--lameduck", type=float, default=0.0,
                   help="on SIGTERM keep answering this many seconds with /ready 503 (kubeadm's CoreDNS: 5)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes sharing the port with SO_REUSEPORT, each with its own informers (default 1)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if not 0 <= args.ttl <= 3600:
        p.error(f"--ttl {args.ttl}: want 0..3600")
    if args.workers < 1:
        p.error(f"--workers {args.workers}: want >= 1")
    for flag in ("listen", "health_listen", "ready_listen", "metrics_listen"):
        value = getattr(args, flag)
        if value:
            try:
                split_hostport(value)
            except ValueError as exc:
                p.error(f"--{flag.replace('_', '-')}: {exc}")
    return args


async def run(args: argparse.Namespace, *, worker: int = 0, stop: asyncio.Event | None = None) -> int:
    from dns.sync import ViewSync

    stop = stop_on_signals(stop)
    upstreams = [] if args.upstream == "none" else parse_upstreams(args.upstream)
    forwarder = Forwarder(upstreams, timeout=args.forward_timeout, max_concurrent=args.max_concurrent,
                          max_ttl=args.cache_ttl)
    options = Options(zone=args.zone.lower().strip("."), ttl=args.ttl, pods=PodMode(args.pods))
    server = DNSServer(options, forwarder, cache_size=max(1, args.cache_size))
    client = client_from_args(args)
    sync = ViewSync(client, options.zone, server.set_view, watch_pods=options.pods is PodMode.VERIFIED)
    server.metrics.gauges.update({
        "podnet_dns_ready": lambda: float(sync.synced),
        "podnet_dns_services": lambda: float(len(server.view.services) if server.view else 0),
        "podnet_dns_view_generation": lambda: float(server.view.generation if server.view else 0),
        "process_resident_memory_bytes": _rss_bytes,
        "process_cpu_seconds_total": lambda: sum(os.times()[:2]),
    })
    http_servers: list[asyncio.Server] = []
    if worker == 0:
        await server.start(args.listen, reuse_port=args.workers > 1)
        http_servers = await _start_http(args, server, sync)
        await sync.start()
    else:  # extra workers join the SO_REUSEPORT group only once they can answer
        await sync.start()
        while server.view is None and not stop.is_set():
            await asyncio.sleep(0.05)
        await server.start(args.listen, reuse_port=True)
    log.info("podnet dns worker %d on %s:%d zone %s upstream %s", worker, *server.address, options.zone,
             ",".join(map(str, upstreams)) or "none")
    try:
        await stop.wait()
        if args.lameduck > 0:  # let the Service endpoints drop us before the socket closes
            server.draining = True
            log.info("lameduck: answering %.1f s more", args.lameduck)
            await asyncio.sleep(args.lameduck)
    finally:
        for srv in http_servers:
            srv.close()
        await sync.stop()
        await server.stop()
        await client.close()
    return 0


async def _start_http(args: argparse.Namespace, server: DNSServer, sync: Any) -> list[asyncio.Server]:
    def ready() -> tuple[int, str, str]:
        waiting = sync.not_ready()
        if server.draining:
            return 503, "Shutting down\n", "text/plain"
        if sync.synced and server.view is not None:
            return 200, "OK", "text/plain"
        return 503, "Still waiting on: " + ", ".join(waiting or ["first view"]) + "\n", "text/plain"

    def metrics() -> tuple[int, str, str]:
        fw = server.forwarder
        return 200, server.metrics.render(fw.stats, len(fw.cache), len(server.cache)), \
            "text/plain; version=0.0.4; charset=utf-8"

    routes = {"health": {"/health": lambda: (200, "OK", "text/plain")},
              "ready": {"/ready": ready}, "metrics": {"/metrics": metrics}}
    listens: dict[str, dict[str, Any]] = {}
    for kind, listen in (("health", args.health_listen), ("ready", args.ready_listen),
                         ("metrics", args.metrics_listen)):
        if listen:
            listens.setdefault(listen, {}).update(routes[kind])
    return [await serve(listen, r) for listen, r in listens.items()]


def _rss_bytes() -> float:
    try:
        return float(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0.0


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: a worker gets SIGTERM when the parent dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _spawn_workers(argv: list[str], n: int) -> list[int]:
    """Fork n-1 extra worker processes (each runs its own loop, informers and sockets)."""
    pids = []
    for i in range(1, n):
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            args = parse_args(argv)
            try:
                code = asyncio.run(run(args, worker=i))
            finally:
                os._exit(0)
            os._exit(code)
        pids.append(pid)
    return pids


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        if args.upstream != "none":
            parse_upstreams(args.upstream)
    except ForwardError as exc:
        print(f"podnet dns: {exc}", file=sys.stderr)
        return 2
    pids = _spawn_workers(argv, args.workers) if args.workers > 1 else []
    try:
        return asyncio.run(run(args))
    except OSError as exc:
        print(f"podnet dns: {exc}", file=sys.stderr)
        return 1
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
