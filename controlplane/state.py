"""The pure core of storage and watch: plain data, no I/O.

- `ObjectIndex`: the current objects per resource, namespace and name (what lists and gets read).
- `Event`: one committed change (ADDED / MODIFIED / DELETED) with the object before and after.
- `History`: the kept events, newest last, for resuming watches from a resourceVersion;
  asking for an RV older than the kept window raises `errors.Gone` (410 Expired).
- `WatchFilter`: which events a watcher sees and how (an object that stops matching a
  selector is sent as DELETED, one that starts matching as ADDED, as upstream does).

The SQLite shell (`storage.py`) and the fan-out shell (`watch.py`) move these values around.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Protocol

from controlplane import errors
from controlplane.resources import Resource

JSON = dict[str, Any]

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def event_line(type_: str, raw: str) -> bytes:
    """One watch stream line around an object's JSON text (no re-encoding of the object)."""
    return f'{{"type":"{type_}","object":{raw}}}\n'.encode()


@dataclass(frozen=True)
class Key:
    resource: str  # "group/plural", e.g. "/pods" or "discovery.k8s.io/endpointslices"
    namespace: str  # "" for cluster-scoped
    name: str


class FieldMatcher(Protocol):
    def matches(self, obj: JSON) -> bool: ...


class LabelMatcher(Protocol):
    def matches(self, labels: Mapping[str, str]) -> bool: ...


def labels_of(obj: JSON) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


@dataclass
class Entry:
    """One stored object with its serialized form (lists join these without re-encoding)."""

    obj: JSON
    raw: str
    rv: int


class Event:
    """One committed change. Recent events hold the decoded objects; older ones kept in the history
    are slimmed to their JSON text (`slim()`) and decode on demand, so history costs ~2 KB/event."""

    __slots__ = ("rv", "key", "type", "raw", "prev_raw", "_obj", "_prev", "_lines")

    def __init__(self, rv: int, key: Key, type: str, obj: JSON | None = None, prev: JSON | None = None,
                 raw: str = "", prev_raw: str | None = None) -> None:
        self.rv = rv
        self.key = key
        self.type = type  # ADDED | MODIFIED | DELETED
        self._obj = obj  # the object after the change (DELETED: the final object carrying the new rv)
        self._prev = prev  # the object before the change (None for ADDED)
        self.raw = raw or (dumps(obj) if obj is not None else "")
        self.prev_raw = prev_raw
        self._lines: dict[str, bytes] | None = None

    @property
    def obj(self) -> JSON:
        return self._obj if self._obj is not None else json.loads(self.raw)  # type: ignore[no-any-return]

    @property
    def prev(self) -> JSON | None:
        if self._prev is not None:
            return self._prev
        return json.loads(self.prev_raw) if self.prev_raw else None

    def slim(self) -> "Event":
        prev_raw = self.prev_raw
        if prev_raw is None and self._prev is not None:
            prev_raw = dumps(self._prev)
        return Event(self.rv, self.key, self.type, None, None, self.raw, prev_raw)

    def __repr__(self) -> str:
        return f"Event(rv={self.rv}, key={self.key}, type={self.type})"

    def line(self, type_: str | None = None) -> bytes:
        """The watch stream line for this event, encoded once and shared by all watchers."""
        t = type_ or self.type
        if self._lines is None:
            self._lines = {}
        cached = self._lines.get(t)
        if cached is None:
            cached = event_line(t, self.raw)
            self._lines[t] = cached
        return cached


def owner_uids(obj: JSON) -> tuple[str, ...]:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    if not isinstance(refs, list):
        return ()
    return tuple(str(r.get("uid")) for r in refs if isinstance(r, dict) and r.get("uid"))


