"""Shared pure helpers of the endpoints controller: which pods count, port resolution, families.

These follow kube-controller-manager's endpointslice util package (ShouldPodBeInEndpoints,
podutil.FindPort, getAddressTypesForService, ShouldSetHostname). No I/O here.
"""

from __future__ import annotations

import functools
import ipaddress
from datetime import datetime, timezone
from typing import Any

from controlplane.model import (
    HEADLESS_LABEL, MANAGED_BY_CONTROLLER, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, TRIGGER_TIME_ANNOTATION,
    IPAddress, Pod, Service, ServicePort, ServiceType, selector_matches,
)

JSON = dict[str, Any]

IPV4 = "IPv4"
IPV6 = "IPv6"

#: Endpoints objects written by this controller carry this label (as upstream since 1.33, KEP-4974),
#: so that orphans can be told apart from user-written Endpoints.
ENDPOINTS_MANAGED_BY_LABEL = "endpoints.kubernetes.io/managed-by"
ENDPOINTS_MANAGED_BY_CONTROLLER = "endpoint-controller"
OVER_CAPACITY_ANNOTATION = "endpoints.kubernetes.io/over-capacity"
MAX_ENDPOINTS_CAPACITY = 1000  # addresses kept in one Endpoints object
DEFAULT_MAX_ENDPOINTS_PER_SLICE = 100
MAX_ENDPOINTS_PER_SLICE_LIMIT = 1000  # upstream's flag validation range is 1..1000

__all__ = [
    "EndpointsError", "HEADLESS_LABEL", "MANAGED_BY_CONTROLLER", "MANAGED_BY_LABEL", "SERVICE_NAME_LABEL",
    "TRIGGER_TIME_ANNOTATION", "ENDPOINTS_MANAGED_BY_LABEL", "ENDPOINTS_MANAGED_BY_CONTROLLER",
    "OVER_CAPACITY_ANNOTATION", "MAX_ENDPOINTS_CAPACITY", "DEFAULT_MAX_ENDPOINTS_PER_SLICE",
]


class EndpointsError(Exception):
    """The endpoints controller's one base error (bad flags, bad input)."""


def is_managed(service: Service) -> bool:
    """Services that get controller-managed Endpoints/EndpointSlices: a selector, not ExternalName."""
    return service.selector is not None and service.type is not ServiceType.EXTERNAL_NAME


def is_ip_set(service: Service) -> bool:
    """helper.IsServiceIPSet: a ClusterIP that is neither empty nor None."""
    return bool(service.cluster_ips) and not service.headless


def pod_selected(service: Service, pod: Pod) -> bool:
    if pod.namespace != service.namespace or service.selector is None:
        return False
    return selector_matches(service.selector, pod.label_map())


def should_pod_be_in_endpoints(pod: Pod, include_terminating: bool) -> bool:
    """Has an IP, is not terminal (Succeeded/Failed), and is not terminating unless told to include it."""
    if pod.terminal or not pod.pod_ips:
        return False
    return include_terminating or not pod.terminating


def find_port(pod: Pod, port: ServicePort) -> int | None:
    """podutil.FindPort: a number as is; a name by container port name and protocol, else None."""
    target = port.target_port
    if isinstance(target, int):
        return target
    for cp in pod.container_ports:
        if cp.name == target and cp.protocol is port.protocol:
            return cp.container_port
    return None


def should_set_hostname(pod: Pod, service: Service) -> bool:
    """endpointutil.ShouldSetHostname: the pod names a hostname and its subdomain is this Service."""
    return bool(pod.hostname) and pod.subdomain == service.name and pod.namespace == service.namespace


def family_of(ip: IPAddress) -> str:
    return IPV6 if isinstance(ip, ipaddress.IPv6Address) else IPV4


def address_types(service: Service) -> tuple[str, ...]:
    """getAddressTypesForService: spec.ipFamilies; else the ClusterIP's family; headless: both."""
    families = tuple(f for f in service.ip_families if f in (IPV4, IPV6))
    if families:
        return tuple(dict.fromkeys(families))
    if service.cluster_ips and not service.headless:
        return (family_of(service.cluster_ips[0]),)
    return (IPV4, IPV6)


def endpoints_family(service: Service, pod: Pod) -> str:
    """podToEndpointAddressForService: the one family an Endpoints object carries."""
    if service.ip_families:
        return IPV6 if service.ip_families[0] == IPV6 else IPV4
    if service.cluster_ips and not service.headless:
        return family_of(service.cluster_ips[0])
    return family_of(pod.pod_ips[0]) if pod.pod_ips else IPV4


@functools.lru_cache(maxsize=65536)
def ip_sort_key(value: str) -> tuple[int, int, str]:
    try:
        ip = ipaddress.ip_address(value)
        return (ip.version, int(ip), value)
    except ValueError:
        return (9, 0, value)


@functools.lru_cache(maxsize=65536)
def ip_text(ip: IPAddress) -> str:
    return str(ip)


def target_ref(pod: Pod) -> JSON:
    return {"kind": "Pod", "namespace": pod.namespace, "name": pod.name, "uid": pod.uid}


def format_trigger_time(when: datetime) -> str:
    """RFC 3339 in UTC with up to nanosecond digits and trailing zeros trimmed (Go's RFC3339Nano)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    when = when.astimezone(timezone.utc)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += "." + f"{when.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp from the API (second or sub-second precision) or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if "." in text:  # Python accepts at most 6 fractional digits
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{(digits + '000000')[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def set_annotation(meta: JSON, key: str, value: str | None) -> None:
    """Set (or with None remove) one annotation, dropping an empty annotations map."""
    annotations = dict(meta.get("annotations") or {})
    if value is None:
        annotations.pop(key, None)
    else:
        annotations[key] = value
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)


def validate_max_per_slice(value: int) -> int:
    if not 1 <= int(value) <= MAX_ENDPOINTS_PER_SLICE_LIMIT:
        raise EndpointsError(
            f"max endpoints per slice {value!r} is out of range (1..{MAX_ENDPOINTS_PER_SLICE_LIMIT})")
    return int(value)
