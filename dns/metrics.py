"""Prometheus metrics of the DNS server (text exposition format 0.0.4).

Names (documented in dns/README.md):
  podnet_dns_requests_total{proto,type}             queries received, by transport and qtype
  podnet_dns_responses_total{rcode}                 replies sent, by rcode
  podnet_dns_request_duration_seconds{...}          histogram of time to answer
  podnet_dns_cache_hits_total{cache}                cache="answer" (cluster) | "forward"
  podnet_dns_cache_misses_total{cache}
  podnet_dns_cache_entries{cache}
  podnet_dns_forward_requests_total / _failures_total / _refused_total
  podnet_dns_malformed_total                        packets dropped or answered FORMERR
  podnet_dns_services, podnet_dns_view_generation, podnet_dns_ready
  process_resident_memory_bytes, process_cpu_seconds_total
"""

from __future__ import annotations

import bisect
from typing import Callable

BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512,
           1.024, 2.048, 4.096, 8.192)


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}  # (proto, qtype) -> n
        self.rcodes: dict[str, int] = {}
        self.by_stat: dict[tuple[str, str], int] = {}  # (qtype, rcode) -> n, from the UDP fast path
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.duration_sum = 0.0
        self.duration_count = 0
        self.answer_hits = 0
        self.answer_misses = 0
        self.malformed = 0
        self.gauges: dict[str, Callable[[], float]] = {}

    def count(self, proto: str, qtype: str, rcode: str) -> None:
        key = (proto, qtype)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.rcodes[rcode] = self.rcodes.get(rcode, 0) + 1

    def observe(self, seconds: float, n: int = 1) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += n
        self.duration_sum += seconds * n
        self.duration_count += n

    def _fold_fast_path(self) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        requests = dict(self.requests)
        rcodes = dict(self.rcodes)
        for (qtype, rcode), n in self.by_stat.items():
            requests[("udp", qtype)] = requests.get(("udp", qtype), 0) + n
            rcodes[rcode] = rcodes.get(rcode, 0) + n
        return requests, rcodes

    def render(self, forward_stats: dict[str, int], forward_cache_entries: int, answer_entries: int) -> str:
        requests, rcodes = self._fold_fast_path()
        out: list[str] = []

        def family(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        family("podnet_dns_requests_total", "counter", "DNS queries received.")
        for (proto, qtype), n in sorted(requests.items()):
            out.append(f'podnet_dns_requests_total{{proto="{proto}",type="{qtype}"}} {n}')
        family("podnet_dns_responses_total", "counter", "DNS replies sent, by rcode.")
        for rcode, n in sorted(rcodes.items()):
            out.append(f'podnet_dns_responses_total{{rcode="{rcode}"}} {n}')
        family("podnet_dns_request_duration_seconds", "histogram", "Time to answer a query.")
        cumulative = 0
        for bound, n in zip(BUCKETS, self.buckets):
            cumulative += n
            out.append(f'podnet_dns_request_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
        out.append(f'podnet_dns_request_duration_seconds_bucket{{le="+Inf"}} {self.duration_count}')
        out.append(f"podnet_dns_request_duration_seconds_sum {self.duration_sum:.6f}")
        out.append(f"podnet_dns_request_duration_seconds_count {self.duration_count}")
        family("podnet_dns_cache_hits_total", "counter", "Cache hits.")
        out.append(f'podnet_dns_cache_hits_total{{cache="answer"}} {self.answer_hits}')
        out.append(f'podnet_dns_cache_hits_total{{cache="forward"}} {forward_stats.get("cache_hits", 0)}')
        family("podnet_dns_cache_misses_total", "counter", "Cache misses.")
        out.append(f'podnet_dns_cache_misses_total{{cache="answer"}} {self.answer_misses}')
        out.append(f'podnet_dns_cache_misses_total{{cache="forward"}} {forward_stats.get("cache_misses", 0)}')
        family("podnet_dns_cache_entries", "gauge", "Entries in each cache.")
        out.append(f'podnet_dns_cache_entries{{cache="answer"}} {answer_entries}')
        out.append(f'podnet_dns_cache_entries{{cache="forward"}} {forward_cache_entries}')
        for key, help_ in (("requests", "Queries sent upstream."), ("failures", "Upstream timeouts/errors."),
                           ("refused", "Queries refused over max_concurrent.")):
            family(f"podnet_dns_forward_{key}_total", "counter", help_)
            out.append(f"podnet_dns_forward_{key}_total {forward_stats.get(key, 0)}")
        family("podnet_dns_malformed_total", "counter", "Malformed packets dropped or answered FORMERR.")
        out.append(f"podnet_dns_malformed_total {self.malformed}")
        for name, fn in sorted(self.gauges.items()):
            family(name, "counter" if name.endswith("_total") else "gauge", name.replace("_", " "))
            out.append(f"{name} {fn():.10g}")
        return "\n".join(out) + "\n"
