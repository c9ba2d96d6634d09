"""Unit tests of the pure pieces around the answer core: names, view builder, wire helpers,
upstream parsing and the informer transform. No sockets, no root."""

from __future__ import annotations

import ipaddress

import pytest
from dnslib import EDNS0, QTYPE, DNSRecord

from controlplane.model import parse_endpoint_slice, parse_pod, parse_service
from controlplane.resources import ENDPOINTSLICES, PODS, SERVICES
from dns import names
from dns.answer import Options, answer
from dns.forward import ForwardError, Upstream, parse_upstreams
from dns.sync import compact
from dns.view import ViewBuilder, dashed
from dns.wire import AnswerCache, fit, formerr, udp_limit

ZONE = names.labels_of("cluster.local")


@pytest.mark.parametrize("name,kind,fields", [
    ("cluster.local", names.Kind.APEX, {}),
    ("dns-version.cluster.local.", names.Kind.VERSION, {}),
    ("svc.cluster.local", names.Kind.KIND, {"space": "svc"}),
    ("ns1.pod.cluster.local", names.Kind.NAMESPACE, {"namespace": "ns1", "space": "pod"}),
    ("Web.NS1.svc.cluster.local", names.Kind.SERVICE, {"namespace": "ns1", "service": "web"}),
    ("h.web.ns1.svc.cluster.local", names.Kind.ENDPOINT, {"endpoint": "h"}),
    ("_tcp.web.ns1.svc.cluster.local", names.Kind.PROTO, {"protocol": "tcp"}),
    ("_http._tcp.web.ns1.svc.cluster.local", names.Kind.PORT, {"port": "http", "protocol": "tcp"}),
    ("http.tcp.web.ns1.svc.cluster.local", names.Kind.INVALID, {}),
    ("1-2-3-4.ns1.pod.cluster.local", names.Kind.POD, {"endpoint": "1-2-3-4"}),
    ("x.1-2-3-4.ns1.pod.cluster.local", names.Kind.INVALID, {}),
    ("foo.cluster.local", names.Kind.INVALID, {}),
    ("ns.dns.cluster.local", names.Kind.INFRA, {}),
])
def test_parse_name(name: str, kind: names.Kind, fields: dict[str, str]) -> None:
    parsed = names.parse_name(names.labels_of(name), ZONE)
    assert parsed.kind is kind
    for k, v in fields.items():
        assert getattr(parsed, k) == v


def test_reverse_names_roundtrip() -> None:
    for text in ("10.96.0.10", "0.0.0.0", "255.255.255.255", "fd00::10", "2001:db8::abcd:1"):
        ip = ipaddress.ip_address(text)
        assert names.reverse_ip(names.labels_of(names.reverse_name(ip))) == ip
    for bad in ("1.2.3.in-addr.arpa", "256.1.1.10.in-addr.arpa", "01.1.1.10.in-addr.arpa", "x.1.1.10.in-addr.arpa",
                "1.0.ip6.arpa", "g" + ".0" * 31 + ".ip6.arpa"):
        assert names.reverse_ip(names.labels_of(bad)) is None


def test_pod_ip_and_dashed() -> None:
    assert str(names.pod_ip("10-0-0-2")) == "10.0.0.2"
    assert str(names.pod_ip("fd00--2")) == "fd00::2"
    assert names.pod_ip("10-0-0") is None and names.pod_ip("a-b-c-d") is None
    assert dashed(ipaddress.ip_address("5678:abcd::1")) == "5678-abcd--1"


def _svc(name: str, ip: str, ns: str = "default") -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}}


def _slice(name: str, svc: str, ips: list[str], ready: bool = True) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips]}


def test_builder_incremental_updates() -> None:
    b = ViewBuilder("cluster.local")
    b.set_service(parse_service(_svc("web", "10.96.0.1")))
    b.set_service(parse_service(_svc("db", "None")))
    v1 = b.snapshot()
    assert v1.service("default", "web") is not None and not b.changed
    assert v1.reverse[ipaddress.ip_address("10.96.0.1")] == "web.default.svc"
    assert v1.service("default", "db").endpoints == ()  # type: ignore[union-attr]
    b.set_slice(parse_endpoint_slice(_slice("db-a", "db", ["10.1.0.1", "10.1.0.2"])))
    b.set_slice(parse_endpoint_slice(_slice("db-b", "db", ["10.1.0.3"], ready=False)))
    v2 = b.snapshot()
    assert v2.generation == v1.generation + 1
    assert [e.hostname for e in v2.service("default", "db").endpoints] == ["10-1-0-1", "10-1-0-2"]  # type: ignore
    assert v2.reverse[ipaddress.ip_address("10.1.0.2")] == "10-1-0-2.db.default.svc"
    # the old snapshot is untouched
    assert v1.service("default", "db").endpoints == ()  # type: ignore[union-attr]
    b.set_slice(parse_endpoint_slice(_slice("db-a", "db", ["10.1.0.9"])))
    b.delete_service("default", "web")
    v3 = b.snapshot()
    assert v3.service("default", "web") is None
    assert ipaddress.ip_address("10.96.0.1") not in v3.reverse
    assert ipaddress.ip_address("10.1.0.2") not in v3.reverse
    assert [e.hostname for e in v3.service("default", "db").endpoints] == ["10-1-0-9"]  # type: ignore
    b.delete_slice("default", "db-a")
    b.delete_service("default", "db")
    v4 = b.snapshot()
    assert not v4.services and not v4.reverse and "default" not in v4.namespaces


