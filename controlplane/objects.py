"""Pure helpers on API object dicts used by the registry: metadata, status handling, names.

No I/O; every function returns new values or works on a copy the caller owns.
"""

from __future__ import annotations

import calendar
import random
import time
import uuid
from typing import Any

from controlplane import errors
from controlplane.resources import Resource
from controlplane.validation import copy_json

JSON = dict[str, Any]

NAME_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # upstream's utilrand alphabet (no vowels, no 0/1/3)

# metadata fields the server owns: kept from the stored object on update
SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
               "selfLink")


def now(offset: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


def parse_time(text: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp as the server writes them (UTC, "Z")."""
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return None


def new_uid() -> str:
    return str(uuid.uuid4())


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(NAME_SUFFIX_CHARS) for _ in range(n))


def meta(obj: JSON) -> JSON:
    m = obj.get("metadata")
    if m is None:
        m = obj["metadata"] = {}
    if not isinstance(m, dict):
        raise errors.BadRequest("metadata must be an object")
    return m


def has_status(res: Resource) -> bool:
    return "status" in res.subresources


def check_type(res: Resource, obj: Any, what: str = "body") -> JSON:
    """The request body must be an object of this resource's kind (missing kind/apiVersion
    default to the URL's, as the upstream decoder does)."""
    if not isinstance(obj, dict):
        raise errors.BadRequest(f"the {what} must be a JSON object of kind {res.kind}, got {type(obj).__name__}")
    kind = obj.get("kind")
    api_version = obj.get("apiVersion")
    if kind in (None, ""):
        obj["kind"] = res.kind
    elif kind != res.kind:
        raise errors.BadRequest(f"the kind in the data ({kind}) does not match the expected kind ({res.kind})")
    if api_version in (None, ""):
        obj["apiVersion"] = res.api_version
    elif api_version != res.api_version:
        raise errors.BadRequest(f"the API version in the data ({api_version}) does not match the expected "
                                f"API version ({res.api_version})")
    return obj


def check_namespace(res: Resource, obj: JSON, namespace: str | None) -> None:
    m = meta(obj)
    if not res.namespaced:
        m.pop("namespace", None)
        return
    body_ns = m.get("namespace")
    if body_ns not in (None, "") and namespace is not None and body_ns != namespace:
        raise errors.BadRequest("the namespace of the provided object does not match the namespace sent on the "
                                "request")
    if namespace is None:
        raise errors.BadRequest(f"{res.plural} must be created in a namespace")
    m["namespace"] = namespace


def check_name(obj: JSON, name: str) -> None:
    body_name = meta(obj).get("name")
    if body_name not in (None, "") and body_name != name:
        raise errors.BadRequest(f"the name of the object ({body_name}) does not match the name on the URL ({name})")
    meta(obj)["name"] = name


def keep_server_meta(new: JSON, old: JSON) -> None:
    m, om = meta(new), old.get("metadata") or {}
    for k in SERVER_META:
        if k in om:
            m[k] = om[k]
        else:
            m.pop(k, None)


def strip_rv(obj: JSON) -> JSON:
    out = dict(obj)
    out["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"}
    return out


def same_content(a: JSON, b: JSON) -> bool:
    """Equal apart from resourceVersion (an update that changes nothing stores nothing)."""
    return strip_rv(a) == strip_rv(b)


def for_status_write(res: Resource, new: JSON, old: JSON) -> JSON:
    """A write to /status: the stored object with only .status taken from the request."""
    out = copy_json(old)
    if "status" in new:
        out["status"] = new["status"]
    else:
        out.pop("status", None)
    m = meta(out)
    rv = (new.get("metadata") or {}).get("resourceVersion")
    if rv:
        m["resourceVersion"] = rv
    else:
        m.pop("resourceVersion", None)
    return out


def for_main_write(res: Resource, new: JSON, old: JSON | None) -> JSON:
    """A write to the main path of a resource with a status subresource ignores .status."""
    if has_status(res) and old is not None:
        if "status" in old:
            new["status"] = copy_json(old["status"])
        else:
            new.pop("status", None)
    return new


def bump_generation(new: JSON, old: JSON | None) -> None:
    m = meta(new)
    if old is None:
        m["generation"] = 1
        return
    gen = int((old.get("metadata") or {}).get("generation") or 1)
    if new.get("spec") != old.get("spec"):
        gen += 1
    m["generation"] = gen


def prepare_create(res: Resource, obj: JSON) -> None:
    """Server-set fields of a new object."""
    m = meta(obj)
    m["uid"] = new_uid()
    m["creationTimestamp"] = now()
    for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
        m.pop(k, None)
    if res.kind == "Namespace":
        m.setdefault("labels", {})["kubernetes.io/metadata.name"] = m["name"]
        spec = obj.setdefault("spec", {})
        spec.setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}
    elif res.kind == "Pod":
        status = obj.get("status")
        if not isinstance(status, dict):
            status = obj["status"] = {}
        status.setdefault("phase", "Pending")
        if "qosClass" not in status:
            status["qosClass"] = pod_qos(obj.get("spec") or {})
    elif res.kind == "Service" and not isinstance(obj.get("status"), dict):
        obj["status"] = {"loadBalancer": {}}


def pod_grace(pod: JSON, options: JSON, node_exists: bool) -> int:
    """Seconds of graceful deletion for a pod (upstream CheckGracefulDelete): the DeleteOptions'
    gracePeriodSeconds, else spec.terminationGracePeriodSeconds (30); 0 for unscheduled or finished
    pods, and for pods bound to a node that does not exist (what the pod GC would do)."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    grace = options.get("gracePeriodSeconds")
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds")
    try:
        seconds = 30 if grace is None else int(grace)
    except (TypeError, ValueError):
        raise errors.BadRequest(f"invalid gracePeriodSeconds: {grace!r}") from None
    if seconds < 0:
        seconds = 1
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed") or not node_exists:
        return 0
    return seconds


def mark_graceful(obj: JSON, grace: int) -> JSON | None:
    """The object marked for deletion in `grace` seconds, or None when an earlier mark stands."""
    m = obj.get("metadata") or {}
    current = m.get("deletionGracePeriodSeconds")
    if m.get("deletionTimestamp") and current is not None and int(current) <= grace:
        return None
    out = copy_json(obj)
    om = meta(out)
    om["deletionTimestamp"] = now(grace)
    om["deletionGracePeriodSeconds"] = grace
    if "generation" in om:
        om["generation"] = int(om["generation"]) + 1
    return out


QOS_RESOURCES = ("cpu", "memory")


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _nonzero(value: Any) -> bool:
    return str(value).strip() not in ("", "0", "0m", "0Mi", "0Gi", "0Ki", "0M", "0G", "0k")


def pod_qos(spec: JSON) -> str:
    """status.qosClass as upstream computes it (GetPodQOS): BestEffort without any cpu/memory
    requests or limits, Guaranteed when every container limits both and requests equal limits,
    else Burstable."""
    containers = [c for key in ("initContainers", "containers") for c in spec.get(key) or [] if isinstance(c, dict)]
    any_set = False
    guaranteed = bool(containers)
    for c in containers:
        res = _dict(c.get("resources"))
        requests = {k: v for k, v in _dict(res.get("requests")).items() if k in QOS_RESOURCES and _nonzero(v)}
        limits = {k: v for k, v in _dict(res.get("limits")).items() if k in QOS_RESOURCES and _nonzero(v)}
        any_set = any_set or bool(requests) or bool(limits)
        if set(limits) != set(QOS_RESOURCES) or any(str(requests.get(k, limits[k])) != str(limits[k])
                                                       for k in QOS_RESOURCES):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


NODE_INFO_FIELDS = ("machineID", "systemUUID", "bootID", "kernelVersion", "osImage", "containerRuntimeVersion",
                    "kubeletVersion", "kubeProxyVersion", "operatingSystem", "architecture")


def fill_zero_values(kind: str, obj: JSON) -> None:
    """Fields upstream always serializes (Go zero values without omitempty) that typed clients
    require: a Node's status.nodeInfo strings (the Python client rejects a Node without them)."""
    if kind == "Node":
        status = obj.get("status")
        if isinstance(status, dict) and isinstance(status.get("nodeInfo"), dict):
            for f in NODE_INFO_FIELDS:
                status["nodeInfo"].setdefault(f, "")


def terminating(obj: JSON) -> JSON:
    out = copy_json(obj)
    m = meta(out)
    m.setdefault("deletionTimestamp", now())
    m.setdefault("deletionGracePeriodSeconds", 0)
    if out.get("kind") == "Namespace":
        out.setdefault("status", {})["phase"] = "Terminating"
    return out


def success_status(code: int = 200, details: JSON | None = None) -> JSON:
    body: JSON = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}
    if details:
        body["details"] = details
    return body
