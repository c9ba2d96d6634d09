"""Rules for Services, and `prepare_service_update` (upstream's strategy for a Service update)."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from controlplane.errors import Cause
from controlplane.validation.common import (
    IP_MSG, JSON, QUALIFIED_NAME_MSG, _dict, _each, _h, _label_causes, _list, _protocol_causes, copy_json,
    dns1123_label_errors, dns1123_subdomain_errors, duplicate, forbidden, iana_svc_name_errors, invalid,
    not_supported, parse_ip, port_number_errors, qualified_name_errors, required,
)

NEEDS_NODE_PORTS = ("NodePort", "LoadBalancer")


def prepare_service_update(spec: JSON, ospec: JSON) -> None:
    """Upstream patchAllocatedValues + dropTypeDependentFields (registry/core/service/strategy.go), in place:
    keep the old clusterIP/nodePorts the new spec leaves empty, drop those a type change no longer needs."""
    if not ospec:
        return
    new_type, old_type = _service_type(spec), _service_type(ospec)
    if new_type != "ExternalName" and old_type != "ExternalName":
        if not spec.get("clusterIP") and not spec.get("clusterIPs") and ospec.get("clusterIP"):
            spec["clusterIP"] = ospec.get("clusterIP")
            spec["clusterIPs"] = copy_json(ospec.get("clusterIPs") or [ospec.get("clusterIP")])
    _keep_node_ports(spec, ospec, new_type, old_type)
    _drop_type_dependent_fields(spec, ospec, new_type, old_type)


def _service_type(spec: JSON) -> str:
    value = spec.get("type")
    return value if isinstance(value, str) and value else "ClusterIP"


def _scalar(value: object) -> object:
    """The value if it can be a dict key; None for garbage (lists, maps), which validation reports later."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else None


def _port_key(port: JSON) -> tuple[object, object]:
    return _scalar(port.get("port")), _scalar(port.get("protocol")) or "TCP"


def _keep_node_ports(spec: JSON, ospec: JSON, new_type: str, old_type: str) -> None:
    """Keep the old nodePorts (and healthCheckNodePort) the new spec leaves empty; drop the old
    nodePorts when the new type needs none."""
    old_by_key = {_port_key(p): _scalar(p.get("nodePort"))
                  for p in _list(ospec.get("ports")) if isinstance(p, dict)}
    if new_type in NEEDS_NODE_PORTS and old_type in NEEDS_NODE_PORTS:
        for p in _list(spec.get("ports")):
            if isinstance(p, dict) and not p.get("nodePort"):
                np = old_by_key.get(_port_key(p))
                if np:
                    p["nodePort"] = np
        if spec.get("type") == "LoadBalancer" and not spec.get("healthCheckNodePort") \
                and ospec.get("healthCheckNodePort") and spec.get("externalTrafficPolicy") == "Local":
            spec["healthCheckNodePort"] = ospec["healthCheckNodePort"]
    elif new_type not in NEEDS_NODE_PORTS and old_type in NEEDS_NODE_PORTS:
        old_set = {v for v in old_by_key.values() if v}
        for p in _list(spec.get("ports")):
            if isinstance(p, dict) and _scalar(p.get("nodePort")) in old_set:
                p.pop("nodePort", None)


def _drop_type_dependent_fields(spec: JSON, ospec: JSON, new_type: str, old_type: str) -> None:
    if new_type == "ExternalName" and old_type != "ExternalName":
        if spec.get("clusterIP") == ospec.get("clusterIP"):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            for key in ("ipFamilies", "ipFamilyPolicy"):
                if spec.get(key) == ospec.get(key):
                    spec.pop(key, None)
    if new_type != "LoadBalancer" and old_type == "LoadBalancer" and \
            spec.get("allocateLoadBalancerNodePorts") == ospec.get("allocateLoadBalancerNodePorts"):
        spec.pop("allocateLoadBalancerNodePorts", None)
    if new_type not in ("NodePort", "LoadBalancer") and spec.get("externalTrafficPolicy") \
            and old_type in NEEDS_NODE_PORTS:
        spec.pop("externalTrafficPolicy", None)
    if new_type != "LoadBalancer" and spec.get("healthCheckNodePort") == ospec.get("healthCheckNodePort"):
        spec.pop("healthCheckNodePort", None)


SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
MAX_CLIENT_IP_TIMEOUT = 86400


def _int_or_name_port_causes(path: str, value: Any) -> Iterator[Cause]:
    if isinstance(value, str) and not value.isdigit():
        yield from _each(value, path, iana_svc_name_errors(value))
    elif isinstance(value, str):
        yield from _each(value, path, port_number_errors(int(value)))
    else:
        for p in port_number_errors(value):
            yield invalid(path, value, p)


def _service_port_causes(spec: JSON) -> Iterator[Cause]:
    ports = _list(spec.get("ports"))
    stype = spec.get("type") or "ClusterIP"
    headless = spec.get("clusterIP") == "None"
    if not ports and stype != "ExternalName" and not headless:
        yield required("spec.ports")
    names: set[str] = set()
    keys: set[tuple[Any, Any]] = set()
    node_ports: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        path = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            yield invalid(path, port, "must be an object")
            continue
        yield from _port_name_causes(port, path, len(ports) > 1, names)
        for p in port_number_errors(port.get("port")):
            yield invalid(f"{path}.port", port.get("port"), p)
        yield from _protocol_causes(f"{path}.protocol", port.get("protocol"))
        key = (port.get("port"), port.get("protocol"))
        if _h(key) in keys:
            yield duplicate(path, f"{key[0]}/{key[1]}")
        keys.add(_h(key))
        if port.get("targetPort") not in (None, ""):
            yield from _int_or_name_port_causes(f"{path}.targetPort", port.get("targetPort"))
        yield from _node_port_causes(port, path, stype, node_ports)
        app = port.get("appProtocol")
        if app is not None and (not isinstance(app, str) or qualified_name_errors(app)):
            yield invalid(f"{path}.appProtocol", app, QUALIFIED_NAME_MSG)


def _port_name_causes(port: JSON, path: str, name_required: bool, names: set[Any]) -> Iterator[Cause]:
    name = port.get("name") or ""
    if name_required and not name:
        yield required(f"{path}.name")
    if name:
        yield from _each(name, f"{path}.name", dns1123_label_errors(str(name)))
        if _h(name) in names:
            yield duplicate(f"{path}.name", name)
        names.add(_h(name))


def _node_port_causes(port: JSON, path: str, stype: str, node_ports: set[Any]) -> Iterator[Cause]:
    np = port.get("nodePort")
    if not np:
        return
    if stype == "ClusterIP":
        yield forbidden(f"{path}.nodePort", "may not be used when `type` is 'ClusterIP'")
    elif stype == "ExternalName":
        yield forbidden(f"{path}.nodePort", "may not be used when `type` is 'ExternalName'")
    for p in port_number_errors(np):
        yield invalid(f"{path}.nodePort", np, p)
    if _h((np, port.get("protocol"))) in node_ports:
        yield duplicate(f"{path}.nodePort", np)
    node_ports.add(_h((np, port.get("protocol"))))


def _service_ip_causes(spec: JSON) -> Iterator[Cause]:
    stype = spec.get("type") or "ClusterIP"
    cip = spec.get("clusterIP") or ""
    cips = spec.get("clusterIPs")
    if stype == "ExternalName":
        yield from _external_name_causes(spec, cip, cips)
        return
    if cips is not None and not isinstance(cips, list):
        yield invalid("spec.clusterIPs", cips, "must be a list")
        return
    yield from _cluster_ips_causes(cip, cips or [], stype)
    for i, ip in enumerate(_list(spec.get("externalIPs"))):
        if parse_ip(ip) is None:
            yield invalid(f"spec.externalIPs[{i}]", ip, IP_MSG)
    families = _list(spec.get("ipFamilies"))
    for i, fam in enumerate(families):
        if fam not in ("IPv4", "IPv6"):
            yield not_supported(f"spec.ipFamilies[{i}]", fam, ("IPv4", "IPv6"))
    pol = spec.get("ipFamilyPolicy")
    if pol is not None and pol not in ("SingleStack", "PreferDualStack", "RequireDualStack"):
        yield not_supported("spec.ipFamilyPolicy", pol, ("PreferDualStack", "RequireDualStack", "SingleStack"))


