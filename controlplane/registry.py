"""The registry: Kubernetes write and read semantics on top of the store.

create / update (PUT, optimistic concurrency) / patch (merge, JSON, strategic, server-side
apply) / delete (with finalizers and namespace cascade) / pods/binding, `/status`
subresources, defaulting and validation (partner module `validation`), Service IP and
NodePort allocation (`allocators`), selectors (`selectors`). Every write is one store commit.
It raises `errors.APIError`s; the HTTP shell translates them into Status responses.
Lists and pages: `listing.py`; owner-reference garbage collection: `gc.py`.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from types import ModuleType
from typing import Any

import yaml

from controlplane import errors
from controlplane import objects as o
from controlplane.gc import collect_garbage
from controlplane.listing import ListPage, list_page
from controlplane.resources import ALL, NAMESPACES, NODES, PODS, SERVICES, Resource
from controlplane.schema import FieldCheck
from controlplane.state import ADDED, DELETED, MODIFIED, Entry, Key, WatchFilter, key_of, rkey
from controlplane.storage import Change, Store
from controlplane.validation import copy_json

__all__ = ["APPLY", "PATCH_TYPES", "FieldCheck", "ListPage", "Registry", "decode_json", "decode_yaml", "key_of",
           "partner", "rkey"]

log = logging.getLogger(__name__)
JSON = dict[str, Any]

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (MERGE, JSON_PATCH, STRATEGIC, APPLY)

# upstream AllowCreateOnUpdate: PUT to a missing object creates it for these kinds
CREATE_ON_UPDATE = {"Endpoints", "EndpointSlice"}
# upstream's NamespaceLifecycle admission refuses to delete these
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")


def partner(name: str) -> ModuleType | None:
    """A sibling module written by another engineer, or None while it does not exist yet."""
    try:
        return importlib.import_module(f"controlplane.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"controlplane.{name}":
            return None
        raise


def propagation_of(options: JSON) -> str:
    policy = options.get("propagationPolicy")
    if policy in (None, ""):
        return "Orphan" if options.get("orphanDependents") is True else "Background"
    if policy not in ("Background", "Foreground", "Orphan"):
        raise errors.BadRequest(f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                                '"Background", "Foreground", "Orphan"')
    return str(policy)


def decode_json(body: bytes, what: str = "request body") -> Any:
    try:
        return json.loads(body.decode("utf-8") if body else "null")
    except UnicodeDecodeError:
        raise errors.BadRequest(f"the {what} is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise errors.BadRequest(f"the {what} is not valid JSON: {exc}") from None


def decode_yaml(body: bytes) -> Any:
    try:
        return yaml.safe_load(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise errors.BadRequest(f"the request body is not valid YAML or JSON: {exc}") from None


class Registry:
    def __init__(self, store: Store, service_cidr: str = "10.96.0.0/12",
                 node_port_range: tuple[int, int] = (30000, 32767)) -> None:
        self.store = store
        self.service_cidr = service_cidr
        self.node_port_range = node_port_range
        self.allocator: Any = None
        self.skip_validation = False  # internal bootstrap writes (e.g. the loopback kubernetes Endpoints)
        allocators = partner("allocators")
        if allocators is not None:
            self.allocator = allocators.ServiceAllocator(service_cidr, node_port_range)
            self.allocator.load([e.obj for e in store.index.entries(rkey(SERVICES))])
        else:
            log.warning("controlplane.allocators not available: Services get no ClusterIP/NodePort")

    # ------------------------------------------------------------------ reads

    def get(self, res: Resource, namespace: str | None, name: str) -> Entry:
        entry = self.store.get(key_of(res, namespace, name))
        if entry is None:
            raise errors.NotFound.of(res.plural, name, res.group)
        return entry

    def watch_filter(self, res: Resource, namespace: str | None, label_selector: str = "",
                     field_selector: str = "") -> WatchFilter:
        label = field = None
        if label_selector.strip():
            sel = partner("selectors")
            if sel is None:
                raise errors.BadRequest("label selectors are not supported yet")
            label = sel.parse_label_selector(label_selector)
        if field_selector.strip():
            sel = partner("selectors")
            if sel is None:
                raise errors.BadRequest("field selectors are not supported yet")
            field = sel.parse_field_selector(field_selector, res)
        return WatchFilter(rkey(res), namespace if res.namespaced else None, label, field)

    def list_objects(self, res: Resource, namespace: str | None, label_selector: str = "",
                     field_selector: str = "") -> tuple[list[Entry], int]:
        """The whole current (durable) list."""
        page = self.list_page(res, namespace, label_selector, field_selector)
        return page.items, page.rv

    def list_page(self, res: Resource, namespace: str | None, label_selector: str = "", field_selector: str = "",
                  *, limit: int = 0, continue_token: str = "", resource_version: str = "",
                  match: str = "") -> ListPage:
        """A list as upstream serves it (see `listing.list_page`)."""
        filt = self.watch_filter(res, namespace, label_selector, field_selector)
        return list_page(self.store, filt, limit=limit, continue_token=continue_token,
                         resource_version=resource_version, match=match)

    # ------------------------------------------------------------------ helpers

    def _require_namespace(self, res: Resource, namespace: str | None) -> None:
        if res.namespaced and namespace is not None:
            if self.store.latest(key_of(NAMESPACES, None, namespace)) is None:
                raise errors.NotFound.of("namespaces", namespace)

    def _default_validate(self, res: Resource, obj: JSON, old: JSON | None) -> JSON:
        validation = partner("validation")
        if validation is None:
            return obj
        obj = validation.default_object(res.kind, obj)
        o.fill_zero_values(res.kind, obj)
        if not self.skip_validation:
            validation.validate_object(res.kind, obj, old)
        return obj  # type: ignore[no-any-return]

    def _plan_service(self, res: Resource, new: JSON, old: JSON | None) -> tuple[JSON, Any]:
        if res is not SERVICES or self.allocator is None:
            return new, None
        planned, plan = self.allocator.plan(new, old)
        return planned, plan

    def _commit(self, changes: list[Change], plan: Any = None) -> None:
        """Submit as one atomic unit; the HTTP layer acknowledges after `store.wait_durable`."""
        self.store.submit(changes)
        if plan is not None:
            self.allocator.commit(plan)

    # ------------------------------------------------------------------ create

    def create(self, res: Resource, namespace: str | None, body: Any, *, dry_run: bool = False,
               fields: FieldCheck | None = None) -> JSON:
        obj = o.check_type(res, body)
        o.check_namespace(res, obj, namespace)
        m = o.meta(obj)
        if m.get("resourceVersion"):
            raise errors.BadRequest("resourceVersion should not be set on objects to be created")
        name = m.get("name") or ""
        generate = m.get("generateName") or ""
        if not name and not generate:
            raise errors.Invalid.of(res.kind, "", [errors.Cause(
                "metadata.name", "name or generateName is required", "FieldValueRequired")])
        self._require_namespace(res, namespace)
        if not name:
            for _ in range(8):
                m["name"] = generate + o.random_suffix()
                if self.store.latest(key_of(res, namespace, m["name"])) is None:
                    break
        return self._create(res, namespace, obj, dry_run, fields)

    def _create(self, res: Resource, namespace: str | None, obj: JSON, dry_run: bool,
                fields: FieldCheck | None = None) -> JSON:
        if fields is not None:
            fields.check(res, obj, None)
        o.prepare_create(res, obj)
        obj = self._default_validate(res, obj, None)
        o.bump_generation(obj, None)
        key = key_of(res, namespace, o.meta(obj)["name"])
        if self.store.latest(key) is not None:
            raise errors.AlreadyExists.of(res.plural, key.name, res.group)
        obj, plan = self._plan_service(res, obj, None)
        if dry_run:
            return obj
        self._commit([Change(key, ADDED, obj)], plan)
        return obj

    # ------------------------------------------------------------------ update

    def update(self, res: Resource, namespace: str | None, name: str, body: Any, *,
               subresource: str | None = None, dry_run: bool = False,
               fields: FieldCheck | None = None) -> tuple[JSON, bool]:
        """PUT; returns (object, created)."""
        obj = o.check_type(res, body)
        o.check_name(obj, name)
        o.check_namespace(res, obj, namespace)
        entry = self.store.latest(key_of(res, namespace, name))
        if entry is None:
            if res.kind in CREATE_ON_UPDATE and subresource is None:
                self._require_namespace(res, namespace)
                o.meta(obj).pop("resourceVersion", None)
                return self._create(res, namespace, obj, dry_run, fields), True
            raise errors.NotFound.of(res.plural, name, res.group)
        return self._update(res, entry, obj, subresource, dry_run, fields), False

    def _update(self, res: Resource, entry: Entry, new: JSON, subresource: str | None, dry_run: bool,
                fields: FieldCheck | None = None) -> JSON:
        old = entry.obj
        if fields is not None:
            fields.check(res, new, old)
        m = o.meta(new)
        rv = m.get("resourceVersion")
        if rv not in (None, "") and str(rv) != str(entry.rv):
            raise errors.Conflict.modified(res.plural, m["name"], res.group)
        uid = m.get("uid")
        if uid and uid != (old.get("metadata") or {}).get("uid"):
            raise errors.Conflict.precondition(res.plural, m["name"], res.group, "UID", uid,
                                               (old.get("metadata") or {}).get("uid"))
        if subresource == "status":
            new = o.for_status_write(res, new, old)
        else:
            new = o.for_main_write(res, new, old)
        o.keep_server_meta(new, old)
        if res is NAMESPACES and subresource is None:
            new["spec"] = copy_json(old.get("spec") or {})  # spec.finalizers change only via /finalize
        new = self._default_validate(res, new, old)
        o.bump_generation(new, old)
        key = key_of(res, o.meta(new).get("namespace"), o.meta(new)["name"])
        if self._finalized(old, new):
            if dry_run:
                return new
            return self._delete_now(res, key, new)
        new, plan = self._plan_service(res, new, old)
        if o.same_content(new, old):
            return copy_json(old)
        if dry_run:
            return new
        self._commit([Change(key, MODIFIED, new)], plan)
        return new

    # ------------------------------------------------------------------ patch

    def patch(self, res: Resource, namespace: str | None, name: str, patch_type: str, body: bytes, *,
              subresource: str | None = None, dry_run: bool = False, field_manager: str = "",
              force: bool = False, fields: FieldCheck | None = None) -> tuple[JSON, bool]:
        """PATCH; returns (object, created)."""
        patch = partner("patch")
        if patch is None:
            raise errors.UnsupportedMediaType(f"PATCH is not available yet: {patch_type}")
        entry = self.store.latest(key_of(res, namespace, name))
        if patch_type == APPLY:
            if not field_manager:
                raise errors.BadRequest("PATCH with application/apply-patch+yaml requires the fieldManager "
                                        "parameter")
            applied = o.check_type(res, decode_yaml(body))
            o.check_name(applied, name)
            o.check_namespace(res, applied, namespace)
            if entry is None:
                if subresource is not None:
                    raise errors.NotFound.of(res.plural, name, res.group)
                self._require_namespace(res, namespace)
                obj = patch.apply_server_side(None, applied, res.kind, field_manager, force)
                o.meta(obj).pop("resourceVersion", None)
                return self._create(res, namespace, obj, dry_run, fields), True
            new = patch.apply_server_side(copy_json(entry.obj), applied, res.kind, field_manager, force)
        else:
            if entry is None:
                raise errors.NotFound.of(res.plural, name, res.group)
            doc = decode_json(body, "patch")
            old = entry.obj  # the patch functions are pure: they return a new object, never alias `old`
            if patch_type == MERGE:
                new = patch.apply_merge_patch(old, doc)
            elif patch_type == JSON_PATCH:
                new = patch.apply_json_patch(old, doc)
            elif patch_type == STRATEGIC:
                new = patch.apply_strategic_merge_patch(old, doc, res.kind)
            else:
                raise errors.UnsupportedMediaType(f"the body of the request was in an unknown format - "
                                                  f"accepted media types include: {', '.join(PATCH_TYPES)}")
        new = o.check_type(res, new, "patched object")
        if o.meta(new).get("name") != name:
            raise errors.BadRequest(f"the patch may not change the name: {o.meta(new).get('name')!r}")
        o.check_namespace(res, new, namespace)
        return self._update(res, entry, new, subresource, dry_run, fields), False

    # ------------------------------------------------------------------ delete

    def delete(self, res: Resource, namespace: str | None, name: str, options: JSON | None = None, *,
               dry_run: bool = False) -> JSON:
        key = key_of(res, namespace, name)
        propagation = propagation_of(options or {})
        entry = self.store.latest(key)
        if entry is None:
            raise errors.NotFound.of(res.plural, name, res.group)
        pre = (options or {}).get("preconditions") or {}
        old_meta = entry.obj.get("metadata") or {}
        if pre.get("uid") and pre["uid"] != old_meta.get("uid"):
            raise errors.Conflict.precondition(res.plural, name, res.group, "UID", pre["uid"], old_meta.get("uid"))
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != str(entry.rv):
            raise errors.Conflict.precondition(res.plural, name, res.group, "ResourceVersion",
                                               pre["resourceVersion"], entry.rv)
        if res is NAMESPACES and name in PROTECTED_NAMESPACES:
            raise errors.Forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                                   name=name, kind="namespaces")
        if dry_run:
            return copy_json(entry.obj)
        if res is NAMESPACES:
            return self._delete_namespace(entry)
        grace = 0
        if res is PODS:
            node = ((entry.obj.get("spec") or {}).get("nodeName")) or ""
            node_exists = bool(node) and self.store.latest(key_of(NODES, None, node)) is not None
            grace = o.pod_grace(entry.obj, options or {}, node_exists)
        if grace > 0:
            marked = o.mark_graceful(entry.obj, grace)
            if marked is None:
                return copy_json(entry.obj)
            self._commit([Change(key, MODIFIED, marked)])
            return marked
        if old_meta.get("finalizers"):
            if old_meta.get("deletionTimestamp") and old_meta.get("deletionGracePeriodSeconds") in (None, 0):
                return copy_json(entry.obj)
            marked = o.terminating(entry.obj)
            if res is PODS:
                o.meta(marked)["deletionGracePeriodSeconds"] = 0
            self._commit([Change(key, MODIFIED, marked)])
            return marked
        return self._delete_now(res, key, copy_json(entry.obj), propagation)

    @staticmethod
    def _finalized(old: JSON, new: JSON) -> bool:
        """An update that removed the last finalizer of an object being deleted (with no grace
        period left to wait for) completes the deletion."""
        om, nm = old.get("metadata") or {}, new.get("metadata") or {}
        return bool(om.get("finalizers")) and not nm.get("finalizers") and bool(nm.get("deletionTimestamp")) \
            and not nm.get("deletionGracePeriodSeconds")

    def sweep_terminating_pods(self, margin: float = 30.0) -> int:
        """Delete pods whose graceful deletion ran out `margin` seconds ago with nobody (no node
        agent) finishing it: stands in for the node lifecycle controller and pod GC."""
        count = 0
        cutoff = time.time() - margin
        for entry in list(self.store.index.entries(rkey(PODS))):
            m = entry.obj.get("metadata") or {}
            if not m.get("deletionTimestamp") or m.get("finalizers"):
                continue
            when = o.parse_time(m["deletionTimestamp"])
            key = key_of(PODS, m.get("namespace"), m["name"])
            if when is None or when > cutoff or self.store.latest(key) is not entry:
                continue
            log.info("pod %s/%s: graceful deletion expired; deleting", m.get("namespace"), m.get("name"))
            self._delete_now(PODS, key, copy_json(entry.obj))
            count += 1
        return count

    def _delete_now(self, res: Resource, key: Key, final: JSON, propagation: str = "Background") -> JSON:
        """Delete now, with the owner-reference cascade (garbage collection) in the same transaction."""
        changes = [Change(key, DELETED, final)] + collect_garbage(self.store, key, final, propagation == "Orphan")
        self._commit(changes)
        if self.allocator is not None:
            for ch in changes:
                if ch.type == DELETED and ch.key.resource == rkey(SERVICES):
                    self.allocator.release(ch.obj)
        return final

    def _delete_namespace(self, entry: Entry) -> JSON:
        """Mark Terminating, delete everything in it, delete it: one transaction."""
        ns = o.meta(entry.obj)["name"]
        marked = o.terminating(entry.obj)
        changes = [Change(key_of(NAMESPACES, None, ns), MODIFIED, marked)]
        services: list[JSON] = []
        for res in ALL:
            if not res.namespaced:
                continue
            for e in self.store.latest_entries(rkey(res), ns):
                final = copy_json(e.obj)
                changes.append(Change(key_of(res, ns, o.meta(final)["name"]), DELETED, final))
                if res is SERVICES:
                    services.append(final)
        changes.append(Change(key_of(NAMESPACES, None, ns), DELETED, copy_json(marked)))
        self._commit(changes)
        if self.allocator is not None:
            for svc in services:
                self.allocator.release(svc)
        return marked

    # ------------------------------------------------------------------ pods/binding

    def bind(self, namespace: str, name: str, body: Any, *, dry_run: bool = False) -> JSON:
        if not isinstance(body, dict) or body.get("kind") not in (None, "", "Binding"):
            raise errors.BadRequest("the body of pods/binding must be a Binding")
        target = body.get("target") or {}
        node = target.get("name") if isinstance(target, dict) else None
        if not node or not isinstance(node, str):
            raise errors.Invalid.of("Binding", name, [errors.Cause("target.name", "Required value",
                                                                   "FieldValueRequired")])
        key = key_of(PODS, namespace, name)
        entry = self.store.latest(key)
        if entry is None:
            raise errors.NotFound.of("pods", name)
        pod = copy_json(entry.obj)
        spec = pod.setdefault("spec", {})
        if spec.get("nodeName"):
            raise errors.Conflict(f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is '
                                  f'already assigned to node "{spec["nodeName"]}"', name=name, kind="pods/binding")
        if o.meta(pod).get("deletionTimestamp"):
            raise errors.Conflict(f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is '
                                  "being deleted, cannot be assigned to a host", name=name, kind="pods/binding")
        spec["nodeName"] = node
        status = pod.setdefault("status", {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                      "lastTransitionTime": o.now()})
        status["conditions"] = conds
        if not dry_run:
            self._commit([Change(key, MODIFIED, pod)])
        return o.success_status(201)
