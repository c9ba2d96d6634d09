"""Typed, frozen views of the API objects that the components read.

The wire format stays plain JSON dicts (what the server stores and the client moves);
components that reason about Services, EndpointSlices, Pods and Nodes parse them here,
once, into these values. Parsing is lenient: a missing optional field gets its
Kubernetes default, so an object written by any client can be read.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Any, Mapping, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
JSON = dict[str, Any]


class Protocol(str, enum.Enum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class ServiceType(str, enum.Enum):
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"
    EXTERNAL_NAME = "ExternalName"


class TrafficPolicy(str, enum.Enum):
    CLUSTER = "Cluster"
    LOCAL = "Local"


SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY_CONTROLLER = "endpointslice-controller.k8s.io"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
HEADLESS_LABEL = "service.kubernetes.io/headless"


def _ip(value: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class ObjectRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def meta_ref(obj: Mapping[str, Any]) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return ObjectRef(str(meta.get("namespace", "")), str(meta.get("name", "")))


# ---------------------------------------------------------------- Service

@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    protocol: Protocol = Protocol.TCP
    target_port: int | str = 0  # number, or a container port name
    node_port: int = 0
    app_protocol: str = ""


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    type: ServiceType
    cluster_ips: tuple[IPAddress, ...]  # empty for headless and ExternalName
    headless: bool
    ports: tuple[ServicePort, ...]
    selector: tuple[tuple[str, str], ...] | None  # None: no selector (user-managed endpoints)
    external_name: str = ""
    external_ips: tuple[IPAddress, ...] = ()
    session_affinity_timeout: int = 0  # seconds; 0 = no ClientIP affinity
    external_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    internal_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    publish_not_ready_addresses: bool = False
    health_check_node_port: int = 0
    labels: tuple[tuple[str, str], ...] = ()
    uid: str = ""
    load_balancer_ips: tuple[IPAddress, ...] = ()  # status.loadBalancer.ingress[].ip
    load_balancer_source_ranges: tuple[str, ...] = ()  # spec.loadBalancerSourceRanges (raw CIDR strings)
    ip_families: tuple[str, ...] = ()  # spec.ipFamilies ("IPv4"/"IPv6", primary first); () when unset
    traffic_distribution: str = ""  # spec.trafficDistribution ("PreferClose", ...); "" when unset

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.namespace, self.name)

    @property
    def cluster_ip(self) -> IPAddress | None:
        return self.cluster_ips[0] if self.cluster_ips else None


def _service_port(p: Mapping[str, Any]) -> ServicePort:
    port = int(p.get("port", 0))
    target = p.get("targetPort", port)
    if isinstance(target, str) and target.isdigit():
        target = int(target)
    return ServicePort(
        name=str(p.get("name", "") or ""),
        port=port,
        protocol=Protocol(p.get("protocol") or "TCP"),
        target_port=target if target not in (None, "", 0) else port,
        node_port=int(p.get("nodePort") or 0),
        app_protocol=str(p.get("appProtocol", "") or ""),
    )


def parse_service(obj: Mapping[str, Any]) -> Service:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    svc_type = ServiceType(spec.get("type") or "ClusterIP")
    raw_ips = list(spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
    headless = bool(raw_ips) and raw_ips[0] == "None"
    ips = tuple(ip for ip in (_ip(s) for s in raw_ips if s != "None") if ip is not None)
    selector = spec.get("selector")
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(cfg.get("timeoutSeconds") or 10800)
    return Service(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        type=svc_type,
        cluster_ips=() if svc_type is ServiceType.EXTERNAL_NAME else ips,
        headless=headless,
        ports=tuple(_service_port(p) for p in spec.get("ports") or []),
        selector=tuple(sorted(selector.items())) if selector else None,
        external_name=str(spec.get("externalName", "") or ""),
        external_ips=tuple(ip for ip in (_ip(s) for s in spec.get("externalIPs") or []) if ip is not None),
        session_affinity_timeout=affinity,
        external_traffic_policy=TrafficPolicy(spec.get("externalTrafficPolicy") or "Cluster"),
        internal_traffic_policy=TrafficPolicy(spec.get("internalTrafficPolicy") or "Cluster"),
        publish_not_ready_addresses=bool(spec.get("publishNotReadyAddresses", False)),
        health_check_node_port=int(spec.get("healthCheckNodePort") or 0),
        labels=tuple(sorted((meta.get("labels") or {}).items())),
        uid=str(meta.get("uid", "")),
        load_balancer_ips=tuple(
            ip for ip in (_ip(str(i.get("ip", ""))) for i in
                          ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])
            if ip is not None),
        load_balancer_source_ranges=tuple(str(r).strip() for r in spec.get("loadBalancerSourceRanges") or []),
        ip_families=tuple(str(f) for f in spec.get("ipFamilies") or ()),
        traffic_distribution=str(spec.get("trafficDistribution") or ""),
    )


# ---------------------------------------------------------------- EndpointSlice

@dataclass(frozen=True)
class EndpointPort:
    name: str
    port: int
    protocol: Protocol = Protocol.TCP
    app_protocol: str = ""


@dataclass(frozen=True)
class Endpoint:
    addresses: tuple[IPAddress, ...]
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    hostname: str = ""
    node_name: str = ""
    zone: str = ""
    target_ref: ObjectRef | None = None


@dataclass(frozen=True)
class EndpointSlice:
    namespace: str
    name: str
    service_name: str  # from the kubernetes.io/service-name label; "" if none
    address_type: str  # IPv4, IPv6, FQDN
    ports: tuple[EndpointPort, ...]
    endpoints: tuple[Endpoint, ...]
    managed_by: str = ""
    trigger_time: str = ""  # endpoints.kubernetes.io/last-change-trigger-time, RFC 3339
    resource_version: str = ""


def _endpoint(e: Mapping[str, Any]) -> Endpoint:
    cond = e.get("conditions") or {}
    ready = cond.get("ready")
    ready = True if ready is None else bool(ready)  # nil ready means ready (API docs)
    serving = cond.get("serving")
    terminating = bool(cond.get("terminating") or False)
    ref = e.get("targetRef")
    return Endpoint(
        addresses=tuple(ip for ip in (_ip(a) for a in e.get("addresses") or []) if ip is not None),
        ready=ready,
        serving=ready if serving is None else bool(serving),
        terminating=terminating,
        hostname=str(e.get("hostname", "") or ""),
        node_name=str(e.get("nodeName", "") or ""),
        zone=str(e.get("zone", "") or ""),
        target_ref=ObjectRef(str(ref.get("namespace", "")), str(ref.get("name", ""))) if ref else None,
    )


def parse_endpoint_slice(obj: Mapping[str, Any]) -> EndpointSlice:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return EndpointSlice(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        service_name=str(labels.get(SERVICE_NAME_LABEL, "")),
        address_type=str(obj.get("addressType", "IPv4")),
        ports=tuple(
            EndpointPort(str(p.get("name", "") or ""), int(p.get("port") or 0),
                         Protocol(p.get("protocol") or "TCP"), str(p.get("appProtocol", "") or ""))
            for p in obj.get("ports") or []
        ),
        endpoints=tuple(_endpoint(e) for e in obj.get("endpoints") or []),
        managed_by=str(labels.get(MANAGED_BY_LABEL, "")),
        trigger_time=str(annotations.get(TRIGGER_TIME_ANNOTATION, "")),
        resource_version=str(meta.get("resourceVersion", "")),
    )


# ---------------------------------------------------------------- Pod

@dataclass(frozen=True)
class ContainerPort:
    name: str
    container_port: int
    protocol: Protocol = Protocol.TCP


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    labels: tuple[tuple[str, str], ...]
    node_name: str
    phase: str
    pod_ips: tuple[IPAddress, ...]
    ready: bool
    terminating: bool  # metadata.deletionTimestamp set
    hostname: str
    subdomain: str
    container_ports: tuple[ContainerPort, ...]
    resource_version: str = ""

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.namespace, self.name)

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def parse_pod(obj: Mapping[str, Any]) -> Pod:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    raw_ips = [p.get("ip", "") for p in status.get("podIPs") or []] or (
        [status["podIP"]] if status.get("podIP") else [])
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    # containers, then sidecars (init containers with restartPolicy Always), as podutil.FindPort looks
    sidecars = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    ports = tuple(
        ContainerPort(str(p.get("name", "") or ""), int(p.get("containerPort") or 0), Protocol(p.get("protocol") or "TCP"))
        for c in [*(spec.get("containers") or []), *sidecars] for p in c.get("ports") or []
    )
    return Pod(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        labels=tuple(sorted((meta.get("labels") or {}).items())),
        node_name=str(spec.get("nodeName", "") or ""),
        phase=str(status.get("phase", "Pending") or "Pending"),
        pod_ips=tuple(ip for ip in (_ip(s) for s in raw_ips) if ip is not None),
        ready=ready,
        terminating=bool(meta.get("deletionTimestamp")),
        hostname=str(spec.get("hostname", "") or ""),
        subdomain=str(spec.get("subdomain", "") or ""),
        container_ports=ports,
        resource_version=str(meta.get("resourceVersion", "")),
    )


# ---------------------------------------------------------------- Node

@dataclass(frozen=True)
class Node:
    name: str
    internal_ips: tuple[IPAddress, ...]
    pod_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    ready: bool
    unschedulable: bool
    labels: tuple[tuple[str, str], ...]


def parse_node(obj: Mapping[str, Any]) -> Node:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    cidrs = list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
    addrs = [a.get("address", "") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"]
    return Node(
        name=str(meta.get("name", "")),
        internal_ips=tuple(ip for ip in (_ip(a) for a in addrs) if ip is not None),
        pod_cidrs=tuple(ipaddress.ip_network(c, strict=False) for c in cidrs),
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []),
        unschedulable=bool(spec.get("unschedulable", False)),
        labels=tuple(sorted((meta.get("labels") or {}).items())),
    )


def selector_matches(selector: tuple[tuple[str, str], ...] | Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Equality-based selector (Service.spec.selector) against a label map."""
    items = selector.items() if isinstance(selector, Mapping) else selector
    return all(labels.get(k) == v for k, v in items)
