"""podnet-bridge + podnet-ipam in real namespaces: the plugins always run inside a node
namespace the test created, CNI_NETNS points at pod namespaces the test created."""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cni import errors, masq
from podnet import netns

pytestmark = pytest.mark.root

SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
while True:
    c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()
"""
CLIENT = """
import socket, sys, time
deadline = time.time() + 10
while True:
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.05)
print(c.recv(100).decode())
"""


def serve(node: Any, ns: str, host: str, port: int = 8080) -> None:
    node.box.popen(ns, [sys.executable, "-I", "-c", SERVER, host, str(port)])


def peer_seen(ns: str, host: str, port: int = 8080) -> str:
    return netns.run(ns, [sys.executable, "-I", "-c", CLIENT, host, str(port)], timeout=30).stdout.strip()


def pod_ip(reply: Any, version: int = 4) -> str:
    return next(ip["address"].split("/")[0] for ip in reply.out["ips"]
                if ipaddress.ip_interface(ip["address"]).version == version)


def assert_result_shape(reply: Any, pod: str) -> None:
    out = reply.out
    assert reply.ok, reply
    assert out["cniVersion"] == "1.0.0"
    assert [i["name"] for i in out["interfaces"]][0] == "cni-t0"
    assert out["interfaces"][1]["name"].startswith("veth") and len(out["interfaces"][1]["name"]) == 12
    assert out["interfaces"][2] == {**out["interfaces"][2], "name": "eth0", "sandbox": netns.path_of(pod)}
    assert all(ip["interface"] == 2 and ip["gateway"] == "10.244.7.1" for ip in out["ips"])


# ---------------------------------------------------------------- the 20-pod lifecycle

def test_twenty_pods_add_check_del_with_traffic(cnidaemon: Any) -> None:
    node = cnidaemon
    conf = node.conf()
    pods = [node.pod() for _ in range(20)]
    replies = [node.call("ADD", conf, f"pod{i}", p) for i, p in enumerate(pods)]
    for reply, pod in zip(replies, pods):
        assert_result_shape(reply, pod)
    ips = [pod_ip(r) for r in replies]
    assert len(set(ips)) == 20 and ips[0] == "10.244.7.2" and ips[-1] == "10.244.7.21"
    assert node.allocated() == sorted(ips)
    # node side: bridge with the gateway, 20 veths enslaved, forwarding on, 20 masquerade chains
    assert "inet 10.244.7.1/24" in node.sh("ip", "addr", "show", "cni-t0")
    assert node.sh("ip", "-o", "link", "show", "master", "cni-t0").count("veth") == 20
    assert node.sh("sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"
    rules = node.nat_rules()
    for i, ip in enumerate(ips):
        chain = masq.chain_name("testnet", f"pod{i}")
        assert f"-A POSTROUTING -s {ip}/32 -m comment --comment \"name: \\\"testnet\\\" id: \\\"pod{i}\\\"\" -j {chain}" in rules
        assert f"-A {chain} ! -d 224.0.0.0/4" in rules
    # pod side: address and default route
    assert f"inet {ips[3]}/24" in node.sh("ip", "addr", "show", "eth0", ns=pods[3])
    assert "default via 10.244.7.1 dev eth0" in node.sh("ip", "route", ns=pods[3])
    # traffic: pod -> pod (same L2, no masquerade), pod -> gateway, node -> pod
    serve(node, pods[0], ips[0])
    assert peer_seen(pods[19], ips[0]) == ips[19]
    serve(node, node.ns, "10.244.7.1", 8081)
    assert peer_seen(pods[5], "10.244.7.1", 8081) == ips[5]
    assert peer_seen(node.ns, ips[0]) == "10.244.7.1"
    # CHECK against prevResult passes for all
    for i, (reply, pod) in enumerate(zip(replies, pods)):
        check = node.call("CHECK", {**conf, "prevResult": reply.out}, f"pod{i}", pod)
        assert check.ok and check.out is None, check
    # DEL all: links, rules and IPs gone; bridge stays
    for i, pod in enumerate(pods):
        assert node.call("DEL", conf, f"pod{i}", pod).ok
    assert node.allocated() == []
    assert "CNI-" not in node.nat_rules()
    assert [n for n in node.links() if n.startswith("veth")] == []
    assert "cni-t0" in node.links()
    assert "eth0" not in node.links(pods[0])


def test_masquerade_to_outside_and_check_detects_drift(cnidaemon: Any) -> None:
    node = cnidaemon
    ext = node.box.netns("x")
    netns.add_veth(node.ns, "up0", ext, "ext0")
    netns.add_addr(node.ns, "up0", "192.168.250.1/24")
    netns.add_addr(ext, "ext0", "192.168.250.2/24")
    conf = node.conf()
    pod = node.pod()
    reply = node.call("ADD", conf, "masq1", pod)
    assert reply.ok, reply
    serve(node, ext, "192.168.250.2")
    assert peer_seen(pod, "192.168.250.2") == "192.168.250.1"   # source NATed to the node
    # CHECK notices a removed address
    node.sh("ip", "addr", "del", reply.out["ips"][0]["address"], "dev", "eth0", ns=pod)
    check = node.call("CHECK", {**conf, "prevResult": reply.out}, "masq1", pod)
    assert check.code == 1 and "not found" in check.out["msg"]
    assert node.call("CHECK", conf, "masq1", pod).out["msg"] == "Required prevResult missing"


# ---------------------------------------------------------------- DEL idempotence

def test_del_idempotent_empty_netns_and_gone_netns(cnidaemon: Any) -> None:
    node = cnidaemon
    conf = node.conf()
    pods = [node.pod() for _ in range(3)]
    for i, p in enumerate(pods):
        assert node.call("ADD", conf, f"d{i}", p).ok
    # repeated DEL
    assert node.call("DEL", conf, "d0", pods[0]).ok
    assert node.call("DEL", conf, "d0", pods[0]).ok
    # DEL with empty CNI_NETNS: IP released and masquerade rules removed anyway
    assert node.call("DEL", conf, "d1", None).ok
    # DEL after the netns is gone (the reference leaks the rules here: plugins#810)
    netns.delete(pods[2])
    assert node.call("DEL", conf, "d2", pods[2]).ok
    assert node.call("DEL", conf, "d2", pods[2]).ok
    assert node.allocated() == []
    assert "CNI-" not in node.nat_rules()
    # DEL of something never added
    assert node.call("DEL", conf, "never", node.pod()).ok


# ---------------------------------------------------------------- failures

def test_ipam_exhausted_rolls_back(cnidaemon: Any) -> None:
    node = cnidaemon
    conf = node.conf(ipam={"subnet": "10.244.9.0/30"})     # one usable address (.2; .1 is the gateway)
    p1, p2 = node.pod(), node.pod()
    assert node.call("ADD", conf, "x1", p1).ok
    before = node.links()
    reply = node.call("ADD", conf, "x2", p2)
    assert reply.code == 1 and reply.out["code"] == errors.NO_ADDRESSES
    assert "no IP addresses available" in reply.out["msg"]
    assert node.links() == before and "eth0" not in node.links(p2)
    assert masq.chain_name("testnet", "x2") not in node.nat_rules()
    status = node.call("STATUS", {**conf, "cniVersion": "1.1.0"})
    assert status.code == 1 and status.out["code"] == errors.NOT_AVAILABLE
    assert node.call("DEL", conf, "x1", p1).ok
    assert node.call("STATUS", {**conf, "cniVersion": "1.1.0"}).ok


def test_failure_after_ipam_add_releases_ip_and_veth(cnidaemon: Any) -> None:
    node = cnidaemon
    conf = node.conf()
    node.sh("ip", "link", "add", "cni-t0", "type", "bridge")
    node.sh("ip", "addr", "add", "10.99.0.1/24", "dev", "cni-t0")
    pod = node.pod()
    reply = node.call("ADD", conf, "conflict", pod)
    assert reply.code == 1 and reply.out["code"] == errors.ADDRESS_CONFLICT
    assert "already has an IP address different from 10.244.7.1/24" in reply.out["msg"]
    assert node.allocated() == []
    assert [n for n in node.links() if n.startswith("veth")] == [] and "eth0" not in node.links(pod)
    # forceAddress replaces the bridge address
    forced = node.call("ADD", {**conf, "forceAddress": True}, "conflict", pod)
    assert forced.ok, forced.stderr
    addrs = node.sh("ip", "addr", "show", "cni-t0")
    assert "10.244.7.1/24" in addrs and "10.99.0.1" not in addrs


def test_add_fails_when_ifname_exists(cnidaemon: Any) -> None:
    node = cnidaemon
    pod = node.pod()
    node.sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p", ns=pod)
    reply = node.call("ADD", node.conf(), "dup", pod)
    assert reply.code == 1 and reply.out["code"] == errors.INTERFACE_EXISTS and "already exists" in reply.out["msg"]
    assert node.allocated() == []


def test_bad_netns_and_env(cnidaemon: Any) -> None:
    node = cnidaemon
    reply = node.call("ADD", node.conf(), "badns", None,
                      extra_env={"CNI_NETNS": "/run/netns/does-not-exist-pn"})
    assert reply.code == 1 and reply.out["code"] == errors.INVALID_NETNS
    reply = node.call("ADD", node.conf(), "bad id!", node.pod())
    assert reply.out["code"] == errors.INVALID_ENV
    assert node.allocated() == []


# ---------------------------------------------------------------- GC, parallel, dual-stack

def test_gc_removes_everything_not_valid(cnidaemon: Any) -> None:
    node = cnidaemon
    conf = {**node.conf(), "cniVersion": "1.1.0"}
    pods = [node.pod() for _ in range(3)]
    ips = [pod_ip(node.call("ADD", conf, f"g{i}", p)) for i, p in enumerate(pods)]
    gc = {**conf, "cni.dev/valid-attachments": [{"containerID": "g0", "ifname": "eth0"}]}
    reply = node.call("GC", gc)
    assert reply.ok and reply.out is None, reply
    assert node.allocated() == [ips[0]]
    rules = node.nat_rules()
    assert masq.chain_name("testnet", "g0") in rules
    assert masq.chain_name("testnet", "g1") not in rules and masq.chain_name("testnet", "g2") not in rules
    assert node.call("GC", {**conf, "cni.dev/attachments": []}).ok     # libcni's key, empty set
    assert node.allocated() == [] and "CNI-" not in node.nat_rules()


def test_parallel_adds_get_unique_ips(cnidaemon: Any) -> None:
    node = cnidaemon
    conf = node.conf()
    pods = [node.pod() for _ in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda ip: node.call("ADD", conf, f"par{ip[0]}", ip[1]), enumerate(pods)))
    assert all(r.ok for r in replies), [r for r in replies if not r.ok]
    ips = [pod_ip(r) for r in replies]
    assert len(set(ips)) == 12 and node.allocated() == sorted(ips)


def test_parallel_adds_in_process(cninode: Any) -> None:
    node = cninode
    conf = node.conf()
    pods = [node.pod() for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        replies = list(pool.map(lambda ip: node.call("ADD", conf, f"ip{ip[0]}", ip[1]), enumerate(pods)))
    assert all(r.ok for r in replies), [r for r in replies if not r.ok]
    assert len({pod_ip(r) for r in replies}) == 4


def test_dual_stack(cnidaemon: Any) -> None:
    node = cnidaemon
    conf = node.conf(isDefaultGateway=True,
                     ipam={"subnet": None, "routes": [],
                           "ranges": [[{"subnet": "10.244.8.0/24"}], [{"subnet": "fd00:10:244::/64"}]]})
    conf["ipam"].pop("subnet")
    p1, p2 = node.pod(), node.pod()
    r1, r2 = node.call("ADD", conf, "ds1", p1), node.call("ADD", conf, "ds2", p2)
    assert r1.ok and r2.ok, (r1, r2)
    assert [ip["address"] for ip in r1.out["ips"]] == ["10.244.8.2/24", "fd00:10:244::2/64"]
    assert {r["dst"] for r in r1.out["routes"]} == {"0.0.0.0/0", "::/0"}
    assert "default via fd00:10:244::1" in node.sh("ip", "-6", "route", ns=p1)
    v6a, v6b = pod_ip(r1, 6), pod_ip(r2, 6)
    serve(node, p1, v6a)
    assert peer_seen(p2, v6a) == v6b
    assert masq.chain_name("testnet", "ds1") in node.nat_rules(v6=True)
    assert "ff00::/8" in node.nat_rules(v6=True)
    netns.delete(p1)                          # netns gone: both families' rules still removed
    assert node.call("DEL", conf, "ds1", p1).ok
    assert masq.chain_name("testnet", "ds1") not in node.nat_rules(v6=True)
    assert masq.chain_name("testnet", "ds1") not in node.nat_rules()
    assert node.call("DEL", conf, "ds2", p2).ok
    assert node.allocated() == []


# ---------------------------------------------------------------- options

def test_bridge_options(cnidaemon: Any) -> None:
    node = cnidaemon
    conf = node.conf(bridge="cni-o0", mtu=1400, hairpinMode=True,
                     dns={"nameservers": ["10.96.0.10"], "search": ["default.svc.cluster.local"]})
    pod = node.pod()
    reply = node.call("ADD", conf, "opt", pod)
    assert reply.ok, reply
    host = reply.out["interfaces"][1]["name"]
    assert reply.out["dns"] == {"nameservers": ["10.96.0.10"], "search": ["default.svc.cluster.local"]}
    assert "mtu 1400" in node.sh("ip", "link", "show", "eth0", ns=pod)
    assert "hairpin on" in node.sh("ip", "-d", "link", "show", host)
    vlan = node.call("ADD", node.conf(bridge="cni-v0", vlan=100, ipam={"subnet": "10.244.11.0/24"}), "vl", node.pod())
    if vlan.ok:
        vhost = vlan.out["interfaces"][1]["name"]
        assert "vlan_filtering 1" in node.sh("ip", "-d", "link", "show", "cni-v0")
        assert "100 PVID Egress Untagged" in node.sh("bridge", "vlan", "show", "dev", vhost)
    else:  # kernels without CONFIG_BRIDGE_VLAN_FILTERING (this CI machine) get a clear error
        assert "VLAN filtering" in vlan.out["msg"] and node.allocated() == [reply.out["ips"][0]["address"][:-3]]
    promisc = node.conf(bridge="cni-p0", promiscMode=True, ipMasq=False, ipam={"subnet": "10.244.10.0/24"})
    assert node.call("ADD", promisc, "prom", node.pod()).ok
    assert "PROMISC" in node.sh("ip", "link", "show", "cni-p0")
    l2 = {"cniVersion": "1.0.0", "name": "l2net", "type": "podnet-bridge", "bridge": "cni-l2"}
    r = node.call("ADD", l2, "l2", node.pod())
    assert r.ok and r.out["ips"] == [] and len(r.out["interfaces"]) == 3
    assert node.call("DEL", l2, "l2", None).ok


def test_requested_ip_and_mac(cnidaemon: Any) -> None:
    node = cnidaemon
    pod = node.pod()
    conf = {**node.conf(), "runtimeConfig": {"mac": "0a:58:0a:f4:07:32"}}
    reply = node.call("ADD", conf, "want", pod, extra_env={"CNI_ARGS": "IgnoreUnknown=1;IP=10.244.7.50"})
    assert reply.ok, reply
    assert reply.out["ips"][0]["address"] == "10.244.7.50/24"
    assert reply.out["interfaces"][2]["mac"] == "0a:58:0a:f4:07:32"
    assert "link/ether 0a:58:0a:f4:07:32" in node.sh("ip", "link", "show", "eth0", ns=pod)
    assert node.call("DEL", conf, "want", pod).ok


def test_legacy_version_result(cnidaemon: Any) -> None:
    node = cnidaemon
    reply = node.call("ADD", node.conf(cniVersion="0.3.1"), "old", node.pod())
    assert reply.ok and reply.out["cniVersion"] == "0.3.1" and reply.out["ips"][0]["version"] == "4"
    reply = node.call("ADD", node.conf(cniVersion="0.2.0"), "older", node.pod())
    assert reply.code == 1 and reply.out["code"] == errors.INCOMPATIBLE_VERSION


# ---------------------------------------------------------------- daemon vs in-process

def test_in_process_fallback_add_check_del(cninode: Any) -> None:
    node = cninode
    conf = node.conf()
    pod = node.pod()
    reply = node.call("ADD", conf, "inproc", pod)        # no daemon: the shim does the work itself
    assert_result_shape(reply, pod)
    assert node.call("CHECK", {**conf, "prevResult": reply.out}, "inproc", pod).ok
    assert node.call("DEL", conf, "inproc", pod).ok
    assert node.allocated() == [] and "CNI-" not in node.nat_rules()
    version = node.call("VERSION", {"cniVersion": "1.0.0"}, plugin="podnet-bridge")
    assert version.out["supportedVersions"] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def test_daemon_refuses_callers_from_other_namespaces(cnidaemon: Any) -> None:
    node = cnidaemon
    other = node.box.netns("m")
    pod = node.pod()
    conf = node.conf(bridge="cni-m0")
    reply = node.call("ADD", conf, "elsewhere", pod, in_ns=other)  # same socket, another node ns
    assert reply.ok, reply
    assert "cni-m0" in node.links(other) and "cni-m0" not in node.links()   # done in the caller's ns
    assert node.call("DEL", conf, "elsewhere", pod, in_ns=other).ok
    log = (node.work / "daemon.log").read_text()
    assert "serving on" in log


@pytest.mark.parametrize("shim", ["default", "python"])
def test_both_shims_daemon_and_fallback(cninode: Any, cni_bins: dict[str, Any], shim: str) -> None:
    """The native and the Python front end: in-process without a daemon, then through it."""
    node = cninode
    node.bin_dir = cni_bins[shim]
    conf = node.conf()
    pods = [node.pod() for _ in range(2)]
    first = node.call("ADD", conf, "sh0", pods[0])                  # no daemon yet: in-process
    assert_result_shape(first, pods[0])
    node.start_daemon()
    second = node.call("ADD", conf, "sh1", pods[1])
    assert_result_shape(second, pods[1])
    assert node.call("CHECK", {**conf, "prevResult": first.out}, "sh0", pods[0]).ok
    bad = node.call("ADD", conf, "bad/id", pods[1])
    assert bad.code == 1 and bad.out["code"] == errors.INVALID_ENV and bad.out["cniVersion"] == "1.0.0"
    for i, p in enumerate(pods):
        assert node.call("DEL", conf, f"sh{i}", p).ok
    assert node.allocated() == [] and "CNI-" not in node.nat_rules()
    node.box.processes.remove(node.daemon)
    netns.stop(node.daemon)                                          # daemon gone: back to in-process
    assert node.daemon.returncode == 0 and not os.path.exists(node.socket)   # clean exit, socket removed
    node.daemon = None
    again = node.call("ADD", conf, "sh2", pods[0], extra_env={"PODNET_CNI_SOCKET": node.socket}, daemon=True)
    assert again.ok, again
    assert node.call("DEL", conf, "sh2", pods[0]).ok


def test_daemon_serves_and_daemon_socket_from_config(cnidaemon: Any) -> None:
    node = cnidaemon
    conf = {**node.conf(), "daemonSocket": node.socket}
    pod = node.pod()
    reply = node.call("ADD", conf, "viaconf", pod, daemon=False, extra_env={"PODNET_CNI_DAEMON": ""})
    assert reply.ok, reply
    assert node.call("DEL", conf, "viaconf", pod).ok


# ---------------------------------------------------------------- cross-pairings with the reference

needs_reference = pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"), reason="containernetworking-plugins")


@needs_reference
@pytest.mark.parametrize("daemon", [False, True], ids=["ipam-in-process", "ipam-via-daemon"])
def test_reference_bridge_with_podnet_ipam(cninode: Any, daemon: bool) -> None:
    node = cninode
    if daemon:  # the native podnet-ipam hands the IPAM request to the daemon
        node.start_daemon()
    conf = {**node.conf(), "type": "bridge"}
    pods = [node.pod() for _ in range(2)]
    replies = [node.call("ADD", conf, f"rb{i}", p) for i, p in enumerate(pods)]
    assert all(r.ok for r in replies), replies
    ips = [pod_ip(r) for r in replies]
    assert node.allocated() == sorted(ips) == ["10.244.7.2", "10.244.7.3"]
    assert (node.data_dir / "testnet" / ips[0]).read_bytes() == b"rb0\r\neth0"
    serve(node, pods[0], ips[0])
    assert peer_seen(pods[1], ips[0]) == ips[1]
    assert node.call("CHECK", {**conf, "prevResult": replies[0].out}, "rb0", pods[0]).ok
    # the reference bridge's masquerade chain is the one podnet computes, so podnet-bridge can
    # delete what the reference made, even with the netns gone
    assert masq.chain_name("testnet", "rb1") in node.nat_rules()
    assert node.call("DEL", conf, "rb0", pods[0]).ok
    netns.delete(pods[1])
    assert node.call("DEL", {**conf, "type": "podnet-bridge"}, "rb1", pods[1]).ok
    assert node.allocated() == [] and "CNI-" not in node.nat_rules()
    if daemon:
        node.box.processes.remove(node.daemon)
        netns.stop(node.daemon)
        assert "ipam ADD rb0/eth0 -> 0" in (node.work / "daemon.log").read_text()


@needs_reference
def test_podnet_bridge_with_reference_host_local(cnidaemon: Any) -> None:
    node = cnidaemon
    conf = node.conf(ipam={"type": "host-local"})
    pods = [node.pod() for _ in range(2)]
    replies = [node.call("ADD", conf, f"hl{i}", p) for i, p in enumerate(pods)]
    assert all(r.ok for r in replies), replies
    ips = [pod_ip(r) for r in replies]
    assert node.allocated() == sorted(ips)
    serve(node, pods[1], ips[1])
    assert peer_seen(pods[0], ips[1]) == ips[0]
    assert node.call("CHECK", {**conf, "prevResult": replies[0].out}, "hl0", pods[0]).ok
    # host-local's duplicate-allocation error travels through podnet-bridge unchanged, veth rolled back
    node.sh("ip", "link", "del", "eth0", ns=pods[0])
    again = node.call("ADD", conf, "hl0", pods[0])
    assert again.code == 1 and "duplicate allocation is not allowed" in again.out["msg"]
    assert "eth0" not in node.links(pods[0])
    # host-local 1.1.1 predates CNI 1.1: GC cleans the masquerade chains and does not forward
    gc = node.call("GC", {**conf, "cniVersion": "1.1.0", "cni.dev/valid-attachments": []})
    assert gc.ok and "does not support CNI 1.1.0" in gc.stderr, gc
    assert "CNI-" not in node.nat_rules() and len(node.allocated()) == 2
    for i, p in enumerate(pods):
        assert node.call("DEL", conf, f"hl{i}", p).ok
    assert node.allocated() == [] and "CNI-" not in node.nat_rules()


def test_install_writes_scripts_and_conflist(tmp_path: Any) -> None:
    from cni.cli import main

    assert main(["install", "--bin-dir", str(tmp_path / "bin"), "--conf-dir", str(tmp_path / "net.d"),
                 "--shim", "python"]) == 0
    script = (tmp_path / "bin" / "podnet-bridge").read_text()
    assert script.startswith(f"#!{sys.executable} -IS") and os.access(tmp_path / "bin" / "podnet-ipam", os.X_OK)
    conflist = json.loads((tmp_path / "net.d" / "10-podnet.conflist").read_text())
    assert conflist["plugins"][0]["type"] == "podnet-bridge"
    assert conflist["plugins"][0]["ipam"]["type"] == "podnet-ipam"
    import subprocess
    out = subprocess.run([str(tmp_path / "bin" / "podnet-ipam")], input=b"{}", capture_output=True,
                         env={"CNI_COMMAND": "VERSION"})
    assert json.loads(out.stdout)["cniVersion"] == "1.1.0"
