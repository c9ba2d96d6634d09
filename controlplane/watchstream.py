"""Watch streaming: chunked `{"type","object"}` lines from the hub; the ADDED replay for
resourceVersion unset/0 (or sendInitialEvents), resume from a resourceVersion, 410 ERROR events,
BOOKMARKs, timeouts, Table events for kubectl, and dropping clients that went away."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Callable

from aiohttp import web

from controlplane import errors
from controlplane.httpio import JSON_TYPE, Target, include_object, query_bool, wants_table
from controlplane.registry import Registry, partner
from controlplane.resources import Resource
from controlplane.state import Entry, dumps, parse_rv, replay
from controlplane.storage import Store
from controlplane.watch import Hub

JSON = dict[str, Any]
INITIAL_EVENTS_END = "k8s.io/initial-events-end"

Encoder = Callable[[JSON, str, str], bytes]  # (object, event type, raw JSON of the object) -> stream line


def plain_line(obj: JSON, type_: str, raw: str) -> bytes:
    return f'{{"type":"{type_}","object":{raw or dumps(obj)}}}\n'.encode()


def table_encoder(res: Resource, include: str) -> Encoder:
    """Watch events as one-row Tables, as upstream answers watches that Accept as=Table."""
    table = partner("table")
    assert table is not None

    def encode(obj: JSON, type_: str, raw: str) -> bytes:
        rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        return dumps({"type": type_, "object": table.render_table(res, [obj], rv, include_object=include)}
                     ).encode() + b"\n"
    return encode


async def serve_watch(request: web.Request, t: Target, registry: Registry, hub: Hub, bookmark_interval: float,
                      stopping: asyncio.Event) -> web.StreamResponse:
    """A watch request, start to end (see the module docstring)."""
    q = request.query
    filt = registry.watch_filter(t.res, t.namespace, q.get("labelSelector", ""), q.get("fieldSelector", ""))
    if t.name is not None:  # /watch/.../name: the old per-object watch path
        filt = registry.watch_filter(t.res, t.namespace, q.get("labelSelector", ""),
                                     ",".join(x for x in (q.get("fieldSelector", ""),
                                                          f"metadata.name={t.name}") if x))
    rv = parse_rv(q.get("resourceVersion"))
    try:
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else 1800.0 * (1 + random.random())
    except ValueError:
        raise errors.BadRequest(f"invalid timeoutSeconds: {q.get('timeoutSeconds')!r}") from None
    bookmarks = query_bool(request, "allowWatchBookmarks")
    send_initial = query_bool(request, "sendInitialEvents")
    encode = table_encoder(t.res, include_object(request)) if wants_table(request) else None
    if rv and rv > registry.store.rv:
        await wait_for_rv(registry.store, rv)
    resp = web.StreamResponse(status=200, headers={"Content-Type": JSON_TYPE, "Cache-Control": "no-cache"})
    resp.enable_chunked_encoding()
    # snapshot + subscribe happen with no await in between: no event is lost or doubled
    initial: list[Entry] = []
    try:
        if send_initial or not rv:
            initial = list(replay(registry.store.index, filt))
            watcher = hub.subscribe(filt, None)
        else:
            watcher = hub.subscribe(filt, rv)
    except errors.Gone as err:
        await resp.prepare(request)
        await resp.write(dumps({"type": "ERROR", "object": err.status()}).encode() + b"\n")
        await resp.write_eof()
        return resp
    start_rv = registry.store.rv
    try:
        await resp.prepare(request)
        chunk: list[bytes] = []
        for entry in initial:
            chunk.append((encode or plain_line)(entry.obj, "ADDED", entry.raw))
            if len(chunk) >= 200:
                await resp.write(b"".join(chunk))
                chunk = []
        if chunk:
            await resp.write(b"".join(chunk))
        if send_initial and bookmarks:
            await resp.write(bookmark(t.res, start_rv, initial_end=True))
        await _stream(stopping, bookmark_interval, registry.store, request, resp, watcher, t.res, timeout,
                      bookmarks, encode)
    except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        hub.unsubscribe(watcher)
    try:
        await resp.write_eof()
    except (ConnectionResetError, ConnectionError, RuntimeError):
        pass
    return resp


async def wait_for_rv(store: Store, rv: int, timeout: float = 3.0) -> None:
    """A watch from a resourceVersion the server has not reached yet waits a little, then fails
    like upstream (504 Timeout, cause ResourceVersionTooLarge) so that the client retries."""
    deadline = time.monotonic() + timeout
    while store.rv < rv:
        if time.monotonic() >= deadline:
            raise errors.Timeout(f"Too large resource version: {rv}, current: {store.rv}",
                                 causes=(errors.Cause("", "Too large resource version",
                                                      "ResourceVersionTooLarge"),))
        await asyncio.sleep(0.05)


async def _stream(stopping: asyncio.Event, bookmark_interval: float, store: Store, request: web.Request,
                  resp: web.StreamResponse, watcher: Any, res: Resource, timeout: float, bookmarks: bool,
                  encode: Encoder | None) -> None:
    """Events as they come, BOOKMARKs when idle, until the timeout, the client leaves or the end."""
    deadline = time.monotonic() + timeout
    next_bookmark = time.monotonic() + bookmark_interval
    while not stopping.is_set():
        now = time.monotonic()
        if now >= deadline:
            if bookmarks:
                await resp.write(bookmark(res, store.rv))
            return
        wait = deadline - now
        if bookmarks:
            wait = min(wait, max(0.0, next_bookmark - now))
        batch = await watcher.next_batch(min(wait, 1.0))
        if batch is None:
            return
        transport = request.transport
        if transport is None or transport.is_closing():  # the client went away
            return
        if batch:
            if encode is None:
                await resp.write(b"".join(ev.line(typ) for ev, typ in batch))
            else:
                await resp.write(b"".join(encode(ev.obj, typ, ev.raw) for ev, typ in batch))
        elif bookmarks and time.monotonic() >= next_bookmark:
            await resp.write(bookmark(res, store.rv))
            next_bookmark = time.monotonic() + bookmark_interval


def bookmark(res: Resource, rv: int, initial_end: bool = False) -> bytes:
    meta: JSON = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {INITIAL_EVENTS_END: "true"}
    return dumps({"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.api_version,
                                                 "metadata": meta}}).encode() + b"\n"
