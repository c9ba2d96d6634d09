"""The I/O shell: UDP and TCP listeners around `answer()`.

UDP uses a non-blocking socket drained from `loop.add_reader` (no per-packet transport
objects): a cache hit costs one dict lookup and one `sendto`. Misses are parsed with dnslib,
answered by the core, fitted to the client's UDP size and cached; forwarded names go to the
Forwarder in a task. TCP is the same with 2-byte framing and no size limit. Nothing a client
sends can raise out of here: malformed packets are dropped or answered FORMERR.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import struct
import time
from typing import Any

from dnslib import QTYPE, RCODE, DNSRecord

from dns.answer import Action, Options, answer, error_reply
from dns.forward import Forwarder
from dns.http import split_hostport
from dns.metrics import Metrics
from dns.mmsg import BatchIO, MMsgError
from dns.view import ClusterView
from dns.wire import TCP_MAX, AnswerCache, fit, formerr, is_response, rotate_randomly, rotations, udp_limit

log = logging.getLogger("podnet.dns")
BATCH = 256
TCP_IDLE = 10.0


def _name(table: Any, value: int) -> str:
    try:
        return str(table[value])
    except Exception:
        return str(value)


IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def _pktinfo_dst(ancillary: list[tuple[int, int, bytes]]) -> bytes | None:
    """ipi_addr (the query's destination) from an IP_PKTINFO control message."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            return data[8:12]
    return None


def _stat(query: DNSRecord, reply: DNSRecord) -> tuple[str, str]:
    rcode = reply.header.rcode
    for rr in reply.ar:
        if rr.rtype == QTYPE.OPT:
            rcode |= (rr.ttl >> 24) << 4
    return _name(QTYPE, query.q.qtype), _name(RCODE, rcode)


class DNSServer:
    def __init__(self, options: Options, forwarder: Forwarder, *, cache_size: int = 10000) -> None:
        self.options = options
        self.forwarder = forwarder
        self.view: ClusterView | None = None
        self.cache = AnswerCache(cache_size)
        self.metrics = Metrics()
        self._udp: socket.socket | None = None
        self._io: BatchIO | None = None
        self._pktinfo = False
        self.draining = False  # lameduck: still answering, /ready says 503
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] = ("", 0)

    # ---------------------------------------------------------------- view
    def set_view(self, view: ClusterView) -> None:
        self.view = view
        self.cache.reset(view.generation)

    # ---------------------------------------------------------------- lifecycle
    async def start(self, listen: str, *, reuse_port: bool = False) -> None:
        """Bind UDP and TCP on the same port (port 0: a free one for both, retried on clashes)."""
        host, port = split_hostport(listen)
        for attempt in range(20 if port == 0 else 1):
            sock = self._udp_socket(host, port, reuse_port)
            try:
                self._tcp = await asyncio.start_server(self._on_tcp, host, sock.getsockname()[1],
                                                       reuse_address=True, reuse_port=reuse_port or None,
                                                       family=sock.family)
                break
            except OSError:
                sock.close()
                if port != 0 or attempt == 19:
                    raise
        self._udp = sock
        self.address = sock.getsockname()[:2]
        # a wildcard IPv4 socket answers from the address each query was sent to (as CoreDNS and
        # dnsmasq do): without it a multi-homed host replies from the route's source address
        self._pktinfo = sock.family == socket.AF_INET and host in ("0.0.0.0", "")
        if self._pktinfo:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self._io = None
        if os.environ.get("PODNET_DNS_MMSG", "1") != "0":
            try:
                self._io = BatchIO(sock.fileno(), pktinfo=self._pktinfo)
            except MMsgError as exc:
                log.info("batched UDP I/O unavailable (%s): one syscall per packet", exc)
        asyncio.get_running_loop().add_reader(sock.fileno(),
                                              self._on_udp_batch if self._io is not None else self._on_udp)

    @staticmethod
    def _udp_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    async def stop(self) -> None:
        if self._udp is not None:
            asyncio.get_running_loop().remove_reader(self._udp.fileno())
            self._udp.close()
            self._udp = None
            self._io = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()
        await self.forwarder.close()

    # ---------------------------------------------------------------- UDP
    def _on_udp(self) -> None:
        sock = self._udp
        if sock is None:
            return
        entries = self.cache.entries
        by_stat = self.metrics.by_stat
        start = time.perf_counter()
        hits = 0
        pktinfo = self._pktinfo
        local: bytes | None = None
        for _ in range(BATCH):
            try:
                if pktinfo:
                    data, anc, _flags, addr = sock.recvmsg(TCP_MAX, 64)
                    local = _pktinfo_dst(anc)
                else:
                    data, addr = sock.recvfrom(TCP_MAX)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            hit = entries.get(data[2:])
            if hit is not None:
                body = hit[0]
                self._send(sock, data[:2] + (body if isinstance(body, bytes) else next(body)), addr, local)
                by_stat[hit[1]] = by_stat.get(hit[1], 0) + 1
                hits += 1
                continue
            self._udp_miss(sock, data, addr, local)
        if hits:
            self.metrics.answer_hits += hits
            self.metrics.observe((time.perf_counter() - start) / hits, hits)

    def _on_udp_batch(self) -> None:
        """The same as _on_udp with recvmmsg/sendmmsg: all cache hits of a batch in one syscall."""
        sock, io = self._udp, self._io
        if sock is None or io is None:
            return

        def miss(data: bytes, slot: int) -> None:
            if io.truncated(slot):
                self.metrics.malformed += 1
            else:
                self._udp_miss(sock, data, io.address(slot), io.local(slot))

        start = time.perf_counter()
        hits = 0
        for _ in range(BATCH // io.slots):
            n, got = io.answer_batch(self.cache.entries, self.metrics.by_stat, miss)
            hits += got
            if 0 <= n < io.slots:
                break
        if hits:
            self.metrics.answer_hits += hits
            self.metrics.observe((time.perf_counter() - start) / hits, hits)

    def _udp_miss(self, sock: socket.socket, data: bytes, addr: Any, local: bytes | None = None) -> None:
        t0 = time.perf_counter()
        query = self._parse(data, lambda out: self._send(sock, out, addr, local))
        if query is None:
            return
        self.metrics.answer_misses += 1
        try:
            reply = answer(query, self.view, self.options)
        except Exception:  # a bug must not kill the listener
            log.exception("answering %s failed", query.q.qname)
            reply = None
        limit = udp_limit(query)
        if reply is not None and reply.action is Action.FORWARD:
            self._spawn(self._forward_udp(sock, query, (addr, local), limit, t0))
            return
        msg = reply.message if reply is not None and reply.message is not None else error_reply(query, RCODE.SERVFAIL)
        variants = rotations(msg, limit)
        stat = _stat(query, msg)
        if reply is not None and reply.cacheable and self.view is not None:
            self.cache.put(data, variants, stat, self.view.generation)
        self._send(sock, variants[random.randrange(len(variants))], addr, local)
        self.metrics.count("udp", *stat)
        self.metrics.observe(time.perf_counter() - t0)

    def _parse(self, data: bytes, send: Any) -> DNSRecord | None:
        if is_response(data):
            self.metrics.malformed += 1
            return None
        try:
            return DNSRecord.parse(data)
        except Exception:
            self.metrics.malformed += 1
            out = formerr(data)
            if out is not None:
                try:
                    send(out)
                except OSError:
                    pass
            return None

    @staticmethod
    def _send(sock: socket.socket, out: bytes, addr: Any, local: bytes | None = None) -> None:
        """sendto, or from the address the query was sent to (IP_PKTINFO) on a wildcard socket."""
        try:
            if local is None:
                sock.sendto(out, addr)
            else:
                sock.sendmsg([out], [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, local, bytes(4)))],
                               0, addr)
        except OSError:
            pass

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward_udp(self, sock: socket.socket, query: DNSRecord, peer: tuple[Any, bytes | None], limit: int,
                           t0: float) -> None:
        reply = await self.forwarder.resolve(query)
        self._send(sock, fit(reply, limit), *peer)
        self.metrics.count("udp", *_stat(query, reply))
        self.metrics.observe(time.perf_counter() - t0)

    # ---------------------------------------------------------------- TCP
    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TCP_IDLE))[0]
                data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE)
                out = await self._tcp_reply(data, writer)
                if out is None:
                    continue
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _tcp_reply(self, data: bytes, writer: asyncio.StreamWriter) -> bytes | None:
        t0 = time.perf_counter()
        failed: list[bytes] = []
        query = self._parse(data, failed.append)
        if query is None:
            return failed[0] if failed else None
        try:
            reply = answer(query, self.view, self.options)
            msg = reply.message if reply.action is Action.ANSWER else await self.forwarder.resolve(query)
        except Exception:
            log.exception("answering %s over TCP failed", query.q.qname)
            msg = None
        if msg is None:
            msg = error_reply(query, RCODE.SERVFAIL)
        rotate_randomly(msg, random.randrange)
        out = fit(msg, TCP_MAX)
        self.metrics.count("tcp", *_stat(query, msg))
        self.metrics.observe(time.perf_counter() - t0)
        return out
