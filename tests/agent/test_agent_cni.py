"""The agent's CNI runtime: config loading, plugin stdin, chaining order (with fake plugins)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from agent.cni import (Attachment, CNIError, CNIRuntime, load_network, parse_network, plugin_stdin, port_mappings,
                       render_conflist, result_ips)

FAKE = """#!/bin/sh
conf=$(cat)
echo "$CNI_COMMAND $0 $CNI_CONTAINERID $CNI_IFNAME $CNI_NETNS" >> {log}
printf '%s\\n' "$conf" >> {log}.stdin
if [ "$CNI_COMMAND" = ADD ]; then
  if [ -n "{fail}" ]; then echo '{{"cniVersion":"1.0.0","code":11,"msg":"try later"}}'; exit 1; fi
  echo '{{"cniVersion":"1.0.0","ips":[{{"address":"10.244.0.{n}/24"}}]}}'
fi
"""


def write_plugin(d: Path, name: str, log: Path, n: int, fail: bool = False) -> None:
    p = d / name
    p.write_text(FAKE.format(log=log, n=n, fail="x" if fail else ""))
    p.chmod(p.stat().st_mode | stat.S_IEXEC)


def test_load_network_picks_first_valid_file(tmp_path: Path) -> None:
    (tmp_path / "00-broken.conflist").write_text("{not json")
    (tmp_path / "05-noname.conf").write_text(json.dumps({"type": "bridge"}))
    (tmp_path / "10-a.conf").write_text(json.dumps({"cniVersion": "1.0.0", "name": "single", "type": "bridge"}))
    (tmp_path / "20-b.conflist").write_text(json.dumps({"name": "later", "plugins": [{"type": "x"}]}))
    (tmp_path / "README").write_text("ignored")
    net = load_network(tmp_path)
    assert net is not None and net.name == "single" and net.plugins == ({"cniVersion": "1.0.0", "name": "single",
                                                                           "type": "bridge"},)
    assert load_network(tmp_path / "missing") is None


def test_plugin_stdin_injects_name_version_prev_and_capabilities() -> None:
    net = parse_network({"cniVersion": "1.1.0", "name": "n", "plugins": [
        {"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": True}}]})
    first = json.loads(plugin_stdin(net, net.plugins[0], None, {"portMappings": [1]}))
    assert first == {"type": "bridge", "name": "n", "cniVersion": "1.1.0"}
    second = json.loads(plugin_stdin(net, net.plugins[1], {"ips": []}, {"portMappings": [1], "other": 2}))
    assert second["prevResult"] == {"ips": []} and second["runtimeConfig"] == {"portMappings": [1]}
    with pytest.raises(CNIError, match="no type"):
        parse_network({"name": "x", "plugins": [{}]})


def test_render_conflist() -> None:
    c = render_conflist("podnet", "10.244.3.0/24", data_dir="/d", daemon_socket="/s")
    p = c["plugins"][0]
    assert p["type"] == "podnet-bridge" and p["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]]
    assert p["ipam"]["dataDir"] == "/d" and p["daemonSocket"] == "/s" and p["isDefaultGateway"]


def test_portmap_chain_and_port_mappings() -> None:
    c = render_conflist("podnet", "10.244.3.0/24", portmap=True)
    assert c["plugins"][1] == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
    pod = {"spec": {"containers": [
        {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]},
        {"name": "b", "ports": [{"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "10.0.0.1"}]}]}}
    assert port_mappings(pod) == [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                                  {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "10.0.0.1"}]
    net = parse_network(c)
    conf = json.loads(plugin_stdin(net, net.plugins[1], {"ips": []}, {"portMappings": port_mappings(pod)}))
    assert conf["runtimeConfig"]["portMappings"][0]["hostPort"] == 8080
    assert "runtimeConfig" not in json.loads(plugin_stdin(net, net.plugins[0], None, {"portMappings": []}))


def test_result_ips_ipv4_first() -> None:
    assert result_ips({"ips": [{"address": "fd00::5/64"}, {"address": "10.0.0.5/24"}]}) == ["10.0.0.5", "fd00::5"]


async def test_chain_add_in_order_del_in_reverse(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    write_plugin(tmp_path, "first", log, 1)
    write_plugin(tmp_path, "second", log, 2)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "10.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "chain",
                                                  "plugins": [{"type": "first"}, {"type": "second"}]}))
    rt = CNIRuntime([str(tmp_path / "nope"), str(tmp_path)], str(conf))
    net = rt.network()
    assert net is not None
    att = Attachment("cid1", "/run/netns/x", "eth0", "IgnoreUnknown=1")
    result = await rt.add(net, att)
    assert result_ips(result) == ["10.244.0.2"]
    await rt.delete(net, att, result)
    calls = [line.split()[:2] for line in log.read_text().splitlines()]
    assert [(c, os.path.basename(p)) for c, p in calls] == [
        ("ADD", "first"), ("ADD", "second"), ("DEL", "second"), ("DEL", "first")]
    stdins = [json.loads(s) for s in (tmp_path / "calls.stdin").read_text().splitlines()]
    assert "prevResult" not in stdins[0]
    assert stdins[1]["prevResult"]["ips"][0]["address"] == "10.244.0.1/24"
    assert stdins[2]["prevResult"] == result


async def test_failed_add_is_rolled_back_and_reported(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    write_plugin(tmp_path, "ok", log, 1)
    write_plugin(tmp_path, "bad", log, 2, fail=True)
    net = parse_network({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "ok"}, {"type": "bad"}]})
    rt = CNIRuntime([str(tmp_path)], str(tmp_path))
    with pytest.raises(CNIError, match="try later") as info:
        await rt.add(net, Attachment("c", "/run/netns/x", "eth0", ""))
    assert info.value.code == 11
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["ADD", "ADD", "DEL", "DEL"]
    with pytest.raises(CNIError, match="failed to find plugin"):
        rt.find("missing")
