"""Netlink and sysctl shell of the bridge plugin (pyroute2; no `ip` execs).

Everything acts on the network namespace the calling thread is in (the node), except the
`PodLink` handle, whose netlink socket is opened inside CNI_NETNS by entering it with
setns(2) on the calling thread only, and leaving again before anything else runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from cni.errors import CNIError, ADDRESS_CONFLICT, INTERFACE_EXISTS, INTERNAL, INVALID_NETNS
from cni.spec import Interface, IPConfig, Route

CLONE_NEWNET = 0x40000000
IFA_F_NODAD = 0x02
_libc = ctypes.CDLL(None, use_errno=True)
BRIDGE_LOCK = threading.Lock()   # bridge create/address races between daemon threads
FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
ZERO_MAC = "00:00:00:00:00:00"


class NetnsGone(Exception):
    """CNI_NETNS does not exist (any more) or is not a network namespace."""


@contextlib.contextmanager
def entered(path: str) -> Iterator[None]:
    """Run the block with the calling thread inside the netns at `path`."""
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NetnsGone(f"{path}: {exc.strerror}") from None
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise NetnsGone(f"{path}: {os.strerror(ctypes.get_errno())}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:  # never go on in the wrong namespace
                os._exit(70)
    finally:
        os.close(target)
        os.close(own)


def open_netns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise CNIError(INVALID_NETNS, f"failed to open netns {path!r}", exc.strerror or "") from None


def pod_iproute(path: str) -> IPRoute:
    """An IPRoute whose socket lives in the netns at `path` (raises NetnsGone)."""
    with entered(path):
        return IPRoute()


def _errno(exc: NetlinkError) -> int:
    return int(exc.code)


def get_link(ipr: IPRoute, name: str) -> Any | None:
    """The link message for `name` (one RTM_GETLINK), or None."""
    try:
        links = ipr.link("get", ifname=name)
    except NetlinkError as exc:
        if _errno(exc) in (errno.ENODEV, errno.ENOENT):
            return None
        raise
    return links[0] if links else None


def lookup(ipr: IPRoute, name: str) -> int | None:
    msg = get_link(ipr, name)
    return int(msg["index"]) if msg is not None else None


_POOL: list[IPRoute] = []
_POOL_LOCK = threading.Lock()


@contextlib.contextmanager
def node_iproute() -> Iterator[IPRoute]:
    """A node-namespace IPRoute, reused across requests of a long-lived process (the daemon)."""
    with _POOL_LOCK:
        ipr = _POOL.pop() if _POOL else None
    if ipr is None:
        ipr = IPRoute()
    try:
        yield ipr
    except BaseException:
        ipr.close()  # state unknown: do not reuse
        raise
    with _POOL_LOCK:
        if len(_POOL) < 8:
            _POOL.append(ipr)
            return
    ipr.close()


def link_info(ipr: IPRoute, index: int) -> Any:
    return ipr.get_links(index)[0]


@dataclass(frozen=True)
class Bridge:
    index: int
    name: str
    mac: str


def ensure_bridge(ipr: IPRoute, name: str, mtu: int, promisc: bool, vlan: int) -> Bridge:
    """Create the bridge if missing (a concurrent creator is fine), bring it up."""
    info = get_link(ipr, name)
    if info is None:
        kwargs: dict[str, Any] = {"ifname": name, "kind": "bridge"}
        if mtu:
            kwargs["mtu"] = mtu
        if vlan:
            kwargs["br_vlan_filtering"] = 1
        try:
            ipr.link("add", **kwargs)
        except NetlinkError as exc:
            if vlan and _errno(exc) == errno.EOPNOTSUPP:
                raise CNIError(INTERNAL, f"could not add {name!r}: vlan needs bridge VLAN filtering, "
                               "which this kernel does not support", str(exc)) from None
            if _errno(exc) != errno.EEXIST:
                raise CNIError(INTERNAL, f"could not add {name!r}", str(exc)) from None
        info = get_link(ipr, name)
        if info is None:
            raise CNIError(INTERNAL, f"bridge {name!r} vanished after creation")
    index = int(info["index"])
    kind = info.get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))
    if kind != "bridge":
        raise CNIError(INTERNAL, f"{name!r} already exists but is not a bridge", str(kind))
    if promisc and not info["flags"] & 0x100:
        ipr.link("set", index=index, flags=info["flags"] | 0x100, change=0x100)
    if not info["flags"] & 1:
        ipr.link("set", index=index, state="up")
    return Bridge(index, name, str(info.get("IFLA_ADDRESS")))


def random_mac() -> str:
    """A random locally administered unicast MAC (what the kernel would pick for a veth)."""
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def index_in(path: str, name: str) -> int | None:
    """if_nametoindex inside the netns at `path` (an ioctl: far cheaper than RTM_GETLINK)."""
    with entered(path):
        try:
            return socket.if_nametoindex(name)
        except OSError:
            return None


def create_veth(node: IPRoute, netns_fd: int, ifname: str, bridge: Bridge,
                mtu: int, hairpin: bool, vlan: int, mac: str = "") -> tuple[Interface, Interface, int]:
    """veth<8 hex> on the node (enslaved, up) peered with `ifname` in the pod netns.

    Both MACs are chosen here, so nothing has to be read back. Returns (host, container
    without sandbox, host index).
    """
    host_mac, pod_mac = random_mac(), mac or random_mac()
    for _ in range(8):
        host = "veth" + secrets.token_hex(4)
        peer: dict[str, Any] = {"ifname": ifname, "net_ns_fd": netns_fd, "address": pod_mac}
        kwargs: dict[str, Any] = {"ifname": host, "kind": "veth", "address": host_mac, "peer": peer}
        if mtu:
            kwargs["mtu"] = peer["mtu"] = mtu
        try:
            node.link("add", **kwargs)
            break
        except NetlinkError as exc:
            if _errno(exc) == errno.EEXIST and name_index(host) is not None:
                continue  # host name taken: draw another (else the pod already has ifname)
            if _errno(exc) == errno.EEXIST:
                raise CNIError(INTERFACE_EXISTS, f"container veth name provided ({ifname}) already exists "
                               "in the netns") from None
            raise CNIError(INTERNAL, f"failed to make veth pair {host}/{ifname}", str(exc)) from None
    else:
        raise CNIError(INTERNAL, "could not find a free veth name")
    index = name_index(host)
    if index is None:
        raise CNIError(INTERNAL, f"host veth {host} vanished")
    node.link("set", index=index, master=bridge.index, state="up")
    if hairpin:
        node.brport("set", index=index, mode=1)
    if vlan:
        node.vlan_filter("add", index=index, vlan_info={"vid": vlan, "flags": ["pvid", "untagged"]})
        node.vlan_filter("del", index=index, vlan_info={"vid": 1})
    return Interface(host, host_mac, mtu=mtu), Interface(ifname, pod_mac, mtu=mtu), index


def name_index(name: str) -> int | None:
    """if_nametoindex in the calling thread's (the node's) namespace."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def delete_link(ipr: IPRoute, name: str, index: int | None = None) -> bool:
    index = lookup(ipr, name) if index is None else index
    if index is None:
        return False
    try:
        ipr.link("del", index=index)
    except NetlinkError as exc:
        if _errno(exc) != errno.ENODEV:
            raise
    return True


