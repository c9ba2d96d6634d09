"""The EndpointSlice mirroring shell (pure part: endpoints/mirror.py).

Shares the endpoints controller's Service and Endpoints informers and its work queue (keys are
prefixed with `mirror|`), and owns an informer on mirrored slices. Runs inside the endpoints
controller, as kube-controller-manager runs its endpointslicemirroring controller next to the
endpointslice one.
"""

from __future__ import annotations

import logging
from controlplane import errors
from controlplane.client import Client, Informer
from controlplane.model import MANAGED_BY_LABEL, SERVICE_NAME_LABEL, parse_service
from controlplane.resources import ENDPOINTSLICES
from endpoints.core import JSON
from endpoints.mirror import DEFAULT_MAX_PER_SUBSET, MIRROR_CONTROLLER, reconcile_mirror
from endpoints.queue import WorkQueue
from endpoints.slices import SliceChanges
from endpoints.writes import WriteCache, object_key

log = logging.getLogger("podnet.endpoints.mirroring")

PREFIX = "mirror|"


def _owner(obj: JSON) -> list[str]:
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{meta.get('namespace', '')}/{name}"] if name else []


def _has_selector(svc: JSON | None) -> bool:
    return bool(((svc or {}).get("spec") or {}).get("selector"))


class Mirroring:
    def __init__(self, client: Client, queue: WorkQueue, services: Informer, endpoints: Informer, *,
                 max_per_subset: int = DEFAULT_MAX_PER_SUBSET) -> None:
        if max_per_subset < 1:
            raise errors.BadRequest(f"mirroring max endpoints per subset must be at least 1: {max_per_subset}")
        self.client = client
        self.queue = queue
        self.services = services
        self.endpoints = endpoints
        self.max_per_subset = max_per_subset
        self.slices = Informer(client, ENDPOINTSLICES, label_selector=f"{MANAGED_BY_LABEL}={MIRROR_CONTROLLER}",
                               name="endpoints/mirrored-slices")
        self.slices.add_index("service", _owner)
        self.writes = WriteCache()
        services.add_handler(self._on_service, lambda old, new: self._on_service(new), self._on_service)
        endpoints.add_handler(self._on_endpoints, lambda old, new: self._on_endpoints(new), self._on_endpoints)
        self.slices.add_handler(self._on_slice_add, lambda old, new: self._on_slice_add(new), self._on_slice_delete)

    def _wants(self, key: str) -> bool:
        """Mirroring may have work: the Service has no selector, or mirrored slices exist."""
        return not _has_selector(self.services.get(key)) or bool(self.slices.index_keys("service", key))

    def _enqueue(self, key: str) -> None:
        if self._wants(key):
            self.queue.add(PREFIX + key)

    def _on_service(self, obj: JSON) -> None:
        self._enqueue(object_key(obj))

    def _on_endpoints(self, obj: JSON) -> None:
        key = object_key(obj)
        if self.services.get(key) is not None or self.slices.index_keys("service", key):
            self._enqueue(key)

    def _on_slice_add(self, obj: JSON) -> None:
        if not self.writes.observe(object_key(obj), obj):
            for key in _owner(obj):
                self.queue.add(PREFIX + key)

    def _on_slice_delete(self, obj: JSON) -> None:
        if not self.writes.observe(object_key(obj), None):
            for key in _owner(obj):
                self.queue.add(PREFIX + key)

    async def sync(self, key: str) -> SliceChanges:
        svc = self.services.get(key)
        service = parse_service(svc) if svc is not None else None
        existing = self.writes.merge(key, self.slices.by_index("service", key))
        changes = reconcile_mirror(self.endpoints.get(key), service, existing, max_per_subset=self.max_per_subset)
        try:
            await self._apply(key, changes)
        except (errors.Conflict, errors.AlreadyExists, errors.NotFound):
            self.writes.forget_owner(key)  # retry from the informer's view
            raise
        return changes

    async def _apply(self, key: str, changes: SliceChanges) -> None:
        ns = key.partition("/")[0]
        for obj in changes.create:
            self.writes.wrote(key, await self.client.create(ENDPOINTSLICES, obj, namespace=ns))
        for obj in changes.update:
            self.writes.wrote(key, await self.client.update(ENDPOINTSLICES, obj, namespace=ns))
        for obj in changes.delete:
            try:
                await self.client.delete(ENDPOINTSLICES, (obj.get("metadata") or {})["name"], namespace=ns)
            except errors.NotFound:
                pass
            self.writes.deleted(key, obj)
        if changes.create or changes.update or changes.delete:
            log.debug("mirrored %s: %d created, %d updated, %d deleted", key, len(changes.create),
                      len(changes.update), len(changes.delete))


def strip(key: str) -> str | None:
    """The Service key of a mirroring queue key, or None for an endpoints-controller key."""
    return key[len(PREFIX):] if key.startswith(PREFIX) else None


__all__ = ["Mirroring", "PREFIX", "strip"]
