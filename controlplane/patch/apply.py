"""Simplified server-side apply (application/apply-patch+yaml) and managedFields bookkeeping
(FieldsV1 field sets, `record_update` for PUT/PATCH writers)."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from controlplane import errors
from controlplane.patch.strategic import _SMP, ListMeta, _dict_get, apply_strategic_merge_patch, list_meta
from controlplane.validation import JSON, copy_json

FieldPath = tuple[str, ...]  # ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}', "f:name")

# upstream strips these from managed field sets
_STRIPPED = {("f:apiVersion",), ("f:kind",), ("f:status",), ("f:metadata", "f:name"),
             ("f:metadata", "f:namespace"), ("f:metadata", "f:uid"), ("f:metadata", "f:resourceVersion"),
             ("f:metadata", "f:creationTimestamp"), ("f:metadata", "f:generation"),
             ("f:metadata", "f:managedFields"), ("f:metadata", "f:selfLink"),
             ("f:metadata", "f:deletionTimestamp"), ("f:metadata", "f:deletionGracePeriodSeconds")}
_IDENTITY = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink",
             "deletionTimestamp", "deletionGracePeriodSeconds")

# list-map keys of keyed lists (the associative keys SSA uses; SMP merges on the first only)
_EXTRA_LIST_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("spec", "ports"): ("port", "protocol"),
    ("spec", "containers", "[]", "ports"): ("containerPort", "protocol"),
    ("spec", "initContainers", "[]", "ports"): ("containerPort", "protocol"),
}


def _meta_dict(obj: JSON) -> JSON:
    """obj["metadata"] as a dict (a non-object metadata is replaced: validation reports names)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _item_key(kind: str, path: tuple[str, ...], meta: ListMeta, item: Any) -> str:
    if not meta.key:
        return "v:" + json.dumps(item, sort_keys=True, separators=(",", ":"))
    keys = _EXTRA_LIST_KEYS.get(path, (meta.key,)) if kind in ("Service", "Pod") else (meta.key,)
    values = {k: _dict_get(item, k) for k in keys}
    if "protocol" in values and values["protocol"] is None:
        values["protocol"] = "TCP"
    return "k:" + json.dumps(values, sort_keys=True, separators=(",", ":"))


_EXISTS = object()  # the value recorded for a keyed list item's "." (it exists)


def field_values(obj: Any, kind: str) -> dict[FieldPath, Any]:
    """Every leaf field path `obj` sets (managedFields FieldsV1 notation) with its value."""
    out: dict[FieldPath, Any] = {}
    _walk_fields(obj, kind, (), (), out)
    return out


def _walk_fields(obj: Any, kind: str, path: tuple[str, ...], prefix: FieldPath, out: dict[FieldPath, Any]) -> None:
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            if k.startswith("$"):
                continue
            sub = prefix + (f"f:{k}",)
            if sub not in _STRIPPED:
                _walk_fields(v, kind, path + (k,), sub, out)
    elif isinstance(obj, list) and obj and (meta := list_meta(kind, path)) is not None:
        for item in obj:
            ikey = prefix + (_item_key(kind, path, meta, item),)
            if meta.key and isinstance(item, dict):
                out[ikey + (".",)] = _EXISTS
                _walk_fields(item, kind, path + ("[]",), ikey, out)
            else:
                out[ikey] = item
    elif prefix:
        out[prefix] = obj


def field_set(obj: Any, kind: str) -> set[FieldPath]:
    """The leaf field paths `obj` sets, in managedFields (FieldsV1) notation."""
    return set(field_values(obj, kind))


def encode_fields(paths: set[FieldPath]) -> JSON:
    root: JSON = {}
    for p in sorted(paths):
        cur = root
        for part in p:
            cur = cur.setdefault(part, {})
    return root


def decode_fields(tree: Any, prefix: FieldPath = ()) -> set[FieldPath]:
    out: set[FieldPath] = set()
    if not isinstance(tree, dict) or not tree:
        return {prefix} if prefix else out
    for k, v in tree.items():
        out |= decode_fields(v, prefix + (k,))
    return out


