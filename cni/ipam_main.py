"""`podnet-ipam`: the host-local compatible IPAM plugin (ADD, DEL, CHECK, GC, STATUS, VERSION)."""

from __future__ import annotations

import sys
from typing import Any

from cni import ipam
from cni.errors import CNIError, IO_FAILURE, NOT_AVAILABLE
from cni.runner import main_with
from cni.spec import NetConf, Request, parse_result, render_result, valid_attachments
from cni.store import DiskStore


def read_resolv_conf(path: str) -> dict[str, Any]:
    """host-local's `resolvConf` option: nameserver/domain/search/options lines."""
    dns: dict[str, Any] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise CNIError(IO_FAILURE, f"cannot read resolvConf {path}", str(exc)) from None
    for line in lines:
        parts = line.split("#", 1)[0].split()
        if len(parts) < 2:
            continue
        key, values = parts[0], parts[1:]
        if key == "nameserver":
            dns.setdefault("nameservers", []).append(values[0])
        elif key == "domain":
            dns["domain"] = values[0]
        elif key in ("search", "options"):
            dns.setdefault(key, []).extend(values)
    return dns


def handle(req: Request, conf: NetConf) -> dict[str, Any] | None:
    """Run one IPAM command against the disk store; returns the JSON to print."""
    if req.command == "GC":
        cfg = ipam.parse_ipam_config(conf, req)
        ipam.gc(DiskStore(cfg.data_dir, cfg.name), valid_attachments(conf))
        return None
    cfg = ipam.parse_ipam_config(conf, req)
    store = DiskStore(cfg.data_dir, cfg.name)
    if req.command == "ADD":
        result = ipam.allocate(cfg, store, req.container_id, req.ifname)
        if cfg.resolv_conf and not result.dns:
            result = result.with_(dns=read_resolv_conf(cfg.resolv_conf))
        return render_result(result, conf.cni_version)
    if req.command == "DEL":
        ipam.release(store, req.container_id, req.ifname)
        return None
    if req.command == "CHECK":
        prev = conf.prev_result
        expected = [ipc.address.ip for ipc in parse_result(prev).ips] if prev else []
        mine = [ip for ip in expected if any(ipam.rangeset_contains(rs, ip) for rs in cfg.ranges)]
        ipam.check(store, req.container_id, req.ifname, mine)
        return None
    if req.command == "STATUS":
        reason = store.writable()
        if reason:
            raise CNIError(NOT_AVAILABLE, f"IPAM store {store.dir} is not writable", reason)
        ipam.status(cfg, store)
        return None
    return None


def main() -> int:
    return main_with(handle)


if __name__ == "__main__":
    sys.exit(main())
