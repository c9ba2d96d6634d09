"""Pure parsing of a watch stream: bytes in chunks -> JSON lines -> WatchEvent values.

The server writes one `{"type": ..., "object": ...}` JSON document per line; a line may be split
across any number of chunks and may be far longer than aiohttp's 64 KiB readline limit, so the
client feeds raw chunks here instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")
DEFAULT_MAX_LINE = 64 * 1024 * 1024


class StreamError(ValueError):
    """A watch stream that is not newline-delimited watch events (message names the offending data)."""


@dataclass(frozen=True)
class WatchEvent:
    type: str  # "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR"
    object: dict[str, Any]


class LineSplitter:
    """Reassembles newline-terminated lines from arbitrary chunks."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._parts: list[bytes] = []
        self._pending = 0
        self.max_line = max_line

    def feed(self, chunk: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                break
            piece = chunk[start:nl]
            if self._parts:
                self._parts.append(piece)
                piece = b"".join(self._parts)
                self._parts.clear()
                self._pending = 0
            if piece.strip():
                lines.append(piece)
            start = nl + 1
        rest = chunk[start:]
        if rest:
            self._parts.append(rest)
            self._pending += len(rest)
            if self._pending > self.max_line:
                raise StreamError(f"watch event longer than {self.max_line} bytes without a newline")
        return lines

    def finish(self) -> list[bytes]:
        """The unterminated last line, if the stream ended without a final newline."""
        rest = b"".join(self._parts)
        self._parts.clear()
        self._pending = 0
        return [rest] if rest.strip() else []


def parse_event(line: bytes) -> WatchEvent:
    """One JSON line -> WatchEvent; anything else raises StreamError naming the line."""
    try:
        doc = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StreamError(f"watch stream line is not JSON ({exc}): {line[:200]!r}") from None
    if not isinstance(doc, dict):
        raise StreamError(f"watch event is not an object: {line[:200]!r}")
    etype, obj = doc.get("type"), doc.get("object")
    if etype not in EVENT_TYPES:
        raise StreamError(f"unknown watch event type {etype!r}: {line[:200]!r}")
    if not isinstance(obj, dict):
        raise StreamError(f"watch event {etype} has no object: {line[:200]!r}")
    return WatchEvent(str(etype), obj)