class ObjectIndex:
    """resource -> namespace -> name -> Entry, plus owner uid -> dependents (for garbage collection)."""

    def __init__(self) -> None:
        self._by_resource: dict[str, dict[str, dict[str, Entry]]] = {}
        self._dependents: dict[str, set[Key]] = {}

    def get(self, key: Key) -> Entry | None:
        return self._by_resource.get(key.resource, {}).get(key.namespace, {}).get(key.name)

    def dependents(self, owner_uid: str) -> list[Key]:
        return sorted(self._dependents.get(owner_uid, ()), key=lambda k: (k.resource, k.namespace, k.name))

    def _unlink(self, key: Key, obj: JSON) -> None:
        for uid in owner_uids(obj):
            deps = self._dependents.get(uid)
            if deps is not None:
                deps.discard(key)
                if not deps:
                    del self._dependents[uid]

    def put(self, key: Key, entry: Entry) -> None:
        old = self.get(key)
        if old is not None:
            self._unlink(key, old.obj)
        for uid in owner_uids(entry.obj):
            self._dependents.setdefault(uid, set()).add(key)
        self._by_resource.setdefault(key.resource, {}).setdefault(key.namespace, {})[key.name] = entry

    def remove(self, key: Key) -> None:
        old = self.get(key)
        if old is not None:
            self._unlink(key, old.obj)
        spaces = self._by_resource.get(key.resource, {})
        names = spaces.get(key.namespace)
        if names is not None:
            names.pop(key.name, None)
            if not names:
                del spaces[key.namespace]

    def entries(self, resource: str, namespace: str | None = None) -> list[Entry]:
        """Entries sorted by (namespace, name), like etcd's key order."""
        spaces = self._by_resource.get(resource, {})
        if namespace is not None:
            names = spaces.get(namespace, {})
            return [names[n] for n in sorted(names)]
        return [names[n] for ns in sorted(spaces) for names in (spaces[ns],) for n in sorted(names)]

    def count(self, resource: str, namespace: str | None = None) -> int:
        spaces = self._by_resource.get(resource, {})
        if namespace is not None:
            return len(spaces.get(namespace, {}))
        return sum(len(v) for v in spaces.values())

    def namespaces_with(self, resource: str) -> list[str]:
        return sorted(self._by_resource.get(resource, {}))


class History:
    """The kept events, ordered by rv. `compacted` is the newest rv no longer covered:
    a watch may resume from any rv >= compacted."""

    HOT = 2000  # newest events kept decoded; older ones are slimmed to JSON text

    def __init__(self, capacity: int = 100_000, compacted: int = 0) -> None:
        self.capacity = capacity
        self.compacted = compacted
        self._rvs: list[int] = []
        self._events: list[Event] = []

    def __len__(self) -> int:
        return len(self._events)

    @property
    def oldest_rv(self) -> int:
        return self._rvs[0] if self._rvs else self.compacted + 1

    def append(self, event: Event) -> None:
        if self._rvs and event.rv <= self._rvs[-1]:
            raise ValueError(f"event rv {event.rv} not after {self._rvs[-1]}")
        self._rvs.append(event.rv)
        self._events.append(event)
        if len(self._events) > self.HOT:
            i = len(self._events) - self.HOT - 1
            self._events[i] = self._events[i].slim()
        if len(self._events) > self.capacity + self.capacity // 10:
            self.trim(len(self._events) - self.capacity)

    def trim(self, count: int) -> int:
        """Drop the `count` oldest events; returns the new compacted rv."""
        if count > 0:
            self.compacted = max(self.compacted, self._rvs[count - 1])
            del self._rvs[:count]
            del self._events[:count]
        return self.compacted

    def since(self, rv: int, current: int) -> list[Event]:
        """Events with rv > `rv`; raises Gone when the window no longer covers them."""
        if rv < self.compacted:
            raise errors.Gone(f"too old resource version: {rv} ({current})")
        i = bisect.bisect_right(self._rvs, rv)
        return self._events[i:]


def parse_rv(text: str | None) -> int | None:
    """A resourceVersion parameter: None/"" -> None; else an int (BadRequest otherwise)."""
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise errors.BadRequest(f"invalid resource version: {text!r}") from None
    if value < 0:
        raise errors.BadRequest(f"invalid resource version: {text!r}")
    return value


