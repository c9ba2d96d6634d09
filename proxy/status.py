"""`podnet proxy status`: each Service port with its endpoints and per-rule hit counters.

Pure: `parse_status(save_text)` reads an `iptables-save -c` dump (nat + filter) and rebuilds the
Service -> endpoints picture from kube-proxy's own rules; `format_status` prints it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from proxy.iptables import names as n


@dataclass
class Rule:
    table: str
    chain: str
    args: list[str]
    packets: int = 0
    bytes: int = 0

    def opt(self, flag: str) -> str:
        try:
            return self.args[self.args.index(flag) + 1]
        except (ValueError, IndexError):
            return ""

    @property
    def comment(self) -> str:
        return self.opt("--comment")

    @property
    def target(self) -> str:
        return self.opt("-j")


@dataclass
class EndpointStatus:
    endpoint: str
    chain: str
    packets: int = 0
    bytes: int = 0


@dataclass
class ServiceStatus:
    name: str  # ns/svc:port
    protocol: str = ""
    frontends: list[tuple[str, str, int, int]] = field(default_factory=list)  # (kind, addr, packets, bytes)
    endpoints: list[EndpointStatus] = field(default_factory=list)
    rejected: int = 0  # packets REJECTed/DROPped for lack of (local) endpoints
    note: str = ""


_COUNTER = re.compile(r"^\[(\d+):(\d+)\]\s+")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')  # iptables-save quotes comments with spaces


def _host(addr: str) -> str:
    """iptables-save prints -d 10.96.0.1/32; show the address."""
    return addr.removesuffix("/32").removesuffix("/128")


def parse_rules(save_text: str) -> list[Rule]:
    rules: list[Rule] = []
    table = ""
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        packets = nbytes = 0
        m = _COUNTER.match(line)
        if m:
            packets, nbytes = int(m.group(1)), int(m.group(2))
            line = line[m.end():]
        if not line.startswith("-A "):
            continue
        args = [t[1:-1] if t.startswith('"') else t for t in _TOKEN.findall(line)]
        rules.append(Rule(table, args[1], args[2:], packets, nbytes))
    return rules


def parse_status(save_text: str) -> list[ServiceStatus]:
    rules = parse_rules(save_text)
    by_chain: dict[str, list[Rule]] = {}
    for r in rules:
        if r.table == "nat":
            by_chain.setdefault(r.chain, []).append(r)
    services: dict[str, ServiceStatus] = {}

    def get(name: str) -> ServiceStatus:
        return services.setdefault(name, ServiceStatus(name))

    svc_chain_of: dict[str, str] = {}
    for r in by_chain.get(n.KUBE_SERVICES, []):
        m = re.match(r"^(\S+) (cluster IP|external IP|loadbalancer IP)$", r.comment)
        if not m:
            continue
        st = get(m.group(1))
        st.protocol = r.opt("-p")
        st.frontends.append((m.group(2), f"{_host(r.opt('-d'))}:{r.opt('--dport')}", r.packets, r.bytes))
        if m.group(2) == "cluster IP":
            svc_chain_of[st.name] = r.target
    for r in by_chain.get(n.KUBE_NODEPORTS, []):
        if r.comment:
            st = get(r.comment)
            st.protocol = r.opt("-p")
            st.frontends.append(("node port", f"*:{r.opt('--dport')}", r.packets, r.bytes))
            svc_chain_of.setdefault(st.name, r.target.replace(n.EXT_PREFIX, n.SVC_PREFIX))
    for r in rules:
        if r.table == "filter" and r.target in ("REJECT", "DROP") and r.comment.endswith("endpoints"):
            st = get(r.comment.split(" ", 1)[0])
            st.rejected += r.packets
            st.note = r.comment.split(" ", 1)[1]
            st.protocol = st.protocol or r.opt("-p")
            if r.chain == n.KUBE_SERVICES and not any(f[0] == "cluster IP" for f in st.frontends):
                st.frontends.append(("cluster IP", f"{_host(r.opt('-d'))}:{r.opt('--dport')}", 0, 0))
    for name, st in services.items():
        seen: set[str] = set()
        chains = [svc_chain_of.get(name, "")]
        if chains[0].startswith(n.SVC_PREFIX):
            chains.append(n.SVL_PREFIX + chains[0][len(n.SVC_PREFIX):])
        elif chains[0].startswith(n.SVL_PREFIX):
            chains.append(n.SVC_PREFIX + chains[0][len(n.SVL_PREFIX):])
        for chain in chains:
            for r in by_chain.get(chain, []):
                sep = r.target
                if not sep.startswith(n.SEP_PREFIX) or sep in seen:
                    continue
                seen.add(sep)
                dnat = next((x for x in by_chain.get(sep, []) if x.target == "DNAT"), None)
                if dnat is not None:
                    st.endpoints.append(EndpointStatus(dnat.opt("--to-destination"), sep, dnat.packets, dnat.bytes))
    return [services[k] for k in sorted(services)]


def format_status(statuses: list[ServiceStatus]) -> str:
    if not statuses:
        return "no Services programmed (no kube-proxy rules found)\n"
    out: list[str] = []
    for st in statuses:
        out.append(f"{st.name} ({st.protocol.upper() or '?'})" + (f"  [{st.note}: {st.rejected} pkts]" if st.note else ""))
        for kind, addr, pk, by in st.frontends:
            out.append(f"  {kind:<16} {addr:<24} {pk:>10} pkts {by:>12} bytes")
        for ep in st.endpoints:
            out.append(f"    -> {ep.endpoint:<22} {ep.chain:<28} {ep.packets:>8} pkts {ep.bytes:>12} bytes")
        if not st.endpoints:
            out.append("    (no endpoints)")
    return "\n".join(out) + "\n"
