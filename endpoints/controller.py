"""The controller shell: informers in, writes out, the pure `reconcile` in between.

Informers on Services, Pods, Endpoints, EndpointSlices (managed-by this controller) and Nodes
(for zones) feed a deduplicating queue of Service keys ("ns/name"); pod events find their
Services through a selector index. Workers start once every informer has synced, so the first
pass reconciles everything that exists: it adopts and fixes objects and deletes the ones it
manages whose Service is gone or no longer has a selector. Failed writes are retried with
per-key backoff; a 409 (Conflict / AlreadyExists) or a 404 on update re-reads the Service's
objects from the server before the retry. Informers reconnect on their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import datetime, timezone
from typing import Any

from controlplane import errors
from controlplane.client import Client, Informer
from controlplane.model import Pod, Service, parse_pod, parse_service, selector_matches
from controlplane.resources import ENDPOINTS, ENDPOINTSLICES, NODES, PODS, SERVICES
from endpoints.core import (
    DEFAULT_MAX_ENDPOINTS_PER_SLICE, JSON, MANAGED_BY_CONTROLLER, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, is_managed,
    parse_time, validate_max_per_slice,
)
from endpoints.mirror import DEFAULT_MAX_PER_SUBSET
from endpoints.mirroring import Mirroring, strip
from endpoints.queue import WorkQueue
from endpoints.reconcile import Action, Desired, Existing, endpoints_is_managed, reconcile
from endpoints.writes import WriteCache, object_key

log = logging.getLogger("podnet.endpoints")

ZONE_LABEL = "topology.kubernetes.io/zone"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_CONTROLLER}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _meta(obj: JSON | None) -> JSON:
    """The object's metadata, read-only (no copy: this runs several times per pod event)."""
    meta: JSON = (obj or {}).get("metadata") or {}
    return meta


def _selector(svc: JSON) -> dict[str, str]:
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return {}
    return {str(k): str(v) for k, v in (spec.get("selector") or {}).items()}


def _label_pairs(obj: JSON) -> list[str]:
    ns = _meta(obj).get("namespace", "")
    return [f"{ns}/{k}={v}" for k, v in (_meta(obj).get("labels") or {}).items()]


def _selector_pairs(svc: JSON) -> list[str]:
    ns = _meta(svc).get("namespace", "")
    return [f"{ns}/{k}={v}" for k, v in _selector(svc).items()]


