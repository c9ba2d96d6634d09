"""kube-proxy's iptables chain names (upstream pkg/proxy/iptables/proxier.go).

Per service port: prefix + first 16 chars of base32(sha256(servicePortName + protocol)); per
endpoint the endpoint string ("ip:port") is appended to the hashed text. Names stay <= 28 chars.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"
KUBE_FIREWALL = "KUBE-FIREWALL"  # kubelet's anti-martian chain; kube-proxy creates a copy

SVC_PREFIX = "KUBE-SVC-"
SVL_PREFIX = "KUBE-SVL-"
FW_PREFIX = "KUBE-FW-"
EXT_PREFIX = "KUBE-EXT-"
SEP_PREFIX = "KUBE-SEP-"
SERVICE_CHAIN_PREFIXES = (SVC_PREFIX, SVL_PREFIX, SEP_PREFIX, FW_PREFIX, EXT_PREFIX)

# (table, chain, hooked from, comment, extra match args) -- upstream iptablesJumpChains, in order.
JUMP_CHAINS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("filter", KUBE_EXTERNAL_SERVICES, "INPUT", "kubernetes externally-visible service portals",
     ("-m", "conntrack", "--ctstate", "NEW")),
    ("filter", KUBE_EXTERNAL_SERVICES, "FORWARD", "kubernetes externally-visible service portals",
     ("-m", "conntrack", "--ctstate", "NEW")),
    ("filter", KUBE_NODEPORTS, "INPUT", "kubernetes health check service ports", ()),
    ("filter", KUBE_SERVICES, "FORWARD", "kubernetes service portals", ("-m", "conntrack", "--ctstate", "NEW")),
    ("filter", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", ("-m", "conntrack", "--ctstate", "NEW")),
    ("filter", KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules", ()),
    ("filter", KUBE_PROXY_FIREWALL, "INPUT", "kubernetes load balancer firewall", ("-m", "conntrack", "--ctstate", "NEW")),
    ("filter", KUBE_PROXY_FIREWALL, "OUTPUT", "kubernetes load balancer firewall", ("-m", "conntrack", "--ctstate", "NEW")),
    ("filter", KUBE_PROXY_FIREWALL, "FORWARD", "kubernetes load balancer firewall", ("-m", "conntrack", "--ctstate", "NEW")),
    ("nat", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", ()),
    ("nat", KUBE_SERVICES, "PREROUTING", "kubernetes service portals", ()),
    ("nat", KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules", ()),
)
# Duplicates of kubelet's chains (created on start, not removed by --cleanup upstream; we remove
# them too when we created them).
KUBELET_JUMP_CHAINS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("filter", KUBE_FIREWALL, "INPUT", "", ()),
    ("filter", KUBE_FIREWALL, "OUTPUT", "", ()),
)
CANARY_TABLES = ("mangle", "nat", "filter")


@lru_cache(maxsize=200_000)
def _hash16(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def port_proto_hash(service_port_name: str, protocol: str) -> str:
    return _hash16(service_port_name + protocol)


def svc_chain(service_port_name: str, protocol: str) -> str:
    return SVC_PREFIX + _hash16(service_port_name + protocol)


def svl_chain(service_port_name: str, protocol: str) -> str:
    return SVL_PREFIX + _hash16(service_port_name + protocol)


def fw_chain(service_port_name: str, protocol: str) -> str:
    return FW_PREFIX + _hash16(service_port_name + protocol)


def ext_chain(service_port_name: str, protocol: str) -> str:
    return EXT_PREFIX + _hash16(service_port_name + protocol)


def sep_chain(service_port_name: str, protocol: str, endpoint: str) -> str:
    return SEP_PREFIX + _hash16(service_port_name + protocol + endpoint)


def is_service_chain(name: str) -> bool:
    return name.startswith(SERVICE_CHAIN_PREFIXES)
