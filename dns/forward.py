"""Forwarding names we do not own to upstream resolvers, with a TTL-bounded cache.

Like CoreDNS `forward . /etc/resolv.conf {max_concurrent 1000}` + `cache 30`: upstreams
come from a resolv.conf or ADDR[:PORT]; queries go out over UDP with a fresh random ID (and
over TCP when the upstream truncates); at most `max_concurrent` are in flight (over that:
REFUSED, as CoreDNS); no answer within the timeout gives SERVFAIL, never a hang. Positive
answers are cached for min(record TTLs, max_ttl), NXDOMAIN/NODATA for min(SOA TTL, SOA
minimum, max_ttl); SERVFAIL is not cached.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from dnslib import QTYPE, RCODE, DNSRecord

from dns.answer import error_reply


class ForwardError(Exception):
    """A bad --upstream value."""


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_upstreams(spec: str) -> list[Upstream]:
    """'/etc/resolv.conf' (its nameserver lines), '10.0.0.1', '127.0.0.1:5353', '[::1]:53'."""
    if spec.startswith("/") or spec.startswith("."):
        try:
            lines = Path(spec).read_text().splitlines()
        except OSError as exc:
            raise ForwardError(f"--upstream {spec}: {exc.strerror}") from None
        out = [Upstream(parts[1].split("%")[0]) for parts in (ln.split() for ln in lines)
               if len(parts) >= 2 and parts[0] == "nameserver"]
        return out[:3]
    out = []
    for item in spec.split(","):
        host, port = item.strip(), 53
        if host.startswith("["):
            host, _, rest = host[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 53
        elif host.count(":") == 1:
            host, p = host.split(":")
            if not p.isdigit():
                raise ForwardError(f"--upstream {item!r}: bad port {p!r}")
            port = int(p)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ForwardError(f"--upstream {item!r}: not an IP address") from None
        out.append(Upstream(host, port))
    return out


class _UDPClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.pending: dict[int, asyncio.Future[bytes]] = {}

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) >= 2:
            fut = self.pending.get(struct.unpack_from("!H", data)[0])
            if fut is not None and not fut.done():
                fut.set_result(data)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.
        pass


def _cache_ttl(reply: DNSRecord, max_ttl: int) -> int:
    if reply.header.rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN):
        return 0
    if reply.rr:
        return min([max_ttl] + [rr.ttl for rr in reply.rr])
    soas = [rr for rr in reply.auth if rr.rtype == QTYPE.SOA]
    if soas:
        return min(max_ttl, soas[0].ttl, soas[0].rdata.times[-1])
    return 0


class Forwarder:
    def __init__(self, upstreams: list[Upstream], *, timeout: float = 2.0, max_concurrent: int = 1000,
                 max_ttl: int = 30, cache_size: int = 10000) -> None:
        self.upstreams = upstreams
        self.timeout = timeout
        self.max_concurrent = max_concurrent
        self.max_ttl = max_ttl
        self.cache_size = cache_size
        self.inflight = 0
        self.cache: dict[tuple[str, int, int, bool], tuple[float, float, bytes]] = {}
        self._clients: dict[Upstream, tuple[asyncio.DatagramTransport, _UDPClient]] = {}
        self.stats = {"requests": 0, "failures": 0, "refused": 0, "cache_hits": 0, "cache_misses": 0}

    async def close(self) -> None:
        for transport, _ in self._clients.values():
            transport.close()
        self._clients.clear()

    @staticmethod
    def _key(query: DNSRecord) -> tuple[str, int, int, bool]:
        do = any(rr.rtype == QTYPE.OPT and (rr.ttl >> 15) & 1 for rr in query.ar)
        return (str(query.q.qname).lower(), query.q.qtype, query.q.qclass, do)

    def _cached(self, query: DNSRecord, now: float) -> DNSRecord | None:
        key = self._key(query)
        hit = self.cache.get(key)
        if hit is None:
            return None
        stored, expires, data = hit
        if now >= expires:
            del self.cache[key]
            return None
        reply = DNSRecord.parse(data)
        age = int(now - stored)
        for rr in reply.rr + reply.auth + reply.ar:
            if rr.rtype != QTYPE.OPT:
                rr.ttl = max(0, rr.ttl - age)
        reply.header.id = query.header.id
        reply.questions = list(query.questions)
        return reply

    def _store(self, query: DNSRecord, reply: DNSRecord, data: bytes, now: float) -> None:
        ttl = _cache_ttl(reply, self.max_ttl)
        if ttl <= 0:
            return
        if len(self.cache) >= self.cache_size:
            self.cache = {k: v for k, v in self.cache.items() if v[1] > now} or {}
            if len(self.cache) >= self.cache_size:
                self.cache.clear()
        self.cache[self._key(query)] = (now, now + ttl, data)

    async def resolve(self, query: DNSRecord) -> DNSRecord:
        """The upstream's reply to `query` (with the client's ID and question), or an error reply."""
        now = time.monotonic()
        cached = self._cached(query, now)
        if cached is not None:
            self.stats["cache_hits"] += 1
            return cached
        self.stats["cache_misses"] += 1
        if not self.upstreams:
            return error_reply(query, RCODE.SERVFAIL)
        if self.inflight >= self.max_concurrent:
            self.stats["refused"] += 1
            return error_reply(query, RCODE.REFUSED)
        self.inflight += 1
        self.stats["requests"] += 1
        try:
            data = await self._exchange(query)
        finally:
            self.inflight -= 1
        if data is None:
            self.stats["failures"] += 1
            return error_reply(query, RCODE.SERVFAIL)
        try:
            reply = DNSRecord.parse(data)
        except Exception:
            self.stats["failures"] += 1
            return error_reply(query, RCODE.SERVFAIL)
        self._store(query, reply, data, time.monotonic())
        reply.header.id = query.header.id
        reply.questions = list(query.questions)
        return reply

    async def _exchange(self, query: DNSRecord) -> bytes | None:
        """Try each upstream in turn within the overall timeout."""
        deadline = time.monotonic() + self.timeout
        ups = list(self.upstreams)
        random.shuffle(ups)
        per_try = self.timeout / len(ups)
        for up in ups:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                data = await asyncio.wait_for(self._udp(up, query), min(per_try, left))
                if data is not None and len(data) >= 3 and data[2] & 0x02:  # TC: retry over TCP
                    data = await asyncio.wait_for(self._tcp(up, query), max(0.1, deadline - time.monotonic()))
                if data is not None:
                    return data
            except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError):
                continue
        return None

    async def _client(self, up: Upstream) -> _UDPClient:
        entry = self._clients.get(up)
        if entry is None or entry[0].is_closing():
            loop = asyncio.get_running_loop()
            transport, proto = await loop.create_datagram_endpoint(_UDPClient, remote_addr=(up.host, up.port))
            entry = (transport, proto)
            self._clients[up] = entry
        return entry[1]

    async def _udp(self, up: Upstream, query: DNSRecord) -> bytes | None:
        client = await self._client(up)
        ident = random.randrange(65536)
        while ident in client.pending:
            ident = random.randrange(65536)
        out = query.pack()
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        client.pending[ident] = fut
        try:
            self._clients[up][0].sendto(with_ident(out, ident))
            return await fut
        finally:
            client.pending.pop(ident, None)

    async def _tcp(self, up: Upstream, query: DNSRecord) -> bytes | None:
        reader, writer = await asyncio.open_connection(up.host, up.port)
        try:
            out = query.pack()
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            return await reader.readexactly(size)
        finally:
            writer.close()


def with_ident(data: bytes, ident: int) -> bytes:
    return struct.pack("!H", ident) + data[2:]
