"""EndpointSlice mirroring: hand-written Endpoints of selector-less Services -> EndpointSlices.

Upstream's endpointslicemirroring controller as a pure function. kube-proxy and DNS read only
EndpointSlices, so a Service without a selector whose user wrote an Endpoints object gets slices
labelled `endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io`, owned
by the Endpoints: one slice per (port set, address type) of the repacked subsets, at most
`max_per_subset` addresses each (the rest skipped, as upstream). Endpoints labelled
`endpointslice.kubernetes.io/skip-mirror: "true"`, carrying the leader-election annotation, or
belonging to a Service with a selector (written by the endpoints controller) are not mirrored.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping, Sequence

from controlplane.model import MANAGED_BY_LABEL, SERVICE_NAME_LABEL, Service
from endpoints.core import JSON, TRIGGER_TIME_ANNOTATION, ip_sort_key
from endpoints.slices import SliceChanges, canonical_endpoint, port_key

MIRROR_CONTROLLER = "endpointslicemirroring-controller.k8s.io"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
DEFAULT_MAX_PER_SUBSET = 1000

GroupKey = tuple[tuple[tuple[str, int, str, str], ...], str]  # (port key, address type)


def should_mirror(endpoints: Mapping[str, Any] | None, service: Service | None) -> bool:
    if endpoints is None or service is None or service.selector is not None:
        return False
    meta = endpoints.get("metadata") or {}
    if (meta.get("labels") or {}).get(SKIP_MIRROR_LABEL) == "true":
        return False
    return LEADER_ANNOTATION not in (meta.get("annotations") or {})


def _address_type(ip: str) -> str | None:
    try:
        return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
    except ValueError:
        return None


def _endpoint(addr: Mapping[str, Any], ready: bool) -> JSON:
    ep: JSON = {"addresses": [addr["ip"]], "conditions": {"ready": ready}}
    if addr.get("hostname"):
        ep["hostname"] = addr["hostname"]
    if addr.get("nodeName"):
        ep["nodeName"] = addr["nodeName"]
    if addr.get("targetRef"):
        ep["targetRef"] = dict(addr["targetRef"])
    return ep


def _ports(subset: Mapping[str, Any]) -> list[JSON]:
    out = []
    for p in subset.get("ports") or []:
        port: JSON = {"name": str(p.get("name") or ""), "port": int(p.get("port") or 0),
                      "protocol": str(p.get("protocol") or "TCP")}
        if p.get("appProtocol"):
            port["appProtocol"] = p["appProtocol"]
        out.append(port)
    return out


def desired_groups(endpoints: Mapping[str, Any], max_per_subset: int) -> tuple[dict[GroupKey, list[JSON]],
                                                                                 dict[GroupKey, list[JSON]]]:
    """Endpoints per (ports, address type), first `max_per_subset` addresses of each subset."""
    groups: dict[GroupKey, dict[str, JSON]] = {}
    ports_of: dict[GroupKey, list[JSON]] = {}
    for subset in endpoints.get("subsets") or []:
        ports = _ports(subset)
        added = 0
        for field, ready in (("addresses", True), ("notReadyAddresses", False)):
            for addr in subset.get(field) or []:
                kind = _address_type(str(addr.get("ip", "")))
                if added >= max_per_subset or kind is None:
                    continue
                key = (port_key(ports), kind)
                ports_of.setdefault(key, ports)
                groups.setdefault(key, {}).setdefault(addr["ip"], _endpoint(addr, ready))
                added += 1
    ordered = {k: sorted(v.values(), key=lambda e: ip_sort_key(e["addresses"][0])) for k, v in groups.items()}
    return ordered, ports_of


def _labels(endpoints: Mapping[str, Any]) -> dict[str, str]:
    meta = endpoints.get("metadata") or {}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    labels[SERVICE_NAME_LABEL] = str(meta.get("name", ""))
    labels[MANAGED_BY_LABEL] = MIRROR_CONTROLLER
    return labels


def _annotations(endpoints: Mapping[str, Any]) -> dict[str, str]:
    meta = endpoints.get("metadata") or {}
    return {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()
            if k not in (TRIGGER_TIME_ANNOTATION, LAST_APPLIED_ANNOTATION)}


def _new_slice(endpoints: Mapping[str, Any], ports: list[JSON], address_type: str, items: list[JSON],
               existing: Mapping[str, Any] | None) -> JSON:
    meta = endpoints.get("metadata") or {}
    out_meta: JSON = {"namespace": meta.get("namespace", ""), "labels": _labels(endpoints),
                      "ownerReferences": [{"apiVersion": "v1", "kind": "Endpoints", "name": meta.get("name", ""),
                                           "uid": meta.get("uid", ""), "controller": True,
                                           "blockOwnerDeletion": True}]}
    annotations = _annotations(endpoints)
    if annotations:
        out_meta["annotations"] = annotations
    if existing is None:
        out_meta["generateName"] = f"{meta.get('name', '')}-"
    else:
        old = existing.get("metadata") or {}
        out_meta["name"] = old.get("name", "")
        if old.get("resourceVersion"):
            out_meta["resourceVersion"] = old["resourceVersion"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": out_meta,
            "addressType": address_type, "ports": ports, "endpoints": items}


def _same(slice_: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    meta, wmeta = slice_.get("metadata") or {}, want["metadata"]
    have_eps = sorted((canonical_endpoint(e) for e in slice_.get("endpoints") or []), key=repr)
    want_eps = sorted((canonical_endpoint(e) for e in want["endpoints"]), key=repr)
    return (have_eps == want_eps and (meta.get("labels") or {}) == wmeta["labels"]
            and (meta.get("annotations") or {}) == wmeta.get("annotations", {})
            and [r.get("uid") for r in meta.get("ownerReferences") or []] == [wmeta["ownerReferences"][0]["uid"]])


def reconcile_mirror(endpoints: Mapping[str, Any] | None, service: Service | None, existing: Sequence[JSON], *,
                     max_per_subset: int = DEFAULT_MAX_PER_SUBSET) -> SliceChanges:
    """The mirrored slices to create / update / delete for one Service name."""
    out = SliceChanges()
    if endpoints is None or not should_mirror(endpoints, service):
        out.delete = list(existing)
        return out
    groups, ports_of = desired_groups(endpoints, max_per_subset)
    by_key: dict[GroupKey, list[JSON]] = {}
    for slice_ in sorted(existing, key=lambda s: str((s.get("metadata") or {}).get("name", ""))):
        by_key.setdefault((port_key(slice_.get("ports") or []), str(slice_.get("addressType", ""))), []).append(slice_)
    for key, items in sorted(groups.items()):
        olds = by_key.pop(key, [])
        out.delete += olds[1:]
        want = _new_slice(endpoints, ports_of[key], key[1], items, olds[0] if olds else None)
        if not olds:
            out.create.append(want)
        elif _same(olds[0], want):
            out.unchanged.append(olds[0])
        else:
            out.update.append(want)
    for olds in by_key.values():
        out.delete += olds
    return out
