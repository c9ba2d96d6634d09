"""`answer(query, view, options) -> Reply`: the pure DNS core (no sockets, no clock).

Implements the Kubernetes DNS-Based Service Discovery spec (schema 1.1.0) and, where the spec
is silent, what CoreDNS's kubernetes plugin does: NXDOMAIN for names that do not exist,
NODATA (NOERROR, empty answer) for names that exist without the asked type, both with the
zone SOA in authority; SERVFAIL before the first sync; names outside the zone, and reverse
names of addresses we do not know, are handed back to the shell as a FORWARD decision.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from dnslib import DNSHeader, DNSLabel, DNSRecord, EDNS0, OPCODE, QTYPE, RCODE, RR

from dns import names
from dns.names import Kind, ParsedName
from dns.records import SCHEMA_VERSION, Records, Result, nodata, nxdomain
from dns.view import ClusterView

EDNS_PAYLOAD = 1232  # what we advertise (DNS flag day 2020)
BADVERS = 16


class PodMode(str, enum.Enum):
    DISABLED = "disabled"
    INSECURE = "insecure"
    VERIFIED = "verified"


class Action(enum.Enum):
    ANSWER = "answer"
    FORWARD = "forward"


@dataclass(frozen=True)
class Options:
    zone: str = "cluster.local"
    ttl: int = 5
    pods: PodMode = PodMode.DISABLED

    @property
    def zone_labels(self) -> tuple[str, ...]:
        return names.labels_of(self.zone)


@dataclass
class Reply:
    action: Action
    message: DNSRecord | None = None
    cacheable: bool = True  # False for SERVFAIL before sync


@dataclass
class _Query:
    qname: DNSLabel
    labels: tuple[str, ...]
    qtype: int
    extra: list[RR] = field(default_factory=list)


def _header(query: DNSRecord, rcode: int, aa: bool) -> DNSHeader:
    """QR, the query's opcode and RD, RA, AA when authoritative (built as one bitmap: dnslib's
    per-flag setters cost more than the rest of the answer)."""
    bits = query.header.bitmap
    return DNSHeader(id=query.header.id, bitmap=0x8000 | (bits & 0x7900) | (0x0400 if aa else 0) | 0x0080 | rcode)


def _edns_of(query: DNSRecord) -> RR | None:
    for rr in query.ar:
        if rr.rtype == QTYPE.OPT:
            return rr
    return None


def _finish(query: DNSRecord, result: Result, rcode: int, aa: bool = True) -> DNSRecord:
    full = rcode
    opt = _edns_of(query)
    reply = DNSRecord(_header(query, full & 0xF, aa), q=query.q)
    for rr in result.answer:
        reply.add_answer(rr)
    for rr in result.authority:
        reply.add_auth(rr)
    for rr in result.additional:
        reply.add_ar(rr)
    if opt is not None:
        do = "do" if (opt.ttl >> 15) & 1 else ""
        reply.add_ar(EDNS0(udp_len=EDNS_PAYLOAD, flags=do, ext_rcode=full >> 4))
    return reply


def error_reply(query: DNSRecord, rcode: int) -> DNSRecord:
    """A reply with only the question (and OPT) and the given rcode."""
    return _finish(query, Result(), rcode, aa=False)


def answer(query: DNSRecord, view: ClusterView | None, options: Options = Options()) -> Reply:
    """Decide the reply to one parsed query."""
    if query.header.opcode != OPCODE.QUERY:
        return Reply(Action.ANSWER, error_reply(query, RCODE.NOTIMP))
    if len(query.questions) != 1:
        return Reply(Action.ANSWER, error_reply(query, RCODE.FORMERR))
    opt = _edns_of(query)
    if opt is not None and (opt.ttl >> 16) & 0xFF != 0:
        return Reply(Action.ANSWER, error_reply(query, BADVERS))
    q = query.q
    labels = names.labels_of(str(q.qname))
    zone = options.zone_labels
    if names.in_zone(labels, zone):
        if q.qclass not in (1, 255):
            return Reply(Action.ANSWER, error_reply(query, RCODE.REFUSED))
        if view is None:
            return Reply(Action.ANSWER, error_reply(query, RCODE.SERVFAIL), cacheable=False)
        recs = Records(view, options.ttl, options.zone, options.pods.value)
        result = _lookup(recs, q.qname, labels, q.qtype, zone, depth=0)
        return Reply(Action.ANSWER, _finish(query, result, result.rcode))
    if view is not None and names.is_reverse(labels) and q.qclass in (1, 255):
        ip = names.reverse_ip(labels)
        target = view.reverse.get(ip) if ip is not None else None
        if target is not None:
            recs = Records(view, options.ttl, options.zone, options.pods.value)
            return Reply(Action.ANSWER, _finish(query, recs.ptr(q.qname, q.qtype, target, labels), RCODE.NOERROR))
    return Reply(Action.FORWARD)


def _lookup(recs: Records, qname: DNSLabel, labels: tuple[str, ...], qtype: int,
            zone: tuple[str, ...], depth: int) -> Result:
    parsed = names.parse_name(labels, zone)
    result = _dispatch(recs, qname, parsed, qtype)
    cname = result.cname_target
    if cname is not None and qtype not in (QTYPE.CNAME,) and depth < 8:
        tlabels = names.labels_of(cname)
        if names.in_zone(tlabels, zone):
            chased = _lookup(recs, DNSLabel(cname), tlabels, qtype, zone, depth + 1)
            return result.chain(chased)
    return result


def _dispatch(recs: Records, qname: DNSLabel, p: ParsedName, qtype: int) -> Result:
    k = p.kind
    if k is Kind.APEX:
        return recs.apex(qname, qtype)
    if k is Kind.VERSION:
        return recs.version(qname, qtype)
    if k in (Kind.INFRA, Kind.KIND):
        return nodata(recs)
    if k is Kind.NAMESPACE:
        return nodata(recs) if p.namespace in recs.view.namespaces else nxdomain(recs)
    if k is Kind.POD:
        return recs.pod(qname, qtype, p.namespace, p.endpoint)
    if k is Kind.INVALID:
        return nxdomain(recs)
    rec = recs.view.service(p.namespace, p.service)
    if rec is None:
        return nxdomain(recs)
    if k is Kind.SERVICE:
        return recs.service(qname, qtype, rec)
    if rec.external or (rec.headless and not rec.endpoints):
        return nxdomain(recs)  # nothing exists below an ExternalName or an empty headless service
    if k is Kind.ENDPOINT:
        return recs.endpoint(qname, qtype, rec, p.endpoint)
    if k is Kind.PROTO:
        return recs.proto(rec, p.protocol)
    return recs.srv_port(qname, qtype, rec, p.port, p.protocol)
