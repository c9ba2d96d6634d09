"""Change tracking shared by every proxy mode (upstream pkg/proxy servicechangetracker.go,
endpointschangetracker.go, endpointslicecache.go, serviceport.go, endpoint.go, topology.go).

Pure: the shell feeds parsed `controlplane.model` values in from informer handlers; a sync
calls `ServicePortMap.update(tracker)` / `EndpointsMap.update(tracker)` which apply the
accumulated changes and say which Services changed (for partial syncs) and which UDP
conntrack entries may be stale.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from typing import Iterable, Mapping

from controlplane.model import (
    EndpointSlice, IPAddress, ObjectRef, Protocol, Service, ServiceType, TrafficPolicy,
)
from proxy.errors import ProxyError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, order=True)
class ServicePortName:
    """namespace/name:port plus protocol: the key of every per-service-port structure."""

    namespace: str
    name: str
    port: str
    protocol: Protocol = Protocol.TCP

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.namespace, self.name)

    def __str__(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port}" if self.port else base


@dataclass(frozen=True)
class ServicePortInfo:
    """One port of one Service, as a proxy sees it (upstream BaseServicePortInfo)."""

    name: ServicePortName
    cluster_ip: IPAddress
    port: int
    protocol: Protocol
    node_port: int = 0
    external_ips: tuple[IPAddress, ...] = ()
    load_balancer_ips: tuple[IPAddress, ...] = ()
    load_balancer_source_ranges: tuple[IPNetwork, ...] = ()
    session_affinity_timeout: int = 0  # seconds; 0 = no ClientIP affinity
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0

    @cached_property
    def name_text(self) -> str:
        return str(self.name)

    @cached_property
    def cluster_ip_text(self) -> str:
        return str(self.cluster_ip)

    @property
    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.load_balancer_ips) or bool(self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or (self.externally_accessible and not self.external_policy_local)

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.externally_accessible and self.external_policy_local)


@dataclass(frozen=True)
class EndpointInfo:
    """One endpoint of one service port (upstream BaseEndpointInfo)."""

    ip: IPAddress
    port: int
    is_local: bool = False
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""
    zone: str = ""

    @cached_property
    def ip_text(self) -> str:
        return str(self.ip)

    @cached_property
    def text(self) -> str:
        """"ip:port" ("[ip]:port" for IPv6): the endpoint's name in chain hashes and comments."""
        if self.ip.version == 6:
            return f"[{self.ip_text}]:{self.port}"
        return f"{self.ip_text}:{self.port}"

    def __str__(self) -> str:
        return self.text


# ---------------------------------------------------------------- Services

def service_port_infos(svc: Service, family: int = 4) -> dict[ServicePortName, ServicePortInfo]:
    """The service ports a proxy of this IP family handles (empty for headless/ExternalName)."""
    if svc.type is ServiceType.EXTERNAL_NAME or svc.headless:
        return {}
    cluster_ip = next((ip for ip in svc.cluster_ips if ip.version == family), None)
    if cluster_ip is None:
        return {}
    ext_ips = tuple(ip for ip in svc.external_ips if ip.version == family)
    lb_ips = tuple(ip for ip in svc.load_balancer_ips if ip.version == family) \
        if svc.type is ServiceType.LOAD_BALANCER else ()
    ranges: list[IPNetwork] = []
    for raw in svc.load_balancer_source_ranges:
        try:
            net = ipaddress.ip_network(raw.strip(), strict=False)
        except ValueError:
            continue  # upstream ignores unparsable ranges too
        if net.version == family:
            ranges.append(net)
    external_type = svc.type in (ServiceType.NODE_PORT, ServiceType.LOAD_BALANCER) or bool(svc.external_ips)
    out: dict[ServicePortName, ServicePortInfo] = {}
    for p in svc.ports:
        spn = ServicePortName(svc.namespace, svc.name, p.name, p.protocol)
        node_port = p.node_port if svc.type in (ServiceType.NODE_PORT, ServiceType.LOAD_BALANCER) else 0
        out[spn] = ServicePortInfo(
            name=spn, cluster_ip=cluster_ip, port=p.port, protocol=p.protocol, node_port=node_port,
            external_ips=ext_ips, load_balancer_ips=lb_ips, load_balancer_source_ranges=tuple(ranges),
            session_affinity_timeout=svc.session_affinity_timeout,
            external_policy_local=external_type and svc.external_traffic_policy is TrafficPolicy.LOCAL,
            internal_policy_local=svc.internal_traffic_policy is TrafficPolicy.LOCAL,
            health_check_node_port=svc.health_check_node_port if svc.type is ServiceType.LOAD_BALANCER
            and svc.external_traffic_policy is TrafficPolicy.LOCAL else 0,
        )
    return out


