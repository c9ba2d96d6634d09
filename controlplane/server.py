"""The HTTP shell (aiohttp): routes Kubernetes API requests to the registry and the watch hub,
translates errors into Status responses, streams watches.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from controlplane import discovery, errors
from controlplane.httpio import (JSON_TYPE, MAX_BODY, PROTOBUF, Target, decode_json, dry_run, field_check,
                                 include_object, json_response, not_found_path, parse_target, query_bool, read_body,
                                 partial, status_response, wants_partial, wants_table,
                                 with_warnings)
from controlplane.registry import APPLY, PATCH_TYPES, Registry, partner, rkey
from controlplane.resources import ALL
from controlplane.state import dumps, parse_rv
from controlplane.watch import Hub
from controlplane.watchstream import serve_watch, wait_for_rv

log = logging.getLogger(__name__)
JSON = dict[str, Any]


REVIEW_STATUS: dict[str, JSON] = {
    "SelfSubjectAccessReview": {"allowed": True, "reason": "podnet serves without authorization"},
    "SelfSubjectRulesReview": {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                               "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                               "incomplete": False},
    "SelfSubjectReview": {"userInfo": {"username": "podnet-admin",
                                       "groups": ["system:masters", "system:authenticated"]}},
}


class APIServer:
    def __init__(self, registry: Registry, hub: Hub, bookmark_interval: float = 10.0) -> None:
        self.registry = registry
        self.hub = hub
        self.bookmark_interval = bookmark_interval
        self.stopping = asyncio.Event()
        self.requests: dict[tuple[str, int], int] = {}

    # ------------------------------------------------------------------ app

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self.errors_middleware])
        r = app.router
        r.add_get("/version", lambda req: self._json(discovery.version_info()))
        r.add_get("/metrics", self.metrics)
        for path in ("/healthz", "/livez", "/readyz"):
            r.add_get(path, self.health)
            r.add_get(path + "/{check:.*}", self.health)
        r.add_get("/api", self.api)
        r.add_get("/apis", self.apis)
        r.add_get("/api/{version}", self.api_version)
        r.add_get("/apis/{group}", self.api_group)
        r.add_get("/apis/{group}/{version}", self.api_version)
        r.add_get("/openapi/v3", lambda req: self._json(discovery.openapi_v3_root()))
        r.add_get("/openapi/v3/{gv:.*}", self.openapi_v3)
        r.add_route("*", "/api/{version}/{rest:.+}", self.resource)
        r.add_route("*", "/apis/{group}/{version}/{rest:.+}", self.resource)
        r.add_route("*", "/{tail:.*}", self.not_found)
        return app

    @web.middleware
    async def errors_middleware(self, request: web.Request,
                                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        resp = await self._handle(request, handler)
        key = (request.method, resp.status)
        self.requests[key] = self.requests.get(key, 0) + 1
        return resp

    async def _handle(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            return await handler(request)
        except errors.APIError as err:
            return status_response(err)
        except web.HTTPRequestEntityTooLarge:
            body = dict(errors.BadRequest("the request body is too large (limit 3 MiB)").status(),
                        code=413, reason="RequestEntityTooLarge")
            return json_response(body, 413)
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            return status_response(errors.APIError("an internal error occurred while serving the request"))

    @staticmethod
    async def _json(body: JSON, content_type: str = JSON_TYPE) -> web.Response:
        return json_response(body, 200, content_type)

    async def not_found(self, request: web.Request) -> web.Response:
        raise not_found_path()

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text: requests by method and code, watchers, objects, resourceVersion."""
        store = self.registry.store
        lines = ["# TYPE podnet_apiserver_requests_total counter"]
        for (method, code), n in sorted(self.requests.items()):
            lines.append(f'podnet_apiserver_requests_total{{method="{method}",code="{code}"}} {n}')
        lines += ["# TYPE podnet_apiserver_watchers gauge", f"podnet_apiserver_watchers {self.hub.count}",
                  "# TYPE podnet_apiserver_objects gauge"]
        for res in ALL:
            lines.append(f'podnet_apiserver_objects{{resource="{res.plural}"}} {store.index.count(rkey(res))}')
        lines += ["# TYPE podnet_apiserver_resource_version gauge", f"podnet_apiserver_resource_version {store.rv}",
                  "# TYPE podnet_apiserver_watch_history_events gauge",
                  f"podnet_apiserver_watch_history_events {len(store.history)}"]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def health(self, request: web.Request) -> web.Response:
        broken = self.registry.store.broken
        if broken is not None and not request.path.startswith("/livez"):
            return web.Response(text=f"storage failed: {broken}", status=500)
        return web.Response(text="ok")

    # ------------------------------------------------------------------ discovery

    async def api(self, request: web.Request) -> web.Response:
        agg = discovery.aggregated_type(request.headers.get("Accept", ""))
        if agg:
            return json_response(discovery.aggregated(True, agg), 200, agg)
        return json_response(discovery.api_versions(request.host))

    async def apis(self, request: web.Request) -> web.Response:
        agg = discovery.aggregated_type(request.headers.get("Accept", ""))
        if agg:
            return json_response(discovery.aggregated(False, agg), 200, agg)
        return json_response(discovery.api_group_list())

    async def api_group(self, request: web.Request) -> web.Response:
        body = discovery.api_group(request.match_info["group"])
        if body is None:
            raise not_found_path()
        return json_response(body)

    async def api_version(self, request: web.Request) -> web.Response:
        group = request.match_info.get("group", "")
        version = request.match_info["version"]
        body = discovery.api_resource_list(group, version)
        if not body["resources"]:
            raise not_found_path()
        return json_response(body)

    async def openapi_v3(self, request: web.Request) -> web.Response:
        gv = request.match_info["gv"].strip("/").split("/")
        if len(gv) == 2 and gv[0] == "api":
            doc = discovery.openapi_v3_document("", gv[1])
        elif len(gv) == 3 and gv[0] == "apis":
            doc = discovery.openapi_v3_document(gv[1], gv[2])
        else:
            doc = None
        if doc is None:
            raise not_found_path()
        return json_response(doc)

    # ------------------------------------------------------------------ resources

    async def resource(self, request: web.Request) -> web.StreamResponse:
        rest = request.match_info["rest"].strip("/").split("/")
        if "group" not in request.match_info and len(rest) == 3 and rest[0] == "namespaces" \
                and rest[2] == "bindings" and request.match_info["version"] == "v1":
            return await self.bindings(request, rest[1])
        review = discovery.review_kind(request.match_info.get("group", ""), request.match_info["version"],
                                       request.match_info["rest"].strip("/"))
        if review is not None:
            return await self.review(request, review)
        t = parse_target(request.match_info.get("group", ""), request.match_info["version"],
                         request.match_info["rest"])
        method = request.method
        if t.name is None:
            if method == "GET":
                if t.watch_path or query_bool(request, "watch"):
                    return await self.watch(request, t)
                return await self.list(request, t)
            if method == "POST":
                return await self.create(request, t)
            if method == "DELETE" and t.res.plural != "namespaces":
                return await self.delete_collection(request, t)
        elif method == "GET" and t.sub is None and (t.watch_path or query_bool(request, "watch")):
            return await self.watch(request, t)
        elif method == "GET" and t.sub != "binding":
            return self.get(request, t)
        elif method == "PUT":
            return await self.update(request, t)
        elif method == "PATCH":
            return await self.patch(request, t)
        elif method == "DELETE" and t.sub is None:
            return await self.delete(request, t)
        elif method == "POST" and t.sub == "binding":
            body = await read_body(request)
            status = self.registry.bind(t.namespace or "", t.name, body, dry_run=dry_run(request))
            await self._durable()
            return json_response(status, 201)
        raise errors.MethodNotAllowed(f"the server does not allow this method on the requested resource "
                                      f"({method} {request.path})")

    async def review(self, request: web.Request, kind: str) -> web.Response:
        """Self-subject reviews: podnet has no authorization, so everything is allowed."""
        if request.method != "POST":
            raise errors.MethodNotAllowed(f"{kind} only supports create")
        if request.content_type.startswith(PROTOBUF):  # kubectl auth sends protobuf; the answer does not
            await request.read()                       # depend on the question, so it is not decoded
            body: Any = {}
        else:
            body = await read_body(request)
        if not isinstance(body, dict):
            raise errors.BadRequest(f"the body must be a {kind}")
        out = {"kind": kind, "apiVersion": body.get("apiVersion") or "", "metadata": body.get("metadata") or {},
               "spec": body.get("spec") or {}, "status": REVIEW_STATUS[kind]}
        if not out["apiVersion"]:
            out["apiVersion"] = ("authentication.k8s.io/v1" if kind == "SelfSubjectReview"
                                 else "authorization.k8s.io/v1")
        if kind == "SelfSubjectReview":
            out.pop("spec")
        return json_response(out, 201)

    async def bindings(self, request: web.Request, namespace: str) -> web.Response:
        """POST /api/v1/namespaces/{ns}/bindings: the legacy form of pods/{name}/binding."""
        if request.method != "POST":
            raise errors.MethodNotAllowed(f"the server does not allow this method on the requested resource "
                                          f"({request.method} {request.path})")
        body = await read_body(request)
        name = ((body.get("metadata") or {}).get("name") if isinstance(body, dict) else None) or ""
        if not isinstance(name, str) or not name:
            raise errors.Invalid.of("Binding", "", [errors.Cause("metadata.name", "Required value",
                                                                 "FieldValueRequired")])
        status = self.registry.bind(namespace, name, body, dry_run=dry_run(request))
        await self._durable()
        return json_response(status, 201)

    async def _durable(self) -> None:
        """Acknowledge a write only once it (and everything before it) is on disk."""
        await self.registry.store.wait_durable(self.registry.store.assigned)

    def _object_response(self, request: web.Request, t: Target, obj: JSON, status: int = 200) -> web.Response:
        if wants_table(request) and status == 200:
            table = partner("table")
            assert table is not None
            return json_response(table.render_table(t.res, [obj], str(self.registry.store.rv),
                                                    include_object=include_object(request)))
        return json_response(obj, status)

    def get(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        entry = self.registry.get(t.res, t.namespace, t.name)
        if wants_table(request):
            return self._object_response(request, t, entry.obj)
        if wants_partial(request):
            return json_response(partial(entry.obj))
        return web.Response(body=entry.raw.encode(), content_type=JSON_TYPE)

    async def list(self, request: web.Request, t: Target) -> web.Response:
        q = request.query
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            raise errors.BadRequest(f"invalid limit: {q.get('limit')!r}") from None
        rv = parse_rv(q.get("resourceVersion"))
        if rv and rv > self.registry.store.rv and not q.get("continue"):
            await self._wait_for_rv(rv)
        page = self.registry.list_page(t.res, t.namespace, q.get("labelSelector", ""), q.get("fieldSelector", ""),
                                       limit=limit, continue_token=q.get("continue", ""),
                                       resource_version=q.get("resourceVersion", ""),
                                       match=q.get("resourceVersionMatch", ""))
        meta: JSON = {"resourceVersion": str(page.rv)}
        if page.continue_token:
            meta["continue"] = page.continue_token
        if page.remaining is not None:
            meta["remainingItemCount"] = page.remaining
        if wants_table(request):
            table = partner("table")
            assert table is not None
            body_obj = table.render_table(t.res, [e.obj for e in page.items], str(page.rv),
                                          include_object=include_object(request))
            body_obj["metadata"] = dict(body_obj.get("metadata") or {}, **meta)
            return json_response(body_obj)
        if wants_partial(request):
            return json_response({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                                  "metadata": meta, "items": [partial(e.obj) for e in page.items]})
        head = (f'{{"kind":"{t.res.list_kind}","apiVersion":"{t.res.api_version}",'
                f'"metadata":{dumps(meta)},"items":[')
        body = head + ",".join(e.raw for e in page.items) + "]}"
        return web.Response(body=body.encode(), content_type=JSON_TYPE)

    async def create(self, request: web.Request, t: Target) -> web.Response:
        body = await read_body(request)
        if t.res.namespaced and t.namespace is None:
            raise errors.MethodNotAllowed(f"create {t.res.plural} needs a namespace in the path "
                                          f"(POST {t.res.path('<namespace>')})")
        check = field_check(request)
        obj = self.registry.create(t.res, t.namespace, body, dry_run=dry_run(request), fields=check)
        await self._durable()
        return with_warnings(json_response(obj, 201), check)

    async def update(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        if t.sub not in (None, "status"):
            raise errors.MethodNotAllowed(f"PUT is not allowed on {t.res.plural}/{t.sub}")
        body = await read_body(request)
        check = field_check(request)
        obj, created = self.registry.update(t.res, t.namespace, t.name, body, subresource=t.sub,
                                            dry_run=dry_run(request), fields=check)
        await self._durable()
        return with_warnings(json_response(obj, 201 if created else 200), check)

    async def patch(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        if t.sub not in (None, "status"):
            raise errors.MethodNotAllowed(f"PATCH is not allowed on {t.res.plural}/{t.sub}")
        ctype = request.content_type if request.headers.get("Content-Type") else ""
        if ctype.startswith(PROTOBUF):
            await read_body(request)
        if ctype not in PATCH_TYPES:
            raise errors.UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(PATCH_TYPES)}" + (f" (got {ctype})" if ctype else " (no Content-Type)"))
        raw = await request.read()
        force = query_bool(request, "force")
        if force and ctype != APPLY:
            raise errors.BadRequest("force=true is only allowed for apply patches")
        check = field_check(request)
        obj, created = self.registry.patch(
            t.res, t.namespace, t.name, ctype, raw, subresource=t.sub, dry_run=dry_run(request),
            field_manager=request.query.get("fieldManager", ""), force=force, fields=check)
        await self._durable()
        return with_warnings(json_response(obj, 201 if created else 200), check)

    async def _delete_options(self, request: web.Request) -> JSON:
        raw = await request.read()
        if not raw.strip():
            opts: Any = {}
        else:
            if request.content_type.startswith(PROTOBUF):
                await read_body(request)
            opts = decode_json(raw, "DeleteOptions body")
            if not isinstance(opts, dict):
                raise errors.BadRequest("the DeleteOptions body must be a JSON object")
        if "dryRun" in opts and opts["dryRun"] not in ([], ["All"], None):
            raise errors.BadRequest(f'Invalid value: {opts["dryRun"]!r}: supported values: "All"')
        return dict(opts)

    async def delete(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        opts = await self._delete_options(request)
        dry = dry_run(request) or opts.get("dryRun") == ["All"]
        obj = self.registry.delete(t.res, t.namespace, t.name, opts, dry_run=dry)
        await self._durable()
        return json_response(obj)

    async def delete_collection(self, request: web.Request, t: Target) -> web.Response:
        opts = await self._delete_options(request)
        dry = dry_run(request) or opts.get("dryRun") == ["All"]
        entries, rv = self.registry.list_objects(t.res, t.namespace, request.query.get("labelSelector", ""),
                                         request.query.get("fieldSelector", ""))
        deleted: list[JSON] = []
        for e in entries:
            m = e.obj.get("metadata") or {}
            try:
                deleted.append(self.registry.delete(t.res, m.get("namespace"), m["name"], {}, dry_run=dry))
            except errors.NotFound:
                continue
        await self._durable()
        return json_response({"kind": t.res.list_kind, "apiVersion": t.res.api_version,
                              "metadata": {"resourceVersion": str(self.registry.store.rv)}, "items": deleted})

    # ------------------------------------------------------------------ watch

    async def watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        return await serve_watch(request, t, self.registry, self.hub, self.bookmark_interval, self.stopping)

    async def _wait_for_rv(self, rv: int) -> None:
        await wait_for_rv(self.registry.store, rv)


__all__ = ["APIServer", "parse_target"]
