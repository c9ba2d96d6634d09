"""The informer's pure core: an indexed object cache that turns watch events and relists into deltas.

No asyncio, no I/O: `Store.apply(event_type, obj)` and `Store.replace(objs, rv)` mutate the cache
and return what changed as `Delta` values, which the informer shell hands to the handlers in order.
Keys are "namespace/name" for namespaced objects and "name" for cluster-scoped ones.
"""

from __future__ import annotations

import builtins
import enum
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

JSON = dict[str, Any]
IndexFunc = Callable[[JSON], list[str]]


class DeltaType(str, enum.Enum):
    ADDED = "ADDED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class Delta:
    """One change to the cache: `old` is None for ADDED, `new` is None for DELETED."""

    type: DeltaType
    key: str
    old: JSON | None
    new: JSON | None


class StoreError(ValueError):
    """An object the cache cannot hold (no metadata.name) or an unknown index."""


def object_key(obj: Mapping[str, Any]) -> str:
    """ "ns/name" for namespaced objects, "name" for cluster-scoped ones."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not name or not isinstance(name, str):
        raise StoreError(f"object has no metadata.name: {str(obj)[:200]}")
    namespace = meta.get("namespace") or ""
    return f"{namespace}/{name}" if namespace else name


def resource_version(obj: Mapping[str, Any] | None) -> str:
    if not obj:
        return ""
    meta = obj.get("metadata") or {}
    return str(meta.get("resourceVersion") or "") if isinstance(meta, Mapping) else ""


def _changed(old: JSON, new: JSON) -> bool:
    old_rv, new_rv = resource_version(old), resource_version(new)
    if old_rv and new_rv:
        return old_rv != new_rv
    return old != new


class Store:
    """An indexed cache of API objects (plain dicts), keyed by `object_key`."""

    def __init__(self) -> None:
        self._items: dict[str, JSON] = {}
        self._index_funcs: dict[str, IndexFunc] = {}
        # index name -> indexed value -> keys; and index name -> key -> values it was filed under
        self._indices: dict[str, dict[str, set[str]]] = {}
        self._filed: dict[str, dict[str, tuple[str, ...]]] = {}
        self.resource_version = ""

    # -- reads ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: str) -> JSON | None:
        return self._items.get(key)

    def keys(self) -> builtins.list[str]:
        return sorted(self._items)

    def list(self) -> builtins.list[JSON]:
        return [self._items[k] for k in sorted(self._items)]

    def index_names(self) -> builtins.list[str]:
        return sorted(self._index_funcs)

    def index_values(self, index: str) -> builtins.list[str]:
        return sorted(v for v, keys in self._require(index).items() if keys)

    def index_keys(self, index: str, value: str) -> builtins.list[str]:
        return sorted(self._require(index).get(value, ()))

    def by_index(self, index: str, value: str) -> builtins.list[JSON]:
        return [self._items[k] for k in self.index_keys(index, value)]

    def _require(self, index: str) -> dict[str, set[str]]:
        try:
            return self._indices[index]
        except KeyError:
            raise StoreError(f"no index named {index!r} (have: {', '.join(self.index_names()) or 'none'})") from None

    # -- indexes -------------------------------------------------------------------------------
    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Register a secondary index `fn(obj) -> values` and file every cached object under it."""
        if name in self._index_funcs:
            raise StoreError(f"index {name!r} already exists")
        self._index_funcs[name] = fn
        self._indices[name] = {}
        self._filed[name] = {}
        for key, obj in self._items.items():
            self._file(name, key, obj)

    def _file(self, index: str, key: str, obj: JSON) -> None:
        values = tuple(dict.fromkeys(str(v) for v in (self._index_funcs[index](obj) or ())))
        self._filed[index][key] = values
        for value in values:
            self._indices[index].setdefault(value, set()).add(key)

    def _unfile(self, index: str, key: str) -> None:
        table = self._indices[index]
        for value in self._filed[index].pop(key, ()):
            keys = table.get(value)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del table[value]

    def _put(self, key: str, obj: JSON) -> None:
        for index in self._index_funcs:
            self._unfile(index, key)
        self._items[key] = obj
        for index in self._index_funcs:
            self._file(index, key, obj)

    def _remove(self, key: str) -> None:
        for index in self._index_funcs:
            self._unfile(index, key)
        del self._items[key]

    # -- writes --------------------------------------------------------------------------------
    def _note_rv(self, obj: JSON) -> None:
        rv = resource_version(obj)
        if rv:
            self.resource_version = rv

    def apply(self, event_type: str, obj: JSON) -> Delta | None:
        """Apply one watch event; returns the delta a handler should see, or None (no change).

        ADDED for a cached key is an update, MODIFIED for an unknown key is an add, DELETED for
        an unknown key is ignored, BOOKMARK only advances the resource version.
        """
        self._note_rv(obj)
        if event_type == "BOOKMARK":
            return None
        key = object_key(obj)
        old = self._items.get(key)
        if event_type in ("ADDED", "MODIFIED"):
            self._put(key, obj)
            if old is None:
                return Delta(DeltaType.ADDED, key, None, obj)
            if not _changed(old, obj):
                return None
            return Delta(DeltaType.UPDATED, key, old, obj)
        if event_type == "DELETED":
            if old is None:
                return None
            self._remove(key)
            return Delta(DeltaType.DELETED, key, old, None)
        raise StoreError(f"unknown watch event type {event_type!r}")

    def replace(self, objs: Iterable[JSON], resource_version: str) -> builtins.list[Delta]:
        """Replace the cache with a fresh list; returns the diff (deletes first, then adds/updates by key)."""
        fresh: dict[str, JSON] = {}
        for obj in objs:
            fresh[object_key(obj)] = obj
        deltas: builtins.list[Delta] = []
        for key in sorted(set(self._items) - set(fresh)):
            old = self._items[key]
            self._remove(key)
            deltas.append(Delta(DeltaType.DELETED, key, old, None))
        for key in sorted(fresh):
            new = fresh[key]
            prev = self._items.get(key)
            self._put(key, new)
            if prev is None:
                deltas.append(Delta(DeltaType.ADDED, key, None, new))
            elif _changed(prev, new):
                deltas.append(Delta(DeltaType.UPDATED, key, prev, new))
        self.resource_version = resource_version
        return deltas
