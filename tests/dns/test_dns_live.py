"""Live tests: `podnet dns` fed by a live `podnet controlplane`, queried with dig and kdig over
UDP and TCP on 127.0.0.1 high ports; forwarding to a fake upstream on loopback; a fuzz test.

One control plane, one fake upstream and one `podnet dns` are shared by the module (each
test uses its own namespace of objects). No root needed.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
from dnslib import QTYPE, RCODE, RR, SOA, A, DNSRecord

from tests.conftest import (REPO, ControlPlane, free_port_number, podnet_argv, running_controlplane, stop_process,
                            wait_until as wait_for)

pytestmark = [pytest.mark.kubectl, pytest.mark.skipif(shutil.which("dig") is None, reason="needs dig")]


# ---------------------------------------------------------------- fake upstream
@dataclass
class FakeUpstream:
    """A UDP+TCP DNS server on loopback: <anything>.example.test A 192.0.2.1 (TTL 60),
    nx.example.test NXDOMAIN (SOA minimum 60), big.example.test 80 A records."""

    port: int = 0
    queries: list[str] = field(default_factory=list)
    silent: bool = False

    def __post_init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket()
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(8)
        self._stop = False
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]
        for t in self.threads:
            t.start()

    def reply(self, data: bytes) -> bytes:
        q = DNSRecord.parse(data)
        name = str(q.q.qname).lower()
        self.queries.append(f"{name} {QTYPE[q.q.qtype]}")
        r = q.reply()
        if name == "nx.example.test.":
            r.header.rcode = RCODE.NXDOMAIN
            r.add_auth(RR("example.test.", QTYPE.SOA, ttl=60, rdata=SOA("ns.example.test.", "h.example.test.",
                                                                          (1, 2, 3, 4, 60))))
        elif name == "big.example.test.":
            for i in range(80):
                r.add_answer(RR(q.q.qname, QTYPE.A, ttl=60, rdata=A(f"192.0.2.{i + 1}")))
        elif q.q.qtype == QTYPE.A:
            r.add_answer(RR(q.q.qname, QTYPE.A, ttl=60, rdata=A("192.0.2.1")))
        return r.pack()

    def _serve_udp(self) -> None:
        while not self._stop:
            try:
                data, addr = self.udp.recvfrom(4096)
            except OSError:
                return
            if self.silent:
                continue
            out = self.reply(data)
            if len(out) > 512:
                rec = DNSRecord.parse(out)
                rec.rr = []
                rec.header.tc = 1
                out = rec.pack()
            self.udp.sendto(out, addr)

    def _serve_tcp(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                try:
                    size = struct.unpack("!H", conn.recv(2))[0]
                    data = b""
                    while len(data) < size:
                        data += conn.recv(size - len(data))
                    out = self.reply(data)
                    conn.sendall(struct.pack("!H", len(out)) + out)
                except (OSError, struct.error):
                    pass

    def close(self) -> None:
        self._stop = True
        self.udp.close()
        self.tcp.close()


# ---------------------------------------------------------------- the server under test
@dataclass
class DNSProc:
    port: int
    http: int
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.proc)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""


def start_dns(tmp: Path, source: list[str], upstream: str, *extra: str) -> DNSProc:
    port, http = free_port_number(), free_port_number()
    log = tmp / f"dns-{port}.log"
    listen = f"127.0.0.1:{http}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            podnet_argv("dns", *source, "--listen", f"127.0.0.1:{port}", "--upstream", upstream,
                        "--health-listen", listen, "--ready-listen", listen, "--metrics-listen", listen,
                        "--forward-timeout", "1", *extra), stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    return DNSProc(port, http, proc, log)


@dataclass
class Env:
    cp: ControlPlane
    dns: DNSProc
    upstream: FakeUpstream

    def dig(self, *args: str, tool: str = "dig") -> str:
        limits = ["+timeout=3", "+retry=0"] if tool == "kdig" else ["+time=3", "+tries=1"]
        proc = subprocess.run([tool, "@127.0.0.1", "-p", str(self.dns.port), *limits, *args],
                              capture_output=True, text=True, timeout=30)
        return proc.stdout + proc.stderr

    def apply(self, manifest: dict) -> None:  # type: ignore[type-arg]
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("dnslive")
    with running_controlplane(tmp / "cp") as cp:
        upstream = FakeUpstream()
        dns = start_dns(tmp, ["--kubeconfig", str(cp.kubeconfig)], f"127.0.0.1:{upstream.port}")
        try:
            wait_for(lambda: dns.get("/ready")[0] == 200 or dns.proc.poll() is not None, what="dns ready")
            assert dns.proc.poll() is None, dns.log.read_text()
            yield Env(cp, dns, upstream)
        finally:
            dns.stop()
            upstream.close()


def status(out: str) -> str:
    m = re.search(r"status: (\w+)", out)
    return m.group(1) if m else "?"


def answers(out: str) -> list[str]:
    """Answer-section records from dig/kdig output, whitespace-normalised."""
    lines, section = [], False
    for ln in out.splitlines():
        if re.match(r";; ANSWER SECTION", ln):
            section = True
            continue
        if section:
            if not ln.strip() or ln.startswith(";;"):
                break
            lines.append(" ".join(ln.split()))
    return lines


def service(ns: str, name: str, **spec: object) -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}}


def namespace(env: Env, name: str) -> None:
    env.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def cluster_ip(env: Env, ns: str, name: str) -> str:
    out = env.cp.kubectl("get", "svc", name, "-n", ns, "-o", "jsonpath={.spec.clusterIP}", check=True).stdout
    return out.strip()


# ---------------------------------------------------------------- tests
def test_health_ready_metrics(env: Env) -> None:
    assert env.dns.get("/health") == (200, "OK")
    assert env.dns.get("/ready") == (200, "OK")
    env.dig("dns-version.cluster.local", "TXT")
    code, body = env.dns.get("/metrics")
    assert code == 200
    assert 'podnet_dns_requests_total{proto="udp",type="TXT"}' in body
    assert "podnet_dns_request_duration_seconds_bucket" in body and "podnet_dns_ready 1" in body
    rss = float(re.search(r"^process_resident_memory_bytes (\S+)", body, re.M).group(1))  # type: ignore[union-attr]
    assert 10e6 < rss < 500e6


def test_service_records_udp_tcp_dig_kdig(env: Env) -> None:
    namespace(env, "live1")
    env.apply(service("live1", "web"))
    ip = cluster_ip(env, "live1", "web")
    assert re.match(r"\d+\.\d+\.\d+\.\d+$", ip), ip
    wait_for(lambda: ip in env.dig("+short", "web.live1.svc.cluster.local"), what="service A record")
    for transport in ("+notcp", "+tcp"):
        out = env.dig(transport, "WEB.Live1.svc.cluster.local", "A")
        assert status(out) == "NOERROR" and answers(out) == [f"WEB.Live1.svc.cluster.local. 5 IN A {ip}"], out
        assert " aa " in out.split("flags:")[1].split(";")[0] + " "
        srv = env.dig(transport, "_http._tcp.web.live1.svc.cluster.local", "SRV")
        assert answers(srv) == ["_http._tcp.web.live1.svc.cluster.local. 5 IN SRV 0 100 80 "
                                "web.live1.svc.cluster.local."], srv
        assert f"web.live1.svc.cluster.local. 5 IN A {ip}" in " ".join(srv.split())
    ptr = env.dig("-x", ip)
    assert answers(ptr) == [f"{'.'.join(reversed(ip.split('.')))}.in-addr.arpa. 5 IN PTR web.live1.svc.cluster.local."]
    nx = env.dig("nope.live1.svc.cluster.local")
    assert status(nx) == "NXDOMAIN" and "IN SOA ns.dns.cluster.local. hostmaster.cluster.local." in " ".join(nx.split())
    nodata = env.dig("web.live1.svc.cluster.local", "AAAA")
    assert status(nodata) == "NOERROR" and not answers(nodata) and "SOA" in nodata
    if shutil.which("kdig"):
        for transport in ("+notcp", "+tcp"):
            out = env.dig(transport, "web.live1.svc.cluster.local", "A", tool="kdig")
            assert "NOERROR" in out and ip in out, out
        out = env.dig("dns-version.cluster.local", "TXT", tool="kdig")
        assert '"1.1.0"' in out


def test_updates_visible_after_create_and_delete(env: Env) -> None:
    namespace(env, "live2")
    assert status(env.dig("later.live2.svc.cluster.local")) == "NXDOMAIN"
    env.apply(service("live2", "later"))
    ip = cluster_ip(env, "live2", "later")
    t0 = time.monotonic()
    wait_for(lambda: ip in env.dig("+short", "later.live2.svc.cluster.local"), what="created service")
    created_after = time.monotonic() - t0
    env.cp.kubectl("delete", "svc", "later", "-n", "live2", check=True)
    wait_for(lambda: status(env.dig("later.live2.svc.cluster.local")) == "NXDOMAIN", what="deleted service")
    assert created_after < 5


def _headless(env: Env, ns: str, name: str, ips: list[str]) -> None:
    env.apply(service(ns, name, clusterIP="None"))
    env.apply({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": f"{name}-x", "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
               "endpoints": [{"addresses": [ip], "conditions": {"ready": True},
                              **({"hostname": "first"} if i == 0 else {})} for i, ip in enumerate(ips)]})


def test_headless_and_truncation(env: Env) -> None:
    namespace(env, "live3")
    ips = [f"10.77.0.{i + 1}" for i in range(60)]
    _headless(env, "live3", "many", ips)
    name = "many.live3.svc.cluster.local"
    wait_for(lambda: len(answers(env.dig("+tcp", name))) == 60, what="60 endpoint records")
    assert answers(env.dig("first." + name)) == [f"first.{name}. 5 IN A 10.77.0.1"]
    assert answers(env.dig("10-77-0-2." + name)) == [f"10-77-0-2.{name}. 5 IN A 10.77.0.2"]
    assert answers(env.dig("-x", "10.77.0.2")) == [f"2.0.77.10.in-addr.arpa. 5 IN PTR 10-77-0-2.{name}."]
    # UDP without EDNS: 512 bytes -> TC set, no answers (dig +ignore keeps the truncated reply)
    trunc = env.dig("+notcp", "+ignore", "+noedns", name)
    assert " tc " in trunc.split("flags:")[1].split(";")[0] + " " and not answers(trunc), trunc
    # EDNS 4096 fits 60 A records without TC
    roomy = env.dig("+notcp", "+ignore", "+bufsize=4096", name)
    assert len(answers(roomy)) == 60 and " tc " not in roomy.split("flags:")[1].split(";")[0] + " "
    # dig's default: retries over TCP on TC and gets everything
    assert len(answers(env.dig("+noedns", name))) == 60
    # loadbalance: successive clients see different first endpoints (UDP from the cache, and TCP)
    firsts = {env.dig("+short", "+bufsize=4096", name).split()[0] for _ in range(12)}
    assert len(firsts) >= 3, firsts
    assert len({env.dig("+short", "+tcp", name).split()[0] for _ in range(8)}) >= 2
    srv = env.dig("+tcp", "_http._tcp." + name, "SRV")
    assert len(answers(srv)) == 60 and "0 1 8080 first." + name in " ".join(srv.split())


def test_forwarding_and_caching(env: Env) -> None:
    before = len(env.upstream.queries)
    out = env.dig("www.example.test")
    assert status(out) == "NOERROR" and answers(out) == ["www.example.test. 60 IN A 192.0.2.1"], out
    again = env.dig("WWW.example.test")
    assert status(again) == "NOERROR" and "192.0.2.1" in again
    assert env.upstream.queries[before:].count("www.example.test. A") == 1  # the second came from the cache
    nx1, nx2 = env.dig("nx.example.test"), env.dig("nx.example.test")
    assert status(nx1) == status(nx2) == "NXDOMAIN"
    assert env.upstream.queries[before:].count("nx.example.test. A") == 1  # negative caching
    # the upstream truncates over UDP: we retry over TCP and answer fully over TCP
    big = env.dig("+tcp", "big.example.test")
    assert len(answers(big)) == 80
    # unknown reverse names fall through to the upstream
    env.dig("-x", "198.51.100.7")
    assert "7.100.51.198.in-addr.arpa. PTR" in env.upstream.queries
    _, metrics = env.dns.get("/metrics")
    assert 'podnet_dns_cache_hits_total{cache="forward"}' in metrics


def test_upstream_down_servfail_fast(env: Env) -> None:
    env.upstream.silent = True
    try:
        t0 = time.monotonic()
        out = env.dig("+time=5", "silent.example.test")
        elapsed = time.monotonic() - t0
        assert status(out) == "SERVFAIL", out
        assert elapsed < 3.5  # --forward-timeout 1
        assert status(env.dig("web.live1.svc.cluster.local")) in ("NOERROR", "NXDOMAIN")  # still serving
    finally:
        env.upstream.silent = False


def _udp_exchange(port: int, data: bytes, timeout: float = 0.3) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return s.recvfrom(65535)[0]
        except socket.timeout:
            return None


def test_fuzz_malformed_packets(env: Env) -> None:
    rng = random.Random(6)
    good = DNSRecord.question("web.live1.svc.cluster.local", "A").pack()
    packets: list[bytes] = [b"", b"\x00", good[:5], good[:12], good[:-3]]
    packets.append(good[:12] + b"\xc0\x0c\x00\x01\x00\x01")  # a label pointer to itself
    packets.append(good[:12] + b"\xc0\xff\x00\x01\x00\x01")  # a pointer past the end
    packets.append(good[:12] + b"\x3f" + b"a" * 10)  # a label longer than the packet
    packets.append(good[:2] + b"\x80\x00" + good[4:])  # a response (QR set): dropped
    packets.append(good[:4] + b"\xff\xff" + good[6:])  # qdcount 65535
    packets += [rng.randbytes(rng.randrange(1, 600)) for _ in range(300)]
    packets += [good + rng.randbytes(5000), good[:2] + b"\x01\x00" + rng.randbytes(60000)]  # over a batch slot
    for _ in range(200):
        b = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        packets.append(bytes(b))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in packets:
            s.sendto(p, ("127.0.0.1", env.dns.port))
    # malformed over TCP too: a short frame, garbage, then a closed connection
    for junk in (b"\x00\x05abc", b"\x00\x0c" + b"\xff" * 12, b"\xff"):
        with socket.create_connection(("127.0.0.1", env.dns.port), timeout=2) as c:
            c.sendall(junk)
    formerr = _udp_exchange(env.dns.port, good[:12] + b"\x3f" + b"a" * 10)
    assert formerr is not None and formerr[3] & 0xF == RCODE.FORMERR and formerr[:2] == good[:2]
    assert _udp_exchange(env.dns.port, good[:2] + b"\x80\x00" + good[4:]) is None
    assert env.dns.proc.poll() is None
    reply = _udp_exchange(env.dns.port, DNSRecord.question("dns-version.cluster.local", "TXT").pack(), timeout=3)
    assert reply is not None and DNSRecord.parse(reply).header.rcode == RCODE.NOERROR
    _, metrics = env.dns.get("/metrics")
    assert int(re.search(r"podnet_dns_malformed_total (\d+)", metrics).group(1)) > 100  # type: ignore[union-attr]


def test_before_sync_servfail_and_not_ready(tmp_path: Path) -> None:
    """With the API server unreachable: SERVFAIL for the zone, 503 on /ready, /health fine."""
    dead = free_port_number()
    dns = start_dns(tmp_path, ["--server", f"http://127.0.0.1:{dead}"], "none")
    try:
        wait_for(lambda: dns.get("/health")[0] == 200, what="health")
        code, body = dns.get("/ready")
        assert code == 503 and "services" in body
        out = subprocess.run(["dig", "@127.0.0.1", "-p", str(dns.port), "+time=2", "+tries=1",
                              "web.default.svc.cluster.local"], capture_output=True, text=True, timeout=20).stdout
        assert status(out) == "SERVFAIL"
    finally:
        dns.stop()
    assert dns.proc.returncode == 0, dns.log.read_text()[-2000:]


def test_workers_share_the_port(env: Env, tmp_path: Path) -> None:
    """--workers 2: two processes on one SO_REUSEPORT socket pair, both answering; all stop together."""
    dns = start_dns(tmp_path, ["--kubeconfig", str(env.cp.kubeconfig)], "none", "--workers", "2")
    try:
        wait_for(lambda: dns.get("/ready")[0] == 200, what="dns ready")
        children = Path(f"/proc/{dns.proc.pid}/task/{dns.proc.pid}/children").read_text().split()
        assert len(children) == 1
        for i in range(20):  # fresh source ports spread over both workers; each must answer
            out = subprocess.run(["dig", "@127.0.0.1", "-p", str(dns.port), "+time=2", "+tries=2",
                                  "dns-version.cluster.local", "TXT"], capture_output=True, text=True).stdout
            assert '"1.1.0"' in out, out
    finally:
        dns.stop()
    assert dns.proc.returncode == 0
    for pid in children:
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
                 what=f"worker {pid} gone")


def test_pods_verified_follows_pod_ips(env: Env, tmp_path: Path) -> None:
    """--pods verified: a-b-c-d.<ns>.pod answers only while a live pod of that namespace has the IP."""
    namespace(env, "live4")
    env.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "live4"},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    env.cp.kubectl("patch", "pod", "p1", "-n", "live4", "--subresource=status", "--type=merge", "-p",
                   json.dumps({"status": {"phase": "Running", "podIP": "10.88.0.5", "podIPs": [{"ip": "10.88.0.5"}]}}),
                   check=True)
    dns = start_dns(tmp_path, ["--kubeconfig", str(env.cp.kubeconfig)], "none", "--pods", "verified")
    try:
        wait_for(lambda: dns.get("/ready")[0] == 200, what="dns ready")

        def ask(name: str) -> str:
            return subprocess.run(["dig", "@127.0.0.1", "-p", str(dns.port), "+time=2", "+tries=1", name],
                                  capture_output=True, text=True, timeout=20).stdout

        wait_for(lambda: "10.88.0.5" in ask("10-88-0-5.live4.pod.cluster.local"), what="pod record")
        assert status(ask("10-88-0-6.live4.pod.cluster.local")) == "NXDOMAIN"
        assert status(ask("10-88-0-5.default.pod.cluster.local")) == "NXDOMAIN"
        env.cp.kubectl("delete", "pod", "p1", "-n", "live4", "--grace-period=0", "--force", check=True)
        wait_for(lambda: status(ask("10-88-0-5.live4.pod.cluster.local")) == "NXDOMAIN", what="pod record gone")
    finally:
        dns.stop()


def test_lameduck_keeps_answering_with_ready_503(env: Env, tmp_path: Path) -> None:
    dns = start_dns(tmp_path, ["--kubeconfig", str(env.cp.kubeconfig)], "none", "--lameduck", "2")
    try:
        wait_for(lambda: dns.get("/ready")[0] == 200, what="dns ready")
        dns.proc.terminate()
        t0 = time.monotonic()
        wait_for(lambda: dns.get("/ready")[0] == 503, timeout=2, what="ready 503 in lameduck")
        out = subprocess.run(["dig", "@127.0.0.1", "-p", str(dns.port), "+time=1", "+tries=1",
                              "kubernetes.default.svc.cluster.local"], capture_output=True, text=True).stdout
        assert status(out) == "NOERROR", out
        assert dns.proc.wait(10) == 0
        assert time.monotonic() - t0 >= 1.5
    finally:
        dns.stop()
