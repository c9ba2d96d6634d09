"""Which UDP conntrack entries are stale after a sync (upstream pkg/proxy/conntrack cleanup).

Pure: `stale_entries(...)` returns `conntrack -D` argument lists; the shell runs them. UDP has no
connection teardown, so without this a client keeps talking to a deleted endpoint, or keeps a
cached "unreachable" entry after a Service got its first endpoint (kubernetes#59368, #48370).
"""

from __future__ import annotations

from typing import Mapping

from controlplane.model import Protocol
from proxy.changes import (
    ServicePortInfo, ServicePortName, UpdateEndpointsMapResult, UpdateServiceMapResult,
)

Argv = tuple[str, ...]


def _proto(p: Protocol) -> str:
    return p.value.lower()


def stale_entries(services: Mapping[ServicePortName, ServicePortInfo], svc_result: UpdateServiceMapResult,
                  ep_result: UpdateEndpointsMapResult) -> list[Argv]:
    """`conntrack -D` filters (without the leading `conntrack -D`), deduplicated, in a stable order."""
    out: list[Argv] = []
    seen: set[Argv] = set()

    def add(argv: Argv) -> None:
        if argv not in seen:
            seen.add(argv)
            out.append(argv)

    # Service IPs that stopped being UDP services, or UDP services that got their first endpoint:
    # entries for them may be cached "to nowhere" (REJECTed) flows.
    ips = {str(ip) for ip in svc_result.deleted_udp_cluster_ips}
    node_ports: set[int] = set()
    for spn in ep_result.newly_active_udp_services:
        info = services.get(spn)
        if info is None:
            continue
        ips.add(str(info.cluster_ip))
        ips.update(str(ip) for ip in info.external_ips)
        ips.update(str(ip) for ip in info.load_balancer_ips)
        if info.node_port:
            node_ports.add(info.node_port)
    for ip in sorted(ips):
        add(("--orig-dst", ip, "-p", "udp"))
    for port in sorted(node_ports):
        add(("-p", "udp", "--dport", str(port)))

    # Endpoints that stopped serving: flows DNATed to them from any of the service's addresses.
    for spn, ep in ep_result.deleted_udp_endpoints:
        info = services.get(spn)
        if info is None or info.protocol is not Protocol.UDP:
            continue
        proto, ep_ip = _proto(info.protocol), str(ep.ip)
        if info.node_port:
            add(("-p", proto, "--dport", str(info.node_port), "--dst-nat", ep_ip))
        for vip in (info.cluster_ip, *info.external_ips, *info.load_balancer_ips):
            add(("--orig-dst", str(vip), "--dst-nat", ep_ip, "-p", proto))
    return out
