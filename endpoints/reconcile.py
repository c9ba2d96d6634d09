"""The pure core: `reconcile(service, pods, existing) -> Desired`.

Given one Service (or None when it is gone), the pods of its namespace and the objects that
exist for it (its Endpoints and the EndpointSlices labelled with its name), compute what must
be written: EndpointSlices to create / update / delete with minimal churn (endpoints/slices.py)
and the Endpoints object to create / update / delete (endpoints/subsets.py). Nothing is written
when nothing changed (semantic comparison, order ignored).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

from controlplane.model import Pod, Service
from endpoints.core import (
    DEFAULT_MAX_ENDPOINTS_PER_SLICE, ENDPOINTS_MANAGED_BY_CONTROLLER, ENDPOINTS_MANAGED_BY_LABEL, JSON,
    MANAGED_BY_CONTROLLER, MANAGED_BY_LABEL, MAX_ENDPOINTS_CAPACITY, SERVICE_NAME_LABEL, EndpointsError,
    is_managed, pod_selected, validate_max_per_slice,
)
from endpoints.slices import reconcile_slices
from endpoints.subsets import reconcile_endpoints

__all__ = ["Action", "Desired", "EndpointsError", "Existing", "reconcile", "slice_is_managed",
           "endpoints_is_managed"]


class Action(str, enum.Enum):
    NONE = "none"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True)
class Existing:
    """What exists for one Service: its Endpoints object and the EndpointSlices labelled with its name."""

    endpoints: JSON | None = None
    slices: tuple[JSON, ...] = ()


@dataclass(frozen=True)
class Desired:
    """The writes that make the objects true, plus the resulting state (for callers and tests)."""

    endpoints_action: Action = Action.NONE
    endpoints: JSON | None = None  # the object to create/update, or the one to delete
    create: tuple[JSON, ...] = ()  # EndpointSlices to create (metadata.generateName "<svc>-")
    update: tuple[JSON, ...] = ()  # EndpointSlices to replace (PUT, with their resourceVersion)
    delete: tuple[JSON, ...] = ()  # existing EndpointSlices to delete
    unchanged: tuple[JSON, ...] = field(default=(), repr=False)  # existing slices left alone

    @property
    def changed(self) -> bool:
        return bool(self.endpoints_action is not Action.NONE or self.create or self.update or self.delete)

    @property
    def slices(self) -> tuple[JSON, ...]:
        """Every EndpointSlice of the Service once the plan is applied."""
        return self.unchanged + self.update + self.create


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def slice_is_managed(obj: Mapping[str, Any]) -> bool:
    labels = _labels(obj)
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY_CONTROLLER and labels.get(SERVICE_NAME_LABEL))


def endpoints_is_managed(obj: Mapping[str, Any]) -> bool:
    labels = _labels(obj)
    return bool(labels.get(ENDPOINTS_MANAGED_BY_LABEL) == ENDPOINTS_MANAGED_BY_CONTROLLER)


def orphan_plan(existing: Existing) -> Desired:
    """Delete what this controller manages for a Service that is gone or no longer selects pods."""
    endpoints = existing.endpoints
    managed_ep = endpoints is not None and endpoints_is_managed(endpoints)
    return Desired(endpoints_action=Action.DELETE if managed_ep else Action.NONE,
                   endpoints=endpoints if managed_ep else None,
                   delete=tuple(s for s in existing.slices if slice_is_managed(s)))


def reconcile(service: Service | None, pods: Iterable[Pod], existing: Existing = Existing(), *,
              max_endpoints_per_slice: int = DEFAULT_MAX_ENDPOINTS_PER_SLICE,
              trigger_time: datetime | None = None, zones: Mapping[str, str] | None = None,
              max_endpoints_capacity: int = MAX_ENDPOINTS_CAPACITY) -> Desired:
    """Compute the writes for one Service.

    `pods` may be any pods; only those in the Service's namespace matching its selector count.
    `existing.slices` should hold the slices labelled with the Service's name; only those managed
    by this controller are touched. `trigger_time` (the time of the pod/service change that
    triggered this sync) is stamped as endpoints.kubernetes.io/last-change-trigger-time on every
    object written; None removes the annotation (as upstream does when nothing triggered).
    `zones` maps node name -> topology zone for EndpointSlice `zone`.
    """
    max_per_slice = validate_max_per_slice(max_endpoints_per_slice)
    if service is None or not is_managed(service):
        return orphan_plan(existing)
    selected = sorted((p for p in pods if pod_selected(service, p)), key=lambda p: p.name)
    managed = [s for s in existing.slices if slice_is_managed(s)]
    slices = reconcile_slices(service, selected, managed, max_per_slice=max_per_slice,
                              trigger_time=trigger_time, zones=dict(zones or {}))
    endpoints = reconcile_endpoints(service, selected, existing.endpoints, trigger_time=trigger_time,
                                    capacity=max_endpoints_capacity)
    if endpoints is None:
        action = Action.NONE
    else:
        action = Action.CREATE if existing.endpoints is None else Action.UPDATE
    return Desired(endpoints_action=action, endpoints=endpoints, create=tuple(slices.create),
                   update=tuple(slices.update), delete=tuple(slices.delete), unchanged=tuple(slices.unchanged))
