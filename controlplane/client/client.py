"""The asyncio HTTP client every component uses to talk to the API server.

Objects travel as plain JSON dicts; URLs come from `controlplane.resources.Resource.path`.
A Status error body becomes the matching `controlplane.errors` class (NotFound, Conflict,
Invalid, Gone, ...); a server that cannot be reached (refused, reset, timed out, TLS failure)
raises `ClientError`, itself an `errors.APIError` with code 503, so `except errors.APIError`
catches everything the client raises.
"""

from __future__ import annotations

import asyncio
import enum
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Mapping

import aiohttp

from controlplane import errors
from controlplane.client import kubeconfig
from controlplane.client.stream import LineSplitter, StreamError, WatchEvent, parse_event
from controlplane.resources import Resource

JSON = dict[str, Any]
USER_AGENT = "podnet-client/0.1"


class ClientError(errors.APIError):
    """The server could not be reached or did not answer properly (connection refused/reset,
    timeout, TLS failure, a broken watch stream). Retryable; `__cause__` holds the original."""

    code = 503
    reason = "ServiceUnavailable"


class PatchType(str, enum.Enum):
    MERGE = "application/merge-patch+json"
    JSON = "application/json-patch+json"
    STRATEGIC = "application/strategic-merge-patch+json"
    APPLY = "application/apply-patch+yaml"


@dataclass(frozen=True)
class ObjectList:
    items: list[JSON]
    resource_version: str
    kind: str = ""
    api_version: str = ""
    continue_: str = field(default="", repr=False)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[JSON]:
        return iter(self.items)


def status_error(body: Any, http_code: int) -> errors.APIError:
    """The APIError for an error response (a Status body, or anything else by HTTP code)."""
    if isinstance(body, dict) and body.get("kind") == "Status":
        err = errors.from_status(body, http_code)
        if type(err) is errors.APIError and (err.code == 410 or http_code == 410):
            gone = errors.Gone(err.message, name=err.name, kind=err.kind, group=err.group, causes=err.causes)
            return gone
        return err
    text = body if isinstance(body, str) else json.dumps(body)
    cls = errors.BY_CODE.get(http_code, errors.APIError)
    err = cls(f"HTTP {http_code}: {text.strip()[:500] or 'no body'}")
    if cls is errors.APIError:
        err.code = http_code
        err.reason = "InternalError" if http_code >= 500 else "Unknown"
    return err


