"""A small in-memory fake of the API server for tests of the client and of client users.

It serves the registry's resources on 127.0.0.1 with aiohttp.web: get/list (labelSelector with
=, ==, != and bare keys; fieldSelector metadata.name/metadata.namespace), create (201, 409),
update (409 on a stale resourceVersion), merge/strategic/apply patch (as a JSON merge patch,
`controlplane.patch.apply_merge_patch`), json-patch (add/replace/remove on object paths), delete,
and watch with resourceVersion replay, BOOKMARKs and timeoutSeconds. Test hooks simulate the
failures an informer must survive: `drop_watches()` cuts every open watch, `compact()` makes
older resourceVersions 410 Gone, `fail_next(n, status)` answers the next n requests with a Status
error, and `chunk_size` splits every watch line into tiny writes. Every request is recorded in
`requests`.

    async with FakeAPIServer() as fake:
        client = Client(fake.url)
"""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from controlplane import errors
from controlplane.patch import apply_merge_patch
from controlplane.resources import ALL, Resource

JSON = dict[str, Any]


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any
    headers: dict[str, str]


def json_patch(doc: JSON, ops: list[JSON]) -> JSON:
    """RFC 6902 add/replace/remove/test on object and list paths (enough for tests)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(op["path"]).split("/")[1:]]
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(idx, op["value"])
            elif kind == "replace":
                parent[idx] = op["value"]
            elif kind == "remove":
                del parent[idx]
        elif kind in ("add", "replace"):
            parent[last] = op["value"]
        elif kind == "remove":
            if last not in parent:
                raise errors.Invalid(f"json patch: path {op['path']} does not exist")
            del parent[last]
        elif kind == "test" and parent.get(last) != op.get("value"):
            raise errors.Invalid(f"json patch: test failed at {op['path']}")
    return doc


def _labels_match(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _fields_match(selector: str, obj: JSON) -> bool:
    meta = obj.get("metadata", {})
    for term in filter(None, (t.strip() for t in selector.split(","))):
        k, v = term.replace("==", "=").split("=", 1)
        field = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}
        if k not in field:
            raise errors.BadRequest(f'field label not supported: "{k}"')
        if field[k] != v:
            return False
    return True


class _Watcher:
    def __init__(self, resource: Resource, namespace: str | None, labels: str, fields: str) -> None:
        self.resource, self.namespace, self.labels, self.fields = resource, namespace, labels, fields
        self.queue: asyncio.Queue[tuple[str, JSON] | None] = asyncio.Queue()

    def wants(self, resource: Resource, obj: JSON) -> bool:
        meta = obj.get("metadata", {})
        if resource is not self.resource:
            return False
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return _labels_match(self.labels, meta.get("labels") or {}) and _fields_match(self.fields, obj)


class FakeAPIServer:
    def __init__(self, port: int = 0, chunk_size: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.ssl_context = ssl_context
        self.chunk_size = chunk_size
        self.objects: dict[tuple[str, str, str], JSON] = {}  # (plural, namespace, name) -> object
        self.history: list[tuple[int, Resource, str, JSON]] = []  # (rv, resource, type, object)
        self.rv = 100
        self.compacted = 0
        self.requests: list[Recorded] = []
        self._watchers: set[_Watcher] = set()
        self._fail: list[tuple[int, JSON]] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context)
        await site.start()
        if not self.port:
            server = site._server
            assert server is not None and hasattr(server, "sockets")
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeAPIServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- test hooks ----------------------------------------------------------------------------
    def drop_watches(self, abrupt: bool = False) -> None:
        """End every open watch: cleanly (final chunk), or `abrupt`ly by closing the TCP connection."""
        for w in list(self._watchers):
            w.queue.put_nowait(("ABORT", {}) if abrupt else None)

    def compact(self) -> None:
        """Forget history: a watch from any older resourceVersion now gets 410 Expired."""
        self.compacted = self.rv
        self.history.clear()

    def fail_next(self, count: int, code: int = 500, reason: str = "InternalError") -> None:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": f"injected failure {code}", "reason": reason, "code": code}
        self._fail.extend([(code, body)] * count)

    def bookmark(self) -> None:
        """Send a BOOKMARK at the current resourceVersion to every watcher that asked for them."""
        self.rv += 1
        for w in list(self._watchers):
            w.queue.put_nowait(("BOOKMARK", {"kind": w.resource.kind, "apiVersion": w.resource.api_version,
                                             "metadata": {"resourceVersion": str(self.rv)}}))

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    def put(self, resource: Resource, obj: JSON, event: str | None = None) -> JSON:
        """Store an object directly (bumps RV, notifies watchers); event defaults to ADDED/MODIFIED."""
        meta = obj.setdefault("metadata", {})
        key = (resource.plural, meta.get("namespace", "") if resource.namespaced else "", meta["name"])
        existed = key in self.objects
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        meta.setdefault("uid", str(uuid.uuid4()))
        obj.setdefault("kind", resource.kind)
        obj.setdefault("apiVersion", resource.api_version)
        self.objects[key] = obj
        self._emit(resource, event or ("MODIFIED" if existed else "ADDED"), obj)
        return obj

    def remove(self, resource: Resource, namespace: str, name: str) -> JSON:
        obj = self.objects.pop((resource.plural, namespace if resource.namespaced else "", name))
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._emit(resource, "DELETED", obj)
        return obj

    def _emit(self, resource: Resource, etype: str, obj: JSON) -> None:
        snapshot = copy.deepcopy(obj)
        self.history.append((self.rv, resource, etype, snapshot))
        for w in list(self._watchers):
            if w.wants(resource, snapshot):
                w.queue.put_nowait((etype, snapshot))

    # -- HTTP ----------------------------------------------------------------------------------
    @staticmethod
    def _route(path: str) -> tuple[Resource, str | None, str | None, str | None]:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, rest = parts[1], parts[3:]
        else:
            raise errors.NotFound(f"the server could not find the requested resource ({path})")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        for r in ALL:
            if r.group == group and rest and r.plural == rest[0]:
                name = rest[1] if len(rest) > 1 else None
                sub = rest[2] if len(rest) > 2 else None
                return r, namespace, name, sub
        raise errors.NotFound(f"the server could not find the requested resource ({path})")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        self.requests.append(Recorded(request.method, request.path, dict(request.query),
                                      request.headers.get("Content-Type", ""), body,
                                      dict(request.headers)))
        if self._fail:
            code, status = self._fail.pop(0)
            return web.json_response(status, status=code)
        try:
            return await self._dispatch(request, body)
        except errors.APIError as exc:
            return web.json_response(exc.status(), status=exc.code)

    async def _dispatch(self, request: web.Request, body: Any) -> web.StreamResponse:
        if request.path == "/version":
            return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake"})
        resource, ns, name, sub = self._route(request.path)
        q = request.query
        ns_key = (ns or "") if resource.namespaced else ""
        if name is None:
            if request.method == "GET" and q.get("watch") in ("true", "1"):
                return await self._watch(request, resource, ns)
            if request.method == "GET":
                return web.json_response(self._list(resource, ns, q.get("labelSelector", ""),
                                                    q.get("fieldSelector", "")))
            if request.method == "POST":
                return self._create(resource, ns_key, body)
            raise errors.MethodNotAllowed(f"{request.method} not allowed on a collection")
        key = (resource.plural, ns_key, name)
        current = self.objects.get(key)
        if request.method == "GET":
            if current is None:
                raise errors.NotFound.of(resource.plural, name, resource.group)
            return web.json_response(current)
        if request.method == "DELETE":
            if current is None:
                raise errors.NotFound.of(resource.plural, name, resource.group)
            return web.json_response(self.remove(resource, ns_key, name))
        if request.method == "PUT":
            return self._update(resource, key, current, body)
        if request.method == "PATCH":
            return self._patch(resource, key, current, body, request.headers.get("Content-Type", ""))
        raise errors.MethodNotAllowed(f"{request.method} not allowed")

    def _list(self, resource: Resource, ns: str | None, labels: str, fields: str) -> JSON:
        items = [copy.deepcopy(o) for (plural, ons, _), o in sorted(self.objects.items())
                 if plural == resource.plural and (ns is None or ons == ns)
                 and _labels_match(labels, o["metadata"].get("labels") or {}) and _fields_match(fields, o)]
        return {"kind": resource.list_kind, "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    def _create(self, resource: Resource, ns: str, body: Any) -> web.Response:
        if not isinstance(body, dict) or not body.get("metadata", {}).get("name"):
            raise errors.BadRequest("the object has no metadata.name")
        name = body["metadata"]["name"]
        if (resource.plural, ns, name) in self.objects:
            raise errors.AlreadyExists.of(resource.plural, name, resource.group)
        if resource.namespaced:
            body["metadata"]["namespace"] = ns
        return web.json_response(self.put(resource, body), status=201)

    def _update(self, resource: Resource, key: tuple[str, str, str], current: JSON | None, body: Any) -> web.Response:
        if current is None:
            raise errors.NotFound.of(resource.plural, key[2], resource.group)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise errors.Conflict.modified(resource.plural, key[2], resource.group)
        body["metadata"]["uid"] = current["metadata"]["uid"]
        return web.json_response(self.put(resource, body))

    def _patch(self, resource: Resource, key: tuple[str, str, str], current: JSON | None, body: Any,
               ctype: str) -> web.Response:
        if current is None:
            if ctype.startswith("application/apply-patch") and isinstance(body, dict):
                return self._create(resource, key[1], body)
            raise errors.NotFound.of(resource.plural, key[2], resource.group)
        if ctype.startswith("application/json-patch"):
            new = json_patch(current, body)
        elif ctype.split(";")[0] in ("application/merge-patch+json", "application/strategic-merge-patch+json",
                                     "application/apply-patch+yaml"):
            new = apply_merge_patch(current, body)
        else:
            raise errors.UnsupportedMediaType(f"the body of the request was in an unknown format: {ctype}")
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return web.json_response(self.put(resource, new))

    async def _watch(self, request: web.Request, resource: Resource, ns: str | None) -> web.StreamResponse:
        q = request.query
        watcher = _Watcher(resource, ns, q.get("labelSelector", ""), q.get("fieldSelector", ""))
        bookmarks = q.get("allowWatchBookmarks") == "true"
        rv = q.get("resourceVersion", "")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if rv not in ("", "0") and int(rv) < self.compacted:
            status = errors.Gone(f"too old resource version: {rv} ({self.compacted})").status()
            await self._send(resp, "ERROR", status)
            return resp
        if rv in ("", "0"):
            backlog = [("ADDED", copy.deepcopy(o)) for (plural, _, _), o in sorted(self.objects.items())
                       if plural == resource.plural and watcher.wants(resource, o)]
        else:
            backlog = [(t, o) for (erv, r, t, o) in self.history if erv > int(rv) and watcher.wants(r, o)]
        for etype, obj in backlog:
            await self._send(resp, etype, obj)
        self._watchers.add(watcher)
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while True:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                if item is None:
                    break
                if item[0] == "ABORT":
                    if request.transport is not None:
                        request.transport.close()
                    break
                if item[0] == "BOOKMARK" and not bookmarks:
                    continue
                await self._send(resp, *item)
        except ConnectionResetError:
            pass
        finally:
            self._watchers.discard(watcher)
        return resp

    async def _send(self, resp: web.StreamResponse, etype: str, obj: JSON) -> None:
        line = json.dumps({"type": etype, "object": obj}).encode() + b"\n"
        if not self.chunk_size:
            await resp.write(line)
            return
        for i in range(0, len(line), self.chunk_size):
            await resp.write(line[i:i + self.chunk_size])
