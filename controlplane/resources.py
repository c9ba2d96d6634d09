"""The resource registry: one place that names every API resource podnet serves.

Used by the server (routing, discovery, storage keys), the client (URLs) and tests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    group: str  # "" for core
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def prefix(self) -> str:
        """URL prefix of the group-version: /api/v1 or /apis/<group>/<version>."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path of a collection or an object (namespace None = all namespaces)."""
        parts = [self.prefix()]
        if self.namespaced and namespace is not None:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
            if subresource:
                parts.append(subresource)
        return "/".join(parts)


VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

NAMESPACES = Resource("", "v1", "namespaces", "Namespace", "namespace", False, ("ns",), (), ("status",))
NODES = Resource("", "v1", "nodes", "Node", "node", False, ("no",), (), ("status",))
PODS = Resource("", "v1", "pods", "Pod", "pod", True, ("po",), ("all",), ("status", "binding"))
SERVICES = Resource("", "v1", "services", "Service", "service", True, ("svc",), ("all",), ("status",))
ENDPOINTS = Resource("", "v1", "endpoints", "Endpoints", "endpoints", True, ("ep",), ())
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", "endpointslice", True)

ALL: tuple[Resource, ...] = (NAMESPACES, NODES, PODS, SERVICES, ENDPOINTS, ENDPOINTSLICES)

BY_KIND: dict[str, Resource] = {r.kind: r for r in ALL}
BY_PLURAL: dict[tuple[str, str], Resource] = {(r.group, r.plural): r for r in ALL}


def group_versions() -> list[tuple[str, str]]:
    """(group, version) pairs served, core first."""
    seen: list[tuple[str, str]] = []
    for r in ALL:
        if (r.group, r.version) not in seen:
            seen.append((r.group, r.version))
    return seen


def lookup(group: str, plural: str) -> Resource | None:
    return BY_PLURAL.get((group, plural))
