"""The v1 Endpoints object of a Service: upstream's endpoints controller as a pure function.

One address per pod (of the Service's primary family), ready pods in `addresses`, others in
`notReadyAddresses`; addresses are repacked into subsets by the set of ports they offer
(endpoints.RepackSubsets) and the object is truncated to 1000 addresses with the
`endpoints.kubernetes.io/over-capacity: truncated` annotation.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Sequence

from controlplane.model import Pod, Service
from endpoints.core import (
    ENDPOINTS_MANAGED_BY_CONTROLLER, ENDPOINTS_MANAGED_BY_LABEL, HEADLESS_LABEL, JSON, MAX_ENDPOINTS_CAPACITY,
    OVER_CAPACITY_ANNOTATION, TRIGGER_TIME_ANNOTATION, endpoints_family, family_of, find_port,
    format_trigger_time, ip_sort_key, ip_text, is_ip_set, set_annotation, should_pod_be_in_endpoints,
    should_set_hostname, target_ref,
)

PortTuple = tuple[str, int, str, str]  # name, port, protocol, appProtocol; port -1: "no ports" sentinel
AddrKey = tuple[str, str]  # ip, uid


def _address(pod: Pod, service: Service) -> JSON | None:
    family = endpoints_family(service, pod)
    ip = next((ip_text(a) for a in pod.pod_ips if family_of(a) == family), None)
    if ip is None:
        return None
    addr: JSON = {"ip": ip}
    if should_set_hostname(pod, service):
        addr["hostname"] = pod.hostname
    if pod.node_name:
        addr["nodeName"] = pod.node_name
    addr["targetRef"] = target_ref(pod)
    return addr


def _port_json(port: PortTuple) -> JSON:
    out: JSON = {"port": port[1], "protocol": port[2]}
    if port[0]:
        out = {"name": port[0], **out}
    if port[3]:
        out["appProtocol"] = port[3]
    return out


def _addr_key(addr: JSON) -> AddrKey:
    return (str(addr.get("ip", "")), str((addr.get("targetRef") or {}).get("uid", "")))


def _sort_addrs(addrs: list[JSON]) -> list[JSON]:
    return sorted(addrs, key=lambda a: (ip_sort_key(str(a.get("ip", ""))), _addr_key(a)[1]))


def build_subsets(service: Service, pods: Sequence[Pod]) -> list[JSON]:
    """Subsets for the Service, repacked and sorted (deterministic)."""
    tolerate = service.publish_not_ready_addresses
    addrs: dict[AddrKey, JSON] = {}
    by_port: dict[PortTuple, dict[AddrKey, bool]] = {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, tolerate):
            continue
        addr = _address(pod, service)
        if addr is None:
            continue
        key = _addr_key(addr)
        ready = tolerate or pod.ready
        ports: list[PortTuple] = []
        if not service.ports and service.headless:
            ports = [("", -1, "", "")]
        for sp in service.ports:
            number = find_port(pod, sp)
            if number is not None:
                ports.append((sp.name, number, sp.protocol.value, sp.app_protocol))
        for port in ports:
            addrs[key] = addr
            by_port.setdefault(port, {})[key] = by_port.get(port, {}).get(key, False) or ready
    return _repack(by_port, addrs)


def _repack(by_port: dict[PortTuple, dict[AddrKey, bool]], addrs: dict[AddrKey, JSON]) -> list[JSON]:
    """RepackSubsets: ports offered by the very same (address, ready) set share one subset."""
    groups: dict[tuple[tuple[AddrKey, bool], ...], list[PortTuple]] = {}
    for port, by_addr in by_port.items():
        groups.setdefault(tuple(sorted(by_addr.items())), []).append(port)
    subsets: list[JSON] = []
    for members, ports in groups.items():
        subset: JSON = {}
        ready = _sort_addrs([addrs[k] for k, r in members if r])
        not_ready = _sort_addrs([addrs[k] for k, r in members if not r])
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        real = sorted(p for p in ports if p[1] > 0)
        if real:
            subset["ports"] = [_port_json(p) for p in real]
        subsets.append(subset)
    return sorted(subsets, key=_subset_sort_key)


def _subset_sort_key(subset: JSON) -> tuple[Any, ...]:
    ports = [(p.get("name", ""), p["port"], p["protocol"]) for p in subset.get("ports") or []]
    first = (subset.get("addresses") or subset.get("notReadyAddresses") or [{}])[0]
    return (ports, ip_sort_key(str(first.get("ip", ""))))


def truncate(subsets: list[JSON], capacity: int = MAX_ENDPOINTS_CAPACITY) -> bool:
    """truncateEndpoints: keep at most `capacity` addresses, not-ready ones go first, per-subset share."""
    total_ready = sum(len(s.get("addresses") or []) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
    if total_ready + total_not_ready <= capacity:
        return False
    truncate_ready = total_ready > capacity
    limit = capacity if truncate_ready else capacity - total_ready
    total = total_ready if truncate_ready else total_not_ready
    field = "addresses" if truncate_ready else "notReadyAddresses"
    can_add = limit
    for subset in subsets:
        count = len(subset.get(field) or [])
        share = min(int(math.ceil(count / total * limit)) if total else 0, can_add)
        if subset.get(field):
            subset[field] = subset[field][:share]
            if not subset[field]:
                del subset[field]
        if truncate_ready:
            subset.pop("notReadyAddresses", None)
        can_add -= len(subset.get(field) or [])
    subsets[:] = [s for s in subsets if s.get("addresses") or s.get("notReadyAddresses")]
    return True


def endpoints_labels(service: Service) -> dict[str, str]:
    labels = dict(service.labels)
    if is_ip_set(service):
        labels.pop(HEADLESS_LABEL, None)
    else:
        labels[HEADLESS_LABEL] = ""
    labels[ENDPOINTS_MANAGED_BY_LABEL] = ENDPOINTS_MANAGED_BY_CONTROLLER
    return labels


def _canonical_subsets(subsets: Sequence[JSON]) -> list[Any]:
    def addr(a: JSON) -> tuple[Any, ...]:
        ref = a.get("targetRef") or {}
        return (a.get("ip", ""), a.get("hostname") or "", a.get("nodeName") or "",
                tuple(sorted((k, str(v)) for k, v in ref.items() if k != "resourceVersion" and v)))

    def port(p: JSON) -> tuple[Any, ...]:
        return (p.get("name") or "", int(p.get("port") or 0), p.get("protocol") or "TCP", p.get("appProtocol") or "")

    out = [(sorted(addr(a) for a in s.get("addresses") or []),
            sorted(addr(a) for a in s.get("notReadyAddresses") or []),
            sorted(port(p) for p in s.get("ports") or [])) for s in subsets]
    return sorted(out)


def reconcile_endpoints(service: Service, pods: Sequence[Pod], existing: JSON | None, *,
                        trigger_time: datetime | None, capacity: int = MAX_ENDPOINTS_CAPACITY) -> JSON | None:
    """The Endpoints object to write (create when `existing` is None), or None when it is already right."""
    subsets = build_subsets(service, pods)
    truncated = truncate(subsets, capacity)
    labels = endpoints_labels(service)
    if existing is not None:
        meta = existing.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        capacity_ok = (annotations.get(OVER_CAPACITY_ANNOTATION) == "truncated") == truncated
        current = existing.get("subsets") or []
        if ((current == subsets or _canonical_subsets(current) == _canonical_subsets(subsets))
                and (meta.get("labels") or {}) == labels and capacity_ok):
            return None
        obj = dict(existing)
        obj["metadata"] = dict(meta)
    else:
        obj = {"apiVersion": "v1", "kind": "Endpoints",
               "metadata": {"name": service.name, "namespace": service.namespace}}
    obj["metadata"]["labels"] = labels
    set_annotation(obj["metadata"], TRIGGER_TIME_ANNOTATION,
                   format_trigger_time(trigger_time) if trigger_time is not None else None)
    set_annotation(obj["metadata"], OVER_CAPACITY_ANNOTATION, "truncated" if truncated else None)
    obj["subsets"] = subsets
    return obj
