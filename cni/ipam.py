"""host-local compatible IPAM core: range sets, round-robin allocation against a store.

Pure: the allocator works against the `Store` protocol; `cni.store.DiskStore` lays the
allocations out exactly like the reference host-local (/var/lib/cni/networks/<name>/<ip>
holding `<containerID>\\r\\n<ifname>`, `last_reserved_ip.<rangeIndex>`, a flock'd `lock`),
`MemoryStore` serves the unit tests.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, ContextManager, Iterator, Mapping, Protocol, Sequence, Union

from cni.errors import (CNIError, DUPLICATE_ALLOCATION, INVALID_CONFIG, NO_ADDRESSES, NOT_AVAILABLE,
                        UNKNOWN_CONTAINER)
from cni.spec import Attachment, IPAddress, IPConfig, NetConf, Request, Result, Route, parse_dns, parse_ip, parse_route

IPNet = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
DEFAULT_DATA_DIR = "/var/lib/cni/networks"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class Range:
    subnet: IPNet
    range_start: IPAddress
    range_end: IPAddress
    gateway: IPAddress | None

    def __contains__(self, ip: object) -> bool:
        return (isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)) and ip.version == self.subnet.version
                and self.range_start <= ip <= self.range_end)  # type: ignore[operator]

    @property
    def size(self) -> int:
        n = int(self.range_end) - int(self.range_start) + 1
        gw = self.gateway
        return n - (1 if gw is not None and gw in self else 0)

    def __str__(self) -> str:
        return f"{self.range_start}-{self.range_end}"


RangeSet = tuple[Range, ...]


def rangeset_contains(rs: RangeSet, ip: IPAddress) -> Range | None:
    return next((r for r in rs if ip in r), None)


def rangeset_str(rs: RangeSet) -> str:
    return ",".join(str(r) for r in rs)


@dataclass(frozen=True)
class IPAMConfig:
    name: str
    ranges: tuple[RangeSet, ...]
    routes: tuple[Route, ...] = ()
    data_dir: str = DEFAULT_DATA_DIR
    requested: tuple[IPAddress, ...] = ()
    dns: Mapping[str, Any] = field(default_factory=dict, compare=False)
    resolv_conf: str = ""


# ---------------------------------------------------------------- config

def _last_ip(subnet: IPNet) -> IPAddress:
    end = subnet.broadcast_address
    return end - 1 if subnet.version == 4 else end


def parse_range(item: Any) -> Range:
    """One range: subnet required (no host bits, big enough), defaults as the reference."""
    if not isinstance(item, Mapping) or not item.get("subnet"):
        raise CNIError(INVALID_CONFIG, "IPAM config missing 'subnet' key", repr(item))
    try:
        iface = ipaddress.ip_interface(item["subnet"])
    except (ValueError, TypeError):
        raise CNIError(INVALID_CONFIG, "invalid subnet", repr(item["subnet"])) from None
    subnet = iface.network
    if subnet.prefixlen > subnet.max_prefixlen - 2:
        raise CNIError(INVALID_CONFIG, f"Network {subnet} too small to allocate from")
    if iface.ip != subnet.network_address:
        raise CNIError(INVALID_CONFIG, f"Network has host bits set. For a subnet mask of length "
                       f"{subnet.prefixlen} the network address is {subnet.network_address}", str(iface))
    gateway = parse_ip(item["gateway"], "gateway") if item.get("gateway") else subnet.network_address + 1
    start = parse_ip(item["rangeStart"], "rangeStart") if item.get("rangeStart") else subnet.network_address + 1
    end = parse_ip(item["rangeEnd"], "rangeEnd") if item.get("rangeEnd") else _last_ip(subnet)
    for label, value in (("RangeStart", start), ("RangeEnd", end), ("gateway", gateway)):
        if value.version != subnet.version or value not in subnet:
            raise CNIError(INVALID_CONFIG, f"{label} {value} not in network {subnet}")
    if start > end:  # type: ignore[operator]
        raise CNIError(INVALID_CONFIG, f"RangeStart {start} is after RangeEnd {end}")
    return Range(subnet, start, end, gateway)


def _overlaps(a: Range, b: Range) -> bool:
    return a.subnet.version == b.subnet.version and a.range_start <= b.range_end and b.range_start <= a.range_end  # type: ignore[operator]


def parse_rangeset(items: Any) -> RangeSet:
    if not isinstance(items, list) or not items:
        raise CNIError(INVALID_CONFIG, "empty range set", repr(items))
    rs = tuple(parse_range(i) for i in items)
    if len({r.subnet.version for r in rs}) > 1:
        raise CNIError(INVALID_CONFIG, "mixed address families in one range set", rangeset_str(rs))
    for i, a in enumerate(rs):
        for b in rs[i + 1:]:
            if _overlaps(a, b):
                raise CNIError(INVALID_CONFIG, f"range {a} overlaps with {b}")
    return rs


def _requested_ips(conf: NetConf, req: Request) -> tuple[IPAddress, ...]:
    wanted: list[IPAddress] = []
    for text in (req.arg("IP").split(",") if req.arg("IP") else []):
        wanted.append(parse_ip(text.strip(), "IP in CNI_ARGS"))
    args = conf.raw.get("args") or {}
    sources = [((args.get("cni") or {}) if isinstance(args, dict) else {}).get("ips"),
               conf.runtime_config.get("ips")]
    for source in sources:
        for text in source or []:
            wanted.append(parse_ip(str(text).split("/")[0], "requested IP"))
    return tuple(dict.fromkeys(wanted))


def parse_ipam_config(conf: NetConf, req: Request) -> IPAMConfig:
    """The `ipam` block of a network config, host-local style (legacy subnet first)."""
    ipam = conf.ipam
    if not _NAME.match(conf.name):
        raise CNIError(INVALID_CONFIG, "invalid network name", conf.name)
    sets: list[Any] = []
    if ipam.get("subnet"):
        sets.append([{k: ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in ipam}])
    runtime_ranges = conf.runtime_config.get("ipRanges")
    sets.extend(runtime_ranges if runtime_ranges else (ipam.get("ranges") or []))
    if not sets:
        raise CNIError(INVALID_CONFIG, "no IP ranges specified")
    ranges = tuple(parse_rangeset(s) for s in sets)
    flat = [(i, r) for i, rs in enumerate(ranges) for r in rs]
    for n, (i, a) in enumerate(flat):
        for j, b in flat[n + 1:]:
            if i != j and _overlaps(a, b):
                raise CNIError(INVALID_CONFIG, f"range set {i} overlaps with {j}")
    routes = tuple(parse_route(r) for r in ipam.get("routes") or [])
    data_dir = ipam.get("dataDir") or DEFAULT_DATA_DIR
    return IPAMConfig(conf.name, ranges, routes, str(data_dir), _requested_ips(conf, req),
                      parse_dns(ipam.get("dns")), str(ipam.get("resolvConf") or ""))


# ---------------------------------------------------------------- store protocol

class Store(Protocol):
    def lock(self) -> ContextManager[None]: ...
    def reserve(self, cid: str, ifname: str, ip: IPAddress, range_id: int) -> bool: ...
    def last_reserved(self, range_id: int) -> IPAddress | None: ...
    def release(self, ip: IPAddress) -> None: ...
    def allocations(self) -> dict[IPAddress, Attachment]: ...


@dataclass
class MemoryStore:
    """An in-memory Store (unit tests, and the shape every store must have)."""

    held: dict[IPAddress, Attachment] = field(default_factory=dict)
    last: dict[int, IPAddress] = field(default_factory=dict)

    def lock(self) -> ContextManager[None]:
        return contextlib.nullcontext()

    def reserve(self, cid: str, ifname: str, ip: IPAddress, range_id: int) -> bool:
        if ip in self.held:
            return False
        self.held[ip] = Attachment(cid, ifname)
        self.last[range_id] = ip
        return True

    def last_reserved(self, range_id: int) -> IPAddress | None:
        return self.last.get(range_id)

    def release(self, ip: IPAddress) -> None:
        self.held.pop(ip, None)

    def allocations(self) -> dict[IPAddress, Attachment]:
        return dict(self.held)


# ---------------------------------------------------------------- allocator

def candidates(rs: RangeSet, last: IPAddress | None) -> Iterator[tuple[IPAddress, Range]]:
    """Every usable IP of the set once, round robin from the one after `last`, gateways skipped."""
    start_idx, start = 0, int(rs[0].range_start)
    hit = rangeset_contains(rs, last) if last is not None else None
    if hit is not None and last is not None:
        start_idx = rs.index(hit)
        if int(last) < int(hit.range_end):
            start = int(last) + 1
        else:
            start_idx = (start_idx + 1) % len(rs)
            start = int(rs[start_idx].range_start)
    first = rs[start_idx]
    segments = [(first, start, int(first.range_end))]
    segments += [(r, int(r.range_start), int(r.range_end)) for r in rs[start_idx + 1:] + rs[:start_idx]]
    if start > int(first.range_start):
        segments.append((first, int(first.range_start), start - 1))
    for r, lo, hi in segments:
        make = type(r.range_start)
        for n in range(lo, hi + 1):
            ip = make(n)
            if ip != r.gateway:
                yield ip, r


def _allocate_one(rs: RangeSet, idx: int, store: Store, cid: str, ifname: str,
                  requested: IPAddress | None) -> IPConfig:
    if requested is not None:
        r = rangeset_contains(rs, requested)
        assert r is not None
        if requested == r.gateway:
            raise CNIError(INVALID_CONFIG, f"requested ip {requested} is subnet's gateway")
        if not store.reserve(cid, ifname, requested, idx):
            raise CNIError(NO_ADDRESSES, f"requested IP address {requested} is not available in range set "
                           f"{rangeset_str(rs)}")
        return IPConfig(ipaddress.ip_interface(f"{requested}/{r.subnet.prefixlen}"), r.gateway)
    held = [ip for ip, att in store.allocations().items() if att == Attachment(cid, ifname)]
    for ip in held:
        if rangeset_contains(rs, ip) is not None:
            raise CNIError(DUPLICATE_ALLOCATION, f"{ip} has been allocated to {cid}, "
                           "duplicate allocation is not allowed")
    for ip, r in candidates(rs, store.last_reserved(idx)):
        if store.reserve(cid, ifname, ip, idx):
            return IPConfig(ipaddress.ip_interface(f"{ip}/{r.subnet.prefixlen}"), r.gateway)
    raise CNIError(NO_ADDRESSES, f"no IP addresses available in range set: {rangeset_str(rs)}")


def allocate(cfg: IPAMConfig, store: Store, cid: str, ifname: str) -> Result:
    """ADD: one IP per range set (requested IPs honoured), all or nothing, under the store lock."""
    with store.lock():
        wanted = list(cfg.requested)
        ips: list[IPConfig] = []
        try:
            for idx, rs in enumerate(cfg.ranges):
                req = next((ip for ip in wanted if rangeset_contains(rs, ip) is not None), None)
                if req is not None:
                    wanted.remove(req)
                try:
                    ips.append(_allocate_one(rs, idx, store, cid, ifname, req))
                except CNIError as exc:
                    raise CNIError(exc.code, f"failed to allocate for range {idx}: {exc.msg}", exc.details) from None
            if wanted:
                raise CNIError(NO_ADDRESSES, "failed to allocate all requested IPs: "
                               + " ".join(str(ip) for ip in wanted))
        except CNIError:
            for ipc in ips:
                store.release(ipc.address.ip)
            raise
    return Result(ips=tuple(ips), routes=cfg.routes, dns=dict(cfg.dns))


def release(store: Store, cid: str, ifname: str) -> list[IPAddress]:
    """DEL: free every IP held by (cid, ifname); none held is success."""
    with store.lock():
        mine = sorted((ip for ip, att in store.allocations().items() if att == Attachment(cid, ifname)), key=str)
        for ip in mine:
            store.release(ip)
    return mine


def held_by(store: Store, cid: str, ifname: str) -> list[IPAddress]:
    return sorted((ip for ip, att in store.allocations().items() if att == Attachment(cid, ifname)), key=str)


def check(store: Store, cid: str, ifname: str, expected: Sequence[IPAddress] = ()) -> None:
    """CHECK: the attachment holds an address (and every address prevResult names)."""
    mine = set(held_by(store, cid, ifname))
    if not mine:
        raise CNIError(UNKNOWN_CONTAINER, f"failed to find address added by container {cid}", ifname)
    missing = [str(ip) for ip in expected if ip not in mine]
    if missing:
        raise CNIError(UNKNOWN_CONTAINER, f"addresses {', '.join(missing)} are not allocated to container {cid}")


def gc(store: Store, valid: frozenset[Attachment]) -> list[IPAddress]:
    """GC: release everything whose (containerID, ifname) is not in the valid set."""
    with store.lock():
        stale = sorted((ip for ip, att in store.allocations().items() if att not in valid), key=str)
        for ip in stale:
            store.release(ip)
    return stale


def status(cfg: IPAMConfig, store: Store) -> None:
    """STATUS: not ready (code 50) when some range set has no free address left."""
    held = store.allocations()
    for idx, rs in enumerate(cfg.ranges):
        used = sum(1 for ip in held if rangeset_contains(rs, ip) is not None)
        if used >= sum(r.size for r in rs):
            raise CNIError(NOT_AVAILABLE, f"range set {idx} ({rangeset_str(rs)}) has no free addresses")
