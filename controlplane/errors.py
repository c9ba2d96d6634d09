"""The control plane's one base error and its Kubernetes Status translations.

The core raises these; the HTTP shell turns `err.status()` into the response body with
`err.code` as the HTTP status. The client raises the same classes from Status bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cause:
    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


class APIError(Exception):
    """Base error of the control plane; carries everything a Status object needs."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, name: str = "", kind: str = "", group: str = "",
                 causes: tuple[Cause, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.kind = kind
        self.group = group
        self.causes = causes

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            body["details"] = details
        return body


class BadRequest(APIError):
    code = 400
    reason = "BadRequest"


class Unauthorized(APIError):
    code = 401
    reason = "Unauthorized"


class Forbidden(APIError):
    code = 403
    reason = "Forbidden"


class NotFound(APIError):
    code = 404
    reason = "NotFound"

    @classmethod
    def of(cls, plural: str, name: str, group: str = "") -> "NotFound":
        what = f"{plural}.{group}" if group else plural
        return cls(f'{what} "{name}" not found', name=name, kind=plural, group=group)


class MethodNotAllowed(APIError):
    code = 405
    reason = "MethodNotAllowed"


class AlreadyExists(APIError):
    code = 409
    reason = "AlreadyExists"

    @classmethod
    def of(cls, plural: str, name: str, group: str = "") -> "AlreadyExists":
        what = f"{plural}.{group}" if group else plural
        return cls(f'{what} "{name}" already exists', name=name, kind=plural, group=group)


class Conflict(APIError):
    code = 409
    reason = "Conflict"

    @classmethod
    def modified(cls, plural: str, name: str, group: str = "") -> "Conflict":
        what = f"{plural}.{group}" if group else plural
        return cls(
            f'Operation cannot be fulfilled on {what} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            name=name, kind=plural, group=group)

    @classmethod
    def precondition(cls, plural: str, name: str, group: str, field: str, want: object,
                     have: object) -> "Conflict":
        """A failed DeleteOptions/metadata precondition (`field` is "UID" or "ResourceVersion")."""
        return cls(
            f'Operation cannot be fulfilled on {plural} "{name}": Precondition failed: {field} in '
            f"precondition: {want}, {field} in object meta: {have}",
            name=name, kind=plural, group=group)


class Gone(APIError):
    """410: a watch/list resourceVersion older than the kept history."""

    code = 410
    reason = "Expired"


class UnsupportedMediaType(APIError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(APIError):
    code = 422
    reason = "Invalid"

    @classmethod
    def of(cls, kind: str, name: str, causes: list[Cause] | tuple[Cause, ...], group: str = "") -> "Invalid":
        causes = tuple(causes)
        summary = ", ".join(f"{c.field}: {c.message}" if c.field else c.message for c in causes)
        if len(causes) > 1:
            summary = f"[{summary}]"
        return cls(f'{kind} "{name}" is invalid: {summary}', name=name, kind=kind, group=group, causes=causes)


class Timeout(APIError):
    code = 504
    reason = "Timeout"


_BY_REASON: dict[str, type[APIError]] = {
    c.reason: c
    for c in (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, AlreadyExists, Conflict, Gone,
              UnsupportedMediaType, Invalid, Timeout)
}

# the error for an HTTP code, for error responses that carry no Status (409 is the general Conflict)
BY_CODE: dict[int, type[APIError]] = {c.code: c for c in _BY_REASON.values() if c is not AlreadyExists}


def from_status(body: dict[str, Any], http_code: int = 0) -> APIError:
    """Rebuild an APIError from a Status body (used by the client)."""
    reason = str(body.get("reason", ""))
    cls = _BY_REASON.get(reason, APIError)
    details = body.get("details") or {}
    causes = tuple(Cause(c.get("field", ""), c.get("message", ""), c.get("reason", ""))
                   for c in details.get("causes", []) or [])
    err = cls(str(body.get("message", reason or "unknown error")), name=details.get("name", ""),
              kind=details.get("kind", ""), group=details.get("group", ""), causes=causes)
    if cls is APIError:
        err.code = int(body.get("code") or http_code or 500)
        err.reason = reason or "InternalError"
    return err
