"""What this controller wrote and the informers have not shown yet (a write-through overlay).

After a create/update/delete the informer cache lags by a watch round trip; syncing the same
Service again from the stale cache would, for example, create a second slice for endpoints it
has just placed. Entries here win over the cache until the cache holds the object at (at least)
the written resourceVersion, or has dropped a deleted one. Informer events pass through
`observe`, which prunes entries and tells the controller whether an event is merely the echo of
its own write (no resync needed). No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

JSON = dict[str, Any]


def object_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


def resource_version(obj: Mapping[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


def rv_at_least(have: str, want: str) -> bool:
    """Is resourceVersion `have` at or past `want`? Integers compare as numbers, else equality."""
    try:
        return int(have) >= int(want)
    except ValueError:
        return have == want


def rv_after(have: str, want: str) -> bool:
    try:
        return int(have) > int(want)
    except ValueError:
        return bool(have) and have != want


@dataclass
class _Entry:
    owner: str  # the Service key ("ns/name") the object belongs to
    rv: str
    obj: JSON | None  # None: deleted by us


class WriteCache:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._by_owner: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _put(self, key: str, entry: _Entry) -> None:
        self._entries[key] = entry
        self._by_owner.setdefault(entry.owner, set()).add(key)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            keys = self._by_owner.get(entry.owner)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_owner[entry.owner]

    def wrote(self, owner: str, obj: JSON) -> None:
        """The server's answer to a create/update of an object belonging to Service `owner`."""
        self._put(object_key(obj), _Entry(owner, resource_version(obj), obj))

    def deleted(self, owner: str, obj: JSON) -> None:
        """We deleted `obj` (as last known, with its resourceVersion)."""
        self._put(object_key(obj), _Entry(owner, resource_version(obj), None))

    def forget_owner(self, owner: str) -> None:
        for key in list(self._by_owner.get(owner, ())):
            self._drop(key)

    def observe(self, key: str, obj: JSON | None) -> bool:
        """An informer event for `key` (obj None: deleted). True when it is our own write's echo
        or older than what we wrote, i.e. nothing the controller needs to react to."""
        entry = self._entries.get(key)
        if entry is None:
            return False
        if obj is None:
            self._drop(key)
            return entry.obj is None
        have = resource_version(obj)
        if entry.obj is None:
            if rv_after(have, entry.rv):  # changed after our delete: someone recreated it
                self._drop(key)
                return False
            return True
        if rv_at_least(have, entry.rv):
            self._drop(key)
            return have == entry.rv
        return True

    def merge(self, owner: str, cached: Iterable[JSON]) -> list[JSON]:
        """The cached objects of `owner` with our newer writes applied."""
        out = {object_key(o): o for o in cached}
        for key in sorted(self._by_owner.get(owner, ())):
            entry = self._entries[key]
            current = out.get(key)
            if entry.obj is None:
                if current is None or rv_after(resource_version(current), entry.rv):
                    self._drop(key)  # the cache has caught up (its echo may have come first)
                else:
                    del out[key]
            elif current is None or not rv_at_least(resource_version(current), entry.rv):
                out[key] = entry.obj
            else:
                self._drop(key)
        return list(out.values())

    def merge_one(self, owner: str, key: str, cached: JSON | None) -> JSON | None:
        merged = {object_key(o): o for o in self.merge(owner, [cached] if cached is not None else [])}
        return merged.get(key)
