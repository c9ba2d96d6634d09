"""Proxier health (upstream pkg/proxy/healthcheck/proxier_health.go), pure.

Healthy unless an update has been queued and not synced for longer than the timeout (2 x
syncPeriod upstream), or no sync has happened within the timeout since start.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone


def utc_now() -> datetime:
    """The current time as the proxier's health and metrics keep it (UTC, aware)."""
    return datetime.now(timezone.utc)


def go_time(t: datetime | None) -> str:
    """Go's time.Time.String() layout, which upstream's JSON body uses."""
    if t is None:
        return "0001-01-01 00:00:00 +0000 UTC"
    t = t.astimezone(timezone.utc)
    frac = f"{t.microsecond:06d}".rstrip("0")
    return t.strftime("%Y-%m-%d %H:%M:%S") + (f".{frac}" if frac else "") + " +0000 UTC"


@dataclass
class ProxierHealth:
    timeout: float  # seconds
    last_updated: datetime | None = None
    oldest_pending_queued: datetime | None = None
    node_eligible: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def queued_update(self, now: datetime) -> None:
        with self._lock:
            if self.oldest_pending_queued is None:
                self.oldest_pending_queued = now

    def updated(self, now: datetime) -> None:
        with self._lock:
            self.last_updated = now
            self.oldest_pending_queued = None

    def healthy(self, now: datetime) -> bool:
        with self._lock:
            pending = self.oldest_pending_queued
            if pending is not None and (now - pending).total_seconds() > self.timeout:
                return False
            return True

    def healthz(self, now: datetime) -> tuple[int, str]:
        ok = self.healthy(now) and self.node_eligible
        body = {"lastUpdated": go_time(self.last_updated), "currentTime": go_time(now),
                "nodeEligible": self.node_eligible}
        return (200 if ok else 503), json.dumps(body)

    def livez(self, now: datetime) -> tuple[int, str]:
        body = {"lastUpdated": go_time(self.last_updated), "currentTime": go_time(now)}
        return (200 if self.healthy(now) else 503), json.dumps(body)
