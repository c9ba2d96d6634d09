"""A small Prometheus registry with kube-proxy's metric names (upstream pkg/proxy/metrics).

Pure: values are set by the proxier; `render()` gives the text exposition format (0.0.4).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

# upstream: metrics.ExponentialBuckets(0.001, 2, 15)
SYNC_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))
# upstream NetworkProgrammingLatency: 0.25s, 0.5s, 1..59s, 60..115s by 5s, 2..5min by 30s
NETWORK_PROGRAMMING_BUCKETS = (
    (0.25, 0.5) + tuple(float(i) for i in range(1, 60))
    + tuple(float(60 + 5 * i) for i in range(12)) + tuple(float(120 + 30 * i) for i in range(7)))


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"


@dataclass
class Metric:
    name: str
    help: str
    kind: str  # counter | gauge
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = value

    def inc(self, by: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + by

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        values = self.values or ({(): 0.0} if self.kind == "counter" else {})
        out += [f"{self.name}{_labels(k)} {_fmt(v)}" for k, v in sorted(values.items())]
        return out


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        out += [f'{self.name}_bucket{{le="{_fmt(b)}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out += [f'{self.name}_bucket{{le="+Inf"}} {self.count}', f"{self.name}_sum {_fmt(self.sum)}",
                f"{self.name}_count {self.count}"]
        return out


PREFIX = "kubeproxy_"


def _gauge(name: str, help: str) -> Metric:
    return Metric(PREFIX + name, help, "gauge")


def _counter(name: str, help: str) -> Metric:
    return Metric(PREFIX + name, help, "counter")


def _histogram(name: str, help: str, buckets: tuple[float, ...] = SYNC_BUCKETS) -> Histogram:
    return Histogram(PREFIX + name, help, buckets)


class ProxyMetrics:
    """kube-proxy's metrics (prefix kubeproxy_), rendered in the order declared here."""

    def __init__(self) -> None:
        rules = "sync_proxy_rules_"
        self.lock = threading.Lock()
        self.sync_duration = _histogram(rules + "duration_seconds", "SyncProxyRules latency in seconds")
        self.sync_full_duration = _histogram("sync_full_proxy_rules_duration_seconds",
                                             "SyncProxyRules latency in seconds for full resyncs")
        self.sync_partial_duration = _histogram("sync_partial_proxy_rules_duration_seconds",
                                                "SyncProxyRules latency in seconds for partial resyncs")
        self.network_programming = _histogram("network_programming_duration_seconds",
                                              "In Cluster Network Programming Latency in seconds",
                                              NETWORK_PROGRAMMING_BUCKETS)
        self.last_timestamp = _gauge(rules + "last_timestamp_seconds",
                                     "The last time proxy rules were successfully synced")
        self.last_queued_timestamp = _gauge(rules + "last_queued_timestamp_seconds",
                                            "The last time a sync of proxy rules was queued")
        self.endpoint_changes_pending = _gauge(rules + "endpoint_changes_pending",
                                               "Pending proxy rules Endpoint changes")
        self.endpoint_changes_total = _counter(rules + "endpoint_changes_total",
                                               "Cumulative proxy rules Endpoint changes")
        self.service_changes_pending = _gauge(rules + "service_changes_pending", "Pending proxy rules Service changes")
        self.service_changes_total = _counter(rules + "service_changes_total", "Cumulative proxy rules Service changes")
        self.restore_failures = _counter(rules + "iptables_restore_failures_total",
                                         "Cumulative proxy iptables restore failures")
        self.partial_restore_failures = _counter(rules + "iptables_partial_restore_failures_total",
                                                 "Cumulative proxy iptables partial restore failures")
        self.iptables_total = _gauge(rules + "iptables_total", "Total number of iptables rules owned by kube-proxy")
        self.iptables_last = _gauge(rules + "iptables_last",
                                    "Number of iptables rules written by kube-proxy in last sync")
        self.no_local_endpoints = _gauge(rules + "no_local_endpoints_total",
                                         "Number of services with a Local traffic policy and no endpoints")
        self.healthz_total = _counter("proxy_healthz_total", "Cumulative proxy healthz HTTP status")
        self.livez_total = _counter("proxy_livez_total", "Cumulative proxy livez HTTP status")

    def render(self) -> str:
        with self.lock:
            lines: list[str] = []
            for m in vars(self).values():
                if isinstance(m, (Metric, Histogram)):
                    lines += m.render()
        return "\n".join(lines) + "\n"
