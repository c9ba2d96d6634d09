"""PATCH semantics: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch
and a simplified server-side apply.

All functions are pure: inputs are never mutated, a new dict is returned. Failures raise
controlplane.errors (BadRequest for a malformed patch, Invalid (422) for a patch that does not
apply, as kube-apiserver answers), never a bare Python exception.

Strategic merge patch metadata (which lists merge, and by which key) is the table
`PATCH_META` (in `strategic`), taken from the Go struct tags (patchStrategy / patchMergeKey) of
the upstream types; lists not named there are replaced whole, maps always merge.

Layout: `merge` (RFC 7386), `jsonpatch` (RFC 6902), `strategic` (strategic merge + merge keys
table), `apply` (server-side apply, managedFields, `record_update`).
"""

from __future__ import annotations

from controlplane.patch.apply import (
    FieldPath, apply_server_side, decode_fields, encode_fields, field_set, field_values, record_update,
)
from controlplane.patch.jsonpatch import apply_json_patch
from controlplane.patch.merge import apply_merge_patch
from controlplane.patch.strategic import PATCH_META, ListMeta, apply_strategic_merge_patch, list_meta
from controlplane.validation import JSON, copy_json

__all__ = [
    "FieldPath", "JSON", "ListMeta", "PATCH_META", "apply_json_patch", "apply_merge_patch", "apply_server_side",
    "apply_strategic_merge_patch", "copy_json", "decode_fields", "encode_fields", "field_set", "field_values",
    "list_meta", "record_update",
]
