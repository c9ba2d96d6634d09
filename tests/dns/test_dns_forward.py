"""The Forwarder against an in-process fake upstream on 127.0.0.1: caching (positive, negative,
TTL countdown and cap), the concurrency limit, timeouts -> SERVFAIL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from dnslib import QTYPE, RCODE, RR, SOA, A, DNSRecord

from dns.forward import Forwarder, Upstream


class Upstream4Test(asyncio.DatagramProtocol):
    def __init__(self, silent: bool = False) -> None:
        self.silent = silent
        self.count = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.count += 1
        if self.silent:
            return
        q = DNSRecord.parse(data)
        r = q.reply()
        if str(q.q.qname).startswith("nx."):
            r.header.rcode = RCODE.NXDOMAIN
            r.add_auth(RR("test.", QTYPE.SOA, ttl=300, rdata=SOA("ns.test.", "h.test.", (1, 2, 3, 4, 20))))
        else:
            r.add_answer(RR(q.q.qname, QTYPE.A, ttl=60, rdata=A("192.0.2.9")))
        self.transport.sendto(r.pack(), addr)


async def upstream(silent: bool = False) -> tuple[Upstream4Test, Upstream]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(lambda: Upstream4Test(silent), local_addr=("127.0.0.1", 0))
    return proto, Upstream("127.0.0.1", transport.get_extra_info("sockname")[1])


async def test_positive_cache_countdown_and_cap() -> None:
    proto, up = await upstream()
    fw = Forwarder([up], timeout=1, max_ttl=30)
    try:
        q = DNSRecord.question("www.test", "A")
        r1 = await fw.resolve(q)
        assert r1.header.id == q.header.id and r1.rr[0].ttl == 60 and proto.count == 1
        key = next(iter(fw.cache))
        stored, expires, data = fw.cache[key]
        assert expires - stored == 30  # capped by max_ttl
        fw.cache[key] = (stored - 10, expires, data)  # pretend 10 s passed
        q2 = DNSRecord.question("WWW.test", "A")
        r2 = await fw.resolve(q2)
        assert proto.count == 1 and r2.header.id == q2.header.id and str(r2.q.qname) == "WWW.test."
        assert r2.rr[0].ttl == 50
        fw.cache[key] = (stored - 40, time.monotonic() - 1, data)  # expired
        await fw.resolve(q)
        assert proto.count == 2
    finally:
        await fw.close()
        proto.transport.close()


async def test_negative_cache_uses_soa_minimum() -> None:
    proto, up = await upstream()
    fw = Forwarder([up], timeout=1, max_ttl=30)
    try:
        r = await fw.resolve(DNSRecord.question("nx.test", "A"))
        assert r.header.rcode == RCODE.NXDOMAIN
        stored, expires, _ = next(iter(fw.cache.values()))
        assert expires - stored == 20
        await fw.resolve(DNSRecord.question("nx.test", "A"))
        assert proto.count == 1 and fw.stats["cache_hits"] == 1
    finally:
        await fw.close()
        proto.transport.close()


async def test_timeout_servfail_and_concurrency_limit() -> None:
    proto, up = await upstream(silent=True)
    fw = Forwarder([up], timeout=0.3, max_concurrent=1)
    try:
        t0 = time.monotonic()
        first = asyncio.ensure_future(fw.resolve(DNSRecord.question("a.test", "A")))
        await asyncio.sleep(0.05)
        second = await fw.resolve(DNSRecord.question("b.test", "A"))
        assert second.header.rcode == RCODE.REFUSED
        assert (await first).header.rcode == RCODE.SERVFAIL
        assert time.monotonic() - t0 < 1.0
        assert fw.stats["failures"] == 1 and fw.stats["refused"] == 1 and not fw.cache
    finally:
        await fw.close()
        proto.transport.close()


async def test_no_upstreams_servfail() -> None:
    fw = Forwarder([])
    r = await fw.resolve(DNSRecord.question("x.test", "A"))
    assert r.header.rcode == RCODE.SERVFAIL
