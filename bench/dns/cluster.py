"""A synthetic cluster for the DNS benchmark: Services, EndpointSlices, the dnsperf query file
and the equivalent dnsmasq configuration (same records), all deterministic.

Service i (namespace ns-<i % 20>): ClusterIP 10.96.<i/256>.<i%256> with ports http/80/TCP and
dns/53/UDP; every 10th Service is headless with 2 ready endpoints (10.244.x.y).
"""

from __future__ import annotations

import ipaddress
import json
import random
from pathlib import Path
from typing import Any

ZONE = "cluster.local"
JSON = dict[str, Any]


def _svc_name(i: int) -> tuple[str, str]:
    return f"svc-{i}", f"ns-{i % 20}"


def cluster_ip(i: int) -> str:
    return str(ipaddress.IPv4Address("10.96.0.0") + 10 + i)


def endpoint_ip(i: int, k: int) -> str:
    return str(ipaddress.IPv4Address("10.244.0.0") + 2 * i + k + 2)


def headless(i: int) -> bool:
    return i % 10 == 9


def objects(n: int) -> tuple[list[JSON], list[JSON]]:
    services, slices = [], []
    for i in range(n):
        name, ns = _svc_name(i)
        ports = [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]
        ip = "None" if headless(i) else cluster_ip(i)
        for p in ports:
            p["targetPort"] = p["port"]
        services.append({  # what an API server returns (metadata, defaults, status), not a minimal stub
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "uid": f"6a3c1e1c-0000-4000-8000-{i:012d}",
                         "resourceVersion": str(1000 + i), "creationTimestamp": "2024-05-01T12:00:00Z",
                         "labels": {"app": name, "tier": "backend"}},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": ports, "selector": {"app": name},
                     "type": "ClusterIP", "sessionAffinity": "None", "ipFamilies": ["IPv4"],
                     "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"},
            "status": {"loadBalancer": {}}})
        if headless(i):
            slices.append({"metadata": {"name": f"{name}-abcde", "namespace": ns,
                                        "labels": {"kubernetes.io/service-name": name}},
                           "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                           "endpoints": [{"addresses": [endpoint_ip(i, k)], "conditions": {"ready": True}}
                                         for k in range(2)]})
    return services, slices


def queries(n: int, count: int = 20000, seed: int = 1, srv: bool = True) -> list[str]:
    """dnsperf lines: A 40%, AAAA 15% (NODATA), SRV 15%, PTR 15%, NXDOMAIN 15% (SRV -> A when not `srv`)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        i = rng.randrange(n)
        name, ns = _svc_name(i)
        fq = f"{name}.{ns}.svc.{ZONE}"
        r = rng.random()
        if r < 0.40:
            out.append(f"{fq} A")
        elif r < 0.55:
            out.append(f"{fq} AAAA")
        elif r < 0.70:
            out.append(f"_http._tcp.{fq} SRV" if srv else f"{fq} A")
        elif r < 0.85:
            ip = endpoint_ip(i, 0) if headless(i) else cluster_ip(i)
            out.append(f"{ipaddress.ip_address(ip).reverse_pointer} PTR")
        else:
            out.append(f"missing-{i}.{ns}.svc.{ZONE} A")
    return out


def dnsmasq_config(n: int, directory: Path, srv: bool = True) -> Path:
    """hosts file (A + automatic PTR) and srv-host lines serving the same records as podnet dns.

    dnsmasq scans its srv-host list linearly for every query, so `srv=False` (hosts only) is
    its best case, reported separately."""
    hosts, conf = [], []
    for i in range(n):
        name, ns = _svc_name(i)
        fq = f"{name}.{ns}.svc.{ZONE}"
        if headless(i):
            for k in range(2):
                host = f"{endpoint_ip(i, k).replace('.', '-')}.{fq}"
                hosts.append(f"{endpoint_ip(i, k)} {host}")
                hosts.append(f"{endpoint_ip(i, k)} {fq}")
                conf.append(f"srv-host=_http._tcp.{fq},{host},8080,0,50")
        else:
            hosts.append(f"{cluster_ip(i)} {fq}")
            conf.append(f"srv-host=_http._tcp.{fq},{fq},80,0,100")
            conf.append(f"srv-host=_dns._udp.{fq},{fq},53,0,100")
    (directory / "hosts").write_text("\n".join(hosts) + "\n")
    if not srv:
        conf = []
    conf.append(f"addn-hosts={directory / 'hosts'}")
    conf.append(f"local=/{ZONE}/")
    path = directory / ("dnsmasq.conf" if srv else "dnsmasq-nosrv.conf")
    path.write_text("\n".join(conf) + "\n")
    return path


def write_objects(n: int, path: Path) -> None:
    services, slices = objects(n)
    path.write_text(json.dumps({"services": services, "endpointslices": slices}))