def configure_pod(pod: IPRoute, container: Interface, ips: tuple[IPConfig, ...], routes: tuple[Route, ...],
                  netns: str) -> Interface:
    """Bring the container end up with its addresses and routes (reference ConfigureIface)."""
    ifname = container.name
    index = index_in(netns, ifname)
    if index is None:
        raise CNIError(INTERNAL, f"failed to lookup {ifname!r} in {netns}")
    pod.link("set", index=index, state="up")
    gws: dict[int, Any] = {}
    for ipc in ips:
        flags = IFA_F_NODAD if ipc.address.version == 6 else 0
        try:
            pod.addr("add", index=index, address=str(ipc.address.ip), prefixlen=ipc.address.network.prefixlen,
                     flags=flags)
        except NetlinkError as exc:
            raise CNIError(INTERNAL, f"failed to add IP addr {ipc.address} to {ifname!r}", str(exc)) from None
        if ipc.gateway is not None:
            gws.setdefault(ipc.address.version, ipc.gateway)
    for r in routes:
        gw = r.gw or gws.get(r.dst.version)
        kwargs: dict[str, Any] = {"dst": str(r.dst), "oif": index, "family": FAMILY[r.dst.version]}
        if gw is not None:
            kwargs["gateway"] = str(gw)
        try:
            pod.route("add", **kwargs)
        except NetlinkError as exc:
            if _errno(exc) != errno.EEXIST:
                raise CNIError(INTERNAL, f"failed to add route '{r.dst} via {gw} dev {ifname}'", str(exc)) from None
    return Interface(ifname, container.mac, sandbox=netns, mtu=container.mtu)


