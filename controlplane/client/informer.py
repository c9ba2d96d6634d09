"""Informer: list, then watch, into a local indexed cache, calling handlers in order.

The cache and its diffing live in the pure `store.Store`; this shell only runs the list/watch
loop in a background task: reconnect with exponential backoff (capped at `max_backoff`) on
connection errors, server errors and normal stream ends, resuming from the last resourceVersion
seen (BOOKMARKs included); relist on 410 Gone and deliver the diff, so handlers always see a
consistent sequence of add/update/delete calls.

Handlers receive the cached dicts themselves: treat them as read-only.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from controlplane import errors
from controlplane.client.client import Client
from controlplane.client.store import JSON, Delta, DeltaType, IndexFunc, Store, object_key
from controlplane.resources import Resource

log = logging.getLogger("podnet.informer")

# Handlers may be plain functions or coroutine functions; a returned awaitable is awaited.
AddFunc = Callable[[JSON], object]
UpdateFunc = Callable[[JSON, JSON], object]
DeleteFunc = Callable[[JSON], object]


@dataclass(frozen=True)
class Handler:
    on_add: AddFunc | None = None
    on_update: UpdateFunc | None = None
    on_delete: DeleteFunc | None = None


class Backoff:
    """Exponential backoff with jitter: initial, x2 each failure, capped; reset() after success."""

    def __init__(self, initial: float = 0.1, cap: float = 5.0) -> None:
        self.initial, self.cap = initial, cap
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay * random.uniform(0.8, 1.0)

    def reset(self) -> None:
        self._next = self.initial


class Informer:
    def __init__(self, client: Client, resource: Resource, *, namespace: str | None = None,
                 label_selector: str = "", field_selector: str = "", max_backoff: float = 5.0,
                 watch_timeout: int = 300, name: str = "") -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace if resource.namespaced else None
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.name = name or f"{resource.plural}{'/' + namespace if namespace else ''}"
        self._store = Store()
        self._handlers: builtins.list[Handler] = []
        self._lock = asyncio.Lock()
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._replays: set[asyncio.Task[None]] = set()
        self._backoff = Backoff(cap=max_backoff)
        self.relists = 0  # how many times the informer listed after the first (410 Gone)
        self.reconnects = 0  # how many watches were (re)opened after the first
        self._watches = 0

    # -- cache reads ---------------------------------------------------------------------------
    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    @property
    def resource_version(self) -> str:
        """The last resourceVersion seen (list, event or bookmark); watches resume from here."""
        return self._store.resource_version

    def get(self, key: str) -> JSON | None:
        return self._store.get(key)

    def get_by(self, name: str, namespace: str | None = None) -> JSON | None:
        return self._store.get(f"{namespace}/{name}" if namespace else name)

    def list(self) -> builtins.list[JSON]:
        return self._store.list()

    def keys(self) -> builtins.list[str]:
        return self._store.keys()

    def by_index(self, index: str, value: str) -> builtins.list[JSON]:
        return self._store.by_index(index, value)

    def index_keys(self, index: str, value: str) -> builtins.list[str]:
        return self._store.index_keys(index, value)

    def __len__(self) -> int:
        return len(self._store)

    @staticmethod
    def key_of(obj: Mapping[str, Any]) -> str:
        return object_key(obj)

    # -- set-up --------------------------------------------------------------------------------
    def add_index(self, name: str, fn: IndexFunc) -> None:
        """A secondary index `fn(obj) -> [values]`; may be added before or after start()."""
        self._store.add_index(name, fn)

    def add_handler(self, on_add: AddFunc | None = None, on_update: UpdateFunc | None = None,
                    on_delete: DeleteFunc | None = None) -> Handler:
        """Register handlers (plain or async). Added after objects are cached, the new handler
        first gets on_add for each of them (in key order), before any later event."""
        handler = Handler(on_add, on_update, on_delete)
        if self._task is None or len(self._store) == 0:
            self._handlers.append(handler)
        else:
            task = asyncio.get_running_loop().create_task(self._replay(handler))
            self._replays.add(task)
            task.add_done_callback(self._replays.discard)
        return handler

    async def _replay(self, handler: Handler) -> None:
        async with self._lock:
            for obj in self._store.list():
                await self._call(handler.on_add, obj)
            self._handlers.append(handler)

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the list/watch loop in a background task (returns at once; see wait_synced)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"informer {self.name}")

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until the first list has been delivered to the handlers; False on timeout."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Stop the loop (and any pending handler replay); the cache keeps its last contents."""
        tasks = [t for t in (self._task, *self._replays) if t is not None and not t.done()]
        self._task = None
        for task in tasks:
            task.cancel()
        if tasks:  # children's CancelledError become results; our own cancellation still propagates
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> "Informer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the loop ------------------------------------------------------------------------------
    async def _run(self) -> None:
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                await self._watch()
                delay = self._backoff.next()
            except errors.Gone as exc:
                log.info("informer %s: %s; relisting", self.name, exc.message)
                need_list = True
                delay = self._backoff.next()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection errors, 5xx, a broken stream: retry
                log.warning("informer %s: %s: %s", self.name, type(exc).__name__, exc)
                delay = self._backoff.next()
            await asyncio.sleep(delay)

    async def _list(self) -> None:
        lst = await self.client.list(self.resource, namespace=self.namespace, label_selector=self.label_selector,
                                     field_selector=self.field_selector)
        async with self._lock:
            first = not self._synced.is_set()
            deltas = self._store.replace(lst.items, lst.resource_version)
            if not first:
                self.relists += 1
            await self._deliver(deltas)
            self._synced.set()
        self._backoff.reset()

    async def _watch(self) -> None:
        if self._watches:
            self.reconnects += 1
        self._watches += 1
        started = time.monotonic()
        got_event = False
        jitter = int(self.watch_timeout * random.uniform(1.0, 2.0)) if self.watch_timeout else None
        async for ev in self.client.watch(self.resource, namespace=self.namespace,
                                          resource_version=self._store.resource_version or None,
                                          label_selector=self.label_selector, field_selector=self.field_selector,
                                          timeout_seconds=jitter, allow_bookmarks=True):
            if not got_event:
                got_event = True
                self._backoff.reset()
            async with self._lock:
                delta = self._store.apply(ev.type, ev.object)
                if delta is not None:
                    await self._deliver([delta])
        if time.monotonic() - started > 1.0:
            self._backoff.reset()

    async def _deliver(self, deltas: builtins.list[Delta]) -> None:
        for delta in deltas:
            for handler in list(self._handlers):
                if delta.type is DeltaType.ADDED:
                    await self._call(handler.on_add, delta.new)
                elif delta.type is DeltaType.UPDATED:
                    await self._call(handler.on_update, delta.old, delta.new)
                else:
                    await self._call(handler.on_delete, delta.old)

    async def _call(self, fn: Callable[..., Any] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("informer %s: handler %s failed", self.name, getattr(fn, "__qualname__", fn))