def _params(**values: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None or value == "" or value is False:
            continue
        out[key] = "true" if value is True else str(value)
    return out


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


class Client:
    """`Client("http://127.0.0.1:6443")`; use as `async with client:` or call `await client.close()`."""

    def __init__(self, server: str, *, token: str | None = None, timeout: float = 30,
                 ssl_context: ssl.SSLContext | bool | None = None, namespace: str = "default",
                 server_hostname: str | None = None) -> None:
        if not server.startswith(("http://", "https://")):
            raise errors.BadRequest(f"server URL must start with http:// or https://: {server!r}")
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.namespace = namespace  # the default namespace (from the kubeconfig context)
        self._ssl = ssl_context
        self._server_hostname = server_hostname
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | Path | None = None, context: str | None = None, *,
                        timeout: float = 30) -> "Client":
        """A client for the kubeconfig at `path` (default: $KUBECONFIG's first file, else ~/.kube/config)."""
        cfg = kubeconfig.load(path if path is not None else kubeconfig.default_path(), context)
        return cls(cfg.server, token=cfg.token, timeout=timeout, ssl_context=cfg.ssl_context(),
                   namespace=cfg.namespace, server_hostname=cfg.tls_server_name)

    def __repr__(self) -> str:
        return f"Client({self.server!r})"

    # -- session -------------------------------------------------------------------------------
    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is not None and not session.closed and session._loop is not asyncio.get_running_loop():
            self._session = None  # made on an event loop that is gone (asyncio.run called again)
        if self._session is None or self._session.closed:
            headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            connector = aiohttp.TCPConnector(limit=0, ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(headers=headers, connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- raw requests --------------------------------------------------------------------------
    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: Any = None, content_type: str = "application/json") -> Any:
        """One request; returns the decoded JSON answer, raises APIError / ClientError.

        A request that fails on a pooled keep-alive connection the server has closed meanwhile
        (e.g. after a server restart) is sent once more on a fresh connection: any method when the
        request could not be written, and all but POST when the server hung up before answering."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        url = self.server + path
        for attempt in (1, 2):
            try:
                status, raw = await self._send(method, url, params, data, headers)
                break
            except asyncio.TimeoutError as exc:
                raise ClientError(f"{method} {url}: no answer within {self.timeout:g}s") from exc
            except aiohttp.ClientError as exc:
                if attempt == 1 and _stale_connection(method, exc):
                    continue
                raise ClientError(f"{method} {url}: {exc or type(exc).__name__}") from exc
        try:
            decoded: Any = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        if status >= 400:
            raise status_error(decoded, status)
        return decoded

    async def _send(self, method: str, url: str, params: Mapping[str, str] | None, data: bytes | None,
                    headers: dict[str, str]) -> tuple[int, bytes]:
        session = self._get_session()
        async with session.request(method, url, params=params or None, data=data, headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=self.timeout),
                                   server_hostname=self._server_hostname) as resp:
            return resp.status, await resp.read()

    def _ns(self, resource: Resource, namespace: str | None, obj: Mapping[str, Any] | None = None) -> str | None:
        if not resource.namespaced:
            return None
        if namespace:
            return namespace
        if obj is not None and _meta(obj).get("namespace"):
            return str(_meta(obj)["namespace"])
        return self.namespace

    # -- verbs ---------------------------------------------------------------------------------
    async def get(self, resource: Resource, name: str, *, namespace: str | None = None,
                  subresource: str | None = None) -> JSON:
        ns = self._ns(resource, namespace)
        result: JSON = await self.request("GET", resource.path(ns, name, subresource))
        return result

    async def list(self, resource: Resource, *, namespace: str | None = None, label_selector: str = "",
                   field_selector: str = "", resource_version: str | None = None,
                   limit: int | None = None) -> ObjectList:
        """List all objects (namespace None = all namespaces); follows `continue` when `limit` pages."""
        items: list[JSON] = []
        token = ""
        while True:
            params = _params(labelSelector=label_selector, fieldSelector=field_selector,
                             resourceVersion=None if token else resource_version,
                             limit=limit, **{"continue": token})
            body = await self.request("GET", resource.path(namespace if resource.namespaced else None),
                                      params=params)
            if not isinstance(body, dict):
                raise ClientError(f"list {resource.plural}: the answer is not a list object: {str(body)[:200]}")
            for item in body.get("items") or []:
                if isinstance(item, dict):  # list items may omit these; watch events carry them
                    item.setdefault("kind", resource.kind)
                    item.setdefault("apiVersion", resource.api_version)
                    items.append(item)
            meta = body.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                return ObjectList(items, str(meta.get("resourceVersion") or ""), str(body.get("kind", "")),
                                  str(body.get("apiVersion", "")))

    async def create(self, resource: Resource, obj: JSON, *, namespace: str | None = None,
                     field_manager: str | None = None, dry_run: bool = False) -> JSON:
        ns = self._ns(resource, namespace, obj)
        params = _params(fieldManager=field_manager, dryRun="All" if dry_run else None)
        result: JSON = await self.request("POST", resource.path(ns), params=params, body=obj)
        return result

    async def update(self, resource: Resource, obj: JSON, *, namespace: str | None = None,
                     subresource: str | None = None, field_manager: str | None = None) -> JSON:
        """PUT the whole object; a stale metadata.resourceVersion raises errors.Conflict."""
        name = _meta(obj).get("name")
        if not name:
            raise errors.BadRequest(f"update {resource.plural}: the object has no metadata.name")
        ns = self._ns(resource, namespace, obj)
        result: JSON = await self.request("PUT", resource.path(ns, str(name), subresource),
                                          params=_params(fieldManager=field_manager), body=obj)
        return result

    async def patch(self, resource: Resource, name: str, patch: Any, *, namespace: str | None = None,
                    patch_type: PatchType = PatchType.MERGE, subresource: str | None = None,
                    field_manager: str | None = None, force: bool | None = None) -> JSON:
        """PATCH with the given content type. APPLY (server-side apply) needs a field manager
        (default "podnet") and takes `force`; JSON patches are a list of operations."""
        if patch_type is PatchType.APPLY and not field_manager:
            field_manager = "podnet"
        params = _params(fieldManager=field_manager)
        if force is not None:
            params["force"] = "true" if force else "false"
        ns = self._ns(resource, namespace, patch if isinstance(patch, dict) else None)
        result: JSON = await self.request("PATCH", resource.path(ns, name, subresource), params=params,
                                          body=patch, content_type=PatchType(patch_type).value)
        return result

    async def delete(self, resource: Resource, name: str, *, namespace: str | None = None,
                     propagation_policy: str | None = None, grace_period_seconds: int | None = None,
                     resource_version: str | None = None, uid: str | None = None) -> JSON:
        """DELETE; returns what the server answers (the deleted object, or a Status).
        `resource_version` / `uid` become DeleteOptions preconditions (409 Conflict when they differ)."""
        ns = self._ns(resource, namespace)
        options: JSON = {}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        preconditions = {k: v for k, v in (("resourceVersion", resource_version), ("uid", uid)) if v}
        if preconditions:
            options["preconditions"] = preconditions
        body = {"kind": "DeleteOptions", "apiVersion": "v1", **options} if options else None
        result: JSON = await self.request("DELETE", resource.path(ns, name), body=body)
        return result

    # -- watch ---------------------------------------------------------------------------------
    async def watch(self, resource: Resource, *, namespace: str | None = None, resource_version: str | None = "0",
                    label_selector: str = "", field_selector: str = "", timeout_seconds: int | None = None,
                    allow_bookmarks: bool = False) -> AsyncIterator[WatchEvent]:
        """Stream watch events until the server closes the stream (or `timeout_seconds` passes).

        An ERROR event is raised as its APIError (errors.Gone for 410 "too old resource version");
        a broken connection raises ClientError. Closing the iterator closes the connection."""
        params = _params(watch=True, resourceVersion=resource_version, labelSelector=label_selector,
                         fieldSelector=field_selector, timeoutSeconds=timeout_seconds,
                         allowWatchBookmarks=allow_bookmarks)
        url = self.server + resource.path(namespace if resource.namespaced else None)
        read_limit = None if timeout_seconds is None else timeout_seconds + self.timeout
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=read_limit)
        session = self._get_session()
        try:
            async with session.get(url, params=params, timeout=timeout,
                                   server_hostname=self._server_hostname) as resp:
                if resp.status >= 400:
                    raw = await resp.read()
                    try:
                        decoded: Any = json.loads(raw) if raw else None
                    except ValueError:
                        decoded = raw.decode(errors="replace")
                    raise status_error(decoded, resp.status)
                splitter = LineSplitter()
                async for chunk in resp.content.iter_any():
                    for line in splitter.feed(chunk):
                        yield _checked(parse_event(line))
                for line in splitter.finish():
                    yield _checked(parse_event(line))
        except asyncio.TimeoutError as exc:
            raise ClientError(f"watch {url}: no data within {read_limit}s") from exc
        except aiohttp.ClientError as exc:
            raise ClientError(f"watch {url}: {exc or type(exc).__name__}") from exc
        except StreamError as exc:
            raise ClientError(f"watch {url}: {exc}") from exc


def _stale_connection(method: str, exc: aiohttp.ClientError) -> bool:
    if isinstance(exc, aiohttp.ClientConnectorError):  # nothing listens: retrying now will not help
        return False
    if method == "POST":  # not idempotent: only when the request provably did not get out
        return isinstance(exc, aiohttp.ClientOSError) and "Can not write request" in str(exc)
    return isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError))


def _checked(event: WatchEvent) -> WatchEvent:
    if event.type == "ERROR":
        raise status_error(event.object, int(event.object.get("code") or 500))
    return event
