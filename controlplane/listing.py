"""Lists as upstream serves them: the latest state, or the state at an older resourceVersion
(`resourceVersionMatch=Exact`, continue tokens) rebuilt from the kept history, paged by `limit`
through one consistent snapshot."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from controlplane import errors
from controlplane.state import Entry, WatchFilter, paginate, parse_rv, snapshot
from controlplane.storage import Store

CONTINUE_EXPIRED = ("The provided continue parameter is too old to display a consistent list result. You can "
                    "start a new list without the continue parameter.")


@dataclass(frozen=True)
class ListPage:
    items: list[Entry]
    rv: int
    continue_token: str = ""
    remaining: int | None = None


def encode_continue(rv: int, after: tuple[str, str]) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": f"{after[0]}/{after[1]}"}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        ns, _, name = str(data["start"]).partition("/")
        rv = int(data["rv"])
        if data.get("v") != "meta.k8s.io/v1" or rv < 0:
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError):
        raise errors.BadRequest(f"continue key is not valid: {token!r}") from None
    return rv, (ns, name)


def list_page(store: Store, filt: WatchFilter, *, limit: int = 0, continue_token: str = "",
              resource_version: str = "", match: str = "") -> ListPage:
    """A list as upstream serves it: the latest state, or (resourceVersionMatch=Exact, or a
    continue token) the state at an older resourceVersion rebuilt from the kept history; `limit`
    pages through one consistent snapshot."""
    current = store.rv
    start: tuple[str, str] | None = None
    at = current
    if continue_token:
        if resource_version not in ("", None):
            raise errors.BadRequest("specifying resource version is not allowed when using continue")
        at, start = decode_continue(continue_token)
    else:
        rv = parse_rv(resource_version)
        if match not in ("", "Exact", "NotOlderThan"):
            raise errors.BadRequest(f'resourceVersionMatch: Unsupported value: "{match}": supported values: '
                                    '"Exact", "NotOlderThan"')
        if match and rv is None:
            raise errors.BadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
        if match == "Exact":
            if rv == 0:
                raise errors.BadRequest('resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
            at = rv or current
    try:
        entries = snapshot(store.index, store.history, filt.resource, filt.namespace, at, current)
    except errors.Gone:
        if continue_token:
            raise errors.Gone(CONTINUE_EXPIRED) from None
        raise
    if filt.selective:
        entries = [e for e in entries if filt.selects(e.obj)]
    items, after, remaining = paginate(entries, start, limit)
    token = encode_continue(at, after) if after is not None else ""
    return ListPage(items, at, token, remaining if token and not filt.selective else None)
