"""Per-attachment masquerade rules, rendered as iptables-restore text (pure).

Same chain, rules and comment as the reference bridge (pkg/ip/ipmasq_linux.go), so either
plugin can tear down the other's rules:

    *nat
    :CNI-<sha512(name+id)[:24]> - [0:0]
    -A CNI-... -d <subnet> -m comment --comment "name: \\"<net>\\" id: \\"<id>\\"" -j ACCEPT
    -A CNI-... ! -d 224.0.0.0/4 -m comment --comment "..." -j MASQUERADE
    -A POSTROUTING -s <ip>/32 -m comment --comment "..." -j CNI-...
    COMMIT

Teardown is found from `iptables-save -t nat` by the chain name alone, so it works when
the netns (and with it the pod's IP) is already gone.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shlex
from dataclasses import dataclass
from typing import Callable, Iterable, Union

IPIface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]
MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
_CHAIN = re.compile(r"^CNI-[0-9a-f]{24}$")
_COMMENT = re.compile(r'^name: "(?P<name>(?:[^"\\]|\\.)*)" id: "(?P<id>(?:[^"\\]|\\.)*)"$')


def chain_name(network: str, container_id: str) -> str:
    """utils.FormatChainName: "CNI-" + sha512(name + id) hex, 28 characters in all."""
    return ("CNI-" + hashlib.sha512((network + container_id).encode()).hexdigest())[:28]


def go_quote(text: str) -> str:
    """Go's %q for the printable ASCII that names and container ids are made of."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def comment(network: str, container_id: str) -> str:
    return f"name: {go_quote(network)} id: {go_quote(container_id)}"


def _per_family(network: str, container_id: str, addresses: Iterable[IPIface],
                render: Callable[[str, str, list[IPIface], int], list[str]]) -> dict[int, str]:
    """One iptables-restore text per IP family present in `addresses` (4 -> iptables, 6 -> ip6tables).

    `render(chain, quoted_comment, addrs, host_prefix)` gives that family's lines between
    "*nat" and "COMMIT".
    """
    chain = chain_name(network, container_id)
    cmt = go_quote(comment(network, container_id))
    addrs = list(addresses)
    out: dict[int, str] = {}
    for family in (4, 6):
        fam = [a for a in addrs if a.version == family]
        if fam:
            lines = ["*nat", *render(chain, cmt, fam, 32 if family == 4 else 128), "COMMIT"]
            out[family] = "\n".join(lines) + "\n"
    return out


def render_setup(network: str, container_id: str, addresses: Iterable[IPIface]) -> dict[int, str]:
    """iptables-restore --noflush input per IP family (4 -> iptables, 6 -> ip6tables)."""
    def lines(chain: str, cmt: str, addrs: list[IPIface], host: int) -> list[str]:
        family = addrs[0].version
        return [f":{chain} - [0:0]",
                *(f"-A {chain} -d {a.network} -m comment --comment {cmt} -j ACCEPT" for a in addrs),
                f"-A {chain} ! -d {MULTICAST[family]} -m comment --comment {cmt} -j MASQUERADE",
                *(f"-A POSTROUTING -s {a.ip}/{host} -m comment --comment {cmt} -j {chain}" for a in addrs)]
    return _per_family(network, container_id, addresses, lines)


def render_exact_teardown(network: str, container_id: str, addresses: Iterable[IPIface]) -> dict[int, str]:
    """The fast DEL path when the pod's addresses are known: delete exactly what ADD made.

    The transaction fails as a whole if any rule is missing; the caller then falls back to
    the iptables-save based `render_teardown`.
    """
    def lines(chain: str, cmt: str, addrs: list[IPIface], host: int) -> list[str]:
        return [*(f"-D POSTROUTING -s {a.ip}/{host} -m comment --comment {cmt} -j {chain}" for a in addrs),
                f"-F {chain}", f"-X {chain}"]
    return _per_family(network, container_id, addresses, lines)


@dataclass(frozen=True)
class NatState:
    """What `iptables-save -t nat` says about CNI-<hash> chains: chains and jump rules."""

    chains: frozenset[str]
    jumps: tuple[tuple[str, str], ...]          # (chain, the "-A POSTROUTING ..." line)
    owners: tuple[tuple[str, str, str], ...]    # (chain, network, container id) from comments


def parse_save(text: str) -> NatState:
    chains: set[str] = set()
    jumps: list[tuple[str, str]] = []
    owners: dict[str, tuple[str, str]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if table != "nat":
            continue
        if line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            if _CHAIN.match(name):
                chains.add(name)
            continue
        if not line.startswith("-A "):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        target = words[words.index("-j") + 1] if "-j" in words[:-1] else ""
        if words[1] == "POSTROUTING" and _CHAIN.match(target):
            jumps.append((target, line))
        owner_chain = words[1] if _CHAIN.match(words[1]) else target if _CHAIN.match(target) else ""
        if owner_chain and "--comment" in words[:-1]:
            m = _COMMENT.match(words[words.index("--comment") + 1])
            if m:
                unq = lambda s: s.replace('\\"', '"').replace("\\\\", "\\")  # noqa: E731
                owners.setdefault(owner_chain, (unq(m.group("name")), unq(m.group("id"))))
    return NatState(frozenset(chains), tuple(jumps),
                    tuple(sorted((c, n, i) for c, (n, i) in owners.items())))


def render_teardown(state: NatState, chains: Iterable[str]) -> str:
    """iptables-restore --noflush input removing the jumps to, and the chains themselves; '' if none."""
    wanted = set(chains)
    lines = ["*nat"]
    for chain, line in state.jumps:
        if chain in wanted:
            lines.append("-D" + line[2:])
    for chain in sorted(wanted & state.chains):
        lines += [f"-F {chain}", f"-X {chain}"]
    if len(lines) == 1:
        return ""
    return "\n".join(lines + ["COMMIT"]) + "\n"


def stale_chains(state: NatState, network: str, valid_ids: Iterable[str]) -> list[str]:
    """GC: this network's chains whose container id is not in the valid set."""
    keep = {chain_name(network, cid) for cid in valid_ids}
    return sorted(c for c, net, _ in state.owners if net == network and c not in keep)
