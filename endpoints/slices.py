"""EndpointSlice reconciliation: upstream's endpointslice reconciler as a pure function.

Per address type, endpoints are grouped by their resolved port set (pods resolving a named
targetPort differently land in different slices). Existing slices keep the endpoints that are
still wanted (updated in place when they changed), slices marked for update are filled first,
leftovers go into the unchanged slice that ends up closest to full, and only then new slices
are created; a delete plus a create of the same address type is turned into an update. With no
endpoints at all a placeholder slice (no ports, no endpoints) exists, as upstream.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Sequence

from controlplane.model import Pod, Service
from endpoints.core import (
    HEADLESS_LABEL, JSON, MANAGED_BY_CONTROLLER, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, TRIGGER_TIME_ANNOTATION,
    address_types, family_of, find_port, format_trigger_time, ip_sort_key, ip_text, is_ip_set, set_annotation,
    should_pod_be_in_endpoints, should_set_hostname, target_ref,
)

PortKey = tuple[tuple[str, int, str, str], ...]
EndpointKey = tuple[tuple[str, ...], str, str, str]
RESERVED_LABELS = (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)


@dataclass
class SliceChanges:
    create: list[JSON] = field(default_factory=list)
    update: list[JSON] = field(default_factory=list)
    delete: list[JSON] = field(default_factory=list)
    unchanged: list[JSON] = field(default_factory=list)


# ------------------------------------------------------------------ canonical forms

def _clean(value: Any) -> Any:
    """Drop empty/None members recursively so that omitted and empty compare equal."""
    if isinstance(value, dict):
        out = {k: _clean(v) for k, v in value.items() if v is not None and v != "" and v != [] and v != {}}
        return {k: v for k, v in out.items() if v != {} and v != []}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def canonical_endpoint(ep: JSON) -> JSON:
    """An endpoint for comparison: empties dropped, addresses sorted, hints ignored (they are
    reconciled separately, as upstream's EndpointsEqualBeyondHash ignores them)."""
    out = _clean({k: v for k, v in ep.items() if k != "hints"})  # builds new containers
    out["addresses"] = sorted(out.get("addresses") or [], key=ip_sort_key)
    return dict(out)


def endpoint_key(ep: JSON) -> EndpointKey:
    """hashEndpoint: addresses (sorted), hostname, targetRef namespace/name."""
    ref = ep.get("targetRef") or {}
    return (tuple(sorted(ep.get("addresses") or [], key=ip_sort_key)), str(ep.get("hostname") or ""),
            str(ref.get("namespace") or ""), str(ref.get("name") or ""))


def port_key(ports: Iterable[JSON]) -> PortKey:
    return tuple(sorted((str(p.get("name") or ""), int(p.get("port") or 0), str(p.get("protocol") or "TCP"),
                         str(p.get("appProtocol") or "")) for p in ports))


def owned_by(slice_: JSON, service: Service) -> bool:
    refs = (slice_.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("kind") == "Service" and r.get("name") == service.name and r.get("controller")
               and str(r.get("uid") or "") == service.uid for r in refs)


# ------------------------------------------------------------------ desired state

def endpoint_ports(service: Service, pod: Pod) -> list[JSON]:
    """getEndpointPorts: the service ports this pod resolves, in service order."""
    ports: list[JSON] = []
    for sp in service.ports:
        number = find_port(pod, sp)
        if number is None:
            continue
        port: JSON = {"name": sp.name, "port": number, "protocol": sp.protocol.value}
        if sp.app_protocol:
            port["appProtocol"] = sp.app_protocol
        ports.append(port)
    return ports


def pod_to_endpoint(pod: Pod, service: Service, address_type: str, zones: dict[str, str]) -> JSON:
    ready = service.publish_not_ready_addresses or pod.ready
    if pod.terminating and not service.publish_not_ready_addresses:
        ready = False
    ep: JSON = {
        "addresses": sorted((ip_text(ip) for ip in pod.pod_ips if family_of(ip) == address_type), key=ip_sort_key),
        "conditions": {"ready": ready, "serving": pod.ready, "terminating": pod.terminating},
        "targetRef": target_ref(pod),
    }
    if pod.node_name:
        ep["nodeName"] = pod.node_name
        if zones.get(pod.node_name):
            ep["zone"] = zones[pod.node_name]
    if should_set_hostname(pod, service):
        ep["hostname"] = pod.hostname
    return ep


def desired_by_ports(service: Service, pods: Sequence[Pod], address_type: str, zones: dict[str, str]
                     ) -> tuple[dict[PortKey, dict[EndpointKey, JSON]], dict[PortKey, list[JSON]]]:
    endpoints: dict[PortKey, dict[EndpointKey, JSON]] = {}
    metas: dict[PortKey, list[JSON]] = {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, True):
            continue
        ports = [] if (not service.ports and service.headless) else endpoint_ports(service, pod)
        key = port_key(ports)
        group = endpoints.setdefault(key, {})
        metas.setdefault(key, ports)
        ep = pod_to_endpoint(pod, service, address_type, zones)
        if ep["addresses"]:
            group[endpoint_key(ep)] = ep
    return endpoints, metas


# ------------------------------------------------------------------ slice objects

def slice_labels(existing: JSON | None, service: Service) -> dict[str, str]:
    """setEndpointSliceLabels: the Service's labels plus the reserved ones, which it may not override."""
    labels = {k: v for k, v in ((existing or {}).get("metadata", {}).get("labels") or {}).items()
              if k in RESERVED_LABELS}
    labels.update({k: v for k, v in service.labels if k not in RESERVED_LABELS})
    if is_ip_set(service):
        labels.pop(HEADLESS_LABEL, None)
    else:
        labels[HEADLESS_LABEL] = ""
    labels[SERVICE_NAME_LABEL] = service.name
    labels[MANAGED_BY_LABEL] = MANAGED_BY_CONTROLLER
    return labels


def new_slice(service: Service, address_type: str, ports: list[JSON]) -> JSON:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": f"{service.name}-",
            "namespace": service.namespace,
            "labels": slice_labels(None, service),
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": service.name, "uid": service.uid,
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "addressType": address_type,
        "ports": copy.deepcopy(ports),
        "endpoints": [],
    }