def test_builder_pods_and_namespaces() -> None:
    b = ViewBuilder("cluster.local")
    pod = {"metadata": {"name": "p", "namespace": "team"}, "status": {"phase": "Running", "podIP": "10.1.0.5"}}
    b.set_pod(parse_pod(pod))
    v = b.snapshot()
    assert ("team", ipaddress.ip_address("10.1.0.5")) in v.pod_ips and "team" in v.namespaces
    pod["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"  # type: ignore[index]
    b.set_pod(parse_pod(pod))
    assert not b.snapshot().pod_ips


def test_slice_moving_between_services() -> None:
    b = ViewBuilder("cluster.local")
    b.set_service(parse_service(_svc("a", "None")))
    b.set_service(parse_service(_svc("b", "None")))
    b.set_slice(parse_endpoint_slice(_slice("s", "a", ["10.1.0.1"])))
    assert b.snapshot().service("default", "a").endpoints  # type: ignore[union-attr]
    b.set_slice(parse_endpoint_slice(_slice("s", "b", ["10.1.0.1"])))
    v = b.snapshot()
    assert not v.service("default", "a").endpoints and v.service("default", "b").endpoints  # type: ignore


def test_udp_limit() -> None:
    q = DNSRecord.question("a.example", "A")
    assert udp_limit(q) == 512
    q.add_ar(EDNS0(udp_len=1232))
    assert udp_limit(q) == 1232
    q.ar[0].rclass = 100
    assert udp_limit(q) == 512
    q.ar[0].rclass = 65000
    assert udp_limit(q) == 4096


def _big_view() -> ViewBuilder:
    b = ViewBuilder("cluster.local")
    b.set_service(parse_service(_svc("big", "None")))
    b.set_slice(parse_endpoint_slice(_slice("big-1", "big", [f"10.2.{i // 250}.{i % 250 + 1}" for i in range(60)])))
    return b


def test_fit_truncates_with_tc() -> None:
    view = _big_view().snapshot()
    q = DNSRecord.question("_http._tcp.big.default.svc.cluster.local", "SRV")
    reply = answer(q, view, Options()).message
    assert reply is not None
    full = reply.pack()
    assert len(full) > 512
    small = DNSRecord.parse(fit(answer(q, view, Options()).message, 512))  # type: ignore[arg-type]
    assert small.header.tc == 1 and not small.rr and str(small.q.qname) == str(q.q.qname)
    roomy = DNSRecord.parse(fit(answer(q, view, Options()).message, 65535))  # type: ignore[arg-type]
    assert roomy.header.tc == 0 and len(roomy.rr) == 60


def test_fit_drops_additional_first() -> None:
    view = _big_view().snapshot()
    q = DNSRecord.question("_http._tcp.big.default.svc.cluster.local", "SRV")
    whole = len(answer(q, view, Options()).message.pack())  # type: ignore[union-attr]
    no_extra = answer(q, view, Options()).message
    no_extra.ar = []  # type: ignore[union-attr]
    limit = (len(no_extra.pack()) + whole) // 2  # type: ignore[union-attr]
    got = DNSRecord.parse(fit(answer(q, view, Options()).message, limit))  # type: ignore[arg-type]
    assert got.header.tc == 0 and len(got.rr) == 60 and not got.ar


def test_formerr() -> None:
    assert formerr(b"\x12") is None
    assert formerr(b"\x12\x34\x81\x00" + b"\x00" * 8) is None  # a response: never answered
    out = formerr(b"\x12\x34\x01\x00" + b"\x00\x01" + b"\x00" * 6 + b"\xff")
    assert out is not None and out[:2] == b"\x12\x34" and out[3] & 0xF == 1 and out[2] & 0x80 and out[2] & 0x01


def test_answer_cache_generation() -> None:
    c = AnswerCache(max_entries=2)
    c.reset(1)
    c.put(b"\x00\x01query", b"\x00\x01reply", ("A", "NOERROR"), 1)
    assert c.entries[b"query"] == (b"reply", ("A", "NOERROR"))
    c.put(b"\x00\x01other", b"\x00\x01x", ("A", "NOERROR"), 0)  # stale generation: ignored
    assert len(c) == 1
    c.put(b"\x00\x01q2", b"\x00\x01x", ("A", "NOERROR"), 1)
    c.put(b"\x00\x01q3", b"\x00\x01x", ("A", "NOERROR"), 1)  # over the bound: the oldest evicted
    assert list(c) == [b"q2", b"q3"]
    c.reset(2)
    assert len(c) == 0


def test_parse_upstreams(tmp_path) -> None:  # type: ignore[no-untyped-def]
    conf = tmp_path / "resolv.conf"
    conf.write_text("search x\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\n# c\nnameserver 10.0.0.2\n"
                    "nameserver 10.0.0.3\n")
    assert parse_upstreams(str(conf)) == [Upstream("10.0.0.1"), Upstream("fe80::1"), Upstream("10.0.0.2")]
    assert parse_upstreams("127.0.0.1:5353,[::1]:53,10.1.1.1") == [
        Upstream("127.0.0.1", 5353), Upstream("::1", 53), Upstream("10.1.1.1", 53)]
    with pytest.raises(ForwardError, match="not an IP"):
        parse_upstreams("dns.google")
    with pytest.raises(ForwardError):
        parse_upstreams(str(tmp_path / "missing.conf"))


def test_compact_transform() -> None:
    svc = {"metadata": {"name": "web", "namespace": "default", "resourceVersion": "7", "uid": "u",
                        "managedFields": [{"x": 1}], "annotations": {"a": "b" * 1000}},
           "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "http", "port": 80}]}, "status": {}}
    out = compact(SERVICES, svc)
    assert out["metadata"] == {"name": "web", "namespace": "default", "resourceVersion": "7"}
    assert out["dns"].cluster_ips == (ipaddress.ip_address("10.96.0.1"),)
    bad = compact(SERVICES, {"metadata": {"name": "x", "namespace": "d"}, "spec": {"type": "Bogus"}})
    assert bad["dns"] is None
    sl = compact(ENDPOINTSLICES, _slice("s", "web", ["10.1.0.1"]))
    assert sl["dns"][0] == "web" and sl["dns"][1].addresses[0][1] == ipaddress.ip_address("10.1.0.1")
    pod = compact(PODS, {"metadata": {"name": "p", "namespace": "d"}, "status": {"phase": "Succeeded",
                                                                                 "podIP": "10.1.0.1"}})
    assert pod["dns"] == ()


def test_answer_never_raises_on_odd_names() -> None:
    view = _big_view().snapshot()
    for name in ("a..b.cluster.local", "\\000.cluster.local", "x" * 63 + ".svc.cluster.local", "_._.a.b.svc.cluster.local",
                 "-.-.svc.cluster.local"):
        for qtype in ("A", "AAAA", "SRV", "PTR", "ANY", "TXT", "NS", "SOA", "CNAME"):
            try:
                q = DNSRecord.question(name, qtype)
            except Exception:
                continue
            reply = answer(q, view, Options())
            assert reply.message is None or reply.message.header.qr == 1
    assert QTYPE.ANY == 255


def test_cluster_ip_moving_between_services_keeps_ptr() -> None:
    b = ViewBuilder("cluster.local")
    b.set_service(parse_service(_svc("zeta", "10.96.0.7")))
    b.snapshot()
    b.delete_service("default", "zeta")
    b.set_service(parse_service(_svc("alpha", "10.96.0.7")))  # sorts before the removed one
    assert b.snapshot().reverse[ipaddress.ip_address("10.96.0.7")] == "alpha.default.svc"


def test_rotations_spread_first_record() -> None:
    from dns.wire import rotate_randomly, rotations

    view = _big_view().snapshot()
    q = DNSRecord.question("big.default.svc.cluster.local", "A")
    q.add_ar(EDNS0(udp_len=4096))
    variants = rotations(answer(q, view, Options()).message, 4096)  # type: ignore[arg-type]
    parsed = [DNSRecord.parse(v) for v in variants]
    assert len(variants) == 8
    assert len({str(p.rr[0].rdata) for p in parsed}) == 8
    assert all(sorted(str(r.rdata) for r in p.rr) == sorted(str(r.rdata) for r in parsed[0].rr) for p in parsed)
    # a reply truncated over UDP, a single record, NXDOMAIN or SRV: one variant
    assert len(rotations(answer(DNSRecord.question("big.default.svc.cluster.local", "A"), view,
                                Options()).message, 512)) == 1  # type: ignore[arg-type]
    assert len(rotations(answer(DNSRecord.question("_http._tcp.big.default.svc.cluster.local", "SRV"), view,
                                Options()).message, 65535)) == 1  # type: ignore[arg-type]
    msg = answer(q, view, Options()).message
    rotate_randomly(msg, lambda n: 5)  # type: ignore[arg-type]
    assert str(msg.rr[0].rdata) == "10.2.0.6"  # type: ignore[union-attr]


def test_answer_cache_cycles_variants() -> None:
    c = AnswerCache()
    c.reset(1)
    c.put(b"\x00\x01q", [b"\x00\x01a", b"\x00\x01b"], ("A", "NOERROR"), 1)
    body = c.entries[b"q"][0]
    assert not isinstance(body, bytes)
    assert [next(body) for _ in range(3)] == [b"a", b"b", b"a"]