def _resolve(obj: Any, p: FieldPath, kind: str) -> tuple[Any, bool]:
    """The value at field path `p` in obj, and whether it exists."""
    cur: Any = obj
    path: tuple[str, ...] = ()
    for part in p:
        if part == ".":
            return cur, True
        if part.startswith("f:"):
            if not isinstance(cur, dict) or part[2:] not in cur:
                return None, False
            cur, path = cur[part[2:]], path + (part[2:],)
        else:
            meta = list_meta(kind, path)
            if not isinstance(cur, list) or meta is None:
                return None, False
            found = [x for x in cur if _item_key(kind, path, meta, x) == part]
            if not found:
                return None, False
            cur, path = found[0], path + ("[]",)
    return cur, True


def _remove_path(obj: Any, p: FieldPath, kind: str) -> None:
    if not p:
        return
    parent, ok = _resolve(obj, p[:-1], kind)
    if not ok:
        return
    last = p[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif isinstance(parent, list):
        path = tuple(x[2:] if x.startswith("f:") else "[]" for x in p[:-1])
        meta = list_meta(kind, path)
        if meta is not None:
            parent[:] = [x for x in parent if _item_key(kind, path, meta, x) != last]


def _remove_paths(obj: Any, paths: set[FieldPath], kind: str) -> None:
    """Remove list items whose "." marker is in `paths` (deepest first), then the leaf fields
    that are not inside a removed item."""
    items = sorted({p[:-1] for p in paths if p and p[-1] == "."}, key=len, reverse=True)
    for p in items:
        _remove_path(obj, p, kind)
    for p in sorted(paths, key=len, reverse=True):
        if p[-1] != "." and not any(p[:len(i)] == i for i in items):
            _remove_path(obj, p, kind)


def _ssa_conflict(conflicts: list[tuple[str, FieldPath]]) -> errors.Conflict:
    def dotted(p: FieldPath) -> str:
        return "".join(f".{x[2:]}" if x.startswith("f:") else f"[{x[2:]}]" for x in p if x != ".")
    causes = tuple(errors.Cause(dotted(p), f'conflict with "{m}"', "FieldManagerConflict")
                   for m, p in conflicts)
    lines = "\n".join(f'- conflict with "{m}": {dotted(p)}' for m, p in conflicts)
    n = len(conflicts)
    return errors.Conflict(f"Apply failed with {n} conflict{'s' if n > 1 else ''}: {lines}", causes=causes)


def _entry(manager: str, api_version: str, fields: set[FieldPath], now: str, operation: str = "Apply",
           subresource: str = "") -> JSON:
    e: JSON = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": now,
               "fieldsType": "FieldsV1", "fieldsV1": encode_fields(fields)}
    if subresource:
        e["subresource"] = subresource
    return e


def apply_server_side(live: JSON | None, applied: JSON, kind: str, field_manager: str, force: bool,
                      *, now: str | None = None) -> JSON:
    """Server-side apply (application/apply-patch+yaml).

    Creates from `applied` when `live` is None. Otherwise: fields `applied` sets that another
    manager owns with a different value are a 409 Conflict (reason Conflict, causes
    FieldManagerConflict) unless `force`, which moves them to this manager; fields this manager
    applied before and now omits are removed when no other manager owns them; then `applied` is
    merged into live with strategic-merge semantics (keyed lists merge by key, other lists and
    scalars replace). The result keeps live's identity metadata (uid, resourceVersion,
    creationTimestamp, ...) and records this manager's owned fields in metadata.managedFields
    (FieldsV1, operation Apply). Simplification: ownership of fields written by PUT/PATCH is
    only known if the server recorded Update entries (see `record_update`).
    """
    if not isinstance(applied, dict):
        raise errors.BadRequest("apply patch must be an object")
    if not field_manager:
        raise errors.BadRequest("PATCH with apply must provide a fieldManager")
    now = now or _now()
    api_version = str(applied.get("apiVersion") or (live or {}).get("apiVersion") or "v1")
    body = _apply_body(applied, kind)
    body_values = field_values(body, kind)
    owned = set(body_values)
    if live is None:
        out = copy_json(body)
        _meta_dict(out)["managedFields"] = [_entry(field_manager, api_version, owned, now)]
        return out
    raw_live_meta = live.get("metadata")
    live_meta: JSON = raw_live_meta if isinstance(raw_live_meta, dict) else {}
    others, previous = _split_entries(_managed_entries(live_meta), field_manager)
    conflicts = _conflicts(live, kind, others, body_values)
    if conflicts and not force:
        raise _ssa_conflict(conflicts)
    forced = {p for _, p in conflicts}
    out = copy_json(live)
    still_owned = set().union(*(f for _, f in others)) - forced if others else set()
    _remove_paths(out, previous - owned - still_owned, kind)
    merged = apply_strategic_merge_patch(out, body, kind)
    mf = [t for e, fields in others if (t := _trimmed(e, fields, forced)) is not None]
    mf.append(_entry(field_manager, api_version, owned, now))
    return _with_identity(merged, live_meta, mf)


