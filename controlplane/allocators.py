"""ClusterIP and NodePort allocation for Services, as kube-apiserver does it.

ServiceAllocator keeps the taken IPs and ports in sets. `plan(new, old)` computes what a
create/update needs (fills spec.clusterIP/clusterIPs and ports[].nodePort) without side effects;
`commit(plan)` makes it so; `release(service)` frees a deleted Service's IP and ports.
The server must call plan and commit under the same lock (no other plan committed in between).

Dynamic allocation prefers the upper part of each range: the lower band of
min(max(16, size/16), 256) IPs (node ports: min(max(16, size/32), 128)) is kept for static
requests and used dynamically only once the upper part is full (KEP-3070 / KEP-3668). The first
usable IP is the `kubernetes` Service's and is never handed out dynamically.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Union

from controlplane import errors
from controlplane.errors import Cause
from controlplane.validation import NEEDS_NODE_PORTS, copy_json, fmt_value, prepare_service_update

JSON = dict[str, Any]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@dataclass(frozen=True)
class AllocationPlan:
    allocate_ips: tuple[str, ...] = ()
    release_ips: tuple[str, ...] = ()
    allocate_ports: tuple[int, ...] = ()
    release_ports: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.allocate_ips or self.release_ips or self.allocate_ports or self.release_ports)


class RangeFull(errors.APIError):
    """No free value left (upstream answers 500 InternalError 'range is full')."""

    code = 500
    reason = "InternalError"


class _Band:
    """A set of taken integer offsets in [lo, hi], with dynamic allocation upper-band first."""

    def __init__(self, lo: int, hi: int, static_band: int, reserved: Iterable[int] = ()) -> None:
        self.lo, self.hi = lo, hi
        self.split = min(hi, lo + static_band - 1)  # [lo, split] is the static band
        self.taken: set[int] = set()
        self.reserved = set(reserved)
        self.rng = random.Random()

    def free(self, v: int) -> bool:
        return v not in self.taken

    def pick(self, exclude: set[int]) -> int | None:
        for lo, hi in ((self.split + 1, self.hi), (self.lo, self.split)):
            v = self._pick_in(lo, hi, exclude)
            if v is not None:
                return v
        return None

    def _pick_in(self, lo: int, hi: int, exclude: set[int]) -> int | None:
        if lo > hi:
            return None
        size = hi - lo + 1
        bad = lambda v: v in self.taken or v in exclude or v in self.reserved  # noqa: E731
        for _ in range(32):  # random probes first: O(1) while the range is not crowded
            v = self.rng.randint(lo, hi)
            if not bad(v):
                return v
        # then a scan from a random point, wrapping once (only when the band is crowded)
        start = self.rng.randint(lo, hi)
        for i in range(min(size, 1 << 22)):
            v = lo + (start - lo + i) % size
            if not bad(v):
                return v
        return None


class ServiceAllocator:
    def __init__(self, service_cidr: str | Network, node_port_range: tuple[int, int] = (30000, 32767)) -> None:
        self.cidr: Network = ipaddress.ip_network(service_cidr, strict=False) if isinstance(service_cidr, str) \
            else service_cidr
        size = self.cidr.num_addresses
        first = 1  # offset 0 is the network address
        last = size - 2 if self.cidr.version == 4 else size - 1  # IPv4 drops broadcast
        if size <= 2:
            first, last = 0, size - 1
        usable = last - first + 1
        self.ips = _Band(first, last, min(max(16, usable // 16), 256), reserved=(first,))
        lo, hi = node_port_range
        self.port_range = (lo, hi)
        self.ports = _Band(lo, hi, min(max(16, (hi - lo + 1) // 32), 128))

    # -------------------------------------------------------------- addresses
    @property
    def kubernetes_ip(self) -> str:
        return str(self.cidr.network_address + self.ips.lo)

    def _offset(self, ip: str) -> int | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if addr.version != self.cidr.version or addr not in self.cidr:
            return None
        return int(addr) - int(self.cidr.network_address)

    def _ip(self, offset: int) -> str:
        return str(self.cidr.network_address + offset)

    def range_text(self) -> str:
        return f"{self.port_range[0]}-{self.port_range[1]}"

    # -------------------------------------------------------------- load / commit / release
    def load(self, services: Iterable[JSON]) -> None:
        """Mark what existing Services hold (on start-up, from the store)."""
        for svc in services:
            ips, ports = _held(svc)
            for ip in ips:
                off = self._offset(ip)
                if off is not None:
                    self.ips.taken.add(off)
            self.ports.taken.update(p for p in ports if self.port_range[0] <= p <= self.port_range[1])

    def commit(self, plan: AllocationPlan) -> None:
        for ip in plan.release_ips:
            off = self._offset(ip)
            if off is not None:
                self.ips.taken.discard(off)
        self.ports.taken.difference_update(plan.release_ports)
        for ip in plan.allocate_ips:
            off = self._offset(ip)
            if off is not None:
                self.ips.taken.add(off)
        self.ports.taken.update(plan.allocate_ports)

    def release(self, service: JSON) -> None:
        ips, ports = _held(service)
        self.commit(AllocationPlan(release_ips=tuple(ips), release_ports=tuple(ports)))

    def is_allocated_ip(self, ip: str) -> bool:
        off = self._offset(ip)
        return off is not None and off in self.ips.taken

    def is_allocated_port(self, port: int) -> bool:
        return port in self.ports.taken

    @property
    def allocated_ip_count(self) -> int:
        return len(self.ips.taken)

    # -------------------------------------------------------------- plan
    def plan(self, new: JSON, old: JSON | None = None) -> tuple[JSON, AllocationPlan]:
        """The Service as it will be stored (IPs/ports filled) and the allocation changes it needs.

        Raises errors.Invalid (422) for a requested IP/port outside the range or already taken.
        Also applies upstream's update preparation: keep the old clusterIP and nodePorts when the
        new object leaves them empty, drop them on a type change that no longer needs them.
        """
        svc = copy_json(new)
        spec = svc.get("spec")
        if not isinstance(spec, dict):
            return svc, AllocationPlan()
        ospec = old.get("spec") if isinstance(old, dict) else None
        ospec = ospec if isinstance(ospec, dict) else {}
        meta = svc.get("metadata")
        name = str(meta.get("name") or "") if isinstance(meta, dict) else ""
        prepare_service_update(spec, ospec)
        causes: list[Cause] = []
        alloc_ips, release_ips = self._plan_ips(spec, ospec, causes)
        alloc_ports, release_ports = self._plan_ports(spec, ospec, causes)
        if causes:
            raise errors.Invalid.of("Service", name, causes)
        return svc, AllocationPlan(tuple(alloc_ips), tuple(release_ips), tuple(alloc_ports), tuple(release_ports))

    def _plan_ips(self, spec: JSON, ospec: JSON, causes: list[Cause]) -> tuple[list[str], list[str]]:
        old_ips = _cluster_ips(ospec)
        stype = spec.get("type") or "ClusterIP"
        if stype == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            return [], old_ips
        requested = _cluster_ips_raw(spec)
        if not self._families_ok(spec, requested, causes):
            return [], []
        if requested and requested[0] == "None":
            spec["clusterIPs"] = ["None"]
            spec["clusterIP"] = "None"
            spec["ipFamilies"] = [self.family]
            return [], old_ips
        allocate: list[str] = []
        if requested:
            ip = requested[0]
            if ip in old_ips:
                return [], [x for x in old_ips if x != ip]
            off = self._offset(ip)
            if off is None:
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    return [], []  # not an IP at all: validation reports it
                causes.append(Cause("spec.clusterIPs[0]", f"Invalid value: {fmt_value(requested)}: failed to "
                                    f"allocate IP {ip}: the provided IP ({ip}) is not in the valid range. "
                                    f"The range of valid IPs is {self.cidr}"))
            elif off in self.ips.taken:
                causes.append(Cause("spec.clusterIPs[0]", f"Invalid value: {fmt_value(requested)}: failed to "
                                    f"allocate IP {ip}: provided IP is already allocated"))
            else:
                allocate.append(ip)
        else:
            off = self.ips.pick(set())
            if off is None:
                raise RangeFull(f"failed to allocate a serviceIP: range is full (service CIDR {self.cidr})")
            ip = self._ip(off)
            allocate.append(ip)
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]
        spec["ipFamilies"] = [self.family]
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        return allocate, old_ips

    @property
    def family(self) -> str:
        return "IPv4" if self.cidr.version == 4 else "IPv6"

    def _families_ok(self, spec: JSON, requested: list[str], causes: list[Cause]) -> bool:
        """A single-stack cluster: RequireDualStack, a second clusterIP or another family are 422."""
        before = len(causes)
        if spec.get("ipFamilyPolicy") == "RequireDualStack":
            causes.append(Cause("spec.ipFamilyPolicy", 'Invalid value: "RequireDualStack": this cluster is not '
                                "configured for dual-stack services"))
        raw = spec.get("ipFamilies")
        fams: list[Any] = raw if isinstance(raw, list) else []
        for i, fam in enumerate(fams):
            if fam in ("IPv4", "IPv6") and fam != self.family:
                causes.append(Cause(f"spec.ipFamilies[{i}]", f'Invalid value: "{fam}": not configured on this '
                                    "cluster"))
        if len(requested) > 1:
            causes.append(Cause("spec.clusterIPs", f"Invalid value: {fmt_value(requested)}: this cluster is not "
                                "configured for dual-stack services"))
        for i, ip in enumerate(requested[:1]):
            try:
                version = ipaddress.ip_address(ip).version
            except ValueError:
                continue
            if version != self.cidr.version:
                fam = "IPv4" if version == 4 else "IPv6"
                causes.append(Cause(f"spec.clusterIPs[{i}]", f"Invalid value: {fmt_value(requested)}: "
                                    f"IP family {fam} is not configured on this cluster"))
        return len(causes) == before

    def _plan_ports(self, spec: JSON, ospec: JSON, causes: list[Cause]) -> tuple[list[int], list[int]]:
        old_ports = set(_node_ports(ospec))
        stype = spec.get("type") or "ClusterIP"
        wanted: list[int] = []
        if stype in NEEDS_NODE_PORTS:
            wanted = self._fill_node_ports(spec, old_ports, causes)
        keep = set(wanted)
        allocate = [p for p in dict.fromkeys(wanted) if p not in old_ports]
        release = sorted(old_ports - keep)
        return allocate, release

    def _fill_node_ports(self, spec: JSON, old_ports: set[int], causes: list[Cause]) -> list[int]:
        ports = [p for p in _ports(spec) if isinstance(p, dict)]
        lb_without = spec.get("type") == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is False
        used: list[int] = []
        lo, hi = self.port_range
        for i, port in enumerate(_ports(spec)):
            if not isinstance(port, dict):
                continue
            np = port.get("nodePort")
            if np:
                if not isinstance(np, int) or isinstance(np, bool):
                    continue  # validation reports it
                if np in used and self._same_port_other_protocol(ports, np, port):
                    continue
                if np in used:
                    continue  # duplicate within the service: validation reports it
                if np in old_ports:
                    used.append(np)
                elif not lo <= np <= hi:
                    causes.append(Cause(f"spec.ports[{i}].nodePort",
                                        f"Invalid value: {np}: provided port is not in the valid range. "
                                        f"The range of valid ports is {self.range_text()}"))
                elif np in self.ports.taken:
                    causes.append(Cause(f"spec.ports[{i}].nodePort",
                                        f"Invalid value: {np}: provided port is already allocated"))
                else:
                    used.append(np)
        for port in ports:
            if port.get("nodePort") or lb_without:
                continue
            twin = next((p.get("nodePort") for p in ports if p is not port and p.get("nodePort")
                         and p.get("port") == port.get("port")
                         and (p.get("protocol") or "TCP") != (port.get("protocol") or "TCP")), None)
            if twin:
                port["nodePort"] = twin
                continue
            off = self.ports.pick(set(used))
            if off is None:
                raise RangeFull(f"failed to allocate a nodePort: range is full ({self.range_text()})")
            port["nodePort"] = off
            used.append(off)
        self._health_check_port(spec, old_ports, used, causes)
        return used

    def _health_check_port(self, spec: JSON, old_ports: set[int], used: list[int], causes: list[Cause]) -> None:
        if not (spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"):
            spec.pop("healthCheckNodePort", None)
            return
        hc = spec.get("healthCheckNodePort")
        if hc and isinstance(hc, int):
            if hc not in old_ports:
                lo, hi = self.port_range
                if not lo <= hc <= hi:
                    causes.append(Cause("spec.healthCheckNodePort",
                                        f"Invalid value: {hc}: provided port is not in the valid range. "
                                        f"The range of valid ports is {self.range_text()}"))
                    return
                if hc in self.ports.taken or hc in used:
                    causes.append(Cause("spec.healthCheckNodePort",
                                        f"Invalid value: {hc}: provided port is already allocated"))
                    return
            used.append(hc)
            return
        off = self.ports.pick(set(used))
        if off is None:
            raise RangeFull(f"failed to allocate a nodePort: range is full ({self.range_text()})")
        spec["healthCheckNodePort"] = off
        used.append(off)

    @staticmethod
    def _same_port_other_protocol(ports: list[JSON], np: int, port: JSON) -> bool:
        return any(p is not port and p.get("nodePort") == np
                   and (p.get("protocol") or "TCP") != (port.get("protocol") or "TCP") for p in ports)


# ------------------------------------------------------------------ helpers

def _ports(spec: JSON) -> list[Any]:
    ports = spec.get("ports")
    return ports if isinstance(ports, list) else []


def _cluster_ips_raw(spec: JSON) -> list[str]:
    ips = spec.get("clusterIPs")
    if isinstance(ips, list) and ips:
        return [str(x) for x in ips]
    ip = spec.get("clusterIP")
    return [str(ip)] if ip else []


def _cluster_ips(spec: JSON) -> list[str]:
    if (spec.get("type") or "ClusterIP") == "ExternalName":
        return []
    return [ip for ip in _cluster_ips_raw(spec) if ip != "None"]


def _node_ports(spec: JSON) -> list[int]:
    out = [p.get("nodePort") for p in _ports(spec) if isinstance(p, dict)]
    out.append(spec.get("healthCheckNodePort"))
    return [p for p in out if isinstance(p, int) and not isinstance(p, bool) and p]


def _held(svc: JSON) -> tuple[list[str], list[int]]:
    spec = svc.get("spec") if isinstance(svc, dict) else None
    if not isinstance(spec, dict):
        return [], []
    return _cluster_ips(spec), _node_ports(spec)
