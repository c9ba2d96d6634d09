"""Parsing query names: which part of the cluster namespace a name addresses.

Pure functions over lowercased labels (no dnslib, no I/O). The zone is split off first;
what remains is classified the way CoreDNS's kubernetes plugin parses requests:

    <zone>                                  apex
    dns-version.<zone>                      schema version TXT
    svc.<zone> / pod.<zone>                 kind (empty non-terminal)
    <ns>.svc.<zone> / <ns>.pod.<zone>       namespace
    <svc>.<ns>.svc.<zone>                   service
    <host>.<svc>.<ns>.svc.<zone>            headless endpoint
    _<port>._<proto>.<svc>.<ns>.svc.<zone>  SRV of a named port
    _<proto>.<svc>.<ns>.svc.<zone>          empty non-terminal above the SRV names
    <a-b-c-d>.<ns>.pod.<zone>               pod
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from controlplane.model import IPAddress


class Kind(enum.Enum):
    APEX = "apex"
    VERSION = "dns-version"
    INFRA = "infra"  # dns.<zone>, ns.dns.<zone>: names our SOA/NS refer to
    KIND = "kind"  # svc.<zone>, pod.<zone>
    NAMESPACE = "namespace"
    SERVICE = "service"
    ENDPOINT = "endpoint"
    PROTO = "proto"  # _tcp.<svc>...: empty non-terminal
    PORT = "port"  # _http._tcp.<svc>...
    POD = "pod"
    INVALID = "invalid"  # in the zone, but no such shape -> NXDOMAIN


@dataclass(frozen=True)
class ParsedName:
    kind: Kind
    space: str = ""  # "svc" | "pod"
    namespace: str = ""
    service: str = ""
    endpoint: str = ""  # endpoint hostname, or the dashed pod IP
    port: str = ""  # port name without "_"
    protocol: str = ""  # "tcp" | "udp" | "sctp", without "_"


def labels_of(name: str) -> tuple[str, ...]:
    """'Web.Default.svc.cluster.local.' -> ('web', 'default', 'svc', 'cluster', 'local')."""
    return tuple(x for x in name.lower().rstrip(".").split(".") if x) if name not in ("", ".") else ()


def in_zone(labels: tuple[str, ...], zone: tuple[str, ...]) -> bool:
    return len(labels) >= len(zone) and labels[len(labels) - len(zone):] == zone


def parse_name(labels: tuple[str, ...], zone: tuple[str, ...]) -> ParsedName:
    """Classify a name already known to be inside `zone`."""
    rel = labels[: len(labels) - len(zone)]
    n = len(rel)
    if n == 0:
        return ParsedName(Kind.APEX)
    if n == 1 and rel[0] == "dns-version":
        return ParsedName(Kind.VERSION)
    if rel[-1] == "dns" and (n == 1 or (n == 2 and rel[0] == "ns")):
        return ParsedName(Kind.INFRA)
    space = rel[-1]
    if space not in ("svc", "pod"):
        return ParsedName(Kind.INVALID)
    if n == 1:
        return ParsedName(Kind.KIND, space)
    ns = rel[-2]
    if n == 2:
        return ParsedName(Kind.NAMESPACE, space, ns)
    if space == "pod":
        return ParsedName(Kind.POD, space, ns, endpoint=rel[0]) if n == 3 else ParsedName(Kind.INVALID)
    svc = rel[-3]
    if n == 3:
        return ParsedName(Kind.SERVICE, space, ns, svc)
    if n == 4:
        if rel[0].startswith("_"):
            return ParsedName(Kind.PROTO, space, ns, svc, protocol=rel[0][1:])
        return ParsedName(Kind.ENDPOINT, space, ns, svc, endpoint=rel[0])
    if n == 5 and rel[0].startswith("_") and rel[1].startswith("_"):
        return ParsedName(Kind.PORT, space, ns, svc, port=rel[0][1:], protocol=rel[1][1:])
    return ParsedName(Kind.INVALID)


def pod_ip(dashed: str) -> IPAddress | None:
    """'10-0-0-2' -> 10.0.0.2, 'fd00--2' -> fd00::2; None when it is no address."""
    try:
        if dashed.count("-") == 3 and ":" not in dashed:
            return ipaddress.IPv4Address(dashed.replace("-", "."))
        return ipaddress.IPv6Address(dashed.replace("-", ":"))
    except ValueError:
        return None


REVERSE_V4 = ("in-addr", "arpa")
REVERSE_V6 = ("ip6", "arpa")


def reverse_ip(labels: tuple[str, ...]) -> IPAddress | None:
    """The address of a full reverse name (4 octets under in-addr.arpa, 32 nibbles under ip6.arpa)."""
    if labels[-2:] == REVERSE_V4 and len(labels) == 6:
        octets = labels[3::-1]
        if all(o.isdigit() and len(o) <= 3 and (o == "0" or not o.startswith("0")) and int(o) < 256
               for o in octets):
            return ipaddress.IPv4Address(".".join(octets))
        return None
    if labels[-2:] == REVERSE_V6 and len(labels) == 34:
        nibbles = labels[31::-1]
        if all(len(x) == 1 and x in "0123456789abcdef" for x in nibbles):
            text = "".join(nibbles)
            return ipaddress.IPv6Address(":".join(text[i:i + 4] for i in range(0, 32, 4)))
    return None


def reverse_name(ip: IPAddress) -> str:
    """The PTR owner of an address: 10.0.0.1 -> '1.0.0.10.in-addr.arpa.'."""
    return ip.reverse_pointer + "."


def is_reverse(labels: tuple[str, ...]) -> bool:
    return labels[-2:] in (REVERSE_V4, REVERSE_V6)
