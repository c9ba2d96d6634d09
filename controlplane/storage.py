"""The SQLite shell of the store: durable objects, the global resourceVersion and the event history.

One database file `DIR/state.db` in WAL mode with synchronous=FULL, so a commit that returned
is on disk (survives kill -9). Tables:

- objects(resource, namespace, name, rv, json)   the current objects
- events(rv, resource, namespace, name, type, json, prev)   the kept history, for watch resume
- meta(key, value)   `rv` (last assigned resourceVersion), `compacted` (oldest rv no longer kept)

Every `commit()` is one transaction: all of its changes are stored, or none. The whole state is
also held in memory (`state.ObjectIndex`, `state.History`), so reads and watches never touch SQLite;
committed events go to the listeners (the watch hub) right after the transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from controlplane.state import DELETED, Entry, Event, History, Key, ObjectIndex, dumps, JSON

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
        self.rv = 0
        self.history = History(history_capacity)
        self._load()

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
        return self.index.get(key)

    def list_entries(self, resource: str, namespace: str | None = None) -> tuple[list[Entry], int]:
        return self.index.entries(resource, namespace), self.rv

    # ------------------------------------------------------------------ writes

    def commit(self, changes: list[Change]) -> list[Event]:
        """Store all changes in one transaction, each with the next resourceVersion; returns
        the events (also handed to the listeners). On failure nothing changes and it raises."""
        if not changes:
            return []
        events: list[Event] = []
        rv = self.rv
        rows_put: list[tuple[str, str, str, int, str]] = []
        rows_del: list[tuple[str, str, str]] = []
        rows_ev: list[tuple[int, str, str, str, str, str, str | None]] = []
        latest: dict[Key, Entry | None] = {}
        for ch in changes:
            rv += 1
            obj = ch.obj
            obj.setdefault("metadata", {})["resourceVersion"] = str(rv)
            raw = dumps(obj)
            # the object before this change (an earlier change in this commit counts)
            prev_entry = latest[ch.key] if ch.key in latest else self.index.get(ch.key)
            latest[ch.key] = None if ch.type == DELETED else Entry(obj, raw, rv)
            prev = prev_entry.obj if prev_entry else None
            events.append(Event(rv, ch.key, ch.type, obj, prev, raw, prev_entry.raw if prev_entry else None))
            k = ch.key
            if ch.type == DELETED:
                rows_del.append((k.resource, k.namespace, k.name))
            else:
                rows_put.append((k.resource, k.namespace, k.name, rv, raw))
            rows_ev.append((rv, k.resource, k.namespace, k.name, ch.type, raw,
                            prev_entry.raw if prev_entry else None))
        cur = self.db.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            for row in _interleave(changes, rows_put, rows_del):
                if len(row) == 5:
                    cur.execute("INSERT OR REPLACE INTO objects(resource, namespace, name, rv, json) "
                                "VALUES (?,?,?,?,?)", row)
                else:
                    cur.execute("DELETE FROM objects WHERE resource=? AND namespace=? AND name=?", row)
            cur.executemany("INSERT INTO events(rv, resource, namespace, name, type, json, prev) "
                            "VALUES (?,?,?,?,?,?,?)", rows_ev)
            cur.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('rv', ?)", (str(rv),))
            cur.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                cur.execute("ROLLBACK")
            raise
        self.rv = rv
        for ev in events:
            if ev.type == DELETED:
                self.index.remove(ev.key)
            else:
                self.index.put(ev.key, Entry(ev.obj, ev.raw, ev.rv))
        before = self.history.compacted
        for ev in events:
            self.history.append(ev)
        if self.history.compacted != before:
            self._compact(self.history.compacted)
        for listener in list(self.listeners):
            try:
                listener(events)
            except Exception:  # a broken listener must not undo a committed write
                log.exception("store listener failed")
        return events

    def _compact(self, compacted: int) -> None:
        try:
            with self.db:
                self.db.execute("DELETE FROM events WHERE rv <= ?", (compacted,))
                self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('compacted', ?)",
                                (str(compacted),))
        except sqlite3.Error:
            log.exception("history compaction failed (kept more history than needed)")


def _interleave(changes: list[Change], puts: list[tuple[str, str, str, int, str]],
                dels: list[tuple[str, str, str]]) -> list[tuple]:  # type: ignore[type-arg]
    """The object-table rows in change order (a put and a delete of one key keep their order)."""
    out: list[tuple] = []  # type: ignore[type-arg]
    pi = di = 0
    for ch in changes:
        if ch.type == DELETED:
            out.append(dels[di])
            di += 1
        else:
            out.append(puts[pi])
            pi += 1
    return out
