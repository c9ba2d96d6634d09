"""Owner-reference garbage collection, run inside the delete that removes an owner: dependents left
with no live served owner are deleted too (background propagation, recursively); with Orphan the
owner's reference is removed from them instead. Owners of kinds podnet does not serve count as live."""

from __future__ import annotations

from typing import Any

from controlplane import objects as o
from controlplane.resources import BY_KIND
from controlplane.state import DELETED, MODIFIED, Key, key_of
from controlplane.storage import Change, Store
from controlplane.validation import copy_json

JSON = dict[str, Any]


def collect_garbage(store: Store, key: Key, owner: JSON, orphan: bool) -> list[Change]:
    """Dependents of a deleted owner: with Orphan, its ownerReference is removed from them;
    otherwise those left with no live served owner are deleted too (recursively), as the
    upstream garbage collector does with background propagation."""
    changes: list[Change] = []
    gone: set[str] = set()
    queue = [(key, owner)]
    while queue:
        okey, oobj = queue.pop(0)
        uid = str((oobj.get("metadata") or {}).get("uid") or "")
        if not uid:
            continue
        gone.add(uid)
        for dkey in store.latest_dependents(uid):
            entry = store.latest(dkey)
            if entry is None or any(c.key == dkey for c in changes):
                continue
            if orphan and okey == key:
                dep = copy_json(entry.obj)
                refs = [r for r in o.meta(dep).get("ownerReferences") or [] if r.get("uid") != uid]
                if refs:
                    o.meta(dep)["ownerReferences"] = refs
                else:
                    o.meta(dep).pop("ownerReferences", None)
                changes.append(Change(dkey, MODIFIED, dep))
            elif not has_live_owner(store, dkey, entry.obj, gone):
                final = copy_json(entry.obj)
                changes.append(Change(dkey, DELETED, final))
                queue.append((dkey, final))
    return changes

def has_live_owner(store: Store, key: Key, obj: JSON, gone: set[str]) -> bool:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if not isinstance(ref, dict):
            continue
        uid = str(ref.get("uid") or "")
        res = BY_KIND.get(str(ref.get("kind") or ""))
        if res is None or str(ref.get("apiVersion") or "") != res.api_version:
            return True  # an owner of a kind we do not serve: we cannot tell, keep it
        if uid in gone:
            continue
        live = store.latest(key_of(res, key.namespace if res.namespaced else None, str(ref.get("name"))))
        if live is not None and (live.obj.get("metadata") or {}).get("uid") == uid:
            return True
    return False