def _slice_owner(obj: JSON) -> list[str]:
    name = (_meta(obj).get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{_meta(obj).get('namespace', '')}/{name}"] if name else []


def _ready_transition(pod: JSON) -> datetime | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return parse_time(cond.get("lastTransitionTime"))
    return None


def _ready_status(pod: JSON | None) -> str:
    for cond in ((pod or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status"))
    return ""


def pod_trigger_time(old: JSON | None, new: JSON | None) -> datetime:
    """The time of a pod change: its Ready transition time when readiness is what changed (as
    upstream's trigger-time tracker), its creation for a new pod, else the time we saw it."""
    if new is not None and _ready_status(old) != _ready_status(new):
        when = _ready_transition(new)
        if when is not None:
            return when
    if old is None and new is not None:
        when = parse_time(_meta(new).get("creationTimestamp"))
        if when is not None:
            return when
    return _now()


class Controller:
    def __init__(self, client: Client, *, max_endpoints_per_slice: int = DEFAULT_MAX_ENDPOINTS_PER_SLICE,
                 workers: int = 1, mirroring: bool = True,
                 mirroring_max_endpoints_per_subset: int = DEFAULT_MAX_PER_SUBSET) -> None:
        self.client = client
        self.max_per_slice = validate_max_per_slice(max_endpoints_per_slice)
        self.workers = max(1, int(workers))
        self.services = Informer(client, SERVICES, name="endpoints/services")
        self.pods = Informer(client, PODS, name="endpoints/pods")
        self.endpoints = Informer(client, ENDPOINTS, name="endpoints/endpoints")
        self.slices = Informer(client, ENDPOINTSLICES, label_selector=MANAGED_SELECTOR, name="endpoints/slices")
        self.nodes = Informer(client, NODES, name="endpoints/nodes")
        self.services.add_index("selector", _selector_pairs)
        self.pods.add_index("label", _label_pairs)
        self.slices.add_index("service", _slice_owner)
        self.services.add_handler(self._on_service_add, self._on_service_update, self._on_service_delete)
        self.pods.add_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self.slices.add_handler(self._on_slice_add, self._on_slice_update, self._on_slice_delete)
        self.endpoints.add_handler(self._on_endpoints_add, self._on_endpoints_update, self._on_endpoints_delete)
        self.queue = WorkQueue()
        self.slice_writes = WriteCache()
        self.endpoints_writes = WriteCache()
        self._triggers: dict[str, datetime] = {}
        self._fresh: set[str] = set()
        self._parsed: dict[str, tuple[str, Pod]] = {}
        self.syncs = 0
        self.writes = 0
        self.mirroring = Mirroring(client, self.queue, self.services, self.endpoints,
                                   max_per_subset=mirroring_max_endpoints_per_subset) if mirroring else None

    @property
    def informers(self) -> tuple[Informer, ...]:
        extra = (self.mirroring.slices,) if self.mirroring is not None else ()
        return (self.services, self.pods, self.endpoints, self.slices, self.nodes, *extra)

    # -- event handlers (fast: they only queue keys) ---------------------------------------------
    def enqueue(self, key: str, when: datetime | None = None) -> None:
        when = when or _now()
        prev = self._triggers.get(key)
        self._triggers[key] = when if prev is None or when < prev else prev
        self.queue.add(key)

    def _on_service_add(self, obj: JSON) -> None:
        self.enqueue(object_key(obj), parse_time(_meta(obj).get("creationTimestamp")))

    def _on_service_update(self, old: JSON, new: JSON) -> None:
        if old.get("spec") != new.get("spec") or _meta(old).get("labels") != _meta(new).get("labels"):
            self.enqueue(object_key(new))

    def _on_service_delete(self, obj: JSON) -> None:
        self.enqueue(object_key(obj))

    def _services_for(self, pod: JSON | None) -> set[str]:
        if pod is None:
            return set()
        labels = _meta(pod).get("labels") or {}
        keys: set[str] = set()
        for pair in _label_pairs(pod):
            for svc in self.services.by_index("selector", pair):
                if selector_matches(_selector(svc), labels):
                    keys.add(object_key(svc))
        return keys

    def _parse_pod(self, obj: JSON) -> Pod:
        key, rv = object_key(obj), str(_meta(obj).get("resourceVersion") or "")
        hit = self._parsed.get(key)
        if hit is not None and hit[0] == rv and rv:
            return hit[1]
        pod = parse_pod(obj)
        self._parsed[key] = (rv, pod)
        return pod

    def _on_pod_add(self, obj: JSON) -> None:
        for key in self._services_for(obj):
            self.enqueue(key, pod_trigger_time(None, obj))

    def _on_pod_update(self, old: JSON, new: JSON) -> None:
        try:
            same = (dataclasses.replace(self._parse_pod(old), resource_version="")
                    == dataclasses.replace(self._parse_pod(new), resource_version=""))
        except (ValueError, TypeError):
            same = False
        if same:
            return
        when = pod_trigger_time(old, new)
        for key in self._services_for(old) | self._services_for(new):
            self.enqueue(key, when)

    def _on_pod_delete(self, obj: JSON) -> None:
        self._parsed.pop(object_key(obj), None)
        for key in self._services_for(obj):
            self.enqueue(key)

    def _on_slice_event(self, obj: JSON, gone: bool) -> None:
        if self.slice_writes.observe(object_key(obj), None if gone else obj):
            return
        for key in _slice_owner(obj):
            self.enqueue(key)

    def _on_slice_add(self, obj: JSON) -> None:
        self._on_slice_event(obj, False)

    def _on_slice_update(self, old: JSON, new: JSON) -> None:
        self._on_slice_event(new, False)

    def _on_slice_delete(self, obj: JSON) -> None:
        self._on_slice_event(obj, True)

    def _on_endpoints_event(self, obj: JSON, gone: bool) -> None:
        key = object_key(obj)
        if self.endpoints_writes.observe(key, None if gone else obj):
            return
        svc = self.services.get(key)
        if endpoints_is_managed(obj) or (svc is not None and _selector(svc)):
            self.enqueue(key)

    def _on_endpoints_add(self, obj: JSON) -> None:
        self._on_endpoints_event(obj, False)

    def _on_endpoints_update(self, old: JSON, new: JSON) -> None:
        self._on_endpoints_event(new, False)

    def _on_endpoints_delete(self, obj: JSON) -> None:
        self._on_endpoints_event(obj, True)

    # -- one sync --------------------------------------------------------------------------------
    def _pods_for(self, service: Service) -> list[Pod]:
        pairs = [f"{service.namespace}/{k}={v}" for k, v in service.selector or ()]
        if not pairs:
            return []
        best = min(pairs, key=lambda p: len(self.pods.index_keys("label", p)))
        return [self._parse_pod(obj) for obj in self.pods.by_index("label", best)]

    def _zones(self, pods: list[Pod]) -> dict[str, str]:
        zones: dict[str, str] = {}
        for name in {p.node_name for p in pods if p.node_name}:
            zone = (_meta(self.nodes.get(name)).get("labels") or {}).get(ZONE_LABEL)
            if zone:
                zones[name] = str(zone)
        return zones

    async def _existing(self, key: str) -> Existing:
        ns, _, name = key.partition("/")
        if key in self._fresh:  # after a conflict: read what the server has now, not the cache
            self._fresh.discard(key)
            fresh = await self.client.list(ENDPOINTSLICES, namespace=ns,
                                           label_selector=f"{SERVICE_NAME_LABEL}={name},{MANAGED_SELECTOR}")
            self.slice_writes.forget_owner(key)
            self.endpoints_writes.forget_owner(key)
            fresh_keys = {object_key(o) for o in fresh.items}
            for obj in self.slices.by_index("service", key):
                if object_key(obj) not in fresh_keys:
                    self.slice_writes.deleted(key, obj)
            for obj in fresh.items:
                self.slice_writes.wrote(key, obj)
            try:
                self.endpoints_writes.wrote(key, await self.client.get(ENDPOINTS, name, namespace=ns))
            except errors.NotFound:
                cached = self.endpoints.get(key)
                if cached is not None:
                    self.endpoints_writes.deleted(key, cached)
        return Existing(endpoints=self.endpoints_writes.merge_one(key, key, self.endpoints.get(key)),
                        slices=tuple(self.slice_writes.merge(key, self.slices.by_index("service", key))))

    async def sync(self, key: str) -> Desired:
        started = time.perf_counter()
        svc_obj = self.services.get(key)
        service = parse_service(svc_obj) if svc_obj is not None else None
        pods = self._pods_for(service) if service is not None and is_managed(service) else []
        existing = await self._existing(key)
        trigger = self._triggers.pop(key, None)
        try:
            desired = reconcile(service, pods, existing, max_endpoints_per_slice=self.max_per_slice,
                                trigger_time=trigger, zones=self._zones(pods))
            await self._apply(key, desired)
        except BaseException:
            if trigger is not None:
                later = self._triggers.get(key)
                self._triggers[key] = trigger if later is None or trigger < later else later
            raise
        self.syncs += 1
        if desired.changed:
            log.debug("synced %s in %.1f ms: %d created, %d updated, %d deleted slices, endpoints %s", key,
                      (time.perf_counter() - started) * 1000, len(desired.create), len(desired.update),
                      len(desired.delete), desired.endpoints_action.value)
        return desired

    async def _apply(self, key: str, d: Desired) -> None:
        """Slices (creates, then updates, then deletes) and the Endpoints object, concurrently."""
        results = await asyncio.gather(self._apply_slices(key, d), self._apply_endpoints(key, d),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _apply_slices(self, key: str, d: Desired) -> None:
        ns = key.partition("/")[0]
        for obj in d.create:
            self.slice_writes.wrote(key, await self.client.create(ENDPOINTSLICES, obj, namespace=ns))
            self.writes += 1
        for obj in d.update:
            self.slice_writes.wrote(key, await self.client.update(ENDPOINTSLICES, obj, namespace=ns))
            self.writes += 1
        for obj in d.delete:
            try:
                await self.client.delete(ENDPOINTSLICES, _meta(obj)["name"], namespace=ns)
            except errors.NotFound:
                pass
            self.slice_writes.deleted(key, obj)
            self.writes += 1

    async def _apply_endpoints(self, key: str, d: Desired) -> None:
        ns = key.partition("/")[0]
        if d.endpoints is None or d.endpoints_action is Action.NONE:
            return
        if d.endpoints_action is Action.CREATE:
            self.endpoints_writes.wrote(key, await self.client.create(ENDPOINTS, d.endpoints, namespace=ns))
        elif d.endpoints_action is Action.UPDATE:
            self.endpoints_writes.wrote(key, await self.client.update(ENDPOINTS, d.endpoints, namespace=ns))
        else:
            try:
                await self.client.delete(ENDPOINTS, _meta(d.endpoints)["name"], namespace=ns)
            except errors.NotFound:
                pass
            self.endpoints_writes.deleted(key, d.endpoints)
        self.writes += 1

    # -- workers and lifecycle -------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            if key is None:
                return
            try:
                mirror_key = strip(key)
                if mirror_key is None:
                    await self.sync(key)
                elif self.mirroring is not None:
                    await self.mirroring.sync(mirror_key)
                self.queue.forget(key)
            except asyncio.CancelledError:
                raise
            except (errors.Conflict, errors.AlreadyExists, errors.NotFound) as exc:
                log.info("sync %s: %s; retrying with fresh state", key, exc.message)
                if strip(key) is None:
                    self._fresh.add(key)
                self.queue.add_rate_limited(key)
            except Exception as exc:
                delay = self.queue.add_rate_limited(key)
                log.warning("sync %s failed (%s: %s); retry in %.2fs", key, type(exc).__name__, exc, delay)
            finally:
                self.queue.done(key)

    async def run(self, stop: asyncio.Event) -> None:
        workers: list[asyncio.Task[None]] = []
        try:
            for informer in self.informers:
                await informer.start()
            while not stop.is_set() and not all(i.has_synced for i in self.informers):
                try:
                    await asyncio.wait_for(stop.wait(), 0.05)
                except asyncio.TimeoutError:
                    pass
            if stop.is_set():
                return
            log.info("endpoints controller synced (%d services, %d pods); %d worker(s), max %d endpoints per slice",
                     len(self.services), len(self.pods), self.workers, self.max_per_slice)
            workers = [asyncio.create_task(self._worker(), name=f"endpoints-worker-{i}")
                       for i in range(self.workers)]
            await stop.wait()
        finally:
            self.queue.shutdown()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for informer in self.informers:
                await informer.stop()


async def run(client: Client, stop: asyncio.Event, *, max_endpoints_per_slice: int = DEFAULT_MAX_ENDPOINTS_PER_SLICE,
              workers: int = 1, mirroring: bool = True,
              mirroring_max_endpoints_per_subset: int = DEFAULT_MAX_PER_SUBSET, **_options: Any) -> None:
    """The controller entry point (`podnet controlplane --controllers endpoints` and `podnet endpoints`).

    Returns when `stop` is set. Options meant for other controllers (service_cidr, ...) are ignored.
    `mirroring` also runs EndpointSlice mirroring for selector-less Services (endpoints/mirror.py)."""
    await Controller(client, max_endpoints_per_slice=max_endpoints_per_slice, workers=workers, mirroring=mirroring,
                     mirroring_max_endpoints_per_subset=mirroring_max_endpoints_per_subset).run(stop)
