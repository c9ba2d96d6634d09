"""Node IPAM: give every Node a spec.podCIDR/podCIDRs carved from the cluster CIDR.

The pure core is `CIDRAllocator` (occupy / allocate / release over a cluster CIDR split
into fixed-size blocks). The shell `run(client, stop, **options)` is an in-process
controller: it rebuilds the allocator from the Nodes that already carry a podCIDR, then
assigns one to every Node without, and releases a Node's block when the Node goes away,
as kube-controller-manager's range allocator does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any, Iterable

from controlplane.resources import NODES
from podnet.daemon import queue_items

log = logging.getLogger("podnet.nodeipam")

IPv4Network = ipaddress.IPv4Network
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_MASK_V4 = 24
DEFAULT_MASK_V6 = 64


class NodeIPAMError(Exception):
    """Bad configuration or an exhausted cluster CIDR; the message names the value."""


class CIDRAllocator:
    """Hands out fixed-size blocks of a cluster CIDR, lowest free block first."""

    def __init__(self, cluster_cidr: str | Network, mask_size: int | None = None) -> None:
        try:
            self.cluster = ipaddress.ip_network(cluster_cidr, strict=False)
        except ValueError as exc:
            raise NodeIPAMError(f"invalid cluster CIDR {cluster_cidr!r}: {exc}") from None
        default = DEFAULT_MASK_V4 if self.cluster.version == 4 else DEFAULT_MASK_V6
        self.mask_size = default if mask_size is None else int(mask_size)
        if not self.cluster.prefixlen <= self.mask_size <= self.cluster.max_prefixlen:
            raise NodeIPAMError(
                f"node CIDR mask size /{self.mask_size} does not fit in cluster CIDR {self.cluster}")
        if self.mask_size - self.cluster.prefixlen > 24:
            raise NodeIPAMError(f"node CIDR mask size /{self.mask_size} gives too many blocks in {self.cluster}")
        self.capacity = 1 << (self.mask_size - self.cluster.prefixlen)
        self._used: set[int] = set()
        self._next = 0

    def _index(self, cidr: str | Network) -> int | None:
        """Block index of `cidr`, or None when it is not a block of this cluster CIDR."""
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if net.version != self.cluster.version or net.prefixlen != self.mask_size:
            return None
        if not net.subnet_of(self.cluster):  # type: ignore[arg-type]
            return None
        offset = int(net.network_address) - int(self.cluster.network_address)
        return offset >> (self.cluster.max_prefixlen - self.mask_size)

    def _block(self, index: int) -> Network:
        size = 1 << (self.cluster.max_prefixlen - self.mask_size)
        addr = ipaddress.ip_address(int(self.cluster.network_address) + index * size)
        return ipaddress.ip_network(f"{addr}/{self.mask_size}")

    def contains(self, cidr: str | Network) -> bool:
        return self._index(cidr) is not None

    def occupy(self, cidr: str | Network) -> bool:
        """Mark a block used (rebuilding from existing Nodes). False if it is not ours."""
        index = self._index(cidr)
        if index is None:
            return False
        self._used.add(index)
        return True

    def allocate(self) -> Network:
        """The next free block, searching round-robin from the last one handed out."""
        if len(self._used) >= self.capacity:
            raise NodeIPAMError(f"cluster CIDR {self.cluster} is exhausted ({self.capacity} /{self.mask_size} blocks)")
        for step in range(self.capacity):
            index = (self._next + step) % self.capacity
            if index not in self._used:
                self._used.add(index)
                self._next = (index + 1) % self.capacity
                return self._block(index)
        raise NodeIPAMError(f"cluster CIDR {self.cluster} is exhausted")  # pragma: no cover

    def release(self, cidr: str | Network) -> bool:
        index = self._index(cidr)
        if index is None or index not in self._used:
            return False
        self._used.discard(index)
        return True

    @property
    def used(self) -> int:
        return len(self._used)


def node_pod_cidrs(node: dict[str, Any]) -> list[str]:
    spec = node.get("spec") or {}
    return list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))


def rebuild(allocator: CIDRAllocator, nodes: Iterable[dict[str, Any]]) -> list[str]:
    """Occupy the blocks existing Nodes hold; returns the names of Nodes still needing one."""
    needing = []
    for node in nodes:
        cidrs = node_pod_cidrs(node)
        if not cidrs:
            needing.append(str(node["metadata"]["name"]))
        for cidr in cidrs:
            if not allocator.occupy(cidr):
                log.warning("node %s has podCIDR %s outside cluster CIDR %s", node["metadata"]["name"], cidr,
                            allocator.cluster)
    return sorted(needing)


# ---------------------------------------------------------------- shell

async def run(client: Any, stop: asyncio.Event, **options: Any) -> None:
    """The node IPAM controller. Options: cluster_cidr, node_cidr_mask_size (others ignored)."""
    from controlplane.client import Informer, PatchType

    cidr = options.get("cluster_cidr") or DEFAULT_CLUSTER_CIDR
    if isinstance(cidr, (list, tuple)):
        cidr = cidr[0]
    allocator = CIDRAllocator(str(cidr), options.get("node_cidr_mask_size"))
    queue: asyncio.Queue[str] = asyncio.Queue()
    holders: dict[str, list[str]] = {}

    informer = Informer(client, NODES)
    ready = asyncio.Event()

    def on_add(obj: dict[str, Any]) -> None:
        name = str(obj["metadata"]["name"])
        cidrs = node_pod_cidrs(obj)
        if cidrs:
            for c in cidrs:
                allocator.occupy(c)
            holders[name] = cidrs
        elif ready.is_set():
            queue.put_nowait(name)

    def on_update(old: dict[str, Any], new: dict[str, Any]) -> None:
        on_add(new)

    def on_delete(obj: dict[str, Any]) -> None:
        name = str(obj["metadata"]["name"])
        for c in holders.pop(name, None) or node_pod_cidrs(obj):
            allocator.release(c)
            log.info("released %s from deleted node %s", c, name)

    informer.add_handler(on_add=on_add, on_update=on_update, on_delete=on_delete)
    await informer.start()
    try:
        while not stop.is_set() and not await informer.wait_synced(timeout=1):
            pass  # the API is not there yet: the informer keeps retrying
        for name in rebuild(allocator, informer.list()):
            queue.put_nowait(name)
        ready.set()
        async for node_name in queue_items(queue, stop):
            await _assign(client, informer, allocator, holders, node_name, queue, PatchType.MERGE)
    finally:
        await informer.stop()


async def _assign(client: Any, informer: Any, allocator: CIDRAllocator, holders: dict[str, list[str]],
                  name: str, queue: "asyncio.Queue[str]", merge: Any) -> None:
    node = informer.get(name)
    if node is None or node_pod_cidrs(node) or name in holders:
        return
    try:
        cidr = allocator.allocate()
    except NodeIPAMError as exc:
        log.error("node %s: %s", name, exc)
        return
    holders[name] = [str(cidr)]
    try:
        await client.patch(NODES, name, {"spec": {"podCIDR": str(cidr), "podCIDRs": [str(cidr)]}},
                           patch_type=merge)
        log.info("node %s: podCIDR %s", name, cidr)
    except Exception as exc:  # noqa: BLE001 - retry later, the block goes back
        holders.pop(name, None)
        allocator.release(cidr)
        if getattr(exc, "code", 0) == 404:
            return
        log.warning("node %s: assigning %s failed: %s; retrying", name, cidr, exc)
        await asyncio.sleep(0.5)
        queue.put_nowait(name)
