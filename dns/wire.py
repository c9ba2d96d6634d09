"""Wire-format helpers (pure): UDP size limits, truncation, FORMERR, the answer cache.

The answer cache maps a query's bytes minus its 2-byte ID to the packed reply minus its ID.
A cluster answer is a pure function of (query bytes, view), so equal bytes under the same
view generation get equal replies: the hot path is `cache.get(data[2:])` and
`data[:2] + hit` without parsing. The query's spelling (0x20 case), EDNS payload size and DO
bit are all inside the key, so case echo and truncation are exact. The cache is cleared when
the view changes; past its bound the oldest quarter is evicted.
"""

from __future__ import annotations

import itertools
import struct
from typing import Callable, Iterator, Union

from dnslib import QTYPE, DNSRecord

UDP_DEFAULT = 512
UDP_MAX = 4096
TCP_MAX = 65535
FLAG_QR = 0x8000
FLAG_TC = 0x0200
RCODE_FORMERR = 1


def udp_limit(query: DNSRecord) -> int:
    """The client's EDNS0 UDP payload size (512 without EDNS), within [512, 4096]."""
    for rr in query.ar:
        if rr.rtype == QTYPE.OPT:
            return max(UDP_DEFAULT, min(int(rr.rclass), UDP_MAX))
    return UDP_DEFAULT


def fit(reply: DNSRecord, limit: int) -> bytes:
    """Pack `reply` into at most `limit` bytes.

    Too big: first drop the additional section (keeping OPT; no TC needed, RFC 2181 9), then
    fall back to the question alone with TC set so the client retries over TCP.
    """
    data = bytes(reply.pack())  # dnslib packs into a bytearray
    if len(data) <= limit:
        return data
    opt = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    if len(opt) != len(reply.ar):
        reply.ar = opt
        data = bytes(reply.pack())
        if len(data) <= limit:
            return data
    reply.rr = []
    reply.auth = []
    reply.header.tc = 1
    return bytes(reply.pack())


def formerr(data: bytes) -> bytes | None:
    """A FORMERR reply for an unparseable query, or None (drop) when even the header is bad
    or the packet is itself a response (never answer responses: reflection loops)."""
    if len(data) < 12:
        return None
    ident, flags = struct.unpack_from("!HH", data)
    if flags & FLAG_QR:
        return None
    out_flags = FLAG_QR | (flags & 0x7900) | RCODE_FORMERR  # keep opcode and RD
    return struct.pack("!HHHHHH", ident, out_flags, 0, 0, 0, 0)


def is_response(data: bytes) -> bool:
    return len(data) >= 3 and bool(data[2] & 0x80)


def with_id(data: bytes, ident: int) -> bytes:
    return struct.pack("!H", ident) + data[2:]


ROTATIONS = 8


def rotations(reply: DNSRecord, limit: int) -> list[bytes]:
    """The packed reply, or (CoreDNS `loadbalance`) up to 8 variants with the A/AAAA answer
    records rotated so that successive clients of a headless service start at different
    endpoints. Replies that are not a plain set of 2+ address records have one variant."""
    rr = list(reply.rr)
    first = fit(reply, limit)
    if len(rr) < 2 or reply.header.tc or rr[0].rtype not in (QTYPE.A, QTYPE.AAAA) or \
            any(r.rtype != rr[0].rtype for r in rr):
        return [first]
    out = [first]
    step = -(-len(rr) // ROTATIONS)
    for k in range(step, len(rr), step):
        reply.rr = rr[k:] + rr[:k]
        out.append(fit(reply, limit))
    reply.rr = rr
    return out


def rotate_randomly(reply: DNSRecord, rng: Callable[[int], int]) -> None:
    """The same for TCP (no cache): rotate the address records by a random offset."""
    rr = reply.rr
    if len(rr) > 1 and rr[0].rtype in (QTYPE.A, QTYPE.AAAA) and all(r.rtype == rr[0].rtype for r in rr):
        k = rng(len(rr))
        reply.rr = rr[k:] + rr[:k]


Body = Union[bytes, Iterator[bytes]]  # one reply, or a cycle of rotated variants


class AnswerCache:
    """query bytes[2:] -> (reply bytes[2:] or a cycle of variants, stat key); bounded (FIFO),
    cleared per view generation."""

    def __init__(self, max_entries: int = 10000) -> None:
        self.max_entries = max_entries
        self.entries: dict[bytes, tuple[Body, tuple[str, str]]] = {}
        self.generation = -1

    def reset(self, generation: int) -> None:
        if generation != self.generation:
            self.entries = {}
            self.generation = generation

    def put(self, query: bytes, reply: bytes | list[bytes], stat: tuple[str, str], generation: int) -> None:
        if generation != self.generation:
            return  # computed against an older view
        if len(self.entries) >= self.max_entries:  # evict the oldest quarter (dicts keep insertion order)
            for key in list(itertools.islice(self.entries, max(1, self.max_entries // 4))):
                del self.entries[key]
        if isinstance(reply, (bytes, bytearray)):
            self.entries[query[2:]] = (bytes(reply[2:]), stat)
        elif len(reply) == 1:
            self.entries[query[2:]] = (bytes(reply[0][2:]), stat)
        else:
            self.entries[query[2:]] = (itertools.cycle([bytes(r[2:]) for r in reply]), stat)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.entries)
