"""Data-path client (runs inside the client namespace): alternates connections to a ClusterIP and
straight to the pod, and reports connect() latency (SYN -> SYN-ACK, the first-packet round trip)
and sequential connection rate for each. Prints JSON."""

import json
import socket
import sys
import time


def one(addr):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close: no TIME_WAIT
    t0 = time.perf_counter_ns()
    s.connect(addr)
    t1 = time.perf_counter_ns()
    s.recv(256)
    s.close()
    t2 = time.perf_counter_ns()
    return (t1 - t0) / 1e6, (t2 - t0) / 1e9


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    vip, vport, pod, pport, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    targets = {"cluster_ip": (vip, vport), "pod_ip": (pod, pport)}
    for addr in targets.values():  # warm up (ARP, caches)
        for _ in range(50):
            one(addr)
    lat: dict = {k: [] for k in targets}
    total: dict = {k: 0.0 for k in targets}
    for _ in range(n):
        for k, addr in targets.items():
            ms, s = one(addr)
            lat[k].append(ms)
            total[k] += s
    out = {k: {"connect_p50_ms": pct(v, 0.5), "connect_p99_ms": pct(v, 0.99),
               "conn_per_s": n / total[k]} for k, v in lat.items()}
    print(json.dumps(out))


main()
