"""`podnet-bridge` commands (shell): ADD, DEL, CHECK, GC, STATUS on top of the pure cores.

Runs in the namespace of the calling thread (the node). `handle()` serves both the
in-process fallback of the shim and `podnet cni daemon`.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any, Mapping

from pyroute2 import IPRoute

from cni import iptables, masq, netlink
from cni.bridge import BridgeConf, build_result, merge_prev, parse_bridge_conf, plan_addresses, requested_mac
from cni.delegate import delegate, delegate_1_1, ipam_add
from cni.errors import CNIError, INVALID_CONFIG, INVALID_NETNS, IO_FAILURE, NOT_AVAILABLE, UNKNOWN_CONTAINER
from cni.runner import execute
from cni.spec import Interface, NetConf, Request, Result, parse_result, render_result, valid_attachments


def handle(req: Request, net: NetConf, env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    conf = parse_bridge_conf(net)
    env = os.environ if env is None else env
    if req.command == "ADD":
        return add(req, conf, env)
    if req.command == "DEL":
        delete(req, conf, env)
    elif req.command == "CHECK":
        check(req, conf, env)
    elif req.command == "GC":
        gc(req, conf, env)
    elif req.command == "STATUS":
        status(req, conf, env)
    return None


def _pod_iproute(req: Request) -> IPRoute:
    """An IPRoute in the pod's netns; a missing netns is the CNI INVALID_NETNS error."""
    try:
        return netlink.pod_iproute(req.netns)
    except netlink.NetnsGone as exc:
        raise CNIError(INVALID_NETNS, f"failed to open netns {req.netns!r}", str(exc)) from None


# ---------------------------------------------------------------- ADD

def add(req: Request, conf: BridgeConf, env: Mapping[str, str]) -> dict[str, Any]:
    netns_fd = netlink.open_netns(req.netns)
    try:
        pod = _pod_iproute(req)
        try:
            with netlink.node_iproute() as node:
                return _add(req, conf, env, node, pod, netns_fd)
        finally:
            pod.close()
    finally:
        os.close(netns_fd)


def _add(req: Request, conf: BridgeConf, env: Mapping[str, str], node: IPRoute, pod: IPRoute,
         netns_fd: int) -> dict[str, Any]:
    mac = requested_mac(conf.net, req.arg("MAC"))
    # (CNI_IFNAME already in the netns: the veth creation fails with INTERFACE_EXISTS)
    with netlink.BRIDGE_LOCK:
        bridge = netlink.ensure_bridge(node, conf.bridge, conf.mtu, conf.promisc_mode, conf.vlan)
    host, peer, _ = netlink.create_veth(node, netns_fd, req.ifname, bridge, conf.mtu, conf.hairpin_mode, conf.vlan,
                                        mac)
    try:
        ipam_result = Result() if conf.layer2 else ipam_add(req, conf.net, env)
        masq_job: iptables.Job | None = None
        try:
            planned, gateways = plan_addresses(conf, ipam_result)
            if conf.ip_masq:  # iptables-restore runs while we configure the pod
                masq_job = iptables.Job(masq.render_setup(conf.net.name, req.container_id,
                                                          [ipc.address for ipc in planned.ips]))
            container = netlink.configure_pod(pod, peer, planned.ips, planned.routes, req.netns)
            pinned = ""
            if conf.is_gateway and gateways:
                with netlink.BRIDGE_LOCK:
                    for gw in gateways:
                        pinned = netlink.ensure_gateway(node, bridge, gw.address, conf.force_address) or pinned
                for family in sorted({gw.address.version for gw in gateways}):
                    netlink.enable_forwarding(family)
            if masq_job is not None:
                masq_job.wait()
        except BaseException:
            netlink.forget_gateways()
            if masq_job is not None:
                masq_job.abandon()
                _teardown_masq(conf, req.container_id, masq_job.families)
            _rollback_ipam(req, conf, env)
            raise
    except BaseException:
        netlink.delete_link(node, host.name)
        raise
    # the bridge MAC may have followed our port (or been pinned) since ensure_bridge read it
    mac = pinned or str(netlink.link_info(node, bridge.index).get("IFLA_ADDRESS"))
    bridge_if = Interface(bridge.name, mac)
    result = build_result(planned, bridge_if, host, container)
    prev = parse_result(conf.net.prev_result) if conf.net.prev_result else None
    return render_result(merge_prev(prev, result), conf.net.cni_version)


