"""Strategic merge patch: the merge keys table (`PATCH_META`, from the Go struct tags
patchStrategy / patchMergeKey of the upstream types) and the merge itself; lists not named in
the table are replaced whole, maps always merge."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from controlplane import errors
from controlplane.validation import JSON, copy_json


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
        out = self.retained(dict(original), patch)
        orders = _map_directives(out, patch)
        for key, value in patch.items():
            if not key.startswith("$"):
                self.merge_field(out, key, value, path + (key,), orders.get(key))
        for key, order in orders.items():
            if key not in patch and isinstance(out.get(key), list):
                out[key] = self.merge_list(out[key], [], path + (key,), order)
        return out

    def retained(self, out: JSON, patch: JSON) -> JSON:
        """`out` cut down to the patch's $retainKeys, when it has them."""
        retain = patch.get(_RETAIN)
        if retain is None:
            return out
        if not isinstance(retain, list):
            raise self.fail(f"{_RETAIN} must be a list")
        for k in patch:
            if not k.startswith("$") and k not in retain:
                raise self.fail(f"the patch has {k!r} which is not in {_RETAIN}")
        return {k: v for k, v in out.items() if k in retain}

    def merge_field(self, out: JSON, key: str, value: Any, sub: tuple[str, ...], order: Any) -> None:
        """Merge the patch's `value` for `key` into `out`, in place."""
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
            out[key] = self.merge_list(base if isinstance(base, list) else [], value, sub, order)
        else:
            out[key] = copy_json(value)

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


def _map_directives(out: JSON, patch: JSON) -> dict[str, Any]:
    """Apply the patch's $deleteFromPrimitiveList/ directives to `out` in place; return its
    $setElementOrder/ lists by field name."""
    orders: dict[str, Any] = {}
    for key, value in patch.items():
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE):]
            if isinstance(out.get(field), list) and isinstance(value, list):
                out[field] = [x for x in out[field] if x not in value]
        elif key.startswith(_ORDER):
            orders[key[len(_ORDER):]] = value
    return orders


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