def _is_placeholder_of(slice_: JSON, placeholder: JSON) -> bool:
    """placeholderSliceCompare: same namespace, labels, address type, no ports, no endpoints."""
    meta = slice_.get("metadata") or {}
    return (meta.get("namespace") == placeholder["metadata"]["namespace"]
            and (meta.get("labels") or {}) == placeholder["metadata"]["labels"]
            and slice_.get("addressType") == placeholder["addressType"]
            and not slice_.get("ports") and not slice_.get("endpoints"))


def _copy_slice(slice_: JSON) -> JSON:
    """A copy safe to modify the way the reconciler does: top level, metadata, endpoints list."""
    out = dict(slice_)
    out["metadata"] = dict(slice_.get("metadata") or {})
    out["endpoints"] = list(slice_.get("endpoints") or [])
    return out


def _name(slice_: JSON) -> str:
    return str((slice_.get("metadata") or {}).get("name") or "")


def _in_order(desired: dict[EndpointKey, JSON]) -> deque[JSON]:
    """The endpoints still to place, in a deterministic order (addresses, then pod)."""
    keys = sorted(desired, key=lambda k: ([ip_sort_key(a) for a in k[0]], k[2], k[3], k[1]))
    return deque(desired[k] for k in keys)


# ------------------------------------------------------------------ the reconciler

def _by_port_mapping(service: Service, existing: list[JSON], desired: dict[EndpointKey, JSON],
                     ports: list[JSON], address_type: str, max_per_slice: int) -> SliceChanges:
    """reconcileByPortMapping: keep/update existing slices, fill, then create."""
    out = SliceChanges()
    to_update: dict[str, JSON] = {}
    unchanged: dict[str, JSON] = {}
    for old in existing:
        kept: list[JSON] = []
        changed = False
        for ep in old.get("endpoints") or []:
            want = desired.pop(endpoint_key(ep), None)
            if want is not None:
                kept.append(want)
                changed = changed or (want != ep and canonical_endpoint(want) != canonical_endpoint(ep))
        labels = slice_labels(old, service)
        labels_changed = labels != ((old.get("metadata") or {}).get("labels") or {})
        if changed or len(kept) != len(old.get("endpoints") or []):
            if not kept:
                out.delete.append(old)
                continue
        elif not labels_changed:
            unchanged[_name(old)] = old
            continue
        new = _copy_slice(old)
        new["endpoints"] = kept
        new["metadata"]["labels"] = labels
        to_update[_name(old)] = new
    todo = _in_order(desired)
    for slice_ in sorted(to_update.values(), key=lambda s: (-len(s["endpoints"]), _name(s))):
        while todo and len(slice_["endpoints"]) < max_per_slice:
            slice_["endpoints"].append(todo.popleft())
    while todo:
        target: JSON | None = None
        if len(todo) < max_per_slice and unchanged:
            target = _slice_to_fill(sorted(unchanged.values(), key=_name), len(todo), max_per_slice)
        if target is None:
            target = new_slice(service, address_type, ports)
        else:
            target = _copy_slice(target)
        while todo and len(target["endpoints"]) < max_per_slice:
            target["endpoints"].append(todo.popleft())
        if _name(target):
            unchanged.pop(_name(target), None)
            to_update[_name(target)] = target
        else:
            out.create.append(target)
    out.update = sorted(to_update.values(), key=_name)
    out.unchanged = sorted(unchanged.values(), key=_name)
    return out


