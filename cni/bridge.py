"""Bridge plugin core (pure): its config and the result it builds from the IPAM result.

Options as the reference bridge: bridge (default cni0), isGateway, isDefaultGateway (implies
isGateway), forceAddress, ipMasq, mtu, hairpinMode, promiscMode (not with hairpinMode),
vlan, dns passthrough. podnet adds `daemonSocket` (where `podnet cni daemon` listens).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from cni.errors import CNIError, INVALID_CONFIG
from cni.spec import (IPAddress, IPConfig, Interface, NetConf, Result, Route, parse_dns, validate_ifname)

DEFAULT_BRIDGE = "cni0"
DEFAULT_SOCKET = "/run/podnet/cni.sock"
DEFAULT_ROUTES = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}


@dataclass(frozen=True)
class BridgeConf:
    net: NetConf
    bridge: str = DEFAULT_BRIDGE
    is_gateway: bool = False
    is_default_gateway: bool = False
    force_address: bool = False
    ip_masq: bool = False
    mtu: int = 0
    hairpin_mode: bool = False
    promisc_mode: bool = False
    vlan: int = 0
    dns: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ipam_type(self) -> str:
        return str(self.net.ipam.get("type") or "")

    @property
    def layer2(self) -> bool:
        """No IPAM: the reference's L2-only mode (bridge + veth, no addresses)."""
        return not self.ipam_type


_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def requested_mac(net: NetConf, cni_args_mac: str) -> str:
    """The container MAC asked for by runtimeConfig.mac (the "mac" capability) or CNI_ARGS MAC=."""
    value = net.runtime_config.get("mac") or cni_args_mac
    if not value:
        return ""
    if not isinstance(value, str) or not _MAC.match(value) or int(value[:2], 16) & 1:
        raise CNIError(INVALID_CONFIG, "invalid MAC address (must be a unicast xx:xx:xx:xx:xx:xx)", repr(value))
    return value.lower()


def _bool(raw: Mapping[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise CNIError(INVALID_CONFIG, f"{key} must be true or false", repr(value))
    return value


def _int(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key, 0) or 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise CNIError(INVALID_CONFIG, f"{key} must be an integer", repr(value))
    return value


def parse_bridge_conf(net: NetConf) -> BridgeConf:
    raw = net.raw
    name = raw.get("bridge") or DEFAULT_BRIDGE
    if not isinstance(name, str):
        raise CNIError(INVALID_CONFIG, "bridge must be a string", repr(name))
    try:
        validate_ifname(name)
    except CNIError as exc:
        raise CNIError(INVALID_CONFIG, f"invalid bridge name: {exc.msg}", name) from None
    conf = BridgeConf(
        net=net, bridge=name, is_gateway=_bool(raw, "isGateway") or _bool(raw, "isDefaultGateway"),
        is_default_gateway=_bool(raw, "isDefaultGateway"), force_address=_bool(raw, "forceAddress"),
        ip_masq=_bool(raw, "ipMasq"), mtu=_int(raw, "mtu"), hairpin_mode=_bool(raw, "hairpinMode"),
        promisc_mode=_bool(raw, "promiscMode"), vlan=_int(raw, "vlan"), dns=parse_dns(raw.get("dns")))
    if conf.hairpin_mode and conf.promisc_mode:
        raise CNIError(INVALID_CONFIG, "cannot set hairpin mode and promiscuous mode at the same time")
    if not 0 <= conf.vlan <= 4094:
        raise CNIError(INVALID_CONFIG, f"invalid VLAN ID {conf.vlan} (must be between 0 and 4094)")
    if conf.mtu and not 68 <= conf.mtu <= 65535:
        raise CNIError(INVALID_CONFIG, f"invalid mtu {conf.mtu}")
    return conf


@dataclass(frozen=True)
class Gateway:
    """The bridge address for one family: gateway IP with the subnet's prefix."""

    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface


def plan_addresses(conf: BridgeConf, ipam: Result) -> tuple[Result, tuple[Gateway, ...]]:
    """IPAM result -> container IP configs (interface 2), default routes, bridge gateways.

    As the reference's calcGateways: a missing gateway defaults to the subnet's first address
    when isGateway; isDefaultGateway adds 0.0.0.0/0 (::/0) unless IPAM already routes it.
    """
    ips: list[IPConfig] = []
    routes: list[Route] = list(ipam.routes)
    gateways: dict[str, Gateway] = {}
    for ipc in ipam.ips:
        gw: IPAddress | None = ipc.gateway
        if gw is None and conf.is_gateway:
            gw = ipc.address.network.network_address + 1
        ips.append(IPConfig(ipc.address, gw, 2))
        if gw is None or not conf.is_gateway:
            continue
        fam = ipc.address.version
        if conf.is_default_gateway and not any(r.dst == DEFAULT_ROUTES[fam] for r in routes):
            routes.append(Route(DEFAULT_ROUTES[fam], gw))
        gw_if = ipaddress.ip_interface(f"{gw}/{ipc.address.network.prefixlen}")
        gateways.setdefault(str(gw_if), Gateway(gw_if))
    dns = dict(ipam.dns) if ipam.dns else dict(conf.dns)
    return Result(ips=tuple(ips), routes=tuple(routes), dns=dns), tuple(gateways.values())


def build_result(planned: Result, bridge: Interface, host: Interface, container: Interface) -> Result:
    return planned.with_(interfaces=(bridge, host, container))


def merge_prev(prev: Result | None, planned: Result) -> Result:
    """A chained bridge (prevResult given) outputs prevResult with its own changes applied."""
    if prev is None:
        return planned
    base = len(prev.interfaces)
    ips = tuple(IPConfig(i.address, i.gateway, (i.interface or 0) + base) for i in planned.ips)
    return Result(prev.interfaces + planned.interfaces, prev.ips + ips, prev.routes + planned.routes,
                  planned.dns or prev.dns)
