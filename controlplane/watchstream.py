"""Watch streaming: chunked `{"type","object"}` lines from the hub; the ADDED replay for
resourceVersion unset/0 (or sendInitialEvents), resume from a resourceVersion, 410 ERROR events,
BOOKMARKs, timeouts, Table events for kubectl, and dropping clients that went away."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web

from controlplane import errors
from controlplane.httpio import (JSON_TYPE, Target, include_object, partial, query_bool, wants_partial,
                                 wants_table)
from controlplane.registry import Registry, partner
from controlplane.resources import Resource
from controlplane.state import Entry, WatchFilter, dumps, event_line, parse_rv, replay
from controlplane.storage import Store
from controlplane.watch import Hub

JSON = dict[str, Any]
INITIAL_EVENTS_END = "k8s.io/initial-events-end"

Encoder = Callable[[JSON, str, str], bytes]  # (object, event type, raw JSON of the object) -> stream line


def plain_line(obj: JSON, type_: str, raw: str) -> bytes:
    return event_line(type_, raw or dumps(obj))


def partial_line(obj: JSON, type_: str, raw: str) -> bytes:
    return dumps({"type": type_, "object": partial(obj)}).encode() + b"\n"


def table_encoder(res: Resource, include: str) -> Encoder:
    """Watch events as one-row Tables, as upstream answers watches that Accept as=Table."""
    table = partner("table")
    assert table is not None

    def encode(obj: JSON, type_: str, raw: str) -> bytes:
        rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        return dumps({"type": type_, "object": table.render_table(res, [obj], rv, include_object=include)}
                     ).encode() + b"\n"
    return encode


@dataclass(frozen=True)
class WatchOptions:
    filt: WatchFilter
    rv: int | None
    timeout: float
    bookmarks: bool
    send_initial: bool
    encode: Encoder | None


def watch_options(request: web.Request, t: Target, registry: Registry) -> WatchOptions:
    q = request.query
    fields = q.get("fieldSelector", "")
    if t.name is not None:  # /watch/.../name: the old per-object watch path
        fields = ",".join(x for x in (fields, f"metadata.name={t.name}") if x)
    filt = registry.watch_filter(t.res, t.namespace, q.get("labelSelector", ""), fields)
    try:
        timeout = float(q.get("timeoutSeconds") or 0)
    except ValueError:
        raise errors.BadRequest(f"invalid timeoutSeconds: {q.get('timeoutSeconds')!r}") from None
    if timeout <= 0:  # unset or 0: the server's own limit, 30-60 min like upstream's minRequestTimeout
        timeout = 1800.0 * (1 + random.random())
    return WatchOptions(filt, parse_rv(q.get("resourceVersion")), timeout, query_bool(request, "allowWatchBookmarks"),
                        query_bool(request, "sendInitialEvents"),
                        table_encoder(t.res, include_object(request)) if wants_table(request)
                        else partial_line if wants_partial(request) else None)


async def serve_watch(request: web.Request, t: Target, registry: Registry, hub: Hub, bookmark_interval: float,
                      stopping: asyncio.Event) -> web.StreamResponse:
    """A watch request, start to end (see the module docstring)."""
    opts = watch_options(request, t, registry)
    if opts.rv and opts.rv > registry.store.rv:
        await wait_for_rv(registry.store, opts.rv)
    resp = web.StreamResponse(status=200, headers={"Content-Type": JSON_TYPE, "Cache-Control": "no-cache"})
    resp.enable_chunked_encoding()
    # snapshot + subscribe happen with no await in between: no event is lost or doubled
    initial: list[Entry] = []
    try:
        if opts.send_initial or not opts.rv:
            initial = list(replay(registry.store.index, opts.filt))
            watcher = hub.subscribe(opts.filt, None)
        else:
            watcher = hub.subscribe(opts.filt, opts.rv)
    except errors.Gone as err:  # HTTP 200 with one ERROR event, as upstream
        await resp.prepare(request)
        await resp.write(dumps({"type": "ERROR", "object": err.status()}).encode() + b"\n")
        await resp.write_eof()
        return resp
    start_rv = registry.store.rv
    try:
        await resp.prepare(request)
        await _replay(resp, initial, opts.encode)
        if opts.send_initial and opts.bookmarks:
            await resp.write(bookmark(t.res, start_rv, initial_end=True))
        await _stream(stopping, bookmark_interval, registry.store, request, resp, watcher, t.res, opts.timeout,
                      opts.bookmarks, opts.encode)
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        hub.unsubscribe(watcher)
    try:
        await resp.write_eof()
    except (ConnectionResetError, ConnectionError, RuntimeError):
        pass
    return resp


async def _replay(resp: web.StreamResponse, initial: list[Entry], encode: Encoder | None) -> None:
    """The synthetic ADDED events, written in chunks of 200."""
    for i in range(0, len(initial), 200):
        await resp.write(b"".join((encode or plain_line)(e.obj, "ADDED", e.raw) for e in initial[i:i + 200]))


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
