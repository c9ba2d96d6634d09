"""The cluster view: an immutable snapshot of what DNS answers from.

Built from `controlplane/model.py` Services, EndpointSlices and Pods. Indexes services by
(namespace, name), namespaces that exist, a reverse index from IP to the name a PTR points
to (ClusterIPs and ready headless endpoints), and pod IPs per namespace (for `pods verified`).

`build_view` makes a snapshot from scratch (tests, first sync); `ViewBuilder` keeps the
parsed objects and makes new snapshots incrementally, recomputing only the services whose
Service or EndpointSlices changed. No I/O here.
"""

from __future__ import annotations

import enum
import ipaddress
import sys
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

from controlplane.model import EndpointPort, EndpointSlice, IPAddress, Pod, Service, ServicePort, ServiceType

Key = tuple[str, str]  # (namespace, name)


class SvcKind(enum.Enum):
    CLUSTER_IP = "ClusterIP"  # ClusterIP, NodePort, LoadBalancer
    HEADLESS = "Headless"
    EXTERNAL = "ExternalName"


@dataclass(frozen=True, slots=True)
class PortInfo:
    name: str  # lowercased; "" for an unnamed port
    port: int
    protocol: str  # "tcp" | "udp" | "sctp"


@dataclass(frozen=True, slots=True)
class SvcInfo:
    """What DNS needs of a Service (small: 10k of these must fit in a few MB)."""

    namespace: str
    name: str
    kind: SvcKind
    cluster_ips: tuple[IPAddress, ...] = ()
    ports: tuple[PortInfo, ...] = ()
    external_name: str = ""
    publish_not_ready: bool = False


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """One ready endpoint address of a headless Service."""

    hostname: str  # lowercased; the endpoint's hostname, else the dashed IP
    address: IPAddress
    ports: tuple[PortInfo, ...] = ()  # the slice's ports (headless SRV uses these numbers)


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    service: SvcInfo
    endpoints: tuple[EndpointRecord, ...] = ()  # ready endpoints (headless only)

    @property
    def headless(self) -> bool:
        return self.service.kind is SvcKind.HEADLESS

    @property
    def external(self) -> bool:
        return self.service.kind is SvcKind.EXTERNAL


@dataclass(frozen=True)
class ClusterView:
    zone: str  # lowercase, no trailing dot: "cluster.local"
    services: Mapping[Key, ServiceRecord] = field(default_factory=dict)
    namespaces: frozenset[str] = frozenset()
    reverse: Mapping[IPAddress, str] = field(default_factory=dict)  # IP -> name relative to zone
    pod_ips: frozenset[tuple[str, IPAddress]] = frozenset()  # (namespace, ip) of live pods
    serial: int = 0  # SOA serial: unix time of the last change
    generation: int = 0  # bumped on every snapshot; caches key on it

    def service(self, namespace: str, name: str) -> ServiceRecord | None:
        return self.services.get((namespace, name))


_INTERNED: dict[tuple[tuple[str, int, str], ...], tuple[PortInfo, ...]] = {}


def _ports(raw: Iterable[ServicePort | EndpointPort]) -> tuple[PortInfo, ...]:
    """Port lists are shared between the many services that have the same ones."""
    key = tuple((p.name.lower(), p.port, p.protocol.value.lower()) for p in raw)
    hit = _INTERNED.get(key)
    if hit is None:
        hit = tuple(PortInfo(sys.intern(n), port, sys.intern(proto)) for n, port, proto in key)
        if len(_INTERNED) < 10000:
            _INTERNED[key] = hit
    return hit


def svc_info(svc: Service) -> SvcInfo:
    if svc.type is ServiceType.EXTERNAL_NAME:
        kind = SvcKind.EXTERNAL
    else:
        kind = SvcKind.HEADLESS if svc.headless else SvcKind.CLUSTER_IP
    return SvcInfo(sys.intern(svc.namespace), svc.name, kind, svc.cluster_ips, _ports(svc.ports),
                   svc.external_name, svc.publish_not_ready_addresses)


@dataclass(frozen=True, slots=True)
class SliceInfo:
    """What DNS needs of an EndpointSlice: its ports and (hostname, ip, ready) per address."""

    ports: tuple[PortInfo, ...]
    addresses: tuple[tuple[str, IPAddress, bool], ...]


def slice_info(sl: EndpointSlice) -> SliceInfo:
    if sl.address_type not in ("IPv4", "IPv6"):
        return SliceInfo((), ())
    return SliceInfo(_ports(sl.ports), tuple(((ep.hostname or dashed(ip)).lower(), ip, ep.ready)
                                             for ep in sl.endpoints for ip in ep.addresses))


def dashed(ip: IPAddress) -> str:
    """CoreDNS's endpoint id when there is no hostname: 10.0.0.2 -> 10-0-0-2, fd00::1 -> fd00--1."""
    return str(ip).replace(".", "-").replace(":", "-")


def _endpoint_records(svc: SvcInfo, slices: Mapping[str, SliceInfo]) -> tuple[EndpointRecord, ...]:
    seen: dict[tuple[str, IPAddress], EndpointRecord] = {}
    for name in sorted(slices):
        sl = slices[name]
        for host, ip, ready in sl.addresses:
            if ready or svc.publish_not_ready:
                seen.setdefault((host, ip), EndpointRecord(host, ip, sl.ports))
    return tuple(seen.values())


def service_record(svc: SvcInfo, slices: Mapping[str, SliceInfo]) -> ServiceRecord:
    if svc.kind is SvcKind.HEADLESS:
        return ServiceRecord(svc, _endpoint_records(svc, slices))
    return ServiceRecord(svc)


