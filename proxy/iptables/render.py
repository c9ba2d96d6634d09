"""render(state) -> iptables-restore payload, rule for rule what upstream kube-proxy's iptables
mode writes (pkg/proxy/iptables/proxier.go syncProxyRules / writeServiceToEndpointRules).

Output is canonical and deterministic: in each table the chain lines come first, then the rules
grouped by chain, KUBE-NODEPORTS and KUBE-SERVICES first and the other chains sorted by name
(the shape of upstream's TestOverallIPTablesRules); within a chain, rules keep upstream's order
with service ports sorted by name. Chain deletions (`-X`) come last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from controlplane.model import IPAddress, ObjectRef
from proxy.changes import EndpointInfo, IPNetwork, ServicePortInfo, ServicePortName, categorize_endpoints
from proxy.iptables import names as n
from proxy.iptables.fragments import (
    FILTER_EXTERNAL, FILTER_FIREWALL, FILTER_NODEPORTS, FILTER_SERVICES, NAT_NODEPORTS, NAT_SERVICES, Fragment,
    RenderMemo, Table, build_memo, top_level_delta,
)

LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000


@dataclass(frozen=True)
class RenderOptions:
    cluster_cidr: IPNetwork | None = None  # the local-traffic detector; None = not implemented
    masquerade_all: bool = False
    masquerade_bit: int = 14
    random_fully: bool = False
    localhost_nodeports: bool = True
    conntrack_tcp_liberal: bool = False
    node_ip: IPAddress | None = None
    ipv6: bool = False

    @property
    def masquerade_mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"


@dataclass(frozen=True)
class ProxyState:
    services: Mapping[ServicePortName, ServicePortInfo]
    endpoints: Mapping[ServicePortName, Sequence[EndpointInfo]]
    options: RenderOptions = field(default_factory=RenderOptions)
    changed: frozenset[ObjectRef] | None = None  # None: full sync; else only these Services' chains
    existing_nat_chains: frozenset[str] = frozenset()  # chains now in the kernel, for stale deletion
    # fragments of the last applied render: with `changed`, top-level chains get a rule delta
    # (-D / -I) instead of a rewrite, and unchanged services are not re-rendered (incremental mode)
    previous: "RenderMemo | None" = None


@dataclass(frozen=True)
class Rendered:
    text: str
    active_nat_chains: frozenset[str]
    deleted_nat_chains: tuple[str, ...]
    filter_rules: int
    nat_rules: int  # nat rules the full ruleset has (incl. chains skipped by a partial sync)
    nat_rules_written: int
    large_cluster: bool
    no_local_endpoints_internal: int
    no_local_endpoints_external: int
    memo: "RenderMemo | None" = None


def _ports_of(services: Mapping[ServicePortName, ServicePortInfo], ref: ObjectRef) -> list[ServicePortName]:
    return [spn for spn in services if spn.ref == ref]


def _spn_key(spn: ServicePortName) -> tuple[str, str, str, str]:
    return (spn.namespace, spn.name, spn.port, spn.protocol.value)


_PROBABILITIES: list[str] = ["<bad value>"]


def probability(count: int) -> str:
    """1/count printed %0.10f (cached, as upstream precomputes them)."""
    while len(_PROBABILITIES) <= count:
        _PROBABILITIES.append(f"{1.0 / len(_PROBABILITIES):0.10f}")
    return _PROBABILITIES[count]


def render(state: ProxyState) -> Rendered:
    """The full (or partial, when state.changed is set) iptables-restore payload."""
    return _Renderer(state).run()


class _Renderer:
    def __init__(self, state: ProxyState) -> None:
        self.s = state
        self.o = state.options
        self.mark = self.o.masquerade_mark
        self.filter = Table()
        self.nat = Table()
        self.active: set[str] = set()
        self.large = False
        self.no_local_internal = 0
        self.no_local_external = 0
        cidr = self.o.cluster_cidr
        self.if_local = f"-s {cidr}" if cidr is not None else ""
        self.if_not_local = f"! -s {cidr}" if cidr is not None else ""

    def run(self) -> Rendered:
        if self.s.changed is not None and self.s.previous is not None:
            return self._run_delta(self.s.previous, self.s.changed)
        services, endpoints, changed = self.s.services, self.s.endpoints, self.s.changed
        total = sum(len(v) for k, v in endpoints.items() if k in services)
        self.large = total > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
        frags: dict[ServicePortName, Fragment] = {}
        skipped = 0
        for spn in sorted(services, key=_spn_key):
            frag = frags[spn] = self._service(services[spn], endpoints.get(spn, ()))
            self.active.update(frag.active)
            self.no_local_internal += frag.no_local_internal
            self.no_local_external += frag.no_local_external
            if changed is None or spn.ref in changed:
                for chain, lines in frag.own.items():
                    self.nat.chain(chain).extend(lines)
            else:  # partial sync (non-incremental): unchanged services' chains stay as they are
                skipped += frag.own_lines()
        deleted = tuple(sorted(c for c in self.s.existing_nat_chains - self.active if n.is_service_chain(c)))
        self._top_level()
        for frag in frags.values():
            for (table, chain), lines in frag.tops.items():
                (self.filter if table == "filter" else self.nat).chain(chain).extend(lines)
        self._tail()
        out: list[str] = []
        self.filter.emit(out, "*filter")
        self.nat.emit(out, "*nat", deleted)
        active = frozenset(self.active)
        return Rendered(
            text="\n".join(out) + "\n", active_nat_chains=active, deleted_nat_chains=deleted,
            filter_rules=self.filter.lines(), nat_rules=self.nat.lines() + skipped,
            nat_rules_written=self.nat.lines(), large_cluster=self.large,
            no_local_endpoints_internal=self.no_local_internal, no_local_endpoints_external=self.no_local_external,
            memo=build_memo(frags, active))

    def _run_delta(self, memo: RenderMemo, changed: frozenset[ObjectRef]) -> Rendered:
        """Incremental partial sync: O(changed Services) work, top-level chains patched by -D/-I."""
        services, endpoints = self.s.services, self.s.endpoints
        frags = dict(memo.fragments)
        by_service = {k: list(v) for k, v in memo.by_service.items()}
        old = [frags.pop(spn) for ref in changed for spn in by_service.pop(ref, [])]
        new_spns = sorted((spn for spn in services if spn.ref in changed), key=_spn_key) \
            if len(changed) * 20 > len(services) else \
            sorted((spn for ref in changed for spn in _ports_of(services, ref)), key=_spn_key)
        total = memo.total_endpoints - sum(f.endpoints for f in old) + \
            sum(len(endpoints.get(spn, ())) for spn in new_spns)
        self.large = total > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
        new = []
        for spn in new_spns:
            frag = frags[spn] = self._service(services[spn], endpoints.get(spn, ()))
            by_service.setdefault(spn.ref, []).append(spn)
            new.append(frag)
            for chain, lines in frag.own.items():
                self.nat.chain(chain).extend(lines)
        gone = {c for f in old for c in f.active}
        added = {c for f in new for c in f.active}
        active = (memo.active - gone) | added
        deleted = tuple(sorted(c for c in self.s.existing_nat_chains - active if n.is_service_chain(c)))
        delta = top_level_delta(old, new)
        own = self.nat
        self.filter, self.nat = Table(), Table()  # static chains: counted, not rewritten
        self._top_level()
        self._tail()
        static_filter, static_nat = self.filter.lines(), self.nat.lines()
        self.filter, self.nat = Table(), own
        out: list[str] = []
        self.filter.emit(out, "*filter", extra=delta["filter"])
        self.nat.emit(out, "*nat", deleted, extra=delta["nat"])
        t = memo.totals
        d = [sum(f.counts[i] for f in new) - sum(f.counts[i] for f in old) for i in range(3)]
        nli = t[3] + sum(f.no_local_internal for f in new) - sum(f.no_local_internal for f in old)
        nle = t[4] + sum(f.no_local_external for f in new) - sum(f.no_local_external for f in old)
        new_memo = RenderMemo(frags, by_service, total,
                              (t[0] + d[0], t[1] + d[1], t[2] + d[2], nli, nle), frozenset(active))
        return Rendered(
            text="\n".join(out) + "\n", active_nat_chains=new_memo.active, deleted_nat_chains=deleted,
            filter_rules=static_filter + new_memo.totals[0], nat_rules=static_nat + new_memo.totals[1] +
            new_memo.totals[2], nat_rules_written=self.nat.lines() + len(delta["nat"]), large_cluster=self.large,
            no_local_endpoints_internal=nli, no_local_endpoints_external=nle, memo=new_memo)

    def _top_level(self) -> None:
        for c in (n.KUBE_SERVICES, n.KUBE_EXTERNAL_SERVICES, n.KUBE_FORWARD, n.KUBE_NODEPORTS, n.KUBE_PROXY_FIREWALL):
            self.filter.chain(c)
        for c in (n.KUBE_SERVICES, n.KUBE_NODEPORTS, n.KUBE_POSTROUTING, n.KUBE_MARK_MASQ):
            self.nat.chain(c)
        post = self.nat.chain(n.KUBE_POSTROUTING)
        post.append(f"-A {n.KUBE_POSTROUTING} -m mark ! --mark {self.mark}/{self.mark} -j RETURN")
        post.append(f"-A {n.KUBE_POSTROUTING} -j MARK --xor-mark {self.mark}")
        masq = f'-A {n.KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
        post.append(masq + (" --random-fully" if self.o.random_fully else ""))
        self.nat.chain(n.KUBE_MARK_MASQ).append(f"-A {n.KUBE_MARK_MASQ} -j MARK --or-mark {self.mark}")
        if not self.o.ipv6 and self.o.localhost_nodeports:
            self.filter.chain(n.KUBE_FIREWALL).append(
                f'-A {n.KUBE_FIREWALL} -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 '
                "! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")

    def _tail(self) -> None:
        dest = "-m addrtype --dst-type LOCAL"
        if self.o.ipv6:
            dest += " ! -d ::1/128"
        elif not self.o.localhost_nodeports:
            dest += " ! -d 127.0.0.0/8"
        self.nat.chain(n.KUBE_SERVICES).append(
            f'-A {n.KUBE_SERVICES} -m comment --comment "kubernetes service nodeports; NOTE: this must be the '
            f'last rule in this chain" {dest} -j {n.KUBE_NODEPORTS}')
        fwd = self.filter.chain(n.KUBE_FORWARD)
        if not self.o.conntrack_tcp_liberal:
            fwd.append(f"-A {n.KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP")
        fwd.append(f'-A {n.KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" '
                   f"-m mark --mark {self.mark}/{self.mark} -j ACCEPT")
        fwd.append(f'-A {n.KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
                   "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")

    # ------------------------------------------------------------ one service port

    def _service(self, svc: ServicePortInfo, endpoints: Sequence[EndpointInfo]) -> Fragment:
        frag = Fragment()
        name = svc.name_text
        proto = svc.protocol.value.lower()
        cat = categorize_endpoints(endpoints, svc)
        svc_chain = n.svc_chain(name, proto)
        svl_chain = n.svl_chain(name, proto)
        ext_chain = n.ext_chain(name, proto)
        fw_chain = n.fw_chain(name, proto)
        uses_cluster_chain = bool(cat.cluster) and svc.uses_cluster_endpoints
        uses_local_chain = bool(cat.local) and svc.uses_local_endpoints
        has_any = cat.has_any
        internal_chain, has_internal = svc_chain, has_any
        if svc.internal_policy_local:
            internal_chain = svl_chain
            has_internal = has_internal and bool(cat.local)
        external_policy_chain, has_external = svc_chain, has_any
        if svc.external_policy_local:
            external_policy_chain = svl_chain
            has_external = has_external and bool(cat.local)
        uses_ext_chain = has_any and svc.externally_accessible
        uses_fw = has_any and bool(svc.load_balancer_ips) and bool(svc.load_balancer_source_ranges)
        lb_chain = fw_chain if uses_fw else ext_chain

        int_target = ext_target = int_comment = ext_comment = ""
        if not has_any:
            int_target = ext_target = "REJECT"
            int_comment = ext_comment = f'"{name} has no endpoints"'
        else:
            if not has_internal:
                int_target, int_comment = "DROP", f'"{name} has no local endpoints"'
                frag.no_local_internal = 1
            if not has_external:
                ext_target, ext_comment = "DROP", f'"{name} has no local endpoints"'
                frag.no_local_external = 1

        match = f"-m {proto} -p {proto}"
        port = svc.port
        f_svcs = frag.top(FILTER_SERVICES)
        f_ext = frag.top(FILTER_EXTERNAL)
        n_svcs = frag.top(NAT_SERVICES)
        cip = svc.cluster_ip_text
        if has_internal:
            n_svcs.append(f'-A {n.KUBE_SERVICES} -m comment --comment "{name} cluster IP" {match} -d {cip} '
                          f"--dport {port} -j {internal_chain}")
        else:
            f_svcs.append(f"-A {n.KUBE_SERVICES} -m comment --comment {int_comment} {match} -d {cip} "
                          f"--dport {port} -j {int_target}")
        for eip in svc.external_ips:
            if has_any:
                n_svcs.append(f'-A {n.KUBE_SERVICES} -m comment --comment "{name} external IP" {match} -d {eip} '
                              f"--dport {port} -j {ext_chain}")
            if not has_external:
                f_ext.append(f"-A {n.KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} {match} -d {eip} "
                             f"--dport {port} -j {ext_target}")
        for lbip in svc.load_balancer_ips:
            if has_any:
                n_svcs.append(f'-A {n.KUBE_SERVICES} -m comment --comment "{name} loadbalancer IP" {match} '
                              f"-d {lbip} --dport {port} -j {lb_chain}")
            if uses_fw:
                frag.top(FILTER_FIREWALL).append(
                    f'-A {n.KUBE_PROXY_FIREWALL} -m comment --comment "{name} traffic not accepted by {fw_chain}" '
                    f"{match} -d {lbip} --dport {port} -j DROP")
            if not has_external:
                f_ext.append(f"-A {n.KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} {match} -d {lbip} "
                             f"--dport {port} -j {ext_target}")
        if svc.node_port:
            if has_any:
                frag.top(NAT_NODEPORTS).append(
                    f"-A {n.KUBE_NODEPORTS} -m comment --comment {name} {match} --dport {svc.node_port} -j {ext_chain}")
            if not has_external:
                f_ext.append(f"-A {n.KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} "
                             f"-m addrtype --dst-type LOCAL {match} --dport {svc.node_port} -j {ext_target}")
        if svc.health_check_node_port:
            frag.top(FILTER_NODEPORTS).append(
                f'-A {n.KUBE_NODEPORTS} -m comment --comment "{name} health check node port" -m tcp -p tcp '
                f"--dport {svc.health_check_node_port} -j ACCEPT")

        nat = frag
        if has_internal:
            args = f'-m comment --comment "{name} cluster IP" {match} -d {cip} --dport {port}'
            if self.o.masquerade_all:
                nat.chain(internal_chain).append(f"-A {internal_chain} {args} -j {n.KUBE_MARK_MASQ}")
            elif self.if_not_local:
                nat.chain(internal_chain).append(f"-A {internal_chain} {args} {self.if_not_local} -j {n.KUBE_MARK_MASQ}")

        if uses_ext_chain:
            frag.active.append(ext_chain)
            rules = nat.chain(ext_chain)
            if not svc.external_policy_local:
                rules.append(f'-A {ext_chain} -m comment --comment "masquerade traffic for {name} external '
                             f'destinations" -j {n.KUBE_MARK_MASQ}')
            else:
                if self.if_local:
                    rules.append(f'-A {ext_chain} -m comment --comment "pod traffic for {name} external '
                                 f'destinations" {self.if_local} -j {svc_chain}')
                rules.append(f'-A {ext_chain} -m comment --comment "masquerade LOCAL traffic for {name} external '
                             f'destinations" -m addrtype --src-type LOCAL -j {n.KUBE_MARK_MASQ}')
                rules.append(f'-A {ext_chain} -m comment --comment "route LOCAL traffic for {name} external '
                             f'destinations" -m addrtype --src-type LOCAL -j {svc_chain}')
            if has_external:
                rules.append(f"-A {ext_chain} -j {external_policy_chain}")

        if uses_fw:
            frag.active.append(fw_chain)
            rules = nat.chain(fw_chain)
            head = f'-A {fw_chain} -m comment --comment "{name} loadbalancer IP"'
            allow_from_node = False
            for cidr in svc.load_balancer_source_ranges:
                rules.append(f"{head} -s {cidr} -j {ext_chain}")
                if self.o.node_ip is not None and self.o.node_ip in cidr:
                    allow_from_node = True
            if allow_from_node:
                for lbip in svc.load_balancer_ips:
                    rules.append(f"{head} -s {lbip} -j {ext_chain}")
            rules.append(f'-A {fw_chain} -m comment --comment "other traffic to {name} will be dropped by '
                         f'{n.KUBE_PROXY_FIREWALL}"')

        if uses_cluster_chain:
            frag.active.append(svc_chain)
            self._service_to_endpoints(nat, name, proto, svc, svc_chain, cat.cluster)
        if uses_local_chain:
            frag.active.append(svl_chain)
            self._service_to_endpoints(nat, name, proto, svc, svl_chain, cat.local)

        for ep in cat.all_reachable:
            ep_str = ep.text
            sep = n.sep_chain(name, proto, ep_str)
            frag.active.append(sep)
            rules = nat.chain(sep)
            head = f"-A {sep}" if self.large else f"-A {sep} -m comment --comment {name}"
            rules.append(f"{head} -s {ep.ip_text} -j {n.KUBE_MARK_MASQ}")
            affinity = f" -m recent --name {sep} --set" if svc.session_affinity_timeout else ""
            rules.append(f"{head}{affinity} {match} -j DNAT --to-destination {ep_str}")
        frag.endpoints = len(endpoints)
        return frag.seal()

    def _service_to_endpoints(self, nat: Fragment, name: str, proto: str, svc: ServicePortInfo, chain: str,
                              endpoints: Sequence[EndpointInfo]) -> None:
        rules = nat.chain(chain)
        seps = [(ep.text, n.sep_chain(name, proto, ep.text)) for ep in endpoints]
        if svc.session_affinity_timeout:
            for ep_str, sep in seps:
                comment = "" if self.large else f' -m comment --comment "{name} -> {ep_str}"'
                rules.append(f"-A {chain}{comment} -m recent --name {sep} --rcheck --seconds "
                             f"{svc.session_affinity_timeout} --reap -j {sep}")
        count = len(seps)
        for i, (ep_str, sep) in enumerate(seps):
            comment = "" if self.large else f' -m comment --comment "{name} -> {ep_str}"'
            stat = f" -m statistic --mode random --probability {probability(count - i)}" if i < count - 1 else ""
            rules.append(f"-A {chain}{comment}{stat} -j {sep}")
