"""Rules for metadata (every kind), Namespace and Node."""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Iterator, Mapping

from controlplane.errors import Cause
from controlplane.validation.common import (
    CIDR_MSG, _annotation_causes, _dict, _each, _label_causes, _list, dns1035_label_errors, dns1123_label_errors,
    dns1123_subdomain_errors, forbidden, invalid, not_supported, qualified_name_errors, required, too_many,
)

_NAME_CHECKS: dict[str, Callable[[str], list[str]]] = {
    "Service": dns1035_label_errors,
    "Namespace": dns1123_label_errors,
}
_NAMESPACED = {"Service", "Pod", "Endpoints", "EndpointSlice"}


def metadata_causes(kind: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> Iterator[Cause]:
    meta = _dict(obj.get("metadata"))
    name = meta.get("name")
    if not name:
        yield required("metadata.name", "name or generateName is required")
    elif not isinstance(name, str):
        yield invalid("metadata.name", name, "must be a string")
    else:
        yield from _each(name, "metadata.name", _NAME_CHECKS.get(kind, dns1123_subdomain_errors)(name))
    ns = meta.get("namespace")
    if kind in _NAMESPACED:
        if not ns:
            yield required("metadata.namespace")
        elif isinstance(ns, str):
            yield from _each(ns, "metadata.namespace", dns1123_label_errors(ns))
    elif ns:
        yield forbidden("metadata.namespace", "not allowed on this type")
    yield from _label_causes(meta.get("labels"), "metadata.labels")
    yield from _annotation_causes(meta.get("annotations"), "metadata.annotations")
    for i, ref in enumerate(_list(meta.get("ownerReferences"))):
        ref = _dict(ref)
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                yield required(f"metadata.ownerReferences[{i}].{key}")
    for i, fin in enumerate(_list(meta.get("finalizers"))):
        if not isinstance(fin, str) or qualified_name_errors(fin):
            yield invalid(f"metadata.finalizers[{i}]", fin, "name is neither a standard finalizer name nor is "
                          "it fully qualified")
    if old is not None:
        old_meta = _dict(old.get("metadata"))
        if old_meta.get("name") and name and old_meta.get("name") != name:
            yield invalid("metadata.name", name, "field is immutable")
        if old_meta.get("uid") and meta.get("uid") and old_meta["uid"] != meta["uid"]:
            yield invalid("metadata.uid", meta["uid"], "field is immutable")


def name_rule(kind: str, obj: Mapping[str, Any]) -> Iterator[Cause]:
    """Metadata causes without update checks (kept for callers that only need the name check)."""
    return metadata_causes(kind, obj, None)


def namespace_rule(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> Iterator[Cause]:
    for i, fin in enumerate(_list(_dict(obj.get("spec")).get("finalizers"))):
        if not isinstance(fin, str) or qualified_name_errors(fin):
            yield invalid(f"spec.finalizers[{i}]", fin, "name is neither a standard finalizer name nor is it "
                          "fully qualified")
    phase = _dict(obj.get("status")).get("phase")
    if phase and phase not in ("Active", "Terminating"):
        yield not_supported("status.phase", phase, ("Active", "Terminating"))


def node_rule(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> Iterator[Cause]:
    spec = _dict(obj.get("spec"))
    cidrs = _list(spec.get("podCIDRs"))
    for i, cidr in enumerate(cidrs):
        try:
            ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            yield invalid(f"spec.podCIDRs[{i}]", cidr, CIDR_MSG)
    if len(cidrs) > 2:
        yield too_many("spec.podCIDRs", len(cidrs), 2)
    if old is not None:
        ocidrs = _list(_dict(old.get("spec")).get("podCIDRs"))
        if ocidrs and cidrs != ocidrs:
            yield forbidden("spec.podCIDRs", "node updates may not change podCIDR except from \"\" to valid")
    status = _dict(obj.get("status"))
    for i, addr in enumerate(_list(status.get("addresses"))):
        if not _dict(addr).get("type"):
            yield required(f"status.addresses[{i}].type")
    for i, tnt in enumerate(_list(spec.get("taints"))):
        tnt = _dict(tnt)
        if not tnt.get("key"):
            yield required(f"spec.taints[{i}].key")
        eff = tnt.get("effect")
        if eff not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            yield not_supported(f"spec.taints[{i}].effect", eff or "", ("NoExecute", "NoSchedule",
                                                                         "PreferNoSchedule"))