def _rollback_ipam(req: Request, conf: BridgeConf, env: Mapping[str, str]) -> None:
    if conf.layer2:
        return
    try:
        delegate("DEL", req, conf.net, env)
    except CNIError as exc:
        print(f"podnet-bridge: IPAM DEL during rollback failed: {exc}", file=sys.stderr)


def _teardown_masq(conf: BridgeConf, container_id: str, families: set[int]) -> list[str]:
    errors = []
    for family in sorted(families):
        try:
            iptables.teardown(family, [masq.chain_name(conf.net.name, container_id)])
        except CNIError as exc:
            errors.append(str(exc))
    return errors


# ---------------------------------------------------------------- DEL

def config_families(conf: BridgeConf) -> set[int]:
    """IP families the IPAM config can hand out (both when it does not say)."""
    ipam = conf.net.ipam
    texts = [ipam.get("subnet")] + [r.get("subnet") for rs in ipam.get("ranges") or [] if isinstance(rs, list)
                                     for r in rs if isinstance(r, dict)]
    found: set[int] = set()
    for text in texts:
        try:
            found.add(ipaddress.ip_network(str(text), strict=False).version)
        except ValueError:
            continue
    return found or set((4, 6))


def delete(req: Request, conf: BridgeConf, env: Mapping[str, str]) -> None:
    """Best effort, idempotent: link, IPAM, masquerade rules; works with no or a vanished netns.

    When the pod's addresses can still be read, the exact rule deletion starts at once and
    runs while the kernel tears the veth down; otherwise (or if that transaction fails) the
    rules are found by chain name in iptables-save.
    """
    addrs: list[Any] = []
    pod = None
    if req.netns:
        try:
            pod = netlink.pod_iproute(req.netns)
        except netlink.NetnsGone:
            pod = None
    try:
        try:
            index = netlink.index_in(req.netns, req.ifname) if pod is not None else None
        except netlink.NetnsGone:  # vanished just now
            index = None
        if pod is not None and index is not None:
            addrs = [ipaddress.ip_interface(f"{a}/{p}") for a, p in netlink.addresses(pod, index)]
        job = None
        if conf.ip_masq and addrs:
            job = iptables.Job(masq.render_exact_teardown(conf.net.name, req.container_id, addrs))
        if pod is not None and index is not None:
            netlink.delete_link(pod, req.ifname, index)
    finally:
        if pod is not None:
            pod.close()
    first: CNIError | None = None
    if not conf.layer2:
        try:
            delegate("DEL", req, conf.net, env)
        except CNIError as exc:
            first = exc
    errors: list[str] = []
    if conf.ip_masq:
        families = {a.version for a in addrs} or config_families(conf)
        if job is not None:
            families = job.wait_failed()
        errors += _teardown_masq(conf, req.container_id, families)
    if first is not None:
        raise first
    if errors:
        raise CNIError(IO_FAILURE, "failed to remove masquerade rules", "; ".join(errors))


# ---------------------------------------------------------------- CHECK

def check(req: Request, conf: BridgeConf, env: Mapping[str, str]) -> None:
    if conf.net.prev_result is None:
        raise CNIError(INVALID_CONFIG, "Required prevResult missing")
    prev = parse_result(conf.net.prev_result)
    if not conf.layer2:
        delegate("CHECK", req, conf.net, env)
    idx = next((i for i, itf in enumerate(prev.interfaces) if itf.name == req.ifname and itf.sandbox), None)
    if idx is None:
        raise CNIError(INVALID_CONFIG, f"expected interface {req.ifname!r} in prevResult")
    pod = _pod_iproute(req)
    try:
        with netlink.node_iproute() as node:
            _check_node(node, conf, prev)
        _check_pod(pod, req, prev, idx)
    finally:
        pod.close()


