"""Watch fan-out: committed events go from the store's commit path straight into each
watcher's in-memory queue (no polling of SQLite). Watchers are indexed by resource, so a
commit touches only the watchers of that resource; each event's stream line is encoded once
and shared by every watcher that sees it with the same type.

A watcher whose queue grows past `max_queue` (a client that stopped reading) is closed, as
upstream terminates slow watchers; the client re-watches from the last resourceVersion it saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from controlplane import errors
from controlplane.state import Event, WatchFilter, catch_up
from controlplane.storage import Store

log = logging.getLogger(__name__)

Item = tuple[Event, str]


class Watcher:
    def __init__(self, filt: WatchFilter, max_queue: int) -> None:
        self.filt = filt
        self.max_queue = max_queue
        self.items: deque[Item] = deque()
        self.closed = False
        self.overflowed = False
        self._wake = asyncio.Event()

    def push(self, item: Item) -> None:
        if self.closed:
            return
        if len(self.items) >= self.max_queue:
            self.overflowed = True
            self.close()
            return
        self.items.append(item)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next_batch(self, timeout: float | None) -> list[Item] | None:
        """Pending items (possibly empty after `timeout`); None once closed and drained."""
        if not self.items and not self.closed:
            self._wake.clear()
            try:  # asyncio.timeout, unlike wait_for, starts no task per wake-up (watch fan-out hot path)
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                return []
        if self.items:
            batch = list(self.items)
            self.items.clear()
            return batch
        return None if self.closed else []


class Hub:
    def __init__(self, store: Store, max_queue: int = 50_000) -> None:
        self.store = store
        self.max_queue = max_queue
        self._by_resource: dict[str, set[Watcher]] = {}
        store.listeners.append(self.publish)

    @property
    def count(self) -> int:
        return sum(len(s) for s in self._by_resource.values())

    def publish(self, events: list[Event]) -> None:
        for ev in events:
            watchers = self._by_resource.get(ev.key.resource)
            if not watchers:
                continue
            for w in watchers:  # push() never changes the set (a closed watcher leaves on unsubscribe)
                t = w.filt.translate(ev)
                if t is not None:
                    w.push((ev, t))

    def subscribe(self, filt: WatchFilter, since: int | None) -> Watcher:
        """A watcher that first gets the kept events after `since` (None: none), then live ones.
        Raises errors.Gone when `since` is older than the kept history. Atomic with respect to
        commits (all on the event loop), so no event is lost or doubled between the two."""
        w = Watcher(filt, self.max_queue)
        if since is not None:
            for item in catch_up(self.store.history, filt, since, self.store.rv):
                w.items.append(item)
        self._by_resource.setdefault(filt.resource, set()).add(w)
        return w

    def unsubscribe(self, w: Watcher) -> None:
        w.close()
        watchers = self._by_resource.get(w.filt.resource)
        if watchers is not None:
            watchers.discard(w)

    def close_all(self) -> None:
        for watchers in self._by_resource.values():
            for w in list(watchers):
                w.close()
        self._by_resource.clear()


__all__ = ["Hub", "Watcher", "errors"]
