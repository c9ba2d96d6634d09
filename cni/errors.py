"""The CNI component's one base error and the spec's well-known error codes.

The core raises `CNIError`; the shell prints `err.to_json(version)` on stdout and exits
non-zero, exactly as SPEC.md describes (`{cniVersion, code, msg, details}`).
"""

from __future__ import annotations

from typing import Any

# Well-known codes (SPEC.md "Error" section); 0-99 reserved, 100+ plugin specific.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51
# podnet plugin-specific codes (>= 100); the reference's Go code uses 999 for "internal".
NO_ADDRESSES = 100          # IPAM range set exhausted
DUPLICATE_ALLOCATION = 101  # (containerID, ifname) already holds an address
INTERFACE_EXISTS = 102      # CNI_IFNAME already exists in the namespace
ADDRESS_CONFLICT = 103      # the bridge holds a different gateway address
IPAM_FAILED = 104           # the delegated IPAM plugin failed (its own error is in details)
INVALID_NETNS = 105         # CNI_NETNS cannot be opened
INTERNAL = 999


class CNIError(Exception):
    """Every failure the CNI core reports: a spec error code, a message and details."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg

    @classmethod
    def from_json(cls, data: Any, fallback: str = "") -> "CNIError":
        """Rebuild an error printed by another plugin (delegated IPAM)."""
        if isinstance(data, dict) and "code" in data:
            try:
                code = int(data["code"])
            except (TypeError, ValueError):
                code = INTERNAL
            return cls(code, str(data.get("msg", "")), str(data.get("details", "")))
        return cls(INTERNAL, fallback or "plugin failed without an error object")
