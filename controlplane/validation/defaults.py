"""Defaulting: `default_object(kind, obj)` returns a defaulted deep copy (upstream SetDefaults_*
for the kinds podnet serves); the input is never mutated."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from controlplane.validation.common import JSON, _dict, _list, copy_json, parse_ip


def _default_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_service(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    stype = spec.setdefault("type", "ClusterIP") or "ClusterIP"
    spec["type"] = stype
    spec.setdefault("sessionAffinity", "None")
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = spec.setdefault("sessionAffinityConfig", {})
        if isinstance(cfg, dict):
            cip = cfg.setdefault("clientIP", {})
            if isinstance(cip, dict):
                cip.setdefault("timeoutSeconds", 10800)
    for port in _list(spec.get("ports")):
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if port.get("targetPort") in (None, 0, ""):
                port["targetPort"] = port.get("port")
    if stype == "ExternalName":
        return
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    elif spec.get("clusterIPs") and not spec.get("clusterIP") and isinstance(spec["clusterIPs"], list):
        spec["clusterIP"] = spec["clusterIPs"][0]
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if stype in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if stype == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    if not spec.get("ipFamilies"):
        fams = []
        for ip in _list(spec.get("clusterIPs")):
            parsed = parse_ip(ip)
            if parsed is not None:
                fams.append("IPv4" if parsed.version == 4 else "IPv6")
        if fams:
            spec["ipFamilies"] = fams  # otherwise the allocator fills the cluster's family


def _default_container(c: JSON) -> None:
    c.setdefault("imagePullPolicy", _default_pull_policy(str(c.get("image") or "")))
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for p in _list(c.get("ports")):
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")


def _default_pod(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    for key in ("initContainers", "containers"):
        for c in _list(spec.get(key)):
            if isinstance(c, dict):
                _default_container(c)
    status = obj.setdefault("status", {})
    if isinstance(status, dict):
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", "BestEffort")


def _default_namespace(obj: JSON) -> None:
    meta = obj.setdefault("metadata", {})
    if isinstance(meta, dict) and meta.get("name"):
        labels = meta.setdefault("labels", {})
        if isinstance(labels, dict):
            labels["kubernetes.io/metadata.name"] = meta["name"]
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("finalizers", ["kubernetes"])
    status = obj.setdefault("status", {})
    if isinstance(status, dict):
        status.setdefault("phase", "Active")


def _default_node(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        if spec.get("podCIDR") and not spec.get("podCIDRs"):
            spec["podCIDRs"] = [spec["podCIDR"]]
        elif spec.get("podCIDRs") and not spec.get("podCIDR") and isinstance(spec["podCIDRs"], list):
            spec["podCIDR"] = spec["podCIDRs"][0]
    status = obj.setdefault("status", {})
    if isinstance(status, dict):
        if status.get("capacity") and "allocatable" not in status:
            status["allocatable"] = copy_json(status["capacity"])
        status.setdefault("daemonEndpoints", {"kubeletEndpoint": {"Port": 0}})
        status.setdefault("nodeInfo", {})


def _default_endpoints(obj: JSON) -> None:
    for subset in _list(obj.get("subsets")):
        for p in _list(_dict(subset).get("ports")):
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")


def _default_endpoint_slice(obj: JSON) -> None:
    for p in _list(obj.get("ports")):
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")


DEFAULTERS: dict[str, Callable[[JSON], None]] = {
    "Service": _default_service,
    "Pod": _default_pod,
    "Namespace": _default_namespace,
    "Node": _default_node,
    "Endpoints": _default_endpoints,
    "EndpointSlice": _default_endpoint_slice,
}


def default_object(kind: str, obj: Mapping[str, Any]) -> JSON:
    """A defaulted deep copy of `obj` (upstream SetDefaults_* for the kinds podnet serves)."""
    out = copy_json(dict(obj))
    fn = DEFAULTERS.get(kind)
    if fn is not None:
        fn(out)
    return out
