"""JSON patch (RFC 6902): add/remove/replace/move/copy/test on JSON pointers."""

from __future__ import annotations

from typing import Any

from controlplane import errors
from controlplane.validation import JSON, copy_json


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
