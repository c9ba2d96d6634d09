"""Defaulting and validation of API objects, with kube-apiserver's field paths and messages.

`default_object(kind, obj)` returns a defaulted copy (the input is never mutated);
`validate_object(kind, obj, old)` raises `errors.Invalid.of(kind, name, causes)` listing every
problem found. Each kind has a short list of rule functions (`RULES`); each rule yields `Cause`s.

Server order for a write: default_object -> validate_object -> (Services: ServiceAllocator.plan)
-> store -> allocator.commit. Service updates are first prepared as upstream's strategy does
(`prepare_service_update`: keep the old clusterIP/nodePorts the new object leaves empty, drop the
fields a type change no longer needs) both here and in `plan`, so either order gives the same
answer.

Layout: `common` (name/label/IP/port checks, cause builders), `defaults` (default_object),
`meta` (metadata, Namespace, Node), `service`, `pod`, `endpoints` (Endpoints, EndpointSlice).
"""

from __future__ import annotations

from typing import Any, Mapping

from controlplane import errors
from controlplane.errors import Cause
from controlplane.validation.common import (
    CIDR_MSG, DNS1035_LABEL_MSG, DNS1123_LABEL_MSG, DNS1123_SUBDOMAIN_MSG, IP_MSG, JSON, LABEL_VALUE_MSG,
    PORT_RANGE_MSG, PROTOCOLS, QUALIFIED_NAME_MSG, Rule, _dict, copy_json, dns1035_label_errors,
    dns1123_label_errors, dns1123_subdomain_errors, duplicate, fmt_value, forbidden, iana_svc_name_errors, invalid,
    label_value_errors, not_supported, parse_ip, port_number_errors, qualified_name_errors, required, too_long,
    too_many,
)
from controlplane.validation.defaults import DEFAULTERS, default_object
from controlplane.validation.endpoints import (
    ADDRESS_TYPES, MAX_SLICE_ADDRESSES, MAX_SLICE_ENDPOINTS, MAX_SLICE_PORTS, endpoint_slice_rule, endpoints_rule,
)
from controlplane.validation.meta import metadata_causes, name_rule, namespace_rule, node_rule
from controlplane.validation.pod import DNS_POLICIES, POD_UPDATE_MSG, PULL_POLICIES, RESTART_POLICIES, pod_rule
from controlplane.validation.service import (
    MAX_CLIENT_IP_TIMEOUT, NEEDS_NODE_PORTS, SERVICE_TYPES, prepare_service_update, service_rule,
)

__all__ = [
    "ADDRESS_TYPES", "CIDR_MSG", "Cause", "DEFAULTERS", "DNS1035_LABEL_MSG", "DNS1123_LABEL_MSG",
    "DNS1123_SUBDOMAIN_MSG", "DNS_POLICIES", "IP_MSG", "JSON", "LABEL_VALUE_MSG", "MAX_CLIENT_IP_TIMEOUT",
    "MAX_SLICE_ADDRESSES", "MAX_SLICE_ENDPOINTS", "MAX_SLICE_PORTS", "NEEDS_NODE_PORTS", "PORT_RANGE_MSG",
    "POD_UPDATE_MSG", "PROTOCOLS", "PULL_POLICIES", "QUALIFIED_NAME_MSG", "RESTART_POLICIES", "RULES", "Rule",
    "SERVICE_TYPES", "copy_json", "default_object", "dns1035_label_errors", "dns1123_label_errors",
    "dns1123_subdomain_errors", "duplicate", "endpoint_slice_rule", "endpoints_rule", "errors", "fmt_value",
    "forbidden", "iana_svc_name_errors", "invalid", "label_value_errors", "metadata_causes", "name_rule",
    "namespace_rule", "node_rule", "not_supported", "parse_ip", "pod_rule", "port_number_errors",
    "prepare_service_update", "qualified_name_errors", "required", "service_rule", "too_long", "too_many",
    "validate_object",
]

RULES: dict[str, tuple[Rule, ...]] = {
    "Service": (service_rule,),
    "Pod": (pod_rule,),
    "Endpoints": (endpoints_rule,),
    "EndpointSlice": (endpoint_slice_rule,),
    "Namespace": (namespace_rule,),
    "Node": (node_rule,),
}

_GROUPS = {"EndpointSlice": "discovery.k8s.io"}


def validate_object(kind: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> None:
    """Raise errors.Invalid listing every cause found; return None when the object is valid."""
    causes: list[Cause] = list(metadata_causes(kind, obj, old))
    for rule in RULES.get(kind, ()):
        causes.extend(rule(obj, old))
    if causes:
        name = str(_dict(obj.get("metadata")).get("name") or "")
        raise errors.Invalid.of(kind, name, causes, group=_GROUPS.get(kind, ""))
