"""The Proxier's sync bookkeeping with a recording iptables (no kernel): full vs partial syncs,
incremental deltas, deferred stale-chain deletion in large clusters, failure -> full sync."""

from __future__ import annotations

import subprocess
from typing import Any

from proxy.errors import RestoreError
from proxy.iptables import backend
from proxy.iptables.proxier import Proxier
from proxy.iptables.render import RenderOptions
from tests.proxy.proxy_helpers import service, slice_, tcp


class RecordingIptables(backend.Iptables):
    def __init__(self) -> None:
        super().__init__("legacy", netns="unused")
        self.payloads: list[str] = []
        self.fail_next = False

    def restore(self, payload: str, noflush: bool = True, counters: bool = True) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RestoreError("iptables-restore failed: injected", 3)
        self.payloads.append(payload)

    def iptables(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(args), 0, "", "")

    def chains(self, table: str) -> set[str]:
        return set()

    def save(self, table: str | None = None, counters: bool = False) -> str:
        return ""


def make(n: int, eps: int = 5, **kw: Any) -> tuple[Proxier, RecordingIptables]:
    ipt = RecordingIptables()
    p = Proxier("node", ipt, RenderOptions(), conntrack_cleanup=False, **kw)
    p._existing_nat_chains = lambda: frozenset()  # type: ignore[method-assign]
    for i in range(n):
        p.on_service_add(service("ns", f"s{i}", f"172.30.{i // 250}.{i % 250 + 1}", [tcp("p", 80)]))
        p.on_slice_add(slice_("ns", f"s{i}", [{"addresses": [f"10.{i // 250}.{i % 250}.{j}"]}
                                              for j in range(1, eps + 1)], [tcp("p", 80)]))
    p.set_synced(services=True, slices=True)
    r = p.sync_proxy_rules()
    assert r is not None and r.ok and r.full
    return p, ipt


def shrink(p: Proxier, i: int, eps: int) -> None:
    p.on_slice_modify({}, slice_("ns", f"s{i}", [{"addresses": [f"10.{i // 250}.{i % 250}.{j}"]}
                                                 for j in range(1, eps + 1)], [tcp("p", 80)]))


def test_small_cluster_partial_sync_deletes_stale_chain_at_once() -> None:
    p, ipt = make(3)
    shrink(p, 1, 4)
    r = p.sync_proxy_rules()
    assert r is not None and r.ok and not r.full
    assert len([ln for ln in ipt.payloads[-1].splitlines() if ln.startswith("-X ")]) == 1


def test_large_cluster_defers_stale_chain_deletion() -> None:
    p, ipt = make(201, stale_chain_cleanup_period=3600)  # 1005 endpoints: large-cluster mode
    shrink(p, 7, 4)
    r = p.sync_proxy_rules()
    assert r is not None and r.ok and not r.full and r.rendered is not None and r.rendered.large_cluster
    assert "-X " not in ipt.payloads[-1]
    stale = set(p.known_nat_chains) - set(r.rendered.active_nat_chains)
    assert len(stale) == 1
    p.stale_chain_cleanup_period = 0.0  # the period elapsed
    shrink(p, 8, 4)
    r = p.sync_proxy_rules()
    assert r is not None and r.ok
    assert len([ln for ln in ipt.payloads[-1].splitlines() if ln.startswith("-X ")]) == 2
    assert stale.isdisjoint(p.known_nat_chains)


def test_failed_restore_forces_full_and_drops_memo() -> None:
    p, ipt = make(2)
    shrink(p, 0, 3)
    ipt.fail_next = True
    r = p.sync_proxy_rules()
    assert r is not None and not r.ok and p.need_full_sync and p.memo is None
    assert p.metrics.partial_restore_failures.get() == 1
    r = p.sync_proxy_rules()
    assert r is not None and r.ok and r.full and ":KUBE-SERVICES - [0:0]" in ipt.payloads[-1]
    # legacy full syncs fold the jumps and canaries into the same restore
    assert "-I PREROUTING 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in ipt.payloads[-1]
    assert "*mangle\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT" in ipt.payloads[-1]


def test_incremental_off_rewrites_top_level_chains() -> None:
    p, ipt = make(2, incremental=False)
    shrink(p, 0, 3)
    r = p.sync_proxy_rules()
    assert r is not None and r.ok and not r.full
    assert ":KUBE-SERVICES - [0:0]" in ipt.payloads[-1]
    p2, ipt2 = make(2)
    shrink(p2, 0, 3)
    p2.sync_proxy_rules()
    assert ":KUBE-SERVICES - [0:0]" not in ipt2.payloads[-1]


def test_no_sync_before_informers_synced_and_node_labels_force_full() -> None:
    p = Proxier("node", RecordingIptables(), RenderOptions(), conntrack_cleanup=False)
    assert p.sync_proxy_rules() is None
    p.set_synced(services=True, slices=True)
    p._existing_nat_chains = lambda: frozenset()  # type: ignore[method-assign]
    assert p.sync_proxy_rules().full  # type: ignore[union-attr]
    assert not p.need_full_sync
    p.on_node({"metadata": {"name": "node", "labels": {"zone": "a"}},
               "status": {"addresses": [{"type": "InternalIP", "address": "192.168.5.5"}]}})
    assert p.need_full_sync and str(p.options.node_ip) == "192.168.5.5"
    p.on_node({"metadata": {"name": "other-node", "labels": {"zone": "b"}}})
    assert p.node_labels == {"zone": "a"}