@dataclass
class _ServiceChange:
    previous: dict[ServicePortName, ServicePortInfo]
    current: dict[ServicePortName, ServicePortInfo]


class ServiceChangeTracker:
    """Accumulates Service changes between syncs; previous = before all of them."""

    def __init__(self, family: int = 4) -> None:
        self.family = family
        self._items: dict[ObjectRef, _ServiceChange] = {}

    def update(self, previous: Service | None, current: Service | None) -> bool:
        """Record one add/update/delete; True if anything is pending afterwards."""
        svc = current or previous
        if svc is None:
            return False
        ref = svc.ref
        change = self._items.get(ref)
        if change is None:
            change = _ServiceChange(service_port_infos(previous, self.family) if previous else {}, {})
            self._items[ref] = change
        change.current = service_port_infos(current, self.family) if current else {}
        if change.previous == change.current:
            del self._items[ref]
        return bool(self._items)

    def pending(self) -> int:
        return len(self._items)

    def checkout(self) -> dict[ObjectRef, _ServiceChange]:
        items, self._items = self._items, {}
        return items


@dataclass(frozen=True)
class UpdateServiceMapResult:
    updated_services: frozenset[ObjectRef]
    deleted_udp_cluster_ips: frozenset[IPAddress]


class ServicePortMap(dict[ServicePortName, ServicePortInfo]):
    """The current set of service ports (upstream ServicePortMap)."""

    def update_from(self, tracker: ServiceChangeTracker) -> UpdateServiceMapResult:
        updated: set[ObjectRef] = set()
        deleted_udp: set[IPAddress] = set()
        for ref, change in tracker.checkout().items():
            updated.add(ref)
            for spn in change.previous:
                self.pop(spn, None)
            self.update(change.current)
            for spn, info in change.previous.items():
                if spn not in change.current and info.protocol is Protocol.UDP:
                    deleted_udp.add(info.cluster_ip)
        # a cluster IP still used by another UDP port is not stale
        for info in self.values():
            if info.protocol is Protocol.UDP:
                deleted_udp.discard(info.cluster_ip)
        return UpdateServiceMapResult(frozenset(updated), frozenset(deleted_udp))

    def health_check_node_ports(self) -> dict[ObjectRef, int]:
        return {spn.ref: i.health_check_node_port for spn, i in self.items() if i.health_check_node_port}


# ---------------------------------------------------------------- Endpoints

def endpoints_by_port(slices: Iterable[EndpointSlice], hostname: str, family: int = 4
                      ) -> dict[ServicePortName, tuple[EndpointInfo, ...]]:
    """Merge a Service's EndpointSlices into endpoints per service port (EndpointSliceCache)."""
    want = "IPv4" if family == 4 else "IPv6"
    merged: dict[ServicePortName, dict[str, EndpointInfo]] = {}
    for sl in sorted(slices, key=lambda s: s.name):
        if sl.address_type != want or not sl.service_name:
            continue
        for p in sl.ports:
            if p.port <= 0:
                continue
            spn = ServicePortName(sl.namespace, sl.service_name, p.name, p.protocol)
            bucket = merged.setdefault(spn, {})
            for ep in sl.endpoints:
                if not ep.addresses:
                    continue
                info = EndpointInfo(ep.addresses[0], p.port, is_local=bool(hostname) and ep.node_name == hostname,
                                    ready=ep.ready, serving=ep.serving, terminating=ep.terminating,
                                    node_name=ep.node_name, zone=ep.zone)
                key = str(info)
                if key not in bucket or info.ready:  # a ready copy wins over a duplicate
                    bucket[key] = info
    return {spn: tuple(sorted(b.values(), key=_ep_sort_key)) for spn, b in merged.items() if b}


