"""The iptables-mode proxier: change trackers -> render -> one `iptables-restore --noflush`.

Shell around the pure core (proxy/changes.py, proxy/iptables/render.py, proxy/conntrack.py).
Event handlers may be called from the event loop while a sync runs in a worker thread; one lock
guards the trackers and maps (upstream proxier.mu).
"""

from __future__ import annotations

import gc
import logging
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping

from controlplane.model import parse_endpoint_slice, parse_node, parse_service
from proxy.changes import EndpointsChangeTracker, EndpointsMap, ServiceChangeTracker, ServicePortMap
from proxy.conntrack import stale_entries
from proxy.errors import ProxyError
from proxy.health import ProxierHealth, utc_now
from proxy.iptables import backend
from proxy.iptables.names import is_service_chain
from proxy.iptables.fragments import RenderMemo
from proxy.iptables.render import ProxyState, Rendered, RenderOptions, render
from proxy.metrics import ProxyMetrics

log = logging.getLogger("podnet.proxy")


@dataclass(frozen=True)
class SyncResult:
    ok: bool
    full: bool
    seconds: float
    rendered: Rendered | None = None
    error: str = ""
    conntrack_deleted: tuple[tuple[str, ...], ...] = ()


class Proxier:
    def __init__(self, hostname: str, ipt: backend.Iptables, options: RenderOptions, *,
                 metrics: ProxyMetrics | None = None, health: ProxierHealth | None = None,
                 conntrack_cleanup: bool = True, incremental: bool = True,
                 stale_chain_cleanup_period: float = 30.0) -> None:
        self.hostname = hostname
        self.ipt = ipt
        self.options = options
        self.metrics = metrics or ProxyMetrics()
        self.health = health or ProxierHealth(timeout=60.0)
        self.conntrack_cleanup = conntrack_cleanup and shutil.which("conntrack") is not None
        self.lock = threading.RLock()
        self.service_changes = ServiceChangeTracker()
        self.endpoint_changes = EndpointsChangeTracker(hostname)
        self.svc_map = ServicePortMap()
        self.endpoints_map = EndpointsMap()
        self.node_labels: dict[str, str] | None = None
        self.need_full_sync = True
        self.services_synced = False
        self.slices_synced = False
        self.known_nat_chains: frozenset[str] = frozenset()
        # incremental partial syncs: top-level chains get a -D/-I delta and unchanged Services are
        # not re-rendered (upstream rewrites KUBE-SERVICES every sync; at 10k Services that alone
        # costs ~1 s per restore). Full syncs (start, failures, flushes, every sync-period) rewrite all.
        self.incremental = incremental
        self.memo: RenderMemo | None = None
        self.last_full_sync = 0.0
        # upstream: in large clusters (> 1000 endpoints) stale chains are deleted at most once per
        # syncPeriod (they are unreferenced and harmless); with iptables-nft a `-X` makes the restore
        # fetch every rule to check references, which dominates a one-Service partial sync.
        self.stale_chain_cleanup_period = stale_chain_cleanup_period
        self.last_chain_cleanup = 0.0
        self.last_result: SyncResult | None = None
        self.syncs = 0
        self.on_change: Any = None  # callable() the runner sets to get woken up
        # callable(health check node ports, local ready endpoints) after each successful sync
        self.on_synced: Any = None

    # ------------------------------------------------------------ handlers (JSON dicts)

    @property
    def initialized(self) -> bool:
        return self.services_synced and self.slices_synced

    def _queued(self) -> None:
        now = utc_now()
        self.health.queued_update(now)
        self.metrics.last_queued_timestamp.set(now.timestamp())
        if self.on_change is not None and self.initialized:
            self.on_change()

    def on_service_update(self, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> None:
        try:
            old_svc, new_svc = (parse_service(old) if old else None), (parse_service(new) if new else None)
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring unparsable Service %s: %s", _name_of(new or old), exc)
            return
        with self.lock:
            pending = self.service_changes.update(old_svc, new_svc)
            self.metrics.service_changes_total.inc()
            self.metrics.service_changes_pending.set(self.service_changes.pending())
        if pending:
            self._queued()

    def on_service_add(self, obj: Mapping[str, Any]) -> None:
        self.on_service_update(None, obj)

    def on_service_delete(self, obj: Mapping[str, Any]) -> None:
        self.on_service_update(obj, None)

    def on_slice_update(self, obj: Mapping[str, Any], removed: bool = False) -> None:
        try:
            sl = parse_endpoint_slice(obj)
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring unparsable EndpointSlice %s: %s", _name_of(obj), exc)
            return
        if not sl.service_name:
            return
        with self.lock:
            pending = self.endpoint_changes.endpoint_slice_update(sl, removed)
            self.metrics.endpoint_changes_total.inc()
            self.metrics.endpoint_changes_pending.set(self.endpoint_changes.pending())
        if pending:
            self._queued()

    def on_slice_add(self, obj: Mapping[str, Any]) -> None:
        self.on_slice_update(obj)

    def on_slice_modify(self, _old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        self.on_slice_update(new)

    def on_slice_delete(self, obj: Mapping[str, Any]) -> None:
        self.on_slice_update(obj, removed=True)

    def on_node(self, obj: Mapping[str, Any] | None) -> None:
        """Node add/update/delete: new labels force a full sync (upstream OnNodeAdd/Update/Delete)."""
        node = parse_node(obj) if obj is not None else None
        if node is not None and node.name != self.hostname:
            return
        labels = dict(node.labels) if node is not None and obj else None
        with self.lock:
            if labels == self.node_labels:
                return
            self.node_labels = labels
            self.need_full_sync = True
            if node is not None and self.options.node_ip is None:
                ips = [ip for ip in node.internal_ips if ip.version == 4]
                if ips:
                    self.options = replace(self.options, node_ip=ips[0])
        self._queued()

    def set_synced(self, services: bool | None = None, slices: bool | None = None) -> None:
        with self.lock:
            if services is not None:
                self.services_synced = services
            if slices is not None:
                self.slices_synced = slices

    def force_full_sync(self) -> None:
        with self.lock:
            self.need_full_sync = True

    # ------------------------------------------------------------ the sync

    def sync_proxy_rules(self) -> SyncResult | None:
        """One sync (blocking: call it from a worker thread). None until informers synced."""
        with self.lock:
            if not self.initialized:
                return None
            return self._sync_locked()

    def _sync_locked(self) -> SyncResult:
        start = time.monotonic()
        full = self.need_full_sync
        svc_result = self.svc_map.update_from(self.service_changes)
        ep_result = self.endpoints_map.update_from(self.endpoint_changes)
        self.metrics.service_changes_pending.set(0)
        self.metrics.endpoint_changes_pending.set(0)
        try:
            saved: dict[str, str] | None = None
            if full and self.ipt.mode == "legacy":
                # one save per table replaces ~30 iptables calls that each read the whole table
                saved = {t: self.ipt.save(t) for t in ("nat", "filter", "mangle")}
                existing = frozenset(c for c in backend.declared_chains(saved["nat"]) if is_service_chain(c))
            elif full:
                backend.ensure_jumps(self.ipt)
                backend.ensure_canaries(self.ipt)
                existing = self._existing_nat_chains()
            elif self._defer_chain_cleanup():
                existing = frozenset()
            else:
                existing = self.known_nat_chains
            changed = None if full else frozenset(svc_result.updated_services | ep_result.updated_services)
            gc_was_enabled = gc.isenabled()
            gc.disable()  # rendering allocates ~1M short-lived strings at 10k Services: GC passes double it
            try:
                previous = self.memo if (self.incremental and not full) else None
                rendered = render(ProxyState(self.svc_map, self.endpoints_map, self.options, changed, existing,
                                             previous))
            finally:
                if gc_was_enabled:
                    gc.enable()
            self.ipt.restore(rendered.text if saved is None else
                             backend.with_jumps_and_canaries(rendered.text, saved))
        except (ProxyError, OSError, subprocess.SubprocessError) as exc:
            self.metrics.restore_failures.inc()
            if not full:
                self.metrics.partial_restore_failures.inc()
            self.need_full_sync = True  # the changes were consumed: only a full sync is correct now
            self.memo = None
            log.error("sync failed (%s sync): %s", "full" if full else "partial", exc)
            result = SyncResult(False, full, time.monotonic() - start, error=str(exc))
            self._observe(result)
            return result
        self.need_full_sync = False
        if full or existing:
            self.known_nat_chains = rendered.active_nat_chains
            self.last_chain_cleanup = time.monotonic()
        else:  # cleanup deferred: stale chains stay known so a later sync deletes them
            self.known_nat_chains = rendered.active_nat_chains | self.known_nat_chains
        self.memo = rendered.memo
        if full:
            self.last_full_sync = time.monotonic()
        now = utc_now()
        for times in ep_result.last_change_trigger_times.values():
            for t in times:
                self.metrics.network_programming.observe(max(0.0, (now - t).total_seconds()))
        deleted: tuple[tuple[str, ...], ...] = ()
        if self.conntrack_cleanup:
            deleted = tuple(self._clear_conntrack(stale_entries(self.svc_map, svc_result, ep_result)))
        result = SyncResult(True, full, time.monotonic() - start, rendered, conntrack_deleted=deleted)
        self._observe(result)
        self.health.updated(now)
        self.metrics.last_timestamp.set(now.timestamp())
        self.metrics.iptables_total.set(rendered.filter_rules, table="filter")
        self.metrics.iptables_total.set(rendered.nat_rules - len(rendered.deleted_nat_chains), table="nat")
        self.metrics.iptables_last.set(rendered.filter_rules, table="filter")
        self.metrics.iptables_last.set(rendered.nat_rules_written - len(rendered.deleted_nat_chains), table="nat")
        self.metrics.no_local_endpoints.set(rendered.no_local_endpoints_internal, traffic_policy="internal")
        self.metrics.no_local_endpoints.set(rendered.no_local_endpoints_external, traffic_policy="external")
        if self.on_synced is not None:
            self.on_synced(self.svc_map.health_check_node_ports(), self.endpoints_map.local_ready_endpoints())
        return result

    def _observe(self, result: SyncResult) -> None:
        self.syncs += 1
        self.last_result = result
        with self.metrics.lock:
            self.metrics.sync_duration.observe(result.seconds)
            (self.metrics.sync_full_duration if result.full else self.metrics.sync_partial_duration).observe(
                result.seconds)

    def _defer_chain_cleanup(self) -> bool:
        last = self.last_result.rendered if self.last_result is not None else None
        return bool(last is not None and last.large_cluster and
                    time.monotonic() - self.last_chain_cleanup < self.stale_chain_cleanup_period)

    def _existing_nat_chains(self) -> frozenset[str]:
        """Service chains now in the nat table (to delete stale ones and take over old rules)."""
        if self.ipt.mode == "nft" and shutil.which("nft"):
            proc = subprocess.run([*backend._prefix(self.ipt.netns), "nft", "list", "chains", "ip"],
                                  capture_output=True, text=True)
            if proc.returncode == 0:
                return frozenset(_nft_chains_of_table(proc.stdout, "nat"))
        return frozenset(c for c in self.ipt.chains("nat") if is_service_chain(c))

    def _clear_conntrack(self, filters: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
        done = []
        for f in filters:
            proc = subprocess.run([*backend._prefix(self.ipt.netns), "conntrack", "-D", *f],
                                  capture_output=True, text=True)
            # exit 1 with "0 flow entries have been deleted" just means nothing matched
            if proc.returncode == 0:
                done.append(f)
            elif "0 flow entries" not in proc.stderr:
                log.warning("conntrack -D %s: %s", " ".join(f), proc.stderr.strip())
        return done

    def check_canary(self) -> bool:
        """False (and a full sync is scheduled) when something flushed our tables."""
        try:
            ok = backend.canaries_present(self.ipt)
        except (ProxyError, OSError, subprocess.SubprocessError):
            ok = False
        if not ok:
            log.warning("KUBE-PROXY-CANARY missing: iptables were flushed; forcing a full resync")
            self.force_full_sync()
        return ok


def _name_of(obj: Mapping[str, Any] | None) -> str:
    meta = (obj or {}).get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _nft_chains_of_table(text: str, table: str) -> list[str]:
    out: list[str] = []
    current = ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("table "):
            current = s.split()[2] if len(s.split()) > 2 else ""
        elif s.startswith("chain ") and current == table:
            name = s.split()[1]
            if is_service_chain(name):
                out.append(name)
    return out
