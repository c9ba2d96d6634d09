"""The proxy's one base error: the core raises it, the shell logs it and keeps running."""

from __future__ import annotations


class ProxyError(Exception):
    """A proxy operation failed; the message names the value or command at fault."""


class RestoreError(ProxyError):
    """iptables-restore rejected a payload; `line` is the failing input line (0 if unknown)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line
