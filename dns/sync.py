"""Feeding the cluster view from the shared Informer (Services, EndpointSlices, Pods).

Informer handlers parse each object once (`controlplane/model.py`) into a `ViewBuilder`;
a publisher task coalesces bursts of events (a few ms) into one new immutable snapshot and
hands it to the server. Nothing is published before every informer has synced, so queries
for the zone get SERVFAIL until then (and /ready says 503).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, AsyncIterator, Callable

from controlplane.client import Client, Informer, ObjectList, WatchEvent
from controlplane.errors import APIError
from controlplane.model import parse_endpoint_slice, parse_pod, parse_service
from controlplane.resources import ENDPOINTSLICES, NAMESPACES, PODS, SERVICES, Resource
from dns.view import ClusterView, ViewBuilder, slice_info, svc_info

log = logging.getLogger("podnet.dns.sync")
JSON = dict[str, Any]


def compact(resource: Resource, obj: JSON) -> JSON:
    """What the informer keeps of an object: the metadata its store needs, plus the already parsed
    DNS view of it under "dns" (client-go's informer transform; 10k full Service dicts would
    cost more memory than the whole DNS server is allowed). "dns" is None when unreadable."""
    meta = obj.get("metadata") or {}
    out_meta = {k: meta[k] for k in ("name", "namespace", "resourceVersion") if k in meta}
    if "namespace" in out_meta:
        out_meta["namespace"] = sys.intern(str(out_meta["namespace"]))
    parsed: Any
    try:
        if resource is SERVICES:
            parsed = svc_info(parse_service(obj))
        elif resource is ENDPOINTSLICES:
            sl = parse_endpoint_slice(obj)
            parsed = (sl.service_name, slice_info(sl))
        elif resource is PODS:
            pod = parse_pod(obj)
            parsed = () if pod.terminating or pod.terminal else pod.pod_ips
        else:
            return obj
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("%s %s/%s: ignored: %s", resource.kind, meta.get("namespace", ""), meta.get("name", ""), exc)
        parsed = None
    return {"metadata": out_meta, "dns": parsed}


class CompactClient:
    """The shared Client with list/watch results passed through `compact` (all an Informer calls)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def list(self, resource: Resource, **kw: Any) -> ObjectList:
        """List namespace by namespace, compacting each before fetching the next, so the full
        objects of the whole cluster never sit in memory together (the server does not page).

        The lists are taken one after another, so the watch resumes from the namespace list's
        resourceVersion (the oldest): events after it, including objects of namespaces created
        since, are replayed over the (possibly newer) listed state, which converges to the same
        store (ADDED/MODIFIED are upserts, DELETED removes)."""
        namespaces = None
        if kw.get("namespace") is None and resource.namespaced:
            try:
                namespaces = await self.client.list(NAMESPACES)
            except APIError as exc:  # e.g. not allowed to list namespaces: one list of everything
                log.info("listing namespaces failed (%s); listing %s at once", exc, resource.plural)
        if namespaces is None:
            lst = await self.client.list(resource, **kw)
            return ObjectList([compact(resource, o) for o in lst.items], lst.resource_version, lst.kind,
                              lst.api_version)
        items: list[JSON] = []
        for ns in sorted(str((o.get("metadata") or {}).get("name", "")) for o in namespaces.items):
            lst = await self.client.list(resource, **{**kw, "namespace": ns})
            items.extend(compact(resource, o) for o in lst.items)
            del lst
        return ObjectList(items, namespaces.resource_version)

    async def watch(self, resource: Resource, **kw: Any) -> AsyncIterator[WatchEvent]:
        async for ev in self.client.watch(resource, **kw):
            if ev.type in ("ADDED", "MODIFIED", "DELETED"):
                ev = WatchEvent(ev.type, compact(resource, ev.object))
            yield ev

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class ViewSync:
    def __init__(self, client: Client, zone: str, publish: Callable[[ClusterView], None], *,
                 watch_pods: bool = False, debounce: float = 0.005) -> None:
        self.client = client
        self.builder = ViewBuilder(zone)
        self.publish = publish
        self.debounce = debounce
        self.synced = False
        self.view: ClusterView | None = None
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        compact_client: Any = CompactClient(client)
        self.informers = [Informer(compact_client, SERVICES), Informer(compact_client, ENDPOINTSLICES)]
        if watch_pods:
            self.informers.append(Informer(compact_client, PODS))
        self._wire()

    def _wire(self) -> None:
        b = self.builder
        self._on(self.informers[0], lambda k, d: b.set_service_info(d), b.delete_service)
        self._on(self.informers[1], lambda k, d: b.set_slice_info(k[0], k[1], d[0], d[1]), b.delete_slice)
        if len(self.informers) > 2:
            self._on(self.informers[2], lambda k, d: b.set_pod_ips(k[0], k[1], d), b.delete_pod)

    def _on(self, inf: Informer, upsert: Callable[[tuple[str, str], Any], None],
            remove: Callable[[str, str], None]) -> None:
        def add(obj: JSON) -> None:
            key = _ref(obj)
            if obj.get("dns") is None:
                remove(*key)  # unreadable now: forget what we had
            else:
                upsert(key, obj["dns"])
            self._dirty.set()

        def delete(obj: JSON) -> None:
            remove(*_ref(obj))
            self._dirty.set()

        inf.add_handler(on_add=add, on_update=lambda _old, new: add(new), on_delete=delete)

    async def start(self) -> None:
        for inf in self.informers:
            await inf.start()
        self._task = asyncio.get_running_loop().create_task(self._publisher(), name="dns view publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for inf in self.informers:
            await inf.stop()

    async def _publisher(self) -> None:
        for inf in self.informers:
            await inf.wait_synced()
        self.synced = True
        self._publish()
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.debounce)
            self._publish()

    def _publish(self) -> None:
        self._dirty.clear()
        if self.view is not None and not self.builder.changed:
            return
        self.view = self.builder.snapshot(serial=int(time.time()))
        self.publish(self.view)

    def not_ready(self) -> list[str]:
        return [inf.name for inf in self.informers if not inf.has_synced]


def _ref(obj: JSON) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))