def _apply_body(applied: JSON, kind: str) -> JSON:
    """The applied object without directives, nulls and identity metadata."""
    body = _SMP(kind).clean(applied)
    if not isinstance(body, dict):
        raise errors.BadRequest("apply patch must be an object (a $patch directive cannot delete it)")
    raw_meta = body.get("metadata")
    meta: JSON = raw_meta if isinstance(raw_meta, dict) else {}
    for key in _IDENTITY:
        meta.pop(key, None)
    return body


def _managed_entries(meta: JSON) -> list[JSON]:
    raw_entries = meta.get("managedFields")
    return [e for e in raw_entries if isinstance(e, dict)] if isinstance(raw_entries, list) else []


def _split_entries(entries: list[JSON], field_manager: str) -> tuple[list[tuple[JSON, set[FieldPath]]],
                                                                     set[FieldPath]]:
    """The other managers' entries with their fields, and what this manager applied before."""
    others: list[tuple[JSON, set[FieldPath]]] = []
    previous: set[FieldPath] = set()
    for e in entries:
        fields = decode_fields(e.get("fieldsV1") or {})
        if e.get("manager") == field_manager and e.get("operation") == "Apply" and not e.get("subresource"):
            previous = fields
        else:
            others.append((e, fields))
    return others, previous


def _conflicts(live: JSON, kind: str, others: list[tuple[JSON, set[FieldPath]]],
               body_values: dict[FieldPath, Any]) -> list[tuple[str, FieldPath]]:
    """(manager, field) for each field the body sets that another manager owns with another value."""
    conflicts = []
    owned = set(body_values)
    live_values = field_values(live, kind) if others else {}
    for e, fields in others:
        if e.get("subresource"):
            continue
        for p in sorted(owned & fields):
            if p[-1] != "." and p in live_values and live_values[p] != body_values[p]:
                conflicts.append((str(e.get("manager", "")), p))
    return conflicts


def _trimmed(e: JSON, fields: set[FieldPath], taken: set[FieldPath]) -> JSON | None:
    """Entry `e` less the fields in `taken`: `e` itself when none were, None when none are left."""
    kept = fields - taken
    if not kept:
        return None
    return {**e, "fieldsV1": encode_fields(kept)} if kept != fields else e


def _with_identity(merged: JSON, live_meta: JSON, mf: list[JSON]) -> JSON:
    """`merged` with live's identity metadata restored and managedFields set to `mf`."""
    merged_meta = _meta_dict(merged)
    for key in _IDENTITY:
        if key in live_meta:
            merged_meta[key] = copy_json(live_meta[key])
    merged_meta["managedFields"] = mf
    return merged


def record_update(old: JSON | None, new: JSON, kind: str, field_manager: str, *, now: str | None = None,
                  subresource: str = "") -> JSON:
    """A copy of `new` whose managedFields also credit `field_manager` (operation Update) with the
    fields that changed from `old` (all fields on create), taking them from other managers."""
    now = now or _now()
    new_values = field_values(new, kind)
    old_values = field_values(old, kind) if old else {}
    missing = object()
    changed = {p for p, v in new_values.items() if old_values.get(p, missing) != v}
    out = copy_json(new)
    meta = _meta_dict(out)
    mf: list[JSON] = []
    mine: set[FieldPath] = set()
    for e in _managed_entries(meta):
        fields = decode_fields(e.get("fieldsV1") or {})
        if e.get("manager") == field_manager and e.get("operation") == "Update" and \
                e.get("subresource", "") == subresource:
            mine = fields
            continue
        trimmed = _trimmed(e, fields, changed)
        if trimmed is not None:
            mf.append(trimmed)
    if changed | mine:
        mf.append(_entry(field_manager, str(new.get("apiVersion") or "v1"), changed | mine, now, "Update",
                         subresource))
    meta["managedFields"] = mf
    return out
