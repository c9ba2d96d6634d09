"""PATCH semantics: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch
and a simplified server-side apply.

All functions are pure: inputs are never mutated, a new dict is returned. Failures raise
controlplane.errors (BadRequest for a malformed patch, Invalid (422) for a patch that does not
apply, as kube-apiserver answers), never a bare Python exception.

Strategic merge patch metadata (which lists merge, and by which key) is the table
`PATCH_META` below, taken from the Go struct tags (patchStrategy / patchMergeKey) of the
upstream types; lists not named there are replaced whole, maps always merge.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from typing import Any

from controlplane import errors
from controlplane.validation import copy_json

JSON = dict[str, Any]

# ------------------------------------------------------------------ RFC 7386 merge patch


def apply_merge_patch(obj: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy_json(patch)
    out: JSON = copy_json(obj) if isinstance(obj, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = apply_merge_patch(out.get(key), value)
        else:
            out[key] = copy_json(value)
    return out


# ------------------------------------------------------------------ RFC 6902 JSON patch

def _json_patch_error(msg: str) -> errors.Invalid:
    """kube-apiserver answers a JSON patch that does not apply with a generic 422 (reason Invalid)
    carrying the library's error as its one cause; the message also names it, to be clear."""
    return errors.Invalid(f"the server rejected our request due to an error in our request: {msg}",
                          causes=(errors.Cause("", msg, ""),))


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise errors.BadRequest(f"json patch path must be a string, got {path!r}")
    if path == "":
        return []
    if not path.startswith("/"):
        raise errors.BadRequest(f"json patch path {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, path: str, for_add: bool) -> int:
    if token == "-" and for_add:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        raise _json_patch_error(f"doc is missing path: {path!r}: invalid index {token!r}")
    idx = int(token)
    limit = len(container) if for_add else len(container) - 1
    if idx > limit:
        raise _json_patch_error(f"doc is missing path: {path!r}: index {idx} out of bounds")
    return idx


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict):
            if tok not in cur:
                raise _json_patch_error(f"doc is missing path: {path!r}: missing value")
            cur = cur[tok]
        elif isinstance(cur, list):
            cur = cur[_index(cur, tok, path, False)]
        else:
            raise _json_patch_error(f"doc is missing path: {path!r}: missing value")
    return cur


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _json_patch_error(f"doc is missing path: {path!r}: missing value")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, path, False)]
    raise _json_patch_error(f"doc is missing path: {path!r}: missing value")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, True), value)
    else:
        raise _json_patch_error(f"add operation does not apply: doc is missing path: {path!r}")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise _json_patch_error("unable to remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _json_patch_error(f"Unable to remove nonexistent key: {last}: missing value")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, path, False))
    raise _json_patch_error(f"remove operation does not apply: doc is missing path: {path!r}")


def _replace(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _json_patch_error(f"replace operation does not apply: doc is missing key: {path}: missing value")
        parent[last] = value
    elif isinstance(parent, list):
        parent[_index(parent, last, path, False)] = value
    else:
        raise _json_patch_error(f"replace operation does not apply: doc is missing path: {path}: missing value")
    return doc


def _op_field(op: JSON, name: str) -> Any:
    if name not in op:
        raise errors.BadRequest(f"json patch operation {op.get('op')!r} is missing {name!r}")
    return op[name]


def apply_json_patch(obj: Any, ops: Any) -> Any:
    """RFC 6902 add/remove/replace/move/copy/test with JSON pointer escaping (~0, ~1)."""
    if not isinstance(ops, list):
        raise errors.BadRequest("json patch must be a list of operations")
    doc = copy_json(obj)
    for op in ops:
        if not isinstance(op, dict):
            raise errors.BadRequest(f"json patch operation must be an object, got {op!r}")
        kind = op.get("op")
        path = _op_field(op, "path")
        if kind == "add":
            doc = _add(doc, path, copy_json(_op_field(op, "value")))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            doc = _replace(doc, path, copy_json(_op_field(op, "value")))
        elif kind == "move":
            src = _op_field(op, "from")
            if path != src and path.startswith(src + "/"):
                raise _json_patch_error(f"move operation cannot move {src!r} into its own child {path!r}")
            doc, value = _remove(doc, src)
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy_json(_get(doc, _op_field(op, "from"))))
        elif kind == "test":
            if _get(doc, path) != _op_field(op, "value"):
                raise _json_patch_error(f"testing value {path} failed: test failed")
        else:
            raise errors.BadRequest(f"Unexpected kind: {kind}")
    return doc


# ------------------------------------------------------------------ strategic merge patch metadata

@dataclass(frozen=True)
class ListMeta:
    """How a list merges: by `key` (maps), as a set (primitives, key ""); retain_keys for unions."""
    key: str = ""
    retain_keys: bool = False


_CONTAINER: dict[tuple[str, ...], ListMeta] = {
    ("ports",): ListMeta("containerPort"),
    ("env",): ListMeta("name"),
    ("volumeMounts",): ListMeta("mountPath"),
    ("volumeDevices",): ListMeta("devicePath"),
    ("resizePolicy",): ListMeta("resourceName"),
}


def _under(prefix: tuple[str, ...], table: dict[tuple[str, ...], ListMeta]) -> dict[tuple[str, ...], ListMeta]:
    return {prefix + k: v for k, v in table.items()}


_POD_SPEC: dict[tuple[str, ...], ListMeta] = {
    ("containers",): ListMeta("name"),
    ("initContainers",): ListMeta("name"),
    ("ephemeralContainers",): ListMeta("name"),
    ("volumes",): ListMeta("name", retain_keys=True),
    ("imagePullSecrets",): ListMeta("name"),
    ("hostAliases",): ListMeta("ip"),
    ("topologySpreadConstraints",): ListMeta("topologyKey"),
    ("resourceClaims",): ListMeta("name", retain_keys=True),
    ("schedulingGates",): ListMeta("name"),
    **_under(("containers", "[]"), _CONTAINER),
    **_under(("initContainers", "[]"), _CONTAINER),
    **_under(("ephemeralContainers", "[]"), _CONTAINER),
}

_COMMON_META: dict[tuple[str, ...], ListMeta] = {
    ("metadata", "ownerReferences"): ListMeta("uid"),
    ("metadata", "finalizers"): ListMeta(""),
}

PATCH_META: dict[str, dict[tuple[str, ...], ListMeta]] = {
    "Pod": {
        **_under(("spec",), _POD_SPEC),
        ("status", "conditions"): ListMeta("type"),
        ("status", "podIPs"): ListMeta("ip"),
        ("status", "hostIPs"): ListMeta("ip"),
        ("status", "resourceClaimStatuses"): ListMeta("name", retain_keys=True),
    },
    "Service": {
        ("spec", "ports"): ListMeta("port"),
        ("status", "conditions"): ListMeta("type"),
    },
    "Node": {
        ("spec", "podCIDRs"): ListMeta(""),
        ("status", "conditions"): ListMeta("type"),
        ("status", "addresses"): ListMeta("type"),
    },
    "Namespace": {
        ("status", "conditions"): ListMeta("type"),
    },
    "Endpoints": {},
    "EndpointSlice": {},
}

# Some directives
_PATCH = "$patch"
_RETAIN = "$retainKeys"
_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def list_meta(kind: str, path: tuple[str, ...]) -> ListMeta | None:
    if path in _COMMON_META:
        return _COMMON_META[path]
    return PATCH_META.get(kind, {}).get(path)


# ------------------------------------------------------------------ strategic merge patch


class _SMP:
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def fail(self, msg: str) -> errors.BadRequest:
        return errors.BadRequest(f"strategic merge patch: {msg}")

    # -------------------------------------------------------------- maps
    def merge_map(self, original: JSON, patch: JSON, path: tuple[str, ...]) -> JSON | None:
        directive = patch.get(_PATCH)
        if directive == "replace":
            return self.clean({k: v for k, v in patch.items() if k != _PATCH})
        if directive == "delete":
            return None
        if directive not in (None, "merge"):
            raise self.fail(f"unknown patch type: {directive!r} in map at {'.'.join(path) or '<root>'}")
        out = dict(original)
        retain = patch.get(_RETAIN)
        if retain is not None:
            if not isinstance(retain, list):
                raise self.fail(f"{_RETAIN} must be a list")
            for k in patch:
                if not k.startswith("$") and k not in retain:
                    raise self.fail(f"the patch has {k!r} which is not in {_RETAIN}")
            out = {k: v for k, v in out.items() if k in retain}
        orders: dict[str, Any] = {}
        for key, value in patch.items():
            if key.startswith(_DELETE_PRIMITIVE):
                field = key[len(_DELETE_PRIMITIVE):]
                if isinstance(out.get(field), list) and isinstance(value, list):
                    out[field] = [x for x in out[field] if x not in value]
            elif key.startswith(_ORDER):
                orders[key[len(_ORDER):]] = value
        for key, value in patch.items():
            if key.startswith("$"):
                continue
            sub = path + (key,)
            if value is None:
                out.pop(key, None)
            elif isinstance(value, dict):
                base = out.get(key)
                merged = self.merge_map(base if isinstance(base, dict) else {}, value, sub)
                if merged is None:
                    out.pop(key, None)
                else:
                    out[key] = merged
            elif isinstance(value, list):
                base = out.get(key)
                out[key] = self.merge_list(base if isinstance(base, list) else [], value, sub,
                                           orders.get(key))
            else:
                out[key] = copy_json(value)
        for key, order in orders.items():
            if key not in patch and isinstance(out.get(key), list):
                out[key] = self.merge_list(out[key], [], path + (key,), order)
        return out

    # -------------------------------------------------------------- lists
    def merge_list(self, original: list[Any], patch: list[Any], path: tuple[str, ...],
                   order: Any) -> list[Any]:
        meta = list_meta(self.kind, path)
        if meta is None:
            return [self.clean(x) for x in patch if not _is_directive_item(x)] if patch or order is None \
                else list(original)
        if any(isinstance(x, dict) and x.get(_PATCH) == "replace" and len(x) == 1 for x in patch):
            return [self.clean(x) for x in patch if not (isinstance(x, dict) and _PATCH in x and len(x) == 1)]
        if not meta.key:
            return self.merge_primitive(original, patch, order)
        return self.merge_keyed(original, patch, path, meta.key, order)

    def merge_primitive(self, original: list[Any], patch: list[Any], order: Any) -> list[Any]:
        """Set-merge of scalars: the union, patch items in patch (or $setElementOrder) order,
        server-only items interleaved by their live order."""
        merged: list[Any] = []
        for x in list(original) + list(patch):
            if x not in merged:
                merged.append(x)
        order_list = order if isinstance(order, list) else patch
        rank = {_kv(v): i for i, v in reversed(list(enumerate(order_list)))}
        pos = {_kv(v): i for i, v in reversed(list(enumerate(original)))}
        ordered = sorted((x for x in merged if _kv(x) in rank), key=lambda x: rank[_kv(x)])
        rest = [x for x in merged if _kv(x) not in rank]
        return _interleave([(pos.get(_kv(x)), x) for x in rest], [(pos.get(_kv(x)), x) for x in ordered])

    def merge_keyed(self, original: list[Any], patch: list[Any], path: tuple[str, ...], key: str,
                    order: Any) -> list[Any]:
        # (position in original or None for new items, value); None values are deleted items
        items: list[tuple[int | None, Any]] = [(i, copy_json(x)) for i, x in enumerate(original)]
        touched: list[int] = []  # indices into items the patch mentions, in patch order
        for elem in patch:
            if not isinstance(elem, dict):
                raise self.fail(f"list {'.'.join(path)} must hold objects, got {elem!r}")
            if key not in elem:
                raise self.fail(f"map: {_short(elem)} does not contain declared merge key: {key}")
            matches = [i for i, (_, x) in enumerate(items)
                       if isinstance(x, dict) and self.same(x, elem, key, path)]
            if elem.get(_PATCH) == "delete":
                for i in matches:
                    items[i] = (items[i][0], None)
                continue
            if matches:
                i = matches[0]
                merged = self.merge_map(items[i][1], elem, path + ("[]",))
                items[i] = (items[i][0], merged)
            else:
                merged = self.merge_map({}, elem, path + ("[]",))
                items.append((None, merged))
                i = len(items) - 1
            if merged is not None and i not in touched:
                touched.append(i)
        server_only = [(pos, x) for i, (pos, x) in enumerate(items) if x is not None and i not in touched]
        patched = [items[i] for i in touched if items[i][1] is not None]
        if isinstance(order, list):
            rank: dict[str, int] = {}
            for i, o in enumerate(order):
                if isinstance(o, dict) and key in o:
                    rank.setdefault(_kv(o[key]), i)
            big = len(order)
            in_order = [x for x in server_only if _kv(_dict_get(x[1], key)) in rank]
            server_only = [x for x in server_only if _kv(_dict_get(x[1], key)) not in rank]
            patched = sorted(patched + in_order, key=lambda x: rank.get(_kv(_dict_get(x[1], key)), big))
        return _interleave(server_only, patched)

    def same(self, live: JSON, elem: JSON, key: str, path: tuple[str, ...]) -> bool:
        if live.get(key) != elem.get(key):
            return False
        # Service ports share `port` across protocols (53/TCP + 53/UDP): when the patch names a
        # protocol, match it too (upstream's listMapKeys port+protocol), defaulting to TCP.
        if self.kind == "Service" and path == ("spec", "ports") and "protocol" in elem:
            return (live.get("protocol") or "TCP") == (elem.get("protocol") or "TCP")
        return True

    # -------------------------------------------------------------- cleaning
    def clean(self, value: Any) -> Any:
        """Drop directives and nulls from a value that is inserted as new."""
        if isinstance(value, dict):
            if value.get(_PATCH) == "delete":
                return None
            return {k: self.clean(v) for k, v in value.items() if not k.startswith("$") and v is not None}
        if isinstance(value, list):
            return [self.clean(x) for x in value if not _is_directive_item(x)]
        return copy_json(value)


def _is_directive_item(x: Any) -> bool:
    return isinstance(x, dict) and x.get(_PATCH) in ("delete", "replace", "merge") and \
        (x.get(_PATCH) == "delete" or len(x) == 1)


def _dict_get(x: Any, key: str) -> Any:
    return x.get(key) if isinstance(x, dict) else x


def _kv(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def _short(v: Any) -> str:
    text = json.dumps(v, sort_keys=True)
    return text if len(text) < 120 else text[:117] + "..."


def _interleave(server_only: list[tuple[int | None, Any]], patched: list[tuple[int | None, Any]]) -> list[Any]:
    """Merge server-only items back among the patch's items (upstream mergeSortedSlice): a
    server-only item goes first only when both are in the live list and it came earlier there;
    so items new to the list come before the remaining server-only ones, as upstream."""
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) and j < len(patched):
        si = server_only[i][0]
        pj = patched[j][0]
        if si is not None and pj is not None and si < pj:
            out.append(server_only[i][1])
            i += 1
        else:
            out.append(patched[j][1])
            j += 1
    return out + [x for _, x in server_only[i:]] + [x for _, x in patched[j:]]


def apply_strategic_merge_patch(obj: JSON, patch: Any, kind: str) -> JSON:
    """Strategic merge patch as kubectl sends it, for the kinds podnet serves (see PATCH_META)."""
    if not isinstance(patch, dict):
        raise errors.BadRequest("strategic merge patch must be a JSON object")
    merged = _SMP(kind).merge_map(obj if isinstance(obj, dict) else {}, patch, ())
    if merged is None:
        raise errors.BadRequest("strategic merge patch: $patch: delete of the whole object is not allowed")
    return copy_json(merged)


# ------------------------------------------------------------------ server-side apply

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
    body = _SMP(kind).clean(applied)
    if not isinstance(body, dict):
        raise errors.BadRequest("apply patch must be an object (a $patch directive cannot delete it)")
    raw_meta = body.get("metadata")
    meta: JSON = raw_meta if isinstance(raw_meta, dict) else {}
    for key in _IDENTITY:
        meta.pop(key, None)
    body_values = field_values(body, kind)
    owned = set(body_values)
    if live is None:
        out = copy_json(body)
        _meta_dict(out)["managedFields"] = [_entry(field_manager, api_version, owned, now)]
        return out
    raw_live_meta = live.get("metadata")
    live_meta: JSON = raw_live_meta if isinstance(raw_live_meta, dict) else {}
    raw_entries = live_meta.get("managedFields")
    entries = [e for e in raw_entries if isinstance(e, dict)] if isinstance(raw_entries, list) else []
    others: list[tuple[JSON, set[FieldPath]]] = []
    previous: set[FieldPath] = set()
    for e in entries:
        fields = decode_fields(e.get("fieldsV1") or {})
        if e.get("manager") == field_manager and e.get("operation") == "Apply" and not e.get("subresource"):
            previous = fields
        else:
            others.append((e, fields))
    conflicts = []
    live_values = field_values(live, kind) if others else {}
    for e, fields in others:
        if e.get("subresource"):
            continue
        for p in sorted(owned & fields):
            if p[-1] != "." and p in live_values and live_values[p] != body_values[p]:
                conflicts.append((str(e.get("manager", "")), p))
    if conflicts and not force:
        raise _ssa_conflict(conflicts)
    forced = {p for _, p in conflicts}
    out = copy_json(live)
    still_owned = set().union(*(f for _, f in others)) - forced if others else set()
    _remove_paths(out, previous - owned - still_owned, kind)
    merged = apply_strategic_merge_patch(out, body, kind)
    mf: list[JSON] = []
    for e, fields in others:
        kept = fields - forced
        if kept:
            mf.append({**e, "fieldsV1": encode_fields(kept)} if kept != fields else e)
    mf.append(_entry(field_manager, api_version, owned, now))
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
    raw_entries = meta.get("managedFields")
    entries = [e for e in raw_entries if isinstance(e, dict)] if isinstance(raw_entries, list) else []
    mf: list[JSON] = []
    mine: set[FieldPath] = set()
    for e in entries:
        fields = decode_fields(e.get("fieldsV1") or {})
        if e.get("manager") == field_manager and e.get("operation") == "Update" and \
                e.get("subresource", "") == subresource:
            mine = fields
            continue
        kept = fields - changed
        if kept:
            mf.append({**e, "fieldsV1": encode_fields(kept)} if kept != fields else e)
    if changed | mine:
        mf.append(_entry(field_manager, str(new.get("apiVersion") or "v1"), changed | mine, now, "Update",
                         subresource))
    meta["managedFields"] = mf
    return out
