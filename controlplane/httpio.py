"""Request and response helpers of the HTTP shell: URL targets, bodies, query options, Status
responses, content negotiation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from controlplane import errors
from controlplane.registry import FieldCheck, decode_json, decode_yaml, partner
from controlplane.resources import Resource, lookup
from controlplane.state import dumps

JSON = dict[str, Any]

JSON_TYPE = "application/json"
PROTOBUF = "application/vnd.kubernetes.protobuf"
MAX_BODY = 3 * 1024 * 1024 + 64 * 1024  # upstream's 3 MiB object limit, plus slack for the envelope
TRUE = ("true", "1", "yes")


@dataclass(frozen=True)
class Target:
    res: Resource
    namespace: str | None
    name: str | None
    sub: str | None
    watch_path: bool = False


def json_response(body: Any, status: int = 200, content_type: str = JSON_TYPE) -> web.Response:
    return web.Response(body=dumps(body).encode(), status=status, headers={"Content-Type": content_type})


def status_response(err: errors.APIError) -> web.Response:
    return json_response(err.status(), err.code)


def not_found_path() -> errors.NotFound:
    return errors.NotFound("the server could not find the requested resource")


def parse_target(group: str, version: str, rest: str) -> Target:
    parts = [p for p in rest.split("/") if p]
    watch_path = False
    if parts and parts[0] == "watch":
        watch_path = True
        parts = parts[1:]
    namespace: str | None = None
    if len(parts) >= 3 and parts[0] == "namespaces" and parts[2] not in ("status", "finalize"):
        namespace = parts[1]
        parts = parts[2:]
    if not parts or len(parts) > 3:
        raise not_found_path()
    res = lookup(group, parts[0])
    if res is None or res.version != version:
        raise not_found_path()
    if namespace is not None and not res.namespaced:
        raise not_found_path()
    name = parts[1] if len(parts) > 1 else None
    sub = parts[2] if len(parts) > 2 else None
    if sub is not None and sub not in res.subresources:
        raise not_found_path()
    return Target(res, namespace, name, sub, watch_path)


def query_bool(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in TRUE


def field_check(request: web.Request) -> FieldCheck:
    mode = request.query.get("fieldValidation", "") or "Warn"
    if mode not in ("Ignore", "Warn", "Strict"):
        raise errors.BadRequest(f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", '
                                '"Strict", "Warn"')
    return FieldCheck(mode)


def with_warnings(resp: web.Response, check: FieldCheck) -> web.Response:
    for w in check.warnings:
        resp.headers.add("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return resp


def dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.BadRequest(f'Invalid value: "{v}": supported values: "All"')
    return bool(values)


async def read_body(request: web.Request, allow_yaml: bool = True) -> Any:
    ctype = request.content_type if request.headers.get("Content-Type") else JSON_TYPE
    raw = await request.read()
    if ctype.startswith(PROTOBUF):
        raise errors.UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types include: application/json, "
            f"application/yaml (podnet speaks JSON only; {PROTOBUF} is not supported: send JSON, e.g. "
            "`kubectl create ... --dry-run=client -o yaml | kubectl apply -f -`)")
    if ctype in (JSON_TYPE, "application/octet-stream", "text/plain") or ctype.endswith("+json"):
        return decode_json(raw)
    if allow_yaml and ctype in ("application/yaml", "application/x-yaml", "text/yaml"):
        return decode_yaml(raw)
    raise errors.UnsupportedMediaType(f"the body of the request was in an unknown format - accepted media types "
                                      f"include: application/json, application/yaml (got {ctype})")


def wants_partial(request: web.Request) -> bool:
    """Accept: ...;as=PartialObjectMetadata[List];g=meta.k8s.io (metadata-only clients) first."""
    for part in request.headers.get("Accept", "").split(","):
        p = part.replace(" ", "")
        if "as=PartialObjectMetadata" in p and "g=meta.k8s.io" in p:
            return True
        if p.startswith(JSON_TYPE) and "as=" not in p or "as=Table" in p:
            return False
    return False


def partial(obj: JSON) -> JSON:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    for part in accept.split(","):
        p = part.replace(" ", "")
        if "as=Table" in p and "g=meta.k8s.io" in p:
            return partner("table") is not None
        if p.startswith(JSON_TYPE) and "as=" not in p:
            return False
    return False


def include_object(request: web.Request) -> str:
    value = request.query.get("includeObject", "Metadata") or "Metadata"
    if value not in ("None", "Metadata", "Object"):
        raise errors.BadRequest(f'includeObject: Unsupported value: "{value}": supported values: "None", '
                                '"Metadata", "Object"')
    return value
