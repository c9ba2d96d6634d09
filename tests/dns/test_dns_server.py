"""The UDP/TCP shell in-process on 127.0.0.1:0: the wire answer cache (hits, ID patching, case,
invalidation by a new view), TCP framing, and metrics."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from dnslib import EDNS0, DNSRecord

from controlplane.model import parse_service
from dns.answer import Options
from dns.forward import Forwarder
from dns.server import DNSServer
from dns.view import ViewBuilder


def _svc(name: str, ip: str) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}


async def _udp(port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        await loop.sock_connect(s, ("127.0.0.1", port))
        await loop.sock_sendall(s, data)
        return await asyncio.wait_for(loop.sock_recv(s, 65535), 2)


@pytest.mark.parametrize("mmsg", ["1", "0"], ids=["recvmmsg", "recvfrom"])
async def test_wire_cache_hits_and_invalidation(mmsg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PODNET_DNS_MMSG", mmsg)
    b = ViewBuilder("cluster.local")
    b.set_service(parse_service(_svc("web", "10.96.0.1")))
    server = DNSServer(Options(), Forwarder([]))
    server.set_view(b.snapshot())
    await server.start("127.0.0.1:0")
    assert (server._io is not None) == (mmsg == "1")
    port = server.address[1]
    try:
        q1 = DNSRecord.question("web.default.svc.cluster.local", "A")
        r1 = DNSRecord.parse(await _udp(port, q1.pack()))
        q2 = DNSRecord.question("web.default.svc.cluster.local", "A")
        q2.header.id = (q1.header.id + 1) % 65536
        raw2 = await _udp(port, q2.pack())
        r2 = DNSRecord.parse(raw2)
        assert server.metrics.answer_hits == 1 and server.metrics.answer_misses == 1
        assert r2.header.id == q2.header.id and str(r2.rr[0].rdata) == str(r1.rr[0].rdata) == "10.96.0.1"
        q3 = DNSRecord.question("Web.Default.svc.cluster.local", "A")  # other spelling: its own entry
        r3 = DNSRecord.parse(await _udp(port, q3.pack()))
        assert str(r3.rr[0].rname) == "Web.Default.svc.cluster.local."
        q4 = DNSRecord.question("web.default.svc.cluster.local", "A")
        q4.add_ar(EDNS0(udp_len=1232))
        r4 = DNSRecord.parse(await _udp(port, q4.pack()))
        assert any(rr.rtype == 41 for rr in r4.ar)
        # a new view clears the cache: the changed address is served at once
        b.set_service(parse_service(_svc("web", "10.96.0.2")))
        server.set_view(b.snapshot())
        r5 = DNSRecord.parse(await _udp(port, q1.pack()))
        assert str(r5.rr[0].rdata) == "10.96.0.2"
        # TCP with two pipelined queries on one connection
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for q in (q1, q3):
            data = q.pack()
            writer.write(struct.pack("!H", len(data)) + data)
        await writer.drain()
        for q in (q1, q3):
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            got = DNSRecord.parse(await reader.readexactly(size))
            assert got.header.id == q.header.id and str(got.rr[0].rdata) == "10.96.0.2"
        writer.close()
        body = server.metrics.render({}, 0, len(server.cache))
        assert 'podnet_dns_requests_total{proto="udp",type="A"} 5' in body
        assert 'podnet_dns_requests_total{proto="tcp",type="A"} 2' in body
        assert 'podnet_dns_cache_hits_total{cache="answer"} 1' in body
        assert 'podnet_dns_responses_total{rcode="NOERROR"} 7' in body
    finally:
        await server.stop()


@pytest.mark.parametrize("mmsg", ["1", "0"], ids=["recvmmsg", "recvfrom"])
async def test_burst_of_hits_and_junk(mmsg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """More packets than one batch, hits mixed with junk and misses: every query answered once,
    each to its own sender and with its own ID."""
    monkeypatch.setenv("PODNET_DNS_MMSG", mmsg)
    b = ViewBuilder("cluster.local")
    b.set_service(parse_service(_svc("web", "10.96.0.1")))
    server = DNSServer(Options(), Forwarder([]))
    server.set_view(b.snapshot())
    await server.start("127.0.0.1:0")
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    try:
        for s in socks:
            s.settimeout(2)
        q = DNSRecord.question("web.default.svc.cluster.local", "A")
        sent: dict[int, set[int]] = {k: set() for k in range(4)}
        for n in range(300):
            k = n % 4
            q.header.id = n
            socks[k].sendto(q.pack(), server.address)
            sent[k].add(n)
            if n % 7 == 0:
                socks[k].sendto(b"\x00\x01junk", server.address)
        loop = asyncio.get_running_loop()
        got: dict[int, set[int]] = {k: set() for k in range(4)}
        for k, s in enumerate(socks):
            for _ in range(len(sent[k])):
                data = await loop.run_in_executor(None, s.recv, 4096)
                reply = DNSRecord.parse(data)
                assert str(reply.rr[0].rdata) == "10.96.0.1"
                got[k].add(reply.header.id)
        assert got == sent
        assert server.metrics.answer_hits >= 290 and server.metrics.malformed >= 40
    finally:
        for s in socks:
            s.close()
        await server.stop()