def addresses(ipr: IPRoute, index: int, family: int = 0) -> list[tuple[str, int]]:
    kwargs: dict[str, Any] = {"index": index}
    if family:
        kwargs["family"] = FAMILY[family]
    return [(str(a.get("IFA_ADDRESS")), int(a["prefixlen"])) for a in ipr.get_addr(**kwargs)
            if not str(a.get("IFA_ADDRESS")).startswith("fe80:")]


GATEWAY_TTL = 10.0   # seconds a verified bridge gateway is trusted without listing addresses again
_GATEWAYS: dict[tuple[int, int, str], tuple[float, str]] = {}


def _netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def ensure_gateway(ipr: IPRoute, bridge: Bridge, gw: Any, force: bool) -> str:
    """ensure_gateway_uncached, remembered for GATEWAY_TTL per (netns, bridge index, gateway).

    Listing addresses is a netlink dump (~1.5 ms in pyroute2); a long-lived daemon serving a
    burst of ADDs on one bridge checks it once. Returns the bridge MAC (pinned) or ''.
    """
    key = (_netns_inode(), bridge.index, str(gw))
    hit = _GATEWAYS.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < GATEWAY_TTL:
        return hit[1]
    mac = ensure_gateway_uncached(ipr, bridge, gw, force)
    _GATEWAYS[key] = (now, mac)
    return mac


def forget_gateways() -> None:
    _GATEWAYS.clear()


def ensure_gateway_uncached(ipr: IPRoute, bridge: Bridge, gw: Any, force: bool) -> str:
    """Put gw/prefix on the bridge; a different IPv4 (or overlapping IPv6) is an error unless forceAddress."""
    family = gw.version
    for addr, plen in addresses(ipr, bridge.index, family):
        have = ipaddress.ip_interface(f"{addr}/{plen}")
        if have == gw:
            return str(link_info(ipr, bridge.index).get("IFLA_ADDRESS"))
        if family == 4 or gw.ip in have.network or have.ip in gw.network:
            if not force:
                raise CNIError(ADDRESS_CONFLICT, f"{bridge.name!r} already has an IP address different from {gw}",
                               str(have))
            ipr.addr("del", index=bridge.index, address=addr, prefixlen=plen)
    try:
        ipr.addr("add", index=bridge.index, address=str(gw.ip), prefixlen=gw.network.prefixlen,
                 flags=IFA_F_NODAD if family == 6 else 0)
    except NetlinkError as exc:
        if _errno(exc) != errno.EEXIST:
            raise CNIError(INTERNAL, f"could not add IP address to {bridge.name!r}", str(exc)) from None
    # pin the bridge MAC, otherwise it follows the lowest port MAC as veths come and go
    # (a bridge without ports reports 00:00:00:00:00:00, so read it now that ours is enslaved)
    mac = str(link_info(ipr, bridge.index).get("IFLA_ADDRESS"))
    if mac != ZERO_MAC:
        ipr.link("set", index=bridge.index, address=mac)
    return mac


def enable_forwarding(family: int) -> None:
    """ip_forward in the namespace this thread is in (the node's, where the plugin runs)."""
    path = "/proc/sys/net/ipv4/ip_forward" if family == 4 else "/proc/sys/net/ipv6/conf/all/forwarding"
    with open(path, "r+") as f:
        if f.read().strip() != "1":
            f.seek(0)
            f.write("1")
