"""Resource records for each kind of cluster name (pure; used by dns/answer.py).

Every method returns a `Result`: rcode plus answer/authority/additional sections. Owner
names of answers echo the query's spelling; targets are the canonical lowercase names.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Iterable

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A, DNSLabel

from controlplane.model import IPAddress
from dns import names
from dns.view import ClusterView, EndpointRecord, ServiceRecord

SCHEMA_VERSION = "1.1.0"
VERSION_TTL = 28800
ADDRESS_TYPES = (QTYPE.A, QTYPE.AAAA, QTYPE.ANY)


@dataclass
class Result:
    rcode: int = RCODE.NOERROR
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    cname_target: str | None = None

    def chain(self, then: "Result") -> "Result":
        """This CNAME answer followed by the lookup of its target (RFC 6604: the last rcode)."""
        return Result(then.rcode, self.answer + then.answer, then.authority,
                      self.additional + then.additional, then.cname_target)


@functools.lru_cache(maxsize=64)
def _soa(owner: str, zone: str, serial: int, ttl: int) -> RR:
    """The SOA record, built once per (owner, serial, ttl): RRs are never mutated once built."""
    return RR(owner, QTYPE.SOA, ttl=ttl, rdata=SOA("ns.dns." + zone, "hostmaster." + zone,
                                                   (serial, 7200, 1800, 86400, ttl)))


class Records:
    def __init__(self, view: ClusterView, ttl: int, zone: str, pod_mode: str) -> None:
        self.view = view
        self.ttl = ttl
        self.zone = zone.lower().strip(".") + "."
        self.pod_mode = pod_mode

    # ---------------------------------------------------------------- helpers
    def soa(self, owner: str | None = None) -> RR:
        return _soa(owner or self.zone, self.zone, self.view.serial, self.ttl)

    def fqdn(self, relative: str) -> str:
        return f"{relative}.{self.zone}"

    def addresses(self, owner: DNSLabel | str, qtype: int, ips: Iterable[IPAddress]) -> list[RR]:
        out = []
        for ip in ips:
            if ip.version == 4 and qtype in (QTYPE.A, QTYPE.ANY):
                out.append(RR(owner, QTYPE.A, ttl=self.ttl, rdata=A(str(ip))))
            elif ip.version == 6 and qtype in (QTYPE.AAAA, QTYPE.ANY):
                out.append(RR(owner, QTYPE.AAAA, ttl=self.ttl, rdata=AAAA(str(ip))))
        return out

    def data(self, answer: list[RR], additional: list[RR] | None = None) -> Result:
        """The answer, or NODATA if the (existing) name has none of the asked type."""
        if not answer:
            return nodata(self)
        return Result(RCODE.NOERROR, answer, [], additional or [])

    def srv(self, qname: DNSLabel, targets: list[tuple[int, str, list[IPAddress]]]) -> Result:
        """SRV records (priority 0, weight 100/N as CoreDNS) with the targets' A/AAAA in additional."""
        if not targets:
            return nodata(self)
        merged: dict[tuple[int, str], list[IPAddress]] = {}  # one SRV per (port, target) (RFC 2181 5)
        for port, target, ips in targets:
            merged.setdefault((port, target), []).extend(ips)
        weight = 100 // len(merged)
        answer = [RR(qname, QTYPE.SRV, ttl=self.ttl, rdata=SRV(0, weight, port, target))
                  for port, target in merged]
        by_target: dict[str, dict[IPAddress, None]] = {}
        for (_, target), ips in merged.items():
            by_target.setdefault(target, {}).update(dict.fromkeys(ips))
        additional: list[RR] = []
        for target, addrs in by_target.items():
            additional.extend(self.addresses(target, QTYPE.ANY, addrs))
        return Result(RCODE.NOERROR, answer, [], additional)

    # ---------------------------------------------------------------- names
    def apex(self, qname: DNSLabel, qtype: int) -> Result:
        if qtype in (QTYPE.SOA, QTYPE.ANY):
            return Result(RCODE.NOERROR, [self.soa(str(qname))])
        if qtype == QTYPE.NS:
            return Result(RCODE.NOERROR, [RR(qname, QTYPE.NS, ttl=self.ttl, rdata=NS("ns.dns." + self.zone))])
        return nodata(self)

    def version(self, qname: DNSLabel, qtype: int) -> Result:
        if qtype in (QTYPE.TXT, QTYPE.ANY):
            return Result(RCODE.NOERROR, [RR(qname, QTYPE.TXT, ttl=VERSION_TTL, rdata=TXT(SCHEMA_VERSION))])
        return nodata(self)

    def pod(self, qname: DNSLabel, qtype: int, namespace: str, dashed: str) -> Result:
        if self.pod_mode == "disabled":
            return nxdomain(self)
        ip = names.pod_ip(dashed)
        if ip is None or (self.pod_mode == "verified" and (namespace, ip) not in self.view.pod_ips):
            return nxdomain(self)
        return self.data(self.addresses(qname, qtype, [ip]))

    def service(self, qname: DNSLabel, qtype: int, rec: ServiceRecord) -> Result:
        svc = rec.service
        if rec.external:
            target = svc.external_name.rstrip(".") + "."
            rr = RR(qname, QTYPE.CNAME, ttl=self.ttl, rdata=CNAME(target))
            return Result(RCODE.NOERROR, [rr], cname_target=None if qtype == QTYPE.CNAME else target)
        name = self.fqdn(f"{svc.name}.{svc.namespace}.svc")
        if rec.headless:
            if not rec.endpoints:
                return nxdomain(self)
            if qtype == QTYPE.SRV:
                return self.srv(qname, [(p.port, self._host(ep, name), [ep.address])
                                        for ep in rec.endpoints for p in ep.ports])
            return self.data(self.addresses(qname, qtype, [ep.address for ep in rec.endpoints]))
        if not svc.cluster_ips:
            return nxdomain(self)
        if qtype == QTYPE.SRV:
            return self.srv(qname, [(p.port, name, list(svc.cluster_ips)) for p in svc.ports])
        return self.data(self.addresses(qname, qtype, svc.cluster_ips))

    @staticmethod
    def _host(ep: EndpointRecord, service_fqdn: str) -> str:
        return f"{ep.hostname}.{service_fqdn}"

    def endpoint(self, qname: DNSLabel, qtype: int, rec: ServiceRecord, host: str) -> Result:
        if not rec.headless:
            return nxdomain(self)
        eps = [ep for ep in rec.endpoints if ep.hostname == host]
        if not eps:
            return nxdomain(self)
        return self.data(self.addresses(qname, qtype, [ep.address for ep in eps]))

    def _port_names(self, rec: ServiceRecord) -> list[tuple[str, str]]:
        if rec.headless:
            return [(p.name, p.protocol) for ep in rec.endpoints for p in ep.ports]
        return [(p.name, p.protocol) for p in rec.service.ports]

    def proto(self, rec: ServiceRecord, protocol: str) -> Result:
        if any(name and proto == protocol for name, proto in self._port_names(rec)):
            return nodata(self)
        return nxdomain(self)

    def srv_port(self, qname: DNSLabel, qtype: int, rec: ServiceRecord, port: str, protocol: str) -> Result:
        svc = rec.service
        name = self.fqdn(f"{svc.name}.{svc.namespace}.svc")
        targets: list[tuple[int, str, list[IPAddress]]] = []
        if rec.headless:
            targets = [(p.port, self._host(ep, name), [ep.address]) for ep in rec.endpoints for p in ep.ports
                       if p.name and p.name == port and p.protocol == protocol]
        elif svc.cluster_ips:
            targets = [(p.port, name, list(svc.cluster_ips)) for p in svc.ports
                       if p.name and p.name == port and p.protocol == protocol]
        if not targets:
            return nxdomain(self)
        if qtype not in (QTYPE.SRV, QTYPE.ANY):
            return nodata(self)
        return self.srv(qname, targets)

    def ptr(self, qname: DNSLabel, qtype: int, relative: str, labels: tuple[str, ...]) -> Result:
        if qtype in (QTYPE.PTR, QTYPE.ANY):
            return Result(RCODE.NOERROR, [RR(qname, QTYPE.PTR, ttl=self.ttl, rdata=PTR(self.fqdn(relative)))])
        return Result(RCODE.NOERROR, [], [self.soa(".".join(labels[-2:]) + ".")])


def nodata(recs: Records) -> Result:
    return Result(RCODE.NOERROR, [], [recs.soa()])


def nxdomain(recs: Records) -> Result:
    return Result(RCODE.NXDOMAIN, [], [recs.soa()])
