"""Table-driven answer tests: zone-file text expected from `answer(query, view)` on a stub view.

Each case is a query line and the expected reply as zone-file text: a `;; RCODE` line, then
the answer records, then `;; AUTHORITY` and `;; ADDITIONAL` records (each section sorted;
empty sections omitted). No sockets, no root.
"""

from __future__ import annotations

import textwrap

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from controlplane.model import parse_endpoint_slice, parse_pod, parse_service
from dns.answer import Action, Options, PodMode, answer
from dns.view import ClusterView, build_view

SERIAL = 1700000000
SOA = f"cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. {SERIAL} 7200 1800 86400 5"
SOA30 = f"cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. {SERIAL} 7200 1800 86400 30"


def svc(ns: str, name: str, ips: list[str] | str, ports: list[dict[str, object]] | None = None,
        **spec: object) -> dict[str, object]:
    ips = [ips] if isinstance(ips, str) else ips
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ips[0] if ips else "", "clusterIPs": ips, "ports": ports or [], **spec}}


def eps(ns: str, svc_name: str, name: str, endpoints: list[dict[str, object]], ports: list[dict[str, object]],
        family: str = "IPv4") -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc_name}},
            "addressType": family, "ports": ports, "endpoints": endpoints}


HTTP = {"name": "http", "port": 80, "protocol": "TCP"}
DNSP = {"name": "dns", "port": 53, "protocol": "UDP"}
PG = {"name": "pg", "port": 5432, "protocol": "TCP"}

SERVICES = [
    svc("default", "web", ["10.96.0.10", "fd00::10"], [HTTP, DNSP, {"port": 8080, "protocol": "TCP"}]),
    svc("default", "v4only", "10.96.0.11", [{"port": 80}]),
    svc("default", "db", "None", [PG]),
    svc("default", "empty", "None", [HTTP]),
    svc("default", "pnr", "None", [HTTP], publishNotReadyAddresses=True),
    svc("default", "ext", [], [], type="ExternalName", externalName="example.com"),
    svc("default", "extin", [], [], type="ExternalName", externalName="web.default.svc.cluster.local"),
    svc("other", "web2", "10.96.1.2", [HTTP]),
]
SLICES = [
    eps("default", "db", "db-v4", [
        {"addresses": ["10.1.0.2"], "hostname": "db-0", "conditions": {"ready": True}},
        {"addresses": ["10.1.0.3"], "conditions": {"ready": True}},
        {"addresses": ["10.1.0.4"], "conditions": {"ready": False}},
    ], [{"name": "pg", "port": 5433, "protocol": "TCP"}]),
    eps("default", "db", "db-v6", [{"addresses": ["fd00:1::5"], "hostname": "db-0"}],
        [{"name": "pg", "port": 5433, "protocol": "TCP"}], family="IPv6"),
    eps("default", "empty", "empty-1", [{"addresses": ["10.1.0.7"], "conditions": {"ready": False}}], [HTTP]),
    eps("default", "pnr", "pnr-1", [{"addresses": ["10.1.0.9"], "conditions": {"ready": False}}], [HTTP]),
]
PODS = [{"metadata": {"name": "p1", "namespace": "default"},
         "status": {"phase": "Running", "podIP": "10.1.0.2", "podIPs": [{"ip": "10.1.0.2"}]}}]


def make_view() -> ClusterView:
    return build_view("cluster.local", [parse_service(s) for s in SERVICES],
                      [parse_endpoint_slice(s) for s in SLICES], [parse_pod(p) for p in PODS], serial=SERIAL)


VIEW = make_view()


def render(reply: DNSRecord) -> str:
    def lines(rrs: list) -> list[str]:
        return sorted(" ".join(rr.toZone().split()) for rr in rrs if rr.rtype != QTYPE.OPT)

    out = [f";; {RCODE[reply.header.rcode]}", *lines(reply.rr)]
    if reply.auth:
        out += [";; AUTHORITY", *lines(reply.auth)]
    extra = lines(reply.ar)
    if extra:
        out += [";; ADDITIONAL", *extra]
    return "\n".join(out)


def ask(line: str, view: ClusterView | None = VIEW, options: Options = Options()) -> DNSRecord:
    name, qtype = line.split()
    reply = answer(DNSRecord.question(name, qtype), view, options)
    assert reply.action is Action.ANSWER and reply.message is not None, f"{line}: {reply.action}"
    return reply.message