def _external_name_causes(spec: JSON, cip: Any, cips: Any) -> Iterator[Cause]:
    if cip and cip != "None" or (isinstance(cips, list) and cips):
        yield forbidden("spec.clusterIPs", "may not be set for ExternalName services")
    for key in ("ipFamilies", "ipFamilyPolicy"):
        if spec.get(key):
            yield forbidden(f"spec.{key}", "may not be set for ExternalName services")
    ext = spec.get("externalName")
    if not ext:
        yield required("spec.externalName")
    else:
        yield from _each(str(ext), "spec.externalName", dns1123_subdomain_errors(str(ext).rstrip(".")))


def _cluster_ips_causes(cip: Any, cips: list[Any], stype: str) -> Iterator[Cause]:
    if cip and cips and cips[0] != cip:
        yield invalid("spec.clusterIPs", cips, "first value must match `clusterIP`")
    if len(cips) > 2:
        yield invalid("spec.clusterIPs", cips, "may only hold up to 2 values")
    for i, ip in enumerate(cips):
        if ip == "None":
            if i > 0 or len(cips) > 1:
                yield invalid(f"spec.clusterIPs[{i}]", ip, "must be a valid IP address")
            elif stype != "ClusterIP":
                yield invalid(f"spec.clusterIPs[{i}]", ip, f"may not be set to 'None' for {stype} services")
        elif parse_ip(ip) is None:
            yield invalid(f"spec.clusterIPs[{i}]", ip, IP_MSG)
    if len(cips) == 2:
        a, b = parse_ip(cips[0]), parse_ip(cips[1])
        if a is not None and b is not None and a.version == b.version:
            yield invalid("spec.clusterIPs[1]", cips[1], "expected an IP from a different family")


def _service_policy_causes(spec: JSON) -> Iterator[Cause]:
    stype = spec.get("type") or "ClusterIP"
    if stype not in SERVICE_TYPES:
        yield not_supported("spec.type", stype, SERVICE_TYPES)
    aff = spec.get("sessionAffinity") or "None"
    if aff not in ("None", "ClientIP"):
        yield not_supported("spec.sessionAffinity", aff, ("ClientIP", "None"))
    cfg = spec.get("sessionAffinityConfig")
    if aff == "ClientIP":
        timeout = _dict(_dict(cfg).get("clientIP")).get("timeoutSeconds")
        if timeout is not None and (not isinstance(timeout, int) or not 0 < timeout <= MAX_CLIENT_IP_TIMEOUT):
            yield invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                          f"must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT}")
    elif cfg:
        yield invalid("spec.sessionAffinityConfig", cfg, "must not be set when session affinity is None")
    etp = spec.get("externalTrafficPolicy")
    if etp:
        if stype not in ("NodePort", "LoadBalancer"):
            yield invalid("spec.externalTrafficPolicy", etp,
                          "may only be set when `type` is 'NodePort' or 'LoadBalancer'")
        elif etp not in ("Cluster", "Local"):
            yield not_supported("spec.externalTrafficPolicy", etp, ("Cluster", "Local"))
    itp = spec.get("internalTrafficPolicy")
    if itp and itp not in ("Cluster", "Local"):
        yield not_supported("spec.internalTrafficPolicy", itp, ("Cluster", "Local"))
    hc = spec.get("healthCheckNodePort")
    if hc and not (stype == "LoadBalancer" and etp == "Local"):
        yield invalid("spec.healthCheckNodePort", hc,
                      "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'")
    selector = spec.get("selector")
    if selector is not None:
        yield from _label_causes(selector, "spec.selector")


def service_rule(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> Iterator[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        yield required("spec")
        return
    if old is not None and isinstance(old.get("spec"), dict):
        spec = copy_json(spec)  # validate what will be stored (ServiceAllocator.plan does the same)
        prepare_service_update(spec, old["spec"])
    yield from _service_policy_causes(spec)
    yield from _service_ip_causes(spec)
    yield from _service_port_causes(spec)
    if old is not None:
        ospec = _dict(old.get("spec"))
        if (spec.get("type") != "ExternalName" and ospec.get("type") != "ExternalName"
                and ospec.get("clusterIP") and spec.get("clusterIP") != ospec.get("clusterIP")):
            yield invalid("spec.clusterIP", spec.get("clusterIP") or "", "field is immutable")
