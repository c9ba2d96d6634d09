"""Rules for Endpoints and EndpointSlices (discovery.k8s.io)."""

from __future__ import annotations

import ipaddress
from typing import Any, Iterator, Mapping

from controlplane.errors import Cause
from controlplane.validation.common import (
    IP_MSG, _dict, _each, _h, _list, _protocol_causes, dns1123_label_errors, dns1123_subdomain_errors, duplicate,
    invalid, not_supported, parse_ip, port_number_errors, required, too_many,
)


def _special_ip_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if ip.is_unspecified:
        return "may not be unspecified (0.0.0.0)" if ip.version == 4 else "may not be unspecified (::)"
    if ip.is_loopback:
        return "may not be in the loopback range (127.0.0.0/8, ::1/128)"
    if ip.is_link_local:
        return "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
    if ip.is_multicast:
        return "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"
    return ""


def _endpoint_port_causes(ports: list[Any], path: str, require_name: bool,
                          port_required: bool = True) -> Iterator[Cause]:
    names: set[str] = set()
    for i, p in enumerate(ports):
        ppath = f"{path}[{i}]"
        p = _dict(p)
        name = p.get("name") or ""
        if require_name and not name:
            yield required(f"{ppath}.name")
        if name:
            yield from _each(str(name), f"{ppath}.name", dns1123_label_errors(str(name)))
            if _h(name) in names:
                yield duplicate(f"{ppath}.name", name)
            names.add(_h(name))
        if port_required or p.get("port") is not None:
            for m in port_number_errors(p.get("port")):
                yield invalid(f"{ppath}.port", p.get("port"), m)
        yield from _protocol_causes(f"{ppath}.protocol", p.get("protocol"))


def endpoints_rule(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> Iterator[Cause]:
    for s, subset in enumerate(_list(obj.get("subsets"))):
        subset = _dict(subset)
        for key in ("addresses", "notReadyAddresses"):
            for a, addr in enumerate(_list(subset.get(key))):
                path = f"subsets[{s}].{key}[{a}]"
                addr = _dict(addr)
                ip = parse_ip(addr.get("ip"))
                if ip is None:
                    yield invalid(f"{path}.ip", addr.get("ip"), IP_MSG)
                elif _special_ip_problem(ip):
                    yield invalid(f"{path}.ip", addr.get("ip"), _special_ip_problem(ip))
                if addr.get("hostname"):
                    yield from _each(str(addr["hostname"]), f"{path}.hostname",
                                     dns1123_label_errors(str(addr["hostname"])))
                if addr.get("nodeName"):
                    yield from _each(str(addr["nodeName"]), f"{path}.nodeName",
                                     dns1123_subdomain_errors(str(addr["nodeName"])))
        ports = _list(subset.get("ports"))
        yield from _endpoint_port_causes(ports, f"subsets[{s}].ports", len(ports) > 1)


ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
MAX_SLICE_ENDPOINTS = 1000
MAX_SLICE_ADDRESSES = 100
MAX_SLICE_PORTS = 20000


def _slice_address_causes(addr: Any, address_type: str, path: str) -> Iterator[Cause]:
    if address_type == "FQDN":
        yield from _each(str(addr), path, dns1123_subdomain_errors(str(addr)))
        return
    ip = parse_ip(addr)
    want = 4 if address_type == "IPv4" else 6
    if ip is None or ip.version != want:
        yield invalid(path, addr, f"must be a valid {address_type} address")


def endpoint_slice_rule(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> Iterator[Cause]:
    atype = obj.get("addressType")
    if not atype:
        yield required("addressType")
    elif atype not in ADDRESS_TYPES:
        yield not_supported("addressType", atype, ADDRESS_TYPES)
    if old is not None and old.get("addressType") and atype != old.get("addressType"):
        yield invalid("addressType", atype, "field is immutable")
    endpoints = _list(obj.get("endpoints"))
    if len(endpoints) > MAX_SLICE_ENDPOINTS:
        yield too_many("endpoints", len(endpoints), MAX_SLICE_ENDPOINTS)
    for i, ep in enumerate(endpoints[:MAX_SLICE_ENDPOINTS]):
        ep = _dict(ep)
        path = f"endpoints[{i}]"
        addrs = _list(ep.get("addresses"))
        if not addrs:
            yield required(f"{path}.addresses", "must contain at least 1 address")
        elif len(addrs) > MAX_SLICE_ADDRESSES:
            yield too_many(f"{path}.addresses", len(addrs), MAX_SLICE_ADDRESSES)
        if atype in ADDRESS_TYPES:
            for a, addr in enumerate(addrs[:MAX_SLICE_ADDRESSES]):
                yield from _slice_address_causes(addr, str(atype), f"{path}.addresses[{a}]")
        if ep.get("hostname"):
            yield from _each(str(ep["hostname"]), f"{path}.hostname", dns1123_label_errors(str(ep["hostname"])))
        if ep.get("nodeName"):
            yield from _each(str(ep["nodeName"]), f"{path}.nodeName", dns1123_subdomain_errors(str(ep["nodeName"])))
    ports = _list(obj.get("ports"))
    if len(ports) > MAX_SLICE_PORTS:
        yield too_many("ports", len(ports), MAX_SLICE_PORTS)
    yield from _endpoint_port_causes(ports, "ports", False, port_required=False)
