"""Discovery documents (pure): /version, /api, /apis (plain and aggregated v2), APIResourceLists,
and the minimal OpenAPI v3 that `kubectl apply` / `kubectl create -f` need for server-side
field validation. All built from `controlplane.resources`.
"""

from __future__ import annotations

import hashlib
import json
import platform
from typing import Any

from controlplane.resources import ALL, VERBS, Resource, group_versions

JSON = dict[str, Any]

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

SUB_VERBS = {"status": ["get", "patch", "update"], "binding": ["create"]}


def verbs(r: Resource) -> list[str]:
    """Namespaces have no deletecollection upstream."""
    return [v for v in VERBS if not (r.plural == "namespaces" and v == "deletecollection")]


def version_info() -> JSON:
    return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-podnet", "gitCommit": "podnet",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "python" +
            platform.python_version(), "compiler": "cpython", "platform": "linux/amd64"}


def aggregated_type(accept: str) -> str | None:
    """The aggregated-discovery media type the Accept header asks for first, if any."""
    for part in accept.split(","):
        p = part.replace(" ", "")
        if "as=APIGroupDiscoveryList" in p and "g=apidiscovery.k8s.io" in p:
            if "v=v2beta1" in p:
                return AGGREGATED_V2BETA1
            if "v=v2" in p:
                return AGGREGATED_V2
    return None


def _resources_of(group: str, version: str) -> list[Resource]:
    return [r for r in ALL if r.group == group and r.version == version]


def _sub_kind(r: Resource, sub: str) -> tuple[str, str, str]:
    if sub == "binding":
        return ("", "v1", "Binding")
    return (r.group, r.version, r.kind)


def api_resource_list(group: str, version: str) -> JSON:
    gv = f"{group}/{version}" if group else version
    items: list[JSON] = []
    for r in _resources_of(group, version):
        item: JSON = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                      "verbs": verbs(r),
                      "storageVersionHash": hashlib.sha256(f"{gv}/{r.kind}".encode()).hexdigest()[:12]}
        if r.short_names:
            item["shortNames"] = list(r.short_names)
        if r.categories:
            item["categories"] = list(r.categories)
        items.append(item)
        for sub in r.subresources:
            g, v, kind = _sub_kind(r, sub)
            sub_item: JSON = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                              "kind": kind, "verbs": SUB_VERBS.get(sub, ["get"])}
            if g != r.group:
                sub_item["group"] = g
                sub_item["version"] = v
            items.append(sub_item)
    for _, _, plural, kind, singular in _reviews_of(group, version):
        items.append({"name": plural, "singularName": singular, "namespaced": False, "kind": kind,
                      "verbs": ["create"]})
    if gv == "v1":  # the legacy create-only bindings collection (POST namespaces/{ns}/bindings)
        items.append({"name": "bindings", "singularName": "binding", "namespaced": True, "kind": "Binding",
                      "verbs": ["create"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items}


def api_versions(server_address: str) -> JSON:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


# create-only review resources answered without storage (podnet has no authorization):
# (group, version, plural, kind, singular)
REVIEWS = (
    ("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", "selfsubjectaccessreview"),
    ("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", "selfsubjectrulesreview"),
    ("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", "selfsubjectreview"),
)


def all_group_versions() -> list[tuple[str, str]]:
    out = group_versions()
    for g, v, *_ in REVIEWS:
        if (g, v) not in out:
            out.append((g, v))
    return out


def review_kind(group: str, version: str, plural: str) -> str | None:
    return next((k for g, v, p, k, _ in REVIEWS if (g, v, p) == (group, version, plural)), None)


def _reviews_of(group: str, version: str) -> list[tuple[str, str, str, str, str]]:
    return [r for r in REVIEWS if (r[0], r[1]) == (group, version)]


def _group(name: str) -> JSON:
    versions = [{"groupVersion": f"{g}/{v}", "version": v} for g, v in all_group_versions() if g == name]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}


def api_group_list() -> JSON:
    names = sorted({g for g, _ in all_group_versions() if g})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(n) for n in names]}


def api_group(name: str) -> JSON | None:
    if name not in {g for g, _ in all_group_versions() if g}:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name)}


def _discovery_resource(r: Resource) -> JSON:
    out: JSON = {"resource": r.plural, "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                 "scope": "Namespaced" if r.namespaced else "Cluster", "singularResource": r.singular,
                 "verbs": verbs(r)}
    if r.short_names:
        out["shortNames"] = list(r.short_names)
    if r.categories:
        out["categories"] = list(r.categories)
    subs = []
    for sub in r.subresources:
        g, v, kind = _sub_kind(r, sub)
        subs.append({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": kind},
                     "verbs": SUB_VERBS.get(sub, ["get"])})
    if subs:
        out["subresources"] = subs
    return out


BINDINGS: JSON = {"resource": "bindings", "responseKind": {"group": "", "version": "v1", "kind": "Binding"},
                  "scope": "Namespaced", "singularResource": "binding", "verbs": ["create"]}


def aggregated(core: bool, media_type: str = AGGREGATED_V2) -> JSON:
    """APIGroupDiscoveryList: for /api (core: the group named "") or /apis (all named groups)."""
    groups: dict[str, list[str]] = {}
    for g, v in all_group_versions():
        if (g == "") == core:
            groups.setdefault(g, []).append(v)
    items = []
    for g, versions in groups.items():
        items.append({"metadata": {"name": g, "creationTimestamp": None}, "versions": [
            {"version": v, "resources": [_discovery_resource(r) for r in _resources_of(g, v)] + (
                [BINDINGS] if (g, v) == ("", "v1") else []) + [
                {"resource": p, "responseKind": {"group": g, "version": v, "kind": k}, "scope": "Cluster",
                 "singularResource": sg, "verbs": ["create"]} for _, _, p, k, sg in _reviews_of(g, v)],
             "freshness": "Current"} for v in versions]})
    api_version = "apidiscovery.k8s.io/v2beta1" if "v2beta1" in media_type else "apidiscovery.k8s.io/v2"
    return {"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items}


# ---------------------------------------------------------------- OpenAPI v3

def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _operation(r: Resource, verb: str) -> JSON:
    op: JSON = {"operationId": f"{verb}{r.kind}", "tags": [r.api_version],
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
                "responses": {"200": {"description": "OK"}}}
    if verb in ("patch", "put", "post"):
        op["parameters"] = [
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
        ]
    return op


def openapi_v3_document(group: str, version: str) -> JSON | None:
    resources = _resources_of(group, version)
    if not resources:
        return None
    paths: JSON = {}
    for r in resources:
        base = "/" + _gv_path(group, version) + ("/namespaces/{namespace}" if r.namespaced else "")
        paths[f"{base}/{r.plural}"] = {"get": _operation(r, "list"), "post": _operation(r, "post")}
        paths[f"{base}/{r.plural}/{{name}}"] = {"get": _operation(r, "get"), "put": _operation(r, "put"),
                                              "patch": _operation(r, "patch"), "delete": _operation(r, "delete")}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (podnet)", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": {}}}


def openapi_v3_root() -> JSON:
    paths = {}
    for g, v in group_versions():
        doc = openapi_v3_document(g, v)
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
        paths[_gv_path(g, v)] = {"serverRelativeURL": f"/openapi/v3/{_gv_path(g, v)}?hash={digest}"}
    return {"paths": paths}
