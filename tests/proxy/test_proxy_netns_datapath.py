"""Packet-level tests: rules applied in a node namespace through the Proxier shell, traffic from a
client namespace to backend namespaces (see proxy_topo.py). Everything lives in namespaces this
module creates; nothing touches the root namespace."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import textwrap
from typing import Any, Iterator

import pytest

from podnet import netns
from proxy.iptables.proxier import Proxier
from tests.conftest import requires_root
from tests.proxy import proxy_topo as t

pytestmark = [pytest.mark.root, requires_root]


@pytest.fixture(scope="module")
def topo() -> Iterator[t.Topo]:
    box = netns.Sandbox(prefix="px")
    try:
        yield t.build(box, backends=3)
    finally:
        box.close()


def apply(topo: t.Topo, services: list[dict[str, Any]], slices: list[dict[str, Any]], **opts: Any) -> Proxier:
    p = topo.proxier(**opts)
    for s in services:
        p.on_service_add(s)
    for e in slices:
        p.on_slice_add(e)
    p.set_synced(services=True, slices=True)
    result = p.sync_proxy_rules()
    assert result is not None and result.ok, result
    return p


def names(answers: list[str]) -> list[str]:
    return [a.split()[0] for a in answers]


def test_syn_to_cluster_ip_arrives_with_destination_rewritten(topo: t.Topo) -> None:
    apply(topo, [t.service("syn", "10.96.1.1")], [t.endpoint_slice("syn", [topo.backend_ips[0]])])
    sniffer = textwrap.dedent("""
        from scapy.all import sniff, IP, TCP
        import sys
        print("go", flush=True)
        pk = sniff(iface="eth0", lfilter=lambda p: TCP in p and p[TCP].flags == "S", count=1, timeout=10)
        print(f"{pk[0][IP].src} {pk[0][IP].dst} {pk[0][TCP].dport}" if pk else "none", flush=True)
    """)
    proc = topo.box.popen(topo.backends[0], [sys.executable, "-c", sniffer], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"go"
    import time
    time.sleep(0.5)  # let the capture socket open (scapy prints before sniff() attaches)
    out = topo.client_run("tcp", "10.96.1.1", "80", "1")
    assert names(out["answers"]) == ["b0"], out
    src, dst, dport = proc.stdout.readline().decode().split()
    proc.wait(5)
    assert (dst, dport) == (topo.backend_ips[0], str(t.PORT))  # DNAT: ClusterIP:80 -> pod:8080
    assert src == t.GATEWAY  # client is outside --cluster-cidr: masqueraded


def test_distribution_across_three_backends_is_near_uniform(topo: t.Topo) -> None:
    apply(topo, [t.service("dist", "10.96.1.2")], [t.endpoint_slice("dist", topo.backend_ips)])
    out = topo.client_run("tcp", "10.96.1.2", "80", "300")
    assert not out["errors"]
    counts = collections.Counter(names(out["answers"]))
    assert set(counts) == {"b0", "b1", "b2"}
    # expected 100 each; binomial sd ~8.2, so 55..145 is > 5 sd
    assert all(55 <= c <= 145 for c in counts.values()), counts


def test_client_ip_affinity_sticks(topo: t.Topo) -> None:
    svc = t.service("aff", "10.96.1.3", sessionAffinity="ClientIP",
                    sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    apply(topo, [svc], [t.endpoint_slice("aff", topo.backend_ips)])
    out = topo.client_run("tcp", "10.96.1.3", "80", "30")
    assert len(set(names(out["answers"]))) == 1 and len(out["answers"]) == 30, out


def test_node_port_cluster_policy_masquerades_local_policy_preserves_source(topo: t.Topo) -> None:
    cluster = t.service("npc", "10.96.1.4", type="NodePort", node_port=30080)
    local = t.service("npl", "10.96.1.5", type="NodePort", node_port=30081, externalTrafficPolicy="Local")
    local_none = t.service("npn", "10.96.1.6", type="NodePort", node_port=30082, externalTrafficPolicy="Local")
    apply(topo, [cluster, local, local_none],
          [t.endpoint_slice("npc", [topo.backend_ips[1]]),
           t.endpoint_slice("npl", [topo.backend_ips[2]], node=t.NODE_NAME),
           t.endpoint_slice("npn", [topo.backend_ips[0]], node="other-node")])
    out = topo.client_run("tcp", t.NODE_IP, "30080", "3")
    assert names(out["answers"]) == ["b1"] * 3, out
    assert all(a.split()[1].startswith(t.GATEWAY + ":") for a in out["answers"])  # SNAT to the node
    out = topo.client_run("tcp", t.NODE_IP, "30081", "3")
    assert names(out["answers"]) == ["b2"] * 3, out
    assert all(a.split()[1].startswith(t.CLIENT_IP + ":") for a in out["answers"])  # source preserved
    out = topo.client_run("tcp", t.NODE_IP, "30082", "1")  # Local policy, no local endpoint: DROP
    assert out["answers"] == [] and out["errors"] and "timeout" in out["errors"][0].lower(), out


def test_no_endpoints_rejects_with_icmp_port_unreachable(topo: t.Topo) -> None:
    apply(topo, [t.service("empty", "10.96.1.7"), t.service("emptyu", "10.96.1.8", protocol="UDP")], [])
    out = topo.client_run("tcp", "10.96.1.7", "80", "1")
    assert out["answers"] == [] and out["errors"][0].startswith("ConnectionRefusedError"), out
    probe = textwrap.dedent("""
        from scapy.all import IP, TCP, ICMP, UDP, sr1, conf
        conf.verb = 0
        r = sr1(IP(dst="10.96.1.7")/TCP(dport=80, flags="S"), timeout=3)
        u = sr1(IP(dst="10.96.1.8")/UDP(dport=80)/b"x", timeout=3)
        print(r[ICMP].type, r[ICMP].code, u[ICMP].type, u[ICMP].code)
    """)
    got = netns.run(topo.client, [sys.executable, "-c", probe], timeout=30).stdout.split()
    assert got == ["3", "3", "3", "3"]  # destination unreachable / port unreachable


def test_hairpin_pod_reaches_itself_through_its_service(topo: t.Topo) -> None:
    apply(topo, [t.service("hair", "10.96.1.9")], [t.endpoint_slice("hair", [topo.backend_ips[0]])])
    out = topo.client_run("tcp", "10.96.1.9", "80", "2", ns=topo.backends[0])
    assert names(out["answers"]) == ["b0", "b0"], out
    # the reply must come back through the node: the source is masqueraded to the gateway
    assert all(a.split()[1].startswith(t.GATEWAY + ":") for a in out["answers"])


def test_udp_conntrack_cleanup_moves_the_next_datagram(topo: t.Topo) -> None:
    svc = t.service("dns", "10.96.1.10", port=53, protocol="UDP")
    p = apply(topo, [svc], [t.endpoint_slice("dns", [topo.backend_ips[0]], protocol="UDP")])
    out = topo.client_run("udp", "10.96.1.10", "53", "2", "--sport", "40053")
    assert names(out["answers"]) == ["b0", "b0"], out
    p.on_slice_modify({}, t.endpoint_slice("dns", [topo.backend_ips[1]], protocol="UDP"))
    result = p.sync_proxy_rules()
    assert result is not None and result.ok and not result.full
    assert ("--orig-dst", "10.96.1.10", "--dst-nat", topo.backend_ips[0], "-p", "udp") in result.conntrack_deleted
    out = topo.client_run("udp", "10.96.1.10", "53", "2", "--sport", "40053")
    assert names(out["answers"]) == ["b1", "b1"], out  # b0 still runs: only conntrack could move it


def _counters(save: str, chain_prefix: str, comment: str) -> list[str]:
    return [line.split()[0] for line in save.splitlines()
            if f"-A {chain_prefix}" in line and comment in line and "DNAT" in line]


def test_partial_sync_leaves_untouched_services_flows_alone(topo: t.Topo, tmp_path: Any) -> None:
    p = apply(topo, [t.service("keep", "10.96.1.11"), t.service("churn", "10.96.1.12")],
              [t.endpoint_slice("keep", [topo.backend_ips[0]]), t.endpoint_slice("churn", [topo.backend_ips[1]])])
    flag = tmp_path / "stop"
    hold = netns.popen(topo.client, [sys.executable, str(t.CLIENT_SCRIPT), "hold", "10.96.1.11", "80", "20",
                                     str(flag)], stdout=subprocess.PIPE)
    try:
        assert hold.stdout is not None
        first = json.loads(hold.stdout.readline())
        assert first["connected"].startswith("b0")
        before = _counters(topo.iptables_save(), "KUBE-SEP-", "default/keep:p")
        for i in range(3):  # three partial syncs that rewrite only "churn"
            ips = topo.backend_ips[2:] if i % 2 == 0 else topo.backend_ips[1:]
            p.on_slice_modify({}, t.endpoint_slice("churn", ips))
            r = p.sync_proxy_rules()
            assert r is not None and r.ok and not r.full and r.rendered is not None
            assert "default/keep:p" not in r.rendered.text.split("*nat")[1].split("KUBE-SERVICES -m comment")[0]
            assert not any("-A KUBE-SEP" in ln and "default/keep:p" in ln for ln in r.rendered.text.splitlines())
        after = _counters(topo.iptables_save(), "KUBE-SEP-", "default/keep:p")
        assert before == after and before  # keep's chains were not rewritten (counters not reset)
        import time
        time.sleep(0.4)  # let the held connection exchange a few more pings after the syncs
        flag.write_text("x")
        out = json.loads(hold.stdout.read())
        assert not out["errors"] and len(out["answers"]) > 3 and set(names(out["answers"])) == {"b0"}, out
    finally:
        netns.stop(hold)
    out = topo.client_run("tcp", "10.96.1.12", "80", "20")
    assert set(names(out["answers"])) == {"b2"}


def test_restart_takes_over_and_cleanup_removes_everything(topo: t.Topo) -> None:
    apply(topo, [t.service("old", "10.96.1.13")], [t.endpoint_slice("old", [topo.backend_ips[0]])])
    assert "default/old:p" in topo.iptables_save(False)
    # a "restarted" proxier that no longer has the Service: takes over and deletes stale chains
    apply(topo, [t.service("new", "10.96.1.14")], [t.endpoint_slice("new", [topo.backend_ips[1]])])
    dump = topo.iptables_save(False)
    assert "default/old:p" not in dump and "default/new:p" in dump
    assert names(topo.client_run("tcp", "10.96.1.14", "80", "1")["answers"]) == ["b1"]
    # `podnet proxy --cleanup` inside the node namespace
    proc = netns.run(topo.node, [sys.executable, "-m", "podnet", "proxy", "--cleanup"], timeout=60)
    assert proc.returncode == 0
    dump = topo.iptables_save(False) + netns.run(topo.node, ["iptables-legacy-save"]).stdout
    assert "KUBE-" not in dump, dump


def test_flush_is_detected_by_canary_and_repaired(topo: t.Topo) -> None:
    p = apply(topo, [t.service("can", "10.96.1.15")], [t.endpoint_slice("can", [topo.backend_ips[2]])])
    assert p.check_canary()
    p.ipt.iptables("-t", "nat", "-F")
    p.ipt.iptables("-t", "nat", "-X")
    assert topo.client_run("tcp", "10.96.1.15", "80", "1")["answers"] == [] or True
    assert not p.check_canary()
    r = p.sync_proxy_rules()
    assert r is not None and r.ok and r.full
    assert names(topo.client_run("tcp", "10.96.1.15", "80", "1")["answers"]) == ["b2"]


def test_failed_restore_forces_full_sync(topo: t.Topo, monkeypatch: pytest.MonkeyPatch) -> None:
    p = apply(topo, [t.service("fail", "10.96.1.16")], [t.endpoint_slice("fail", [topo.backend_ips[0]])])
    real = p.ipt.restore
    calls: list[str] = []

    def broken(payload: str, **kw: Any) -> None:
        calls.append(payload)
        real(payload.replace("COMMIT", "-A KUBE-SERVICES --bogus-option\nCOMMIT", 1), **kw)

    monkeypatch.setattr(p.ipt, "restore", broken)
    p.on_slice_modify({}, t.endpoint_slice("fail", [topo.backend_ips[1]]))
    r = p.sync_proxy_rules()
    assert r is not None and not r.ok and not r.full and "iptables-restore failed" in r.error
    assert p.metrics.restore_failures.get() == 1 and p.metrics.partial_restore_failures.get() == 1
    # the old rules are untouched (atomic): traffic still flows to the old endpoint
    assert names(topo.client_run("tcp", "10.96.1.16", "80", "1")["answers"]) == ["b0"]
    monkeypatch.setattr(p.ipt, "restore", real)
    r = p.sync_proxy_rules()
    assert r is not None and r.ok and r.full
    assert names(topo.client_run("tcp", "10.96.1.16", "80", "1")["answers"]) == ["b1"]


def _normalized(save: str) -> dict[str, list[str]]:
    """chain -> sorted rules of our chains (rule order across services is free in incremental mode)."""
    out: dict[str, list[str]] = {}
    table = ""
    for line in save.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":KUBE-"):
            out.setdefault(f"{table} {line[1:].split()[0]}", [])
        elif line.startswith("-A KUBE-"):
            out.setdefault(f"{table} {line.split()[1]}", []).append(line)
    return {k: sorted(v) for k, v in out.items()}


def test_incremental_syncs_converge_to_the_full_ruleset(topo: t.Topo) -> None:
    import random
    rnd = random.Random(7)
    svcs = {f"inc{i}": t.service(f"inc{i}", f"10.96.2.{i + 1}", type="NodePort" if i % 3 == 0 else "ClusterIP",
                                 **({"node_port": 31000 + i} if i % 3 == 0 else {})) for i in range(8)}
    p = apply(topo, list(svcs.values()), [t.endpoint_slice(n, topo.backend_ips[:1]) for n in svcs])
    for step in range(12):
        name = f"inc{rnd.randrange(10)}"
        action = rnd.choice(["eps", "eps", "none", "svc"])
        if action == "svc" and name in svcs:
            p.on_service_delete(svcs.pop(name))
        elif action == "svc" or name not in svcs:
            svcs[name] = t.service(name, f"10.96.2.{int(name[3:]) + 1}")
            p.on_service_add(svcs[name])
        elif action == "eps":
            p.on_slice_modify({}, t.endpoint_slice(name, rnd.sample(topo.backend_ips, rnd.randint(1, 3))))
        else:
            p.on_slice_modify({}, t.endpoint_slice(name, []))
        r = p.sync_proxy_rules()
        assert r is not None and r.ok and not r.full, (step, r)
    incremental = _normalized(topo.iptables_save(False))
    p.force_full_sync()
    r = p.sync_proxy_rules()
    assert r is not None and r.ok and r.full
    assert incremental == _normalized(topo.iptables_save(False))


def test_legacy_backend_folds_jumps_and_canaries_into_the_restore(topo: t.Topo) -> None:
    import ipaddress

    from proxy.iptables import backend
    from proxy.iptables import names as pnames
    from proxy.iptables.render import RenderOptions

    backend.cleanup(backend.Iptables("nft", netns=topo.node))  # one backend at a time
    ipt = backend.Iptables("legacy", netns=topo.node)
    try:
        p = Proxier(t.NODE_NAME, ipt, RenderOptions(cluster_cidr=ipaddress.ip_network(t.CLUSTER_CIDR)))
        p.on_service_add(t.service("leg", "10.96.3.1"))
        p.on_slice_add(t.endpoint_slice("leg", [topo.backend_ips[1]]))
        p.set_synced(services=True, slices=True)
        for _ in range(2):  # twice: the second full sync must not duplicate jumps
            p.force_full_sync()
            r = p.sync_proxy_rules()
            assert r is not None and r.ok and r.full, r
        save = ipt.save()
        for table, chain, src, _comment, _extra in (*pnames.JUMP_CHAINS, *pnames.KUBELET_JUMP_CHAINS):
            section = save.split(f"*{table}\n")[1].split("COMMIT")[0]
            assert sum(1 for ln in section.splitlines()
                       if ln.startswith(f"-A {src} ") and ln.endswith(f"-j {chain}")) == 1, (table, src, chain)
        assert save.count(f":{pnames.KUBE_PROXY_CANARY} ") == 3
        assert p.check_canary()
        assert names(topo.client_run("tcp", "10.96.3.1", "80", "2")["answers"]) == ["b1", "b1"]
    finally:
        backend.cleanup(ipt)
    assert "KUBE-" not in ipt.save()