CASES: list[tuple[str, str]] = [
    # --- schema version
    ("dns-version.cluster.local. TXT", ';; NOERROR\ndns-version.cluster.local. 28800 IN TXT "1.1.0"'),
    ("dns-version.cluster.local. A", f";; NOERROR\n;; AUTHORITY\n{SOA}"),
    # --- ClusterIP services, dual-stack
    ("web.default.svc.cluster.local. A", ";; NOERROR\nweb.default.svc.cluster.local. 5 IN A 10.96.0.10"),
    ("web.default.svc.cluster.local. AAAA", ";; NOERROR\nweb.default.svc.cluster.local. 5 IN AAAA fd00::10"),
    ("WEB.Default.SVC.cluster.local. A", ";; NOERROR\nWEB.Default.SVC.cluster.local. 5 IN A 10.96.0.10"),
    ("web.default.svc.cluster.local A", ";; NOERROR\nweb.default.svc.cluster.local. 5 IN A 10.96.0.10"),
    ("v4only.default.svc.cluster.local. AAAA", f";; NOERROR\n;; AUTHORITY\n{SOA}"),
    ("web.default.svc.cluster.local. TXT", f";; NOERROR\n;; AUTHORITY\n{SOA}"),
    ("web.default.svc.cluster.local. MX", f";; NOERROR\n;; AUTHORITY\n{SOA}"),
    ("web2.other.svc.cluster.local. A", ";; NOERROR\nweb2.other.svc.cluster.local. 5 IN A 10.96.1.2"),
    # --- SRV of named ports (priority 0, weight 100/N, A/AAAA in additional)
    ("_http._tcp.web.default.svc.cluster.local. SRV", """
        ;; NOERROR
        _http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local.
        ;; ADDITIONAL
        web.default.svc.cluster.local. 5 IN A 10.96.0.10
        web.default.svc.cluster.local. 5 IN AAAA fd00::10"""),
    ("_DNS._UDP.web.default.svc.cluster.local. SRV", """
        ;; NOERROR
        _DNS._UDP.web.default.svc.cluster.local. 5 IN SRV 0 100 53 web.default.svc.cluster.local.
        ;; ADDITIONAL
        web.default.svc.cluster.local. 5 IN A 10.96.0.10
        web.default.svc.cluster.local. 5 IN AAAA fd00::10"""),
    ("web.default.svc.cluster.local. SRV", """
        ;; NOERROR
        web.default.svc.cluster.local. 5 IN SRV 0 33 53 web.default.svc.cluster.local.
        web.default.svc.cluster.local. 5 IN SRV 0 33 80 web.default.svc.cluster.local.
        web.default.svc.cluster.local. 5 IN SRV 0 33 8080 web.default.svc.cluster.local.
        ;; ADDITIONAL
        web.default.svc.cluster.local. 5 IN A 10.96.0.10
        web.default.svc.cluster.local. 5 IN AAAA fd00::10"""),
    ("_http._udp.web.default.svc.cluster.local. SRV", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    ("_nope._tcp.web.default.svc.cluster.local. SRV", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    ("_http._tcp.web.default.svc.cluster.local. A", f";; NOERROR\n;; AUTHORITY\n{SOA}"),
    ("_tcp.web.default.svc.cluster.local. SRV", f";; NOERROR\n;; AUTHORITY\n{SOA}"),
    ("_sctp.web.default.svc.cluster.local. SRV", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    # --- headless: ready endpoints only, hostnames, SRV per endpoint x port
    ("db.default.svc.cluster.local. A", """
        ;; NOERROR
        db.default.svc.cluster.local. 5 IN A 10.1.0.2
        db.default.svc.cluster.local. 5 IN A 10.1.0.3"""),
    ("db.default.svc.cluster.local. AAAA", ";; NOERROR\ndb.default.svc.cluster.local. 5 IN AAAA fd00:1::5"),
    ("db-0.db.default.svc.cluster.local. A", ";; NOERROR\ndb-0.db.default.svc.cluster.local. 5 IN A 10.1.0.2"),
    ("db-0.db.default.svc.cluster.local. AAAA",
     ";; NOERROR\ndb-0.db.default.svc.cluster.local. 5 IN AAAA fd00:1::5"),
    ("10-1-0-3.db.default.svc.cluster.local. A",
     ";; NOERROR\n10-1-0-3.db.default.svc.cluster.local. 5 IN A 10.1.0.3"),
    ("10-1-0-4.db.default.svc.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    ("10-1-0-3.db.default.svc.cluster.local. TXT", f";; NOERROR\n;; AUTHORITY\n{SOA}"),
    ("_pg._tcp.db.default.svc.cluster.local. SRV", """
        ;; NOERROR
        _pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5433 10-1-0-3.db.default.svc.cluster.local.
        _pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5433 db-0.db.default.svc.cluster.local.
        ;; ADDITIONAL
        10-1-0-3.db.default.svc.cluster.local. 5 IN A 10.1.0.3
        db-0.db.default.svc.cluster.local. 5 IN A 10.1.0.2
        db-0.db.default.svc.cluster.local. 5 IN AAAA fd00:1::5"""),
    ("empty.default.svc.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    ("_http._tcp.empty.default.svc.cluster.local. SRV", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    ("pnr.default.svc.cluster.local. A", ";; NOERROR\npnr.default.svc.cluster.local. 5 IN A 10.1.0.9"),
    ("x.web.default.svc.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    # --- ExternalName
    ("ext.default.svc.cluster.local. A", ";; NOERROR\next.default.svc.cluster.local. 5 IN CNAME example.com."),
    ("ext.default.svc.cluster.local. CNAME",
     ";; NOERROR\next.default.svc.cluster.local. 5 IN CNAME example.com."),
    ("extin.default.svc.cluster.local. A", """
        ;; NOERROR
        extin.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.
        web.default.svc.cluster.local. 5 IN A 10.96.0.10"""),
    ("sub.ext.default.svc.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    # --- NXDOMAIN vs NODATA for the structure of the zone
    ("nope.default.svc.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    ("web.nons.svc.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    ("default.svc.cluster.local. A", f";; NOERROR\n;; AUTHORITY\n{SOA}"),
    ("nons.svc.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    ("svc.cluster.local. A", f";; NOERROR\n;; AUTHORITY\n{SOA}"),
    ("pod.cluster.local. A", f";; NOERROR\n;; AUTHORITY\n{SOA}"),
    ("cluster.local. A", f";; NOERROR\n;; AUTHORITY\n{SOA}"),
    ("cluster.local. SOA", f";; NOERROR\n{SOA}"),
    ("cluster.local. NS", ";; NOERROR\ncluster.local. 5 IN NS ns.dns.cluster.local."),
    ("foo.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    ("*.default.svc.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    ("a.b.c.d.web.default.svc.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    # --- pods (default: disabled)
    ("10-1-0-2.default.pod.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    # --- PTR for ClusterIPs (v4 and v6) and headless endpoints
    ("10.0.96.10.in-addr.arpa. PTR", ";; NOERROR\n10.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."),
    ("0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. PTR",
     ";; NOERROR\n0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR "
     "web.default.svc.cluster.local."),
    ("2.0.1.10.in-addr.arpa. PTR", ";; NOERROR\n2.0.1.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local."),
    ("3.0.1.10.IN-ADDR.ARPA. PTR",
     ";; NOERROR\n3.0.1.10.IN-ADDR.ARPA. 5 IN PTR 10-1-0-3.db.default.svc.cluster.local."),
    ("10.0.96.10.in-addr.arpa. A", ";; NOERROR\n;; AUTHORITY\n"
     f"in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. {SERIAL} 7200 1800 86400 5"),
]


@pytest.mark.parametrize("query,expected", CASES, ids=[c[0] for c in CASES])
def test_answer(query: str, expected: str) -> None:
    got = ask(query)
    assert render(got) == textwrap.dedent(expected).strip()
    assert got.header.aa == 1 and got.header.qr == 1
    assert str(got.q.qname).rstrip(".") == query.split()[0].rstrip(".")  # the question echoes the query's case


POD_CASES: list[tuple[PodMode, str, str]] = [
    (PodMode.INSECURE, "10-1-0-2.default.pod.cluster.local. A",
     ";; NOERROR\n10-1-0-2.default.pod.cluster.local. 5 IN A 10.1.0.2"),
    (PodMode.INSECURE, "10-9-9-9.anyns.pod.cluster.local. A",
     ";; NOERROR\n10-9-9-9.anyns.pod.cluster.local. 5 IN A 10.9.9.9"),
    (PodMode.INSECURE, "fd00--2.default.pod.cluster.local. AAAA",
     ";; NOERROR\nfd00--2.default.pod.cluster.local. 5 IN AAAA fd00::2"),
    (PodMode.INSECURE, "10-1-0-2.default.pod.cluster.local. AAAA", f";; NOERROR\n;; AUTHORITY\n{SOA}"),
    (PodMode.INSECURE, "not-an-ip.default.pod.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    (PodMode.VERIFIED, "10-1-0-2.default.pod.cluster.local. A",
     ";; NOERROR\n10-1-0-2.default.pod.cluster.local. 5 IN A 10.1.0.2"),
    (PodMode.VERIFIED, "10-1-0-2.other.pod.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    (PodMode.VERIFIED, "10-1-0-3.default.pod.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
    (PodMode.DISABLED, "10-1-0-2.default.pod.cluster.local. A", f";; NXDOMAIN\n;; AUTHORITY\n{SOA}"),
]


@pytest.mark.parametrize("mode,query,expected", POD_CASES, ids=[f"{c[0].value}-{c[1]}" for c in POD_CASES])
def test_pods(mode: PodMode, query: str, expected: str) -> None:
    assert render(ask(query, options=Options(pods=mode))) == expected


def test_ttl_option() -> None:
    assert render(ask("web.default.svc.cluster.local. A", options=Options(ttl=30))) == \
        ";; NOERROR\nweb.default.svc.cluster.local. 30 IN A 10.96.0.10"
    assert render(ask("nope.default.svc.cluster.local. A", options=Options(ttl=30))) == \
        f";; NXDOMAIN\n;; AUTHORITY\n{SOA30}"


def test_other_zone_name() -> None:
    view = build_view("k8s.example", [parse_service(SERVICES[0])], serial=SERIAL)
    got = ask("web.default.svc.k8s.example. A", view, Options(zone="k8s.example"))
    assert render(got) == ";; NOERROR\nweb.default.svc.k8s.example. 5 IN A 10.96.0.10"
    assert answer(DNSRecord.question("web.default.svc.cluster.local", "A"), view,
                  Options(zone="k8s.example")).action is Action.FORWARD


def test_before_sync_servfail() -> None:
    got = ask("web.default.svc.cluster.local. A", view=None)
    assert got.header.rcode == RCODE.SERVFAIL and not got.rr
    reply = answer(DNSRecord.question("web.default.svc.cluster.local", "A"), None)
    assert reply.cacheable is False


@pytest.mark.parametrize("name,qtype", [
    ("example.com", "A"), ("kubernetes.io.", "AAAA"), ("local", "SOA"), (".", "NS"),
    ("9.9.9.9.in-addr.arpa", "PTR"),  # a reverse name we don't know: fall through
    ("96.10.in-addr.arpa", "PTR"),  # a partial reverse name
    ("1.ip6.arpa", "PTR"),
    ("cluster.local.example.com", "A"),
])
def test_forward_decision(name: str, qtype: str) -> None:
    assert answer(DNSRecord.question(name, qtype), VIEW).action is Action.FORWARD


def test_edns_echo_and_badvers() -> None:
    q = DNSRecord.question("web.default.svc.cluster.local", "A")
    q.add_ar(EDNS0(udp_len=4096, flags="do"))
    got = answer(q, VIEW).message
    assert got is not None
    opt = [rr for rr in got.ar if rr.rtype == QTYPE.OPT]
    assert len(opt) == 1 and opt[0].rclass == 1232 and (opt[0].ttl >> 15) & 1 == 1
    q2 = DNSRecord.question("web.default.svc.cluster.local", "A")
    q2.add_ar(EDNS0(udp_len=4096, version=1))
    bad = answer(q2, VIEW).message
    assert bad is not None and not bad.rr
    opt2 = [rr for rr in bad.ar if rr.rtype == QTYPE.OPT][0]
    assert (opt2.ttl >> 24) == 1 and bad.header.rcode == 0  # extended rcode 16 = BADVERS


def test_opcode_qdcount_class() -> None:
    q = DNSRecord.question("web.default.svc.cluster.local", "A")
    q.header.opcode = 2  # STATUS
    assert answer(q, VIEW).message.header.rcode == RCODE.NOTIMP  # type: ignore[union-attr]
    q = DNSRecord.question("web.default.svc.cluster.local", "A")
    q.add_question(DNSRecord.question("db.default.svc.cluster.local", "A").q)
    assert answer(q, VIEW).message.header.rcode == RCODE.FORMERR  # type: ignore[union-attr]
    q = DNSRecord.question("web.default.svc.cluster.local", "TXT", "CH")
    assert answer(q, VIEW).message.header.rcode == RCODE.REFUSED  # type: ignore[union-attr]


def test_rd_copied_ra_set() -> None:
    q = DNSRecord.question("web.default.svc.cluster.local", "A")
    q.header.rd = 0
    got = answer(q, VIEW).message
    assert got is not None and got.header.rd == 0 and got.header.ra == 1 and got.header.id == q.header.id