def _slice_to_fill(slices: list[JSON], count: int, max_per_slice: int) -> JSON | None:
    """getSliceToFill: the unchanged slice that will be closest to full after adding `count`."""
    closest_diff, closest = max_per_slice, None
    for slice_ in slices:
        diff = max_per_slice - (count + len(slice_.get("endpoints") or []))
        if 0 <= diff < closest_diff:
            closest_diff, closest = diff, slice_
            if diff == 0:
                break
    return closest


def _by_address_type(service: Service, pods: Sequence[Pod], existing: list[JSON], address_type: str,
                     max_per_slice: int, zones: dict[str, str]) -> SliceChanges:
    out = SliceChanges()
    existing_by_ports: dict[PortKey, list[JSON]] = {}
    for slice_ in existing:
        if owned_by(slice_, service):
            existing_by_ports.setdefault(port_key(slice_.get("ports") or []), []).append(slice_)
        else:
            out.delete.append(slice_)
    desired, metas = desired_by_ports(service, pods, address_type, zones)
    for key in sorted(desired):
        part = _by_port_mapping(service, existing_by_ports.get(key, []), desired[key], metas[key],
                                address_type, max_per_slice)
        out.create += part.create
        out.update += part.update
        out.delete += part.delete
        out.unchanged += part.unchanged
    for key, slices in existing_by_ports.items():
        if key not in desired:
            out.delete += slices
    if len(existing) == len(out.delete) and not out.create:
        placeholder = new_slice(service, address_type, [])
        if len(out.delete) == 1 and _is_placeholder_of(out.delete[0], placeholder):
            out.unchanged.append(out.delete.pop())
        else:
            out.create.append(placeholder)
    _recycle(out, service)
    return out


def _recycle(out: SliceChanges, service: Service) -> None:
    """finalize: turn a delete plus a create of the same address type into one update."""
    i = 0
    while i < len(out.delete) and out.create:
        old = out.delete[i]
        new = out.create[-1]
        if old.get("addressType") == new["addressType"] and owned_by(old, service):
            out.create.pop()
            new = _copy_slice(new)
            meta = dict(old.get("metadata") or {})
            meta["labels"] = new["metadata"]["labels"]
            meta["ownerReferences"] = new["metadata"]["ownerReferences"]
            meta["generateName"] = new["metadata"]["generateName"]
            new["metadata"] = meta
            out.update.append(new)
            out.delete.pop(i)
        else:
            i += 1


PREFER_CLOSE = ("PreferClose", "PreferSameZone")


def _hints(ep: JSON, prefer_close: bool) -> JSON | None:
    """trafficDistribution PreferClose: ready endpoints with a zone are hinted for their own zone."""
    zone = ep.get("zone")
    if prefer_close and zone and (ep.get("conditions") or {}).get("ready"):
        return {"forZones": [{"name": zone}]}
    return None


def _with_hints(slice_: JSON, prefer_close: bool) -> None:
    endpoints = []
    for ep in slice_.get("endpoints") or []:
        want = _hints(ep, prefer_close)
        if ep.get("hints") != want:
            ep = {k: v for k, v in ep.items() if k != "hints"}
            if want is not None:
                ep["hints"] = want
        endpoints.append(ep)
    slice_["endpoints"] = endpoints


def reconcile_hints(service: Service, changes: SliceChanges) -> None:
    """trafficdist.ReconcileHints: set (PreferClose) or clear hints on written slices, and update
    unchanged slices whose hints are wrong."""
    prefer_close = service.traffic_distribution in PREFER_CLOSE
    keep: list[JSON] = []
    for slice_ in changes.unchanged:
        if any(ep.get("hints") != _hints(ep, prefer_close) for ep in slice_.get("endpoints") or []):
            changes.update.append(_copy_slice(slice_))
        else:
            keep.append(slice_)
    changes.unchanged = keep
    for slice_ in changes.create + changes.update:
        _with_hints(slice_, prefer_close)


def reconcile_slices(service: Service, pods: Sequence[Pod], existing: Sequence[JSON], *, max_per_slice: int,
                     trigger_time: datetime | None, zones: dict[str, str] | None = None) -> SliceChanges:
    """All address types of a Service; slices of families the Service no longer has are deleted."""
    out = SliceChanges()
    types = address_types(service)
    by_type: dict[str, list[JSON]] = {t: [] for t in types}
    for slice_ in sorted(existing, key=_name):
        kind = str(slice_.get("addressType") or "")
        if kind in by_type:
            by_type[kind].append(slice_)
        else:
            out.delete.append(slice_)
    for kind in types:
        part = _by_address_type(service, pods, by_type[kind], kind, max_per_slice, zones or {})
        reconcile_hints(service, part)
        out.create += part.create
        out.update += part.update
        out.delete += part.delete
        out.unchanged += part.unchanged
    stamp = format_trigger_time(trigger_time) if trigger_time is not None else None
    for slice_ in out.create + out.update:
        set_annotation(slice_["metadata"], TRIGGER_TIME_ANNOTATION, stamp)
    return out
