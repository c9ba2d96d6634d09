"""`podnet agent`: the node agent (flags in agent/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import socket

from podnet.daemon import (
    add_api_source_args,
    client_from_args,
    setup_logging,
    stop_on_signals,
)

log = logging.getLogger("podnet.agent")


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def _cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a CIDR: {text!r}") from None


def _label(text: str) -> tuple[str, str]:
    k, sep, v = text.partition("=")
    if not sep or not k:
        raise argparse.ArgumentTypeError(f"--node-label wants KEY=VALUE, got {text!r}")
    return k, v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podnet agent", description="node agent: registers the Node, runs its pods "
                                "(CNI, processes in network namespaces, probes), keeps host-gw routes")
    add_api_source_args(p)
    p.add_argument("--node", required=True, help="the Node name to register")
    p.add_argument("--node-ip", type=_ip, default=None, help="InternalIP (default: the address used to reach the API)")
    p.add_argument("--node-label", type=_label, action="append", default=[], help="KEY=VALUE, repeatable")
    p.add_argument("--cni-bin-dir", default="/opt/cni/bin", help="':'-separated CNI plugin dirs (/opt/cni/bin)")
    p.add_argument("--cni-conf-dir", default="/etc/cni/net.d", help="CNI network config dir (/etc/cni/net.d)")
    p.add_argument("--write-cni-conf", action="store_true",
                   help="write <conf-dir>/10-podnet.conflist (bridge + host-local IPAM) from the Node's podCIDR")
    p.add_argument("--cni-plugin", default="podnet-bridge", help="bridge plugin type for --write-cni-conf")
    p.add_argument("--cni-ipam", default="podnet-ipam", help="IPAM plugin type for --write-cni-conf")
    p.add_argument("--cni-daemon-socket", default="",
                   help="daemonSocket for podnet-bridge in the written conflist (a `podnet cni daemon`)")
    p.add_argument("--cni-portmap", action="store_true",
                   help="chain the portmap plugin in the written conflist (hostPort via portMappings)")
    p.add_argument("--non-masquerade-cidr", type=_cidr, default=None,
                   help="masquerade pod traffic leaving this CIDR (kubenet); empty = no rule")
    p.add_argument("--no-host-gw", action="store_true", help="do not program routes to other Nodes' podCIDRs")
    p.add_argument("--cluster-dns", type=_ip, action="append", default=None, help="cluster DNS IP (10.96.0.10)")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--root-dir", default="/var/lib/podnet/agent", help="pod state, logs, resolv.conf, IPAM data")
    p.add_argument("--restart-backoff", type=float, default=10.0, help="crash-loop back-off base seconds (10)")
    p.add_argument("--log-level", default=os.environ.get("PODNET_LOG_LEVEL", "INFO"))
    return p


def _guess_node_ip(server: str) -> str:
    from urllib.parse import urlparse

    u = urlparse(server)
    host = u.hostname or "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, u.port or 80))
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


async def _serve(args: argparse.Namespace) -> int:
    from agent.agent import Agent, Options

    client = client_from_args(args)
    opts = Options(
        node=args.node, node_ip=args.node_ip or _guess_node_ip(client.server),
        cni_bin_dirs=[d for d in args.cni_bin_dir.split(":") if d], cni_conf_dir=args.cni_conf_dir,
        cluster_dns=args.cluster_dns or ["10.96.0.10"], cluster_domain=args.cluster_domain.strip("."),
        root_dir=args.root_dir, write_cni_conf=args.write_cni_conf, cni_plugin=args.cni_plugin,
        cni_ipam=args.cni_ipam, non_masquerade_cidr=args.non_masquerade_cidr or "", host_gw=not args.no_host_gw,
        restart_backoff=args.restart_backoff, labels=dict(args.node_label),
        cni_daemon_socket=args.cni_daemon_socket, cni_portmap=args.cni_portmap)
    stop = stop_on_signals()
    log.info("podnet agent: node %s (%s), api %s, root %s", opts.node, opts.node_ip, client.server, opts.root_dir)
    try:
        await Agent(client, opts).run(stop)
    finally:
        await client.close()
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(str(args.log_level))
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # noqa: BLE001 - a clear message, not a traceback
        from controlplane.errors import APIError

        if isinstance(exc, (APIError, OSError)):
            log.error("%s", exc)
            return 1
        raise
