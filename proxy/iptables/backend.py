"""The iptables shell: runs iptables / iptables-save / iptables-restore of one backend.

Acts on the network namespace of the calling process, or of `netns` when given (tests and
benchmarks apply rules into namespaces they created through this same class).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Sequence

from proxy.errors import ProxyError, RestoreError
from proxy.iptables import names as n

HINT_CHAIN = "KUBE-IPTABLES-HINT"
KUBELET_CANARY = "KUBE-KUBELET-CANARY"


def _prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def _count_rules(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("-"))


def detect_backend(netns: str | None = None) -> str:
    """"legacy" or "nft", as kube-proxy's image does: a KUBE-IPTABLES-HINT / KUBE-KUBELET-CANARY
    chain names the mode; otherwise the backend holding more rules wins; nft by default."""
    counts: dict[str, int] = {}
    for mode in ("nft", "legacy"):
        exe = f"iptables-{mode}-save"
        if shutil.which(exe) is None:
            continue
        proc = subprocess.run([*_prefix(netns), exe], capture_output=True, text=True)
        if proc.returncode != 0:
            continue
        if f":{HINT_CHAIN} " in proc.stdout or f":{KUBELET_CANARY} " in proc.stdout:
            return mode
        counts[mode] = _count_rules(proc.stdout)
    if counts.get("legacy", 0) > counts.get("nft", 0):
        return "legacy"
    if "nft" not in counts and "legacy" in counts:
        return "legacy"
    return "nft"


_LINE_RE = re.compile(r"line:? (\d+)")


@dataclass
class Iptables:
    """One backend ("nft" | "legacy") in one namespace (None = the caller's)."""

    mode: str = "nft"
    netns: str | None = None
    timeout: float = 120.0
    calls: list[tuple[str, float]] = field(default_factory=list)  # (command, seconds) of recent calls
    last_restore_seconds: float = 0.0

    def _exe(self, tool: str) -> str:
        return f"{tool}-{self.mode}" if tool == "iptables" else f"iptables-{self.mode}-{tool}"

    def _run(self, argv: Sequence[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        start = time.monotonic()
        proc = subprocess.run([*_prefix(self.netns), *argv], capture_output=True, text=True, input=input,
                              timeout=self.timeout)
        self.calls.append((argv[0], time.monotonic() - start))
        del self.calls[:-50]
        if check and proc.returncode != 0:
            raise ProxyError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def iptables(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([self._exe("iptables"), "-w", "5", *args], check=check)

    def save(self, table: str | None = None, counters: bool = False) -> str:
        argv = [self._exe("save")]
        if table:
            argv += ["-t", table]
        if counters:
            argv.append("-c")
        return self._run(argv).stdout

    def restore(self, payload: str, noflush: bool = True, counters: bool = True) -> None:
        argv = [self._exe("restore"), "-w", "5"]
        if noflush:
            argv.append("--noflush")
        if counters:
            argv.append("--counters")
        start = time.monotonic()
        proc = self._run(argv, input=payload, check=False)
        self.last_restore_seconds = time.monotonic() - start
        if proc.returncode != 0:
            err = proc.stderr.strip()
            m = _LINE_RE.search(err)
            line = int(m.group(1)) if m else 0
            context = ""
            if line:
                lines = payload.splitlines()
                context = " | ".join(lines[max(0, line - 2):line + 1])
            raise RestoreError(f"iptables-restore failed: {err}" + (f" near: {context}" if context else ""), line)

    def has_chain(self, table: str, chain: str) -> bool:
        return self.iptables("-t", table, "-S", chain, "1", check=False).returncode == 0

    def ensure_chain(self, table: str, chain: str) -> None:
        if not self.has_chain(table, chain):
            proc = self.iptables("-t", table, "-N", chain, check=False)
            if proc.returncode != 0 and "exists" not in proc.stderr:
                raise ProxyError(f"iptables -t {table} -N {chain}: {proc.stderr.strip()}")

    def ensure_rule_first(self, table: str, chain: str, args: Sequence[str]) -> None:
        """Insert the rule at the top of `chain` unless it exists (upstream EnsureRule(Prepend))."""
        if self.iptables("-t", table, "-C", chain, *args, check=False).returncode != 0:
            self.iptables("-t", table, "-I", chain, *args)

    def delete_rule(self, table: str, chain: str, args: Sequence[str]) -> bool:
        return self.iptables("-t", table, "-D", chain, *args, check=False).returncode == 0

    def chains(self, table: str) -> set[str]:
        return declared_chains(self.save(table))

    def has_random_fully(self) -> bool:
        """MASQUERADE --random-fully needs iptables >= 1.6.2."""
        out = self.iptables("--version", check=False).stdout
        m = re.search(r"v(\d+)\.(\d+)\.(\d+)", out)
        return bool(m) and tuple(int(x) for x in m.groups()) >= (1, 6, 2)  # type: ignore[union-attr]


def jump_args(comment: str, extra: Sequence[str], target: str) -> list[str]:
    args = list(extra)
    if comment:
        args += ["-m", "comment", "--comment", comment]
    return args + ["-j", target]


def ensure_jumps(ipt: Iptables) -> None:
    """Chains + the jumps into them from the builtin chains (done on full syncs only)."""
    for table, chain, src, comment, extra in (*n.JUMP_CHAINS, *n.KUBELET_JUMP_CHAINS):
        ipt.ensure_chain(table, chain)
        ipt.ensure_rule_first(table, src, jump_args(comment, extra, chain))


_BUILTIN = ("-A PREROUTING ", "-A INPUT ", "-A FORWARD ", "-A OUTPUT ", "-A POSTROUTING ")


def _has_jump(builtin_rules: list[str], src: str, chain: str, comment: str) -> bool:
    head = f"-A {src} "
    for line in builtin_rules:
        if line.startswith(head) and line.endswith(f"-j {chain}") and \
                (not comment or f'--comment "{comment}"' in line or f"--comment {comment} " in line):
            return True
    return False


def declared_chains(save_text: str) -> set[str]:
    """The chains one table's iptables-save declares."""
    return _scan(save_text)[0]


def _scan(save_text: str) -> tuple[set[str], list[str]]:
    """(declared chains, rules of the builtin chains) of one table's iptables-save, in one pass."""
    declared: set[str] = set()
    builtin: list[str] = []
    for line in save_text.splitlines():
        if line.startswith(":"):
            declared.add(line[1:].split(" ", 1)[0])
        elif line.startswith(_BUILTIN):
            builtin.append(line)
    return declared, builtin


def with_jumps_and_canaries(payload: str, saved: dict[str, str]) -> str:
    """Fold the jump rules, missing chains and canary chains into the restore payload, from one
    iptables-save per table (used with the legacy backend, where every single `iptables -C` call
    reads the whole table: ~30 such calls cost more than the restore at 10k Services)."""
    heads: dict[str, list[str]] = {"filter": [], "nat": [], "mangle": []}
    tails: dict[str, list[str]] = {"filter": [], "nat": [], "mangle": []}
    scans = {table: _scan(text) for table, text in saved.items()}
    in_payload: dict[str, set[str]] = {}
    sections = [sec for sec in payload.split("COMMIT\n") if sec.strip()]
    for sec in sections:
        header, _, body = sec.lstrip("\n").partition("\n")
        in_payload[header[1:]] = {ln[1:].split(" ", 1)[0] for ln in body.split("\n") if ln.startswith(":")}
    for table in n.CANARY_TABLES:
        if n.KUBE_PROXY_CANARY not in scans.get(table, (set(), []))[0]:
            heads[table].append(f":{n.KUBE_PROXY_CANARY} - [0:0]")
    for table, chain, src, comment, extra in (*n.JUMP_CHAINS, *n.KUBELET_JUMP_CHAINS):
        declared, builtin = scans.get(table, (set(), []))
        if chain not in declared and chain not in in_payload.get(table, set()) and \
                f":{chain} - [0:0]" not in heads[table]:
            heads[table].append(f":{chain} - [0:0]")
        if not _has_jump(builtin, src, chain, comment):
            rule = " ".join(extra) + (f' -m comment --comment "{comment}"' if comment else "")
            tails[table].append(f"-I {src} 1 {rule.strip()} -j {chain}".replace("  ", " "))
    out: list[str] = []
    seen: set[str] = set()
    for sec in sections:
        header, _, body = sec.lstrip("\n").partition("\n")
        table = header[1:]
        seen.add(table)
        out.append("\n".join([header, *heads.get(table, [])]))
        if body.strip():
            out.append(body.rstrip("\n"))
        out.append("\n".join([*tails.get(table, []), "COMMIT"]))
    for table in ("mangle", "filter", "nat"):
        if table not in seen and (heads[table] or tails[table]):
            out.append("\n".join([f"*{table}", *heads[table], *tails[table], "COMMIT"]))
    return "\n".join(out) + "\n"


def ensure_canaries(ipt: Iptables) -> None:
    for table in n.CANARY_TABLES:
        ipt.ensure_chain(table, n.KUBE_PROXY_CANARY)


def canaries_present(ipt: Iptables) -> bool:
    return all(ipt.has_chain(table, n.KUBE_PROXY_CANARY) for table in n.CANARY_TABLES)


def cleanup(ipt: Iptables) -> list[str]:
    """Remove every rule and chain kube-proxy installs (upstream CleanupLeftovers, plus the canaries,
    KUBE-MARK-MASQ and the KUBE-FIREWALL copy). Returns what was removed."""
    removed: list[str] = []
    for table, chain, src, comment, extra in (*n.JUMP_CHAINS, *n.KUBELET_JUMP_CHAINS):
        while ipt.delete_rule(table, src, jump_args(comment, extra, chain)):
            removed.append(f"{table} {src} -> {chain}")
    plan = {
        "nat": (n.KUBE_SERVICES, n.KUBE_NODEPORTS, n.KUBE_POSTROUTING, n.KUBE_MARK_MASQ, n.KUBE_PROXY_CANARY),
        "filter": (n.KUBE_SERVICES, n.KUBE_EXTERNAL_SERVICES, n.KUBE_FORWARD, n.KUBE_NODEPORTS,
                   n.KUBE_PROXY_FIREWALL, n.KUBE_FIREWALL, n.KUBE_PROXY_CANARY),
        "mangle": (n.KUBE_PROXY_CANARY,),
    }
    for table, fixed in plan.items():
        try:
            existing = ipt.chains(table)
        except ProxyError:
            continue
        doomed = sorted(c for c in existing if c in fixed or (table == "nat" and n.is_service_chain(c)))
        if not doomed:
            continue
        payload = [f"*{table}", *(f":{c} - [0:0]" for c in doomed), *(f"-X {c}" for c in doomed), "COMMIT", ""]
        ipt.restore("\n".join(payload), noflush=True, counters=False)
        removed += [f"{table} {c}" for c in doomed]
    return removed