def reverse_entries(rec: ServiceRecord) -> list[tuple[IPAddress, str]]:
    """(ip, name relative to the zone) pairs this service contributes to PTR answers."""
    svc = rec.service
    base = f"{svc.name}.{svc.namespace}.svc"
    out = [(ip, base) for ip in svc.cluster_ips]
    out.extend((ep.address, f"{ep.hostname}.{base}") for ep in rec.endpoints)
    return out


def build_view(zone: str, services: Iterable[Service], slices: Iterable[EndpointSlice] = (),
               pods: Iterable[Pod] = (), *, serial: int = 0, generation: int = 1) -> ClusterView:
    """A snapshot from scratch."""
    b = ViewBuilder(zone)
    for s in services:
        b.set_service(s)
    for sl in slices:
        b.set_slice(sl)
    for p in pods:
        b.set_pod(p)
    return b.snapshot(serial=serial, generation=generation)


class ViewBuilder:
    """Mutable state behind the snapshots; `snapshot()` is cheap when little changed."""

    def __init__(self, zone: str) -> None:
        self.zone = zone.lower().strip(".")
        self._services: dict[Key, SvcInfo] = {}
        self._slices: dict[Key, dict[str, SliceInfo]] = {}  # service key -> slice name -> slice
        self._slice_owner: dict[Key, Key] = {}  # slice key -> service key
        self._pods: dict[Key, tuple[IPAddress, ...]] = {}  # live pods only
        self._records: dict[Key, ServiceRecord] = {}
        self._reverse: dict[IPAddress, str] = {}
        self._ns_count: dict[str, int] = {}
        self._dirty: set[Key] = set()
        self._pods_dirty = True
        self._pod_ips: frozenset[tuple[str, IPAddress]] = frozenset()
        self._pod_namespaces: frozenset[str] = frozenset()
        self._generation = 0

    @property
    def changed(self) -> bool:
        return bool(self._dirty) or self._pods_dirty

    # ---------------------------------------------------------------- updates
    def set_service(self, svc: Service) -> None:
        self.set_service_info(svc_info(svc))

    def set_service_info(self, info: SvcInfo) -> None:
        key = (info.namespace, info.name)
        self._services[key] = info
        self._dirty.add(key)

    def delete_service(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if self._services.pop(key, None) is not None:
            self._dirty.add(key)

    def set_slice(self, sl: EndpointSlice) -> None:
        self.set_slice_info(sl.namespace, sl.name, sl.service_name, slice_info(sl))

    def set_slice_info(self, namespace: str, name: str, service_name: str, info: SliceInfo) -> None:
        self.delete_slice(namespace, name)
        if not service_name:
            return
        owner = (namespace, service_name)
        self._slices.setdefault(owner, {})[name] = info
        self._slice_owner[(namespace, name)] = owner
        self._dirty.add(owner)

    def delete_slice(self, namespace: str, name: str) -> None:
        owner = self._slice_owner.pop((namespace, name), None)
        if owner is None:
            return
        group = self._slices.get(owner, {})
        group.pop(name, None)
        if not group:
            self._slices.pop(owner, None)
        self._dirty.add(owner)

    def set_pod(self, pod: Pod) -> None:
        self.set_pod_ips(pod.namespace, pod.name, () if pod.terminating or pod.terminal else pod.pod_ips)

    def set_pod_ips(self, namespace: str, name: str, ips: tuple[IPAddress, ...]) -> None:
        """A live pod's IPs (empty: the pod is gone, terminating or finished)."""
        key = (sys.intern(namespace), name)
        if not ips:
            self.delete_pod(*key)
        elif self._pods.get(key) != ips:
            self._pods[key] = ips
            self._pods_dirty = True

    def delete_pod(self, namespace: str, name: str) -> None:
        if self._pods.pop((namespace, name), None) is not None:
            self._pods_dirty = True

    # ---------------------------------------------------------------- snapshots
    def _remove(self, key: Key) -> None:
        old = self._records.pop(key, None)
        if old is None:
            return
        self._ns_count[key[0]] -= 1
        if not self._ns_count[key[0]]:
            del self._ns_count[key[0]]
        for ip, name in reverse_entries(old):
            if self._reverse.get(ip) == name:
                del self._reverse[ip]

    def _add(self, key: Key) -> None:
        svc = self._services.get(key)
        if svc is None:
            return
        rec = service_record(svc, self._slices.get(key, {}))
        self._records[key] = rec
        self._ns_count[key[0]] = self._ns_count.get(key[0], 0) + 1
        for ip, name in reverse_entries(rec):
            self._reverse.setdefault(ip, name)

    def snapshot(self, *, serial: int = 0, generation: int | None = None) -> ClusterView:
        dirty = sorted(self._dirty)
        for key in dirty:  # all removals first: an IP may move from one service to another
            self._remove(key)
        for key in dirty:
            self._add(key)
        self._dirty.clear()
        if self._pods_dirty:
            self._pod_ips = frozenset((ns, ip) for (ns, _), ips in self._pods.items() for ip in ips)
            self._pod_namespaces = frozenset(ns for ns, _ in self._pods)
            self._pods_dirty = False
        self._generation = generation if generation is not None else self._generation + 1
        namespaces = frozenset(self._ns_count) | self._pod_namespaces
        return ClusterView(
            zone=self.zone,
            services=MappingProxyType(dict(self._records)),
            namespaces=namespaces,
            reverse=MappingProxyType(dict(self._reverse)),
            pod_ips=self._pod_ips,
            serial=serial,
            generation=self._generation,
        )


def parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
