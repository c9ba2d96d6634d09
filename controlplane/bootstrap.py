"""Objects that exist from the start, made true again on every start: the `default`,
`kube-system`, `kube-public` and `kube-node-lease` namespaces, the `kubernetes` Service (first
IP of the service CIDR, 443/TCP "https" -> the API port) and its Endpoints and EndpointSlice
pointing at the advertise address and the listen port.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from controlplane import errors
from controlplane import objects as o
from controlplane.registry import Registry, key_of
from controlplane.resources import ENDPOINTS, ENDPOINTSLICES, NAMESPACES, SERVICES, Resource
from controlplane.validation import copy_json

log = logging.getLogger(__name__)
JSON = dict[str, Any]

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def first_ip(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False)[1])


def kubernetes_service(service_cidr: str, port: int) -> JSON:
    ip = first_ip(service_cidr)
    family = "IPv6" if ":" in ip else "IPv4"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ipFamilies": [family],
                     "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
                     "internalTrafficPolicy": "Cluster",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}


def kubernetes_endpoints(address: str, port: int) -> JSON:
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": address}],
                         "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}


def kubernetes_endpoint_slice(address: str, port: int) -> JSON:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv6" if ":" in address else "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}


def _ensure(registry: Registry, res: Resource, desired: JSON, fields: tuple[str, ...]) -> None:
    """Create `desired`, or make the given top-level fields (and labels) of the stored one match."""
    ns = desired["metadata"].get("namespace")
    name = desired["metadata"]["name"]
    try:
        entry = registry.store.latest(key_of(res, ns, name))
        if entry is None:
            registry.create(res, ns, copy_json(desired))
            return
        cur = copy_json(entry.obj)
        changed = False
        for f in fields:
            if f == "spec" and isinstance(cur.get("spec"), dict):
                for k, v in desired["spec"].items():
                    if k not in ("clusterIP", "clusterIPs") and cur["spec"].get(k) != v:
                        cur["spec"][k] = v
                        changed = True
            elif cur.get(f) != desired.get(f):
                cur[f] = desired[f]
                changed = True
        labels = o.meta(cur).setdefault("labels", {})
        for k, v in (desired["metadata"].get("labels") or {}).items():
            if labels.get(k) != v:
                labels[k] = v
                changed = True
        if changed:
            registry.update(res, ns, name, cur)
    except errors.APIError as err:
        log.error("bootstrap of %s %s/%s failed: %s", res.kind, ns, name, err.message)


def bootstrap(registry: Registry, service_cidr: str, advertise_address: str, port: int) -> None:
    registry.skip_validation = True  # our own objects; the Endpoints may point at loopback
    try:
        _bootstrap(registry, service_cidr, advertise_address, port)
    finally:
        registry.skip_validation = False


def _bootstrap(registry: Registry, service_cidr: str, advertise_address: str, port: int) -> None:
    for ns in SYSTEM_NAMESPACES:
        _ensure(registry, NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, ())
    _ensure(registry, SERVICES, kubernetes_service(service_cidr, port), ("spec",))
    _ensure(registry, ENDPOINTS, kubernetes_endpoints(advertise_address, port), ("subsets",))
    _ensure(registry, ENDPOINTSLICES, kubernetes_endpoint_slice(advertise_address, port),
            ("addressType", "endpoints", "ports"))