def _check_node(node: IPRoute, conf: BridgeConf, prev: Result) -> None:
    br = netlink.get_link(node, conf.bridge)
    if br is None:
        raise CNIError(UNKNOWN_CONTAINER, f"bridge {conf.bridge!r} not found")
    for itf in prev.interfaces:
        if itf.sandbox:
            continue
        info = br if itf.name == conf.bridge else netlink.get_link(node, itf.name)
        if info is None:
            raise CNIError(UNKNOWN_CONTAINER, f"interface {itf.name!r} from prevResult not found")
        if itf.mac and str(info.get("IFLA_ADDRESS")).lower() != itf.mac.lower():
            raise CNIError(UNKNOWN_CONTAINER, f"interface {itf.name!r} MAC {info.get('IFLA_ADDRESS')} "
                           f"does not match prevResult {itf.mac}")
        if itf.name != conf.bridge and info.get("IFLA_MASTER") != br["index"]:
            raise CNIError(UNKNOWN_CONTAINER, f"interface {itf.name!r} is not attached to {conf.bridge!r}")


def _check_pod(pod: IPRoute, req: Request, prev: Result, idx: int) -> None:
    info = netlink.get_link(pod, req.ifname)
    if info is None:
        raise CNIError(UNKNOWN_CONTAINER, f"interface {req.ifname!r} not found in {req.netns}")
    want = prev.interfaces[idx]
    if want.mac and str(info.get("IFLA_ADDRESS")).lower() != want.mac.lower():
        raise CNIError(UNKNOWN_CONTAINER, f"{req.ifname} MAC {info.get('IFLA_ADDRESS')} does not match "
                       f"prevResult {want.mac}")
    have = {ipaddress.ip_interface(f"{a}/{p}") for a, p in netlink.addresses(pod, int(info["index"]))}
    for ipc in prev.ips:
        if ipc.interface == idx and ipc.address not in have:
            raise CNIError(UNKNOWN_CONTAINER, f"address {ipc.address} not found on {req.ifname}")
    routes = set()
    for family in sorted({r.dst.version for r in prev.routes}):
        for r in pod.get_routes(family=netlink.FAMILY[family]):
            dst = r.get("RTA_DST") or ("0.0.0.0" if family == 4 else "::")
            routes.add((str(ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False)), r.get("RTA_GATEWAY")))
    for route in prev.routes:
        if not any(d == str(route.dst) and (route.gw is None or g == str(route.gw)) for d, g in routes):
            raise CNIError(UNKNOWN_CONTAINER, f"route {route.dst} via {route.gw} not found in {req.netns}")


# ---------------------------------------------------------------- GC / STATUS

def gc(req: Request, conf: BridgeConf, env: Mapping[str, str]) -> None:
    """Remove this network's masquerade chains outside the valid set, then forward to IPAM."""
    valid = valid_attachments(conf.net)
    errors: list[str] = []
    if conf.ip_masq:
        for family in (4, 6):
            try:
                state = iptables.save_nat(family)
                stale = masq.stale_chains(state, conf.net.name, {a.container_id for a in valid})
                iptables.restore(family, masq.render_teardown(state, stale))
            except CNIError as exc:
                errors.append(str(exc))
    if not conf.layer2:
        delegate_1_1("GC", req, conf.net, env)
    if errors:
        raise CNIError(IO_FAILURE, "GC could not remove some masquerade rules", "; ".join(errors))


def status(req: Request, conf: BridgeConf, env: Mapping[str, str]) -> None:
    if conf.ip_masq:
        for tool in ("iptables-restore", "iptables-save"):
            try:
                iptables._tool(tool)
            except CNIError:
                raise CNIError(NOT_AVAILABLE, f"{tool} is not installed") from None
    if not conf.layer2:
        delegate_1_1("STATUS", req, conf.net, env)


def run(env: Mapping[str, str], stdin: bytes) -> tuple[int, str]:
    """One invocation in this process (shim fallback and daemon worker)."""
    return execute(lambda req, net: handle(req, net, env), env, stdin)


def main() -> int:
    data = b"" if sys.stdin is None else sys.stdin.buffer.read()
    code, out = run(dict(os.environ), data)
    if out:
        sys.stdout.write(out + "\n")
    sys.stdout.flush()
    return code
