"""Builders for proxy tests: Service / EndpointSlice JSON like upstream's makeTestService."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable

from controlplane.model import parse_endpoint_slice, parse_service
from proxy.changes import EndpointsChangeTracker, EndpointsMap, ServiceChangeTracker, ServicePortMap
from proxy.iptables.render import ProxyState, RenderOptions

NODE = "test-node"


def service(ns: str, name: str, cluster_ip: str, ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    status = spec.pop("status", {})
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": cluster_ip, "ports": ports, **spec}, "status": status}


def slice_(ns: str, svc: str, endpoints: list[dict[str, Any]], ports: list[dict[str, Any]],
           name: str = "", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": ns, "name": name or f"{svc}-1",
                         "labels": {"kubernetes.io/service-name": svc}, **meta},
            "endpoints": endpoints, "ports": ports}


def tcp(name: str, port: int, **kw: Any) -> dict[str, Any]:
    return {"name": name, "port": port, "protocol": "TCP", **kw}


def state(services: Iterable[dict[str, Any]], slices: Iterable[dict[str, Any]], node: str = NODE,
          **opts: Any) -> ProxyState:
    st = ServiceChangeTracker()
    et = EndpointsChangeTracker(node)
    for s in services:
        st.update(None, parse_service(s))
    for e in slices:
        et.endpoint_slice_update(parse_endpoint_slice(e))
    smap, emap = ServicePortMap(), EndpointsMap()
    smap.update_from(st)
    emap.update_from(et)
    if "cluster_cidr" in opts and isinstance(opts["cluster_cidr"], str):
        opts["cluster_cidr"] = ipaddress.ip_network(opts["cluster_cidr"])
    return ProxyState(smap, emap, RenderOptions(**opts))


def dedent(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines()) + "\n"


def jump_targets_exist(text: str) -> list[str]:
    """Every -j target is a builtin target or a chain declared in the same table; returns problems."""
    builtin = {"ACCEPT", "DROP", "REJECT", "RETURN", "MARK", "MASQUERADE", "DNAT", "SNAT"}
    problems: list[str] = []
    chains: set[str] = set()
    rules: list[str] = []
    for line in text.splitlines():
        if line.startswith("*"):
            chains, rules = set(), []
        elif line.startswith(":"):
            chains.add(line[1:].split()[0])
        elif line.startswith("-A "):
            rules.append(line)
        elif line == "COMMIT":
            for r in rules:
                m = re.search(r" -j (\S+)", r)
                if r.split()[1] not in chains:
                    problems.append(f"rule in undeclared chain: {r}")
                if m and m.group(1) not in builtin and m.group(1) not in chains:
                    problems.append(f"missing jump target: {r}")
    return problems
