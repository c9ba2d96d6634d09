"""JSON merge patch (RFC 7386)."""

from __future__ import annotations

from typing import Any

from controlplane.validation import JSON, copy_json


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
