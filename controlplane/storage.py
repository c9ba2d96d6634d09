"""The SQLite shell of the store: durable objects, the global resourceVersion and the event history.

One database file `DIR/state.db` in WAL mode with synchronous=FULL, so a commit that returned
is on disk (survives kill -9). Tables:

- objects(resource, namespace, name, rv, json)   the current objects
- events(rv, resource, namespace, name, type, json, prev)   the kept history, for watch resume
- meta(key, value)   `rv` (last assigned resourceVersion), `compacted` (oldest rv no longer kept)

Every commit is atomic: all of its changes are stored, or none. The whole state is also held in
memory (`state.ObjectIndex`, `state.History`), so reads and watches never touch SQLite.

Two modes. `commit()` writes synchronously (start-up, tests). Once `start_writer()` runs, `submit()`
queues a commit and a writer thread stores everything queued in one transaction (group commit: one
fsync for many writes, the event loop never waits on the disk). Submitted writes are visible at once
to writers through `latest()` (so the next write validates against them), but readers (`get`,
`list_entries`), the history and the watch listeners only see them once durable, and the HTTP layer
acknowledges a write only after `wait_durable()`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from controlplane import errors
from controlplane.state import DELETED, Entry, Event, History, Key, ObjectIndex, dumps, owner_uids, JSON

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    rv INTEGER NOT NULL, json TEXT NOT NULL,
    PRIMARY KEY (resource, namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    rv INTEGER PRIMARY KEY, resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    type TEXT NOT NULL, json TEXT NOT NULL, prev TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Change:
    """One change to commit: `obj` is the new object (for DELETED, the final object)."""

    key: Key
    type: str
    obj: JSON


Listener = Callable[[list[Event]], None]


class Store:
    def __init__(self, path: Path | str, history_capacity: int = 100_000) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.index = ObjectIndex()
        self.listeners: list[Listener] = []
        self.rv = 0  # the last durable resourceVersion (what readers and watchers see)
        self.history = History(history_capacity)
        self._load()
        self.assigned = self.rv  # the last resourceVersion handed out (>= rv while writes are queued)
        self._overlay: dict[Key, tuple[int, Entry | None]] = {}
        self._queue: list[_Prepared] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._compact_pending: int | None = None
        self.broken: Exception | None = None

    # ------------------------------------------------------------------ load / close

    def _meta(self, key: str, default: int = 0) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return int(row[0]) if row else default

    def _load(self) -> None:
        max_rv = 0
        for resource, namespace, name, rv, raw in self.db.execute(
                "SELECT resource, namespace, name, rv, json FROM objects"):
            self.index.put(Key(resource, namespace, name), Entry(json.loads(raw), raw, rv))
            max_rv = max(max_rv, rv)
        self.history.compacted = self._meta("compacted")
        for rv, resource, namespace, name, type_, raw, prev in self.db.execute(
                "SELECT rv, resource, namespace, name, type, json, prev FROM events ORDER BY rv"):
            self.history.append(Event(rv, Key(resource, namespace, name), type_, None, None, raw, prev or None))
            max_rv = max(max_rv, rv)
        self.rv = max(max_rv, self._meta("rv"))
        if len(self.history) > self.history.capacity:
            self._compact(self.history.trim(len(self.history) - self.history.capacity))
        log.info("store %s: %d events kept, rv %d", self.path, len(self.history), self.rv)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ reads

    def get(self, key: Key) -> Entry | None:
        """The durable object (what readers see)."""
        return self.index.get(key)

    def latest(self, key: Key) -> Entry | None:
        """The object including writes submitted but not yet durable (what writers check against)."""
        if key in self._overlay:
            return self._overlay[key][1]
        return self.index.get(key)

    def list_entries(self, resource: str, namespace: str | None = None) -> tuple[list[Entry], int]:
        return self.index.entries(resource, namespace), self.rv

    def latest_entries(self, resource: str, namespace: str | None = None) -> list[Entry]:
        if not self._overlay:
            return self.index.entries(resource, namespace)
        out = {Key(resource, str((e.obj.get("metadata") or {}).get("namespace") or ""),
                   str((e.obj.get("metadata") or {}).get("name"))): e
               for e in self.index.entries(resource, namespace)}
        for key, (_, entry) in self._overlay.items():
            if key.resource == resource and (namespace is None or key.namespace == namespace):
                if entry is None:
                    out.pop(key, None)
                else:
                    out[key] = entry
        return [out[k] for k in sorted(out, key=lambda k: (k.namespace, k.name))]

    def latest_dependents(self, owner_uid: str) -> list[Key]:
        deps = set(self.index.dependents(owner_uid))
        for key, (_, entry) in self._overlay.items():
            if entry is not None and owner_uid in owner_uids(entry.obj):
                deps.add(key)
            else:
                deps.discard(key)
        return sorted(deps, key=lambda k: (k.resource, k.namespace, k.name))

    # ------------------------------------------------------------------ writes

    def _prepare(self, changes: list[Change]) -> _Prepared:
        """Assign resourceVersions and encode; nothing changes if this raises."""
        rv = self.assigned
        events: list[Event] = []
        seen: dict[Key, Entry | None] = {}
        for ch in changes:
            rv += 1
            obj = ch.obj
            obj.setdefault("metadata", {})["resourceVersion"] = str(rv)
            raw = dumps(obj)
            # the object before this change (an earlier change in this commit counts)
            prev_entry = seen[ch.key] if ch.key in seen else self.latest(ch.key)
            seen[ch.key] = None if ch.type == DELETED else Entry(obj, raw, rv)
            events.append(Event(rv, ch.key, ch.type, obj, prev_entry.obj if prev_entry else None, raw,
                                prev_entry.raw if prev_entry else None))
        return _Prepared(events, seen)

    @staticmethod
    def _rows(batch: list[_Prepared]) -> _Rows:
        """The rows of a batch, built on the event loop so that the writer thread holds the GIL only
        briefly: the last change of each key wins (puts and deletes are then disjoint)."""
        last: dict[Key, Event] = {}
        events: list[tuple[int, str, str, str, str, str, str | None]] = []
        for prepared in batch:
            for ev in prepared.events:
                last[ev.key] = ev
                events.append((ev.rv, ev.key.resource, ev.key.namespace, ev.key.name, ev.type, ev.raw, ev.prev_raw))
        puts = [(k.resource, k.namespace, k.name, ev.rv, ev.raw) for k, ev in last.items() if ev.type != DELETED]
        dels = [(k.resource, k.namespace, k.name) for k, ev in last.items() if ev.type == DELETED]
        return _Rows(puts, dels, events, batch[-1].events[-1].rv)

    def _write(self, rows: _Rows, compacted: int | None) -> None:
        """One transaction for a batch of prepared commits (runs in the writer thread when async)."""
        cur = self.db.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            cur.executemany("INSERT OR REPLACE INTO objects(resource, namespace, name, rv, json) VALUES (?,?,?,?,?)",
                            rows.puts)
            cur.executemany("DELETE FROM objects WHERE resource=? AND namespace=? AND name=?", rows.dels)
            cur.executemany("INSERT INTO events(rv, resource, namespace, name, type, json, prev) "
                            "VALUES (?,?,?,?,?,?,?)", rows.events)
            cur.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('rv', ?)", (str(rows.last_rv),))
            if compacted is not None:
                cur.execute("DELETE FROM events WHERE rv <= ?", (compacted,))
                cur.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('compacted', ?)", (str(compacted),))
            cur.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                cur.execute("ROLLBACK")
            raise

    def _apply(self, batch: list[_Prepared]) -> list[Event]:
        """After the transaction: the durable view, history, overlay, listeners, waiters."""
        events = [ev for prepared in batch for ev in prepared.events]
        last = events[-1].rv
        for ev in events:
            if ev.type == DELETED:
                self.index.remove(ev.key)
            else:
                self.index.put(ev.key, Entry(ev.obj, ev.raw, ev.rv))
            pending = self._overlay.get(ev.key)
            if pending is not None and pending[0] <= last:  # no later queued write of this key
                del self._overlay[ev.key]
        before = self.history.compacted
        for ev in events:
            self.history.append(ev)
        if self.history.compacted != before:
            self._compact_pending = self.history.compacted
        self.rv = last
        for listener in list(self.listeners):
            try:
                listener(events)
            except Exception:  # a broken listener must not undo a committed write
                log.exception("store listener failed")
        self._wake_waiters()
        return events

    def commit(self, changes: list[Change]) -> list[Event]:
        """Synchronously store all changes in one transaction, each with the next resourceVersion;
        returns the events (also handed to the listeners). On failure nothing changes and it raises.
        Only while no asynchronous writer runs (start-up, tests)."""
        if not changes:
            return []
        if self._writer is not None:
            raise RuntimeError("Store.commit() while the asynchronous writer runs; use submit()")
        self._check_broken()
        prepared = self._prepare(changes)
        compacted, self._compact_pending = self._compact_pending, None
        try:
            self._write(self._rows([prepared]), compacted)
        except BaseException:
            self._compact_pending = compacted
            raise
        self.assigned = prepared.events[-1].rv
        return self._apply([prepared])

    def submit(self, changes: list[Change]) -> list[Event]:
        """Queue all changes as one atomic unit for the next group commit and make them visible to
        `latest()` at once; `await wait_durable(store.assigned)` before acknowledging. Events reach
        readers and watchers only once durable. Without a running writer this is `commit()`."""
        if self._writer is None:
            return self.commit(changes)
        if not changes:
            return []
        self._check_broken()
        prepared = self._prepare(changes)
        self.assigned = prepared.events[-1].rv
        for key, entry in prepared.latest.items():
            self._overlay[key] = (self.assigned, entry)
        self._queue.append(prepared)
        self._wake.set()
        return prepared.events

    async def wait_durable(self, rv: int) -> None:
        """Return once everything up to `rv` is durable; raises APIError if the store failed."""
        if rv <= self.rv:
            return
        self._check_broken()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((rv, fut))
        await fut

    def _wake_waiters(self) -> None:
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for rv, fut in self._waiters:
            if fut.done():
                continue
            if self.broken is not None:
                fut.set_exception(errors.APIError(f"storage failure: {self.broken}"))
            elif rv <= self.rv:
                fut.set_result(None)
            else:
                keep.append((rv, fut))
        self._waiters = keep

    def _check_broken(self) -> None:
        if self.broken is not None:
            raise errors.APIError(f"storage failure, writes refused until restart: {self.broken}")

    # ------------------------------------------------------------------ the group-commit writer

    def start_writer(self) -> None:
        """Switch to group commit: writes submitted while a transaction runs (in a thread) go into the
        next one, so one fsync serves many writes and the event loop never waits on the disk."""
        if self._writer is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
            self._writer = asyncio.create_task(self._write_loop(), name="store-writer")

    async def stop_writer(self) -> None:
        """Drain the queue and stop the writer (back to synchronous commits)."""
        if self._writer is None:
            return
        self._closing = True
        self._wake.set()
        await self._writer
        self._writer = None
        self._closing = False
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._queue = self._queue, []
            compacted, self._compact_pending = self._compact_pending, None
            try:
                await loop.run_in_executor(self._executor, self._write, self._rows(batch), compacted)
            except Exception as exc:
                self._fail(exc, batch)
                return
            self._apply(batch)

    def _fail(self, exc: Exception, batch: list[_Prepared]) -> None:
        """A failed transaction: nothing of it (or of what was queued after it) is acknowledged; the
        store refuses further writes (fail-stop, like etcd on a WAL error) until restarted."""
        log.critical("store write failed; refusing writes until restart: %s", exc)
        self.broken = exc
        self._queue.clear()
        self._overlay.clear()
        self.assigned = self.rv
        self._wake_waiters()

    def _compact(self, compacted: int) -> None:
        try:
            with self.db:
                self.db.execute("DELETE FROM events WHERE rv <= ?", (compacted,))
                self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('compacted', ?)",
                                (str(compacted),))
        except sqlite3.Error:
            log.exception("history compaction failed (kept more history than needed)")


@dataclass
class _Rows:
    puts: list[tuple[str, str, str, int, str]]
    dels: list[tuple[str, str, str]]
    events: list[tuple[int, str, str, str, str, str, str | None]]
    last_rv: int


@dataclass
class _Prepared:
    events: list[Event]
    latest: dict[Key, Entry | None]