@dataclass(frozen=True)
class WatchFilter:
    resource: str
    namespace: str | None = None
    label: LabelMatcher | None = None
    field: FieldMatcher | None = None

    def matches(self, key: Key, obj: JSON | None) -> bool:
        if obj is None or key.resource != self.resource:
            return False
        if self.namespace is not None and key.namespace != self.namespace:
            return False
        return self.selects(obj)

    def selects(self, obj: JSON) -> bool:
        if self.label is not None and not self.label.matches(labels_of(obj)):
            return False
        return self.field is None or self.field.matches(obj)

    @property
    def selective(self) -> bool:
        return self.label is not None or self.field is not None

    def translate(self, event: Event) -> str | None:
        """The event type this watcher sees, or None when it sees nothing."""
        if event.key.resource != self.resource:
            return None
        if self.namespace is not None and event.key.namespace != self.namespace:
            return None
        if not self.selective:
            return event.type
        now = self.matches(event.key, event.obj)
        before = self.matches(event.key, event.prev)
        if event.type == DELETED:
            return DELETED if now or before else None
        if now and before:
            return MODIFIED
        if now:
            return ADDED
        if before:
            return DELETED
        return None


def replay(index: ObjectIndex, filt: WatchFilter) -> Iterator[Entry]:
    """The synthetic ADDED set for a watch from RV unset/0: the current matching objects."""
    for entry in index.entries(filt.resource, filt.namespace):
        if filt.selects(entry.obj):
            yield entry


def catch_up(history: History, filt: WatchFilter, rv: int, current: int) -> Iterable[tuple[Event, str]]:
    """Kept events after `rv` that this watcher sees, with the type it sees them as."""
    out: list[tuple[Event, str]] = []
    for ev in history.since(rv, current):
        t = filt.translate(ev)
        if t is not None:
            out.append((ev, t))
    return out


def snapshot(index: ObjectIndex, history: History, resource: str, namespace: str | None, rv: int,
             current: int) -> list[Entry]:
    """The objects of `resource` as they were at `rv`: the current state rewound through the kept
    history (sorted by namespace and name). Raises errors.Gone when the history no longer covers it."""
    entries = index.entries(resource, namespace)
    if rv >= current:
        return entries
    state: dict[tuple[str, str], Entry] = {}
    for e in entries:
        m = e.obj.get("metadata") or {}
        state[(str(m.get("namespace") or ""), str(m.get("name")))] = e
    for ev in reversed(history.since(rv, current)):
        if ev.key.resource != resource or (namespace is not None and ev.key.namespace != namespace):
            continue
        k = (ev.key.namespace, ev.key.name)
        prev = ev.prev
        if ev.type == ADDED or prev is None:
            state.pop(k, None)
        else:
            prev_rv = parse_rv(str((prev.get("metadata") or {}).get("resourceVersion") or "0")) or 0
            state[k] = Entry(prev, ev.prev_raw or dumps(prev), prev_rv)
    return [state[k] for k in sorted(state)]


def paginate(entries: list[Entry], start_after: tuple[str, str] | None,
             limit: int) -> tuple[list[Entry], tuple[str, str] | None, int]:
    """A page of `entries` (sorted by namespace/name) after `start_after`; returns the items, the key
    to continue after (None on the last page) and how many items remain after this page."""
    def key(e: Entry) -> tuple[str, str]:
        m = e.obj.get("metadata") or {}
        return (str(m.get("namespace") or ""), str(m.get("name")))

    lo = 0
    if start_after is not None:
        lo = bisect.bisect_right([key(e) for e in entries], start_after)
    if limit <= 0 or len(entries) - lo <= limit:
        return entries[lo:], None, 0
    page = entries[lo:lo + limit]
    return page, key(page[-1]), len(entries) - lo - limit


def rkey(res: Resource) -> str:
    return f"{res.group}/{res.plural}"


def key_of(res: Resource, namespace: str | None, name: str) -> Key:
    return Key(rkey(res), (namespace or "") if res.namespaced else "", name)
