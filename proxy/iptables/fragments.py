"""Building blocks of the renderer: per-service-port fragments, the memo of the last applied
render (incremental partial syncs), the top-level rule delta, and a restore-table writer. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from controlplane.model import ObjectRef
from proxy.changes import ServicePortName
from proxy.iptables import names as n


FILTER_SERVICES = ("filter", n.KUBE_SERVICES)
FILTER_EXTERNAL = ("filter", n.KUBE_EXTERNAL_SERVICES)
FILTER_FIREWALL = ("filter", n.KUBE_PROXY_FIREWALL)
FILTER_NODEPORTS = ("filter", n.KUBE_NODEPORTS)
NAT_SERVICES = ("nat", n.KUBE_SERVICES)
NAT_NODEPORTS = ("nat", n.KUBE_NODEPORTS)


class Fragment:
    """What one service port contributes: rules in the shared top-level chains (`tops`) and the
    nat chains it owns (`own`: SVC/SVL/EXT/FW/SEP)."""

    __slots__ = ("tops", "own", "active", "no_local_internal", "no_local_external", "endpoints", "counts")

    def __init__(self) -> None:
        self.tops: dict[tuple[str, str], list[str]] = {}
        self.own: dict[str, list[str]] = {}
        self.active: list[str] = []
        self.no_local_internal = 0
        self.no_local_external = 0
        self.endpoints = 0
        self.counts = (0, 0, 0)  # filter top rules, nat top rules, own rules (set when complete)

    def seal(self) -> "Fragment":
        self.counts = (sum(len(v) for (t, _c), v in self.tops.items() if t == "filter"),
                       sum(len(v) for (t, _c), v in self.tops.items() if t == "nat"),
                       sum(len(v) for v in self.own.values()))
        return self

    def top(self, key: tuple[str, str]) -> list[str]:
        lines = self.tops.get(key)
        if lines is None:
            lines = self.tops[key] = []
        return lines

    def chain(self, name: str) -> list[str]:
        lines = self.own.get(name)
        if lines is None:
            lines = self.own[name] = []
        return lines

    def own_lines(self) -> int:
        return self.counts[2]


@dataclass
class RenderMemo:
    """The last applied render, kept by the shell for incremental partial syncs."""

    fragments: dict[ServicePortName, Fragment]
    by_service: dict[ObjectRef, list[ServicePortName]]
    total_endpoints: int
    totals: tuple[int, int, int, int, int]  # filter tops, nat tops, own, no-local internal, external
    active: frozenset[str]


def build_memo(frags: dict[ServicePortName, Fragment], active: frozenset[str]) -> RenderMemo:
    by_service: dict[ObjectRef, list[ServicePortName]] = {}
    totals = [0, 0, 0, 0, 0]
    eps = 0
    for spn, f in frags.items():
        by_service.setdefault(spn.ref, []).append(spn)
        totals[0] += f.counts[0]
        totals[1] += f.counts[1]
        totals[2] += f.counts[2]
        totals[3] += f.no_local_internal
        totals[4] += f.no_local_external
        eps += f.endpoints
    return RenderMemo(frags, by_service, eps, (totals[0], totals[1], totals[2], totals[3], totals[4]), active)


def top_level_delta(old_frags: Sequence[Fragment], new_frags: Sequence[Fragment]) -> dict[str, list[str]]:
    """-D / -I / -A lines turning the top-level chains of `previous` into those of `frags`.

    Only service ports of changed Services can differ. New nat KUBE-SERVICES rules are inserted
    at the top (the NodePorts jump must stay last); rule order among services is irrelevant
    because each rule matches a distinct destination.
    """
    old: dict[tuple[str, str], list[str]] = {}
    new: dict[tuple[str, str], list[str]] = {}
    for src, dst in ((old_frags, old), (new_frags, new)):
        for frag in src:
            for key, lines in frag.tops.items():
                dst.setdefault(key, []).extend(lines)
    deletes: dict[str, list[str]] = {"filter": [], "nat": []}
    adds: dict[str, list[str]] = {"filter": [], "nat": []}
    for key in sorted(set(old) | set(new)):
        table, chain = key
        before, after = old.get(key, []), new.get(key, [])
        keep_old, keep_new = set(before), set(after)
        deletes[table] += ["-D" + line[2:] for line in before if line not in keep_new]
        added = [line for line in after if line not in keep_old]
        if key == NAT_SERVICES:
            adds[table] += [f"-I {chain} 1" + line[3 + len(chain):] for line in reversed(added)]
        else:
            adds[table] += added
    return {table: deletes[table] + adds[table] for table in ("filter", "nat")}


class Table:
    """Chain lines + rules grouped by chain."""

    def __init__(self) -> None:
        self.chains: dict[str, list[str]] = {}

    def chain(self, name: str) -> list[str]:
        rules = self.chains.get(name)
        if rules is None:
            rules = self.chains[name] = []
        return rules

    def lines(self) -> int:
        return sum(len(r) for r in self.chains.values())

    def emit(self, out: list[str], header: str, deleted: Sequence[str] = (), extra: Sequence[str] = ()) -> None:
        order = sorted(self.chains)
        for first in (n.KUBE_SERVICES, n.KUBE_NODEPORTS):  # these two lead, as in upstream's dumps
            if first in self.chains:
                order.remove(first)
                order.insert(0, first)
        out.append(header)
        out.extend(f":{c} - [0:0]" for c in order)
        out.extend(f":{c} - [0:0]" for c in deleted)
        out.extend(extra)
        for c in order:
            out.extend(self.chains[c])
        out.extend(f"-X {c}" for c in deleted)
        out.append("COMMIT")