def _ep_sort_key(ep: EndpointInfo) -> str:
    return str(ep)  # upstream sorts endpoints by their "ip:port" string


def parse_trigger_time(value: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class EndpointsChangeTracker:
    """Accumulates EndpointSlice changes between syncs (keeps the slice cache)."""

    def __init__(self, hostname: str, family: int = 4) -> None:
        self.hostname = hostname
        self.family = family
        self._applied: dict[ObjectRef, dict[str, EndpointSlice]] = {}
        # endpoints_by_port of each Service's applied slices: the next checkout's "previous"
        self._by_port: dict[ObjectRef, dict[ServicePortName, tuple[EndpointInfo, ...]]] = {}
        self._pending: dict[ObjectRef, dict[str, EndpointSlice | None]] = {}
        self._trigger_times: dict[ObjectRef, list[datetime]] = {}

    def endpoint_slice_update(self, sl: EndpointSlice, removed: bool = False) -> bool:
        """Record one slice add/update (removed=False) or delete; True if anything is pending."""
        if not sl.service_name:
            raise ProxyError(f"EndpointSlice {sl.namespace}/{sl.name} has no kubernetes.io/service-name label")
        ref = ObjectRef(sl.namespace, sl.service_name)
        applied = self._applied.get(ref, {}).get(sl.name)
        pend = self._pending.setdefault(ref, {})
        if removed:
            pend[sl.name] = None
        elif applied is not None and _same_slice(applied, sl) and sl.name not in pend:
            if not pend:
                del self._pending[ref]
            return bool(self._pending)
        else:
            pend[sl.name] = sl
            when = parse_trigger_time(sl.trigger_time)
            if when is not None:
                self._trigger_times.setdefault(ref, []).append(when)
        return bool(self._pending)

    def pending(self) -> int:
        return len(self._pending)

    def checkout(self) -> tuple[dict[ObjectRef, tuple[dict[ServicePortName, tuple[EndpointInfo, ...]],
                                                      dict[ServicePortName, tuple[EndpointInfo, ...]]]],
                                dict[ObjectRef, list[datetime]]]:
        """Apply pending slices; returns {service: (previous, current)} for changed ones + trigger times."""
        changes = {}
        for ref, pend in self._pending.items():
            slices = self._applied.get(ref, {})
            previous = self._by_port.get(ref, {})
            for name, sl in pend.items():
                if sl is None:
                    slices.pop(name, None)
                else:
                    slices[name] = sl
            current = endpoints_by_port(slices.values(), self.hostname, self.family)
            if slices:
                self._applied[ref] = slices
                self._by_port[ref] = current
            else:
                self._applied.pop(ref, None)
                self._by_port.pop(ref, None)
            if previous != current:
                changes[ref] = (previous, current)
        times = {ref: t for ref, t in self._trigger_times.items() if ref in changes}
        self._pending, self._trigger_times = {}, {}
        return changes, times


def _same_slice(a: EndpointSlice, b: EndpointSlice) -> bool:
    return (a.ports, a.endpoints, a.address_type) == (b.ports, b.endpoints, b.address_type)


@dataclass(frozen=True)
class UpdateEndpointsMapResult:
    updated_services: frozenset[ObjectRef]
    deleted_udp_endpoints: tuple[tuple[ServicePortName, EndpointInfo], ...]
    newly_active_udp_services: tuple[ServicePortName, ...]
    last_change_trigger_times: Mapping[ObjectRef, list[datetime]] = field(default_factory=dict)


class EndpointsMap(dict[ServicePortName, tuple[EndpointInfo, ...]]):
    """The current endpoints per service port (upstream EndpointsMap)."""

    def update_from(self, tracker: EndpointsChangeTracker) -> UpdateEndpointsMapResult:
        changes, times = tracker.checkout()
        stale: list[tuple[ServicePortName, EndpointInfo]] = []
        newly_active: list[ServicePortName] = []
        for ref, (previous, current) in sorted(changes.items(), key=lambda kv: (kv[0].namespace, kv[0].name)):
            for spn in previous:
                self.pop(spn, None)
            self.update(current)
            s, n = detect_stale_udp(previous, current)
            stale += s
            newly_active += n
        return UpdateEndpointsMapResult(frozenset(changes), tuple(stale), tuple(newly_active), times)

    def local_ready_endpoints(self) -> dict[ObjectRef, int]:
        out: dict[ObjectRef, int] = {}
        for spn, eps in self.items():
            n = sum(1 for e in eps if e.is_local and e.ready)
            out[spn.ref] = max(out.get(spn.ref, 0), n)
        return out


def detect_stale_udp(previous: Mapping[ServicePortName, tuple[EndpointInfo, ...]],
                     current: Mapping[ServicePortName, tuple[EndpointInfo, ...]]
                     ) -> tuple[list[tuple[ServicePortName, EndpointInfo]], list[ServicePortName]]:
    """UDP endpoints that stopped serving, and UDP ports that went from 0 to >0 serving endpoints."""
    stale: list[tuple[ServicePortName, EndpointInfo]] = []
    for spn, eps in sorted(previous.items()):
        if spn.protocol is not Protocol.UDP:
            continue
        now_serving = {str(e) for e in current.get(spn, ()) if e.serving}
        stale += [(spn, e) for e in eps if e.serving and str(e) not in now_serving]
    newly: list[ServicePortName] = []
    for spn, eps in sorted(current.items()):
        if spn.protocol is Protocol.UDP and any(e.serving for e in eps) \
                and not any(e.serving for e in previous.get(spn, ())):
            newly.append(spn)
    return stale, newly


# ---------------------------------------------------------------- categorize

@dataclass(frozen=True)
class Categorized:
    cluster: tuple[EndpointInfo, ...]
    local: tuple[EndpointInfo, ...]
    all_reachable: tuple[EndpointInfo, ...]
    has_any: bool


def categorize_endpoints(endpoints: Iterable[EndpointInfo], svc: ServicePortInfo) -> Categorized:
    """Which endpoints Cluster and Local traffic policy use (upstream CategorizeEndpoints, no topology).

    Ready endpoints are preferred; serving-and-terminating ones only when no ready one exists.
    """
    eps = tuple(endpoints)
    cluster: tuple[EndpointInfo, ...] = ()
    has_any = False
    if svc.uses_cluster_endpoints:
        cluster = tuple(e for e in eps if e.ready) or tuple(e for e in eps if e.serving and e.terminating)
        has_any = bool(cluster)
    if not svc.uses_local_endpoints:
        return Categorized(cluster, (), cluster, has_any)
    local_ready = False
    local_term = False
    for e in eps:
        if e.ready:
            has_any = True
            local_ready = local_ready or e.is_local
        elif e.serving and e.terminating:
            has_any = True
            local_term = local_term or e.is_local
    local: tuple[EndpointInfo, ...] = ()
    if local_ready:
        local = tuple(e for e in eps if e.is_local and e.ready)
    elif local_term:
        local = tuple(e for e in eps if e.is_local and e.serving and e.terminating)
    if not svc.uses_cluster_endpoints:
        return Categorized((), local, local, has_any)
    union = {str(e): e for e in cluster}
    union.update({str(e): e for e in local})
    return Categorized(cluster, local, tuple(sorted(union.values(), key=_ep_sort_key)), has_any)
