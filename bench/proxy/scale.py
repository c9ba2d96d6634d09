"""Synthetic clusters for the proxy benchmark: N Services x E endpoints, as API JSON."""

from __future__ import annotations

from typing import Any


def cluster_ip(i: int) -> str:
    return f"10.96.{i // 250}.{i % 250 + 1}"


def service(i: int, name: str = "") -> dict[str, Any]:
    return {"metadata": {"namespace": "bench", "name": name or f"svc-{i:05d}"},
            "spec": {"clusterIP": cluster_ip(i), "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def endpoint_slice(i: int, ips: list[str], name: str = "") -> dict[str, Any]:
    svc = name or f"svc-{i:05d}"
    return {"metadata": {"namespace": "bench", "name": f"{svc}-abc",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def fake_endpoints(i: int, count: int) -> list[str]:
    # 10.128.0.0/9: never routed anywhere in the bench topology
    base = 128 * 65536 + i * count
    return [f"10.{(base + j) // 65536}.{(base + j) // 256 % 256}.{(base + j) % 256}" for j in range(count)]
