"""CNI protocol core: environment rules, config parsing, versions, results, errors (no root)."""

from __future__ import annotations

import json

import pytest

from cni import errors
from cni.errors import CNIError
from cni.runner import execute
from cni.spec import (Attachment, parse_cni_args, parse_env, parse_netconf, parse_result, render_result,
                      valid_attachments)

BASE = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin:/usr/lib/cni"}


@pytest.mark.parametrize("changes,code,needle", [
    ({"CNI_COMMAND": ""}, errors.INVALID_ENV, "CNI_COMMAND"),
    ({"CNI_COMMAND": "FROB"}, errors.INVALID_ENV, "unknown CNI_COMMAND"),
    ({"CNI_CONTAINERID": ""}, errors.INVALID_ENV, "CNI_CONTAINERID"),
    ({"CNI_NETNS": ""}, errors.INVALID_ENV, "CNI_NETNS"),
    ({"CNI_IFNAME": ""}, errors.INVALID_ENV, "CNI_IFNAME"),
    ({"CNI_CONTAINERID": "-abc"}, errors.INVALID_ENV, "invalid characters in containerID"),
    ({"CNI_CONTAINERID": "a b"}, errors.INVALID_ENV, "invalid characters in containerID"),
    ({"CNI_CONTAINERID": "a/b"}, errors.INVALID_ENV, "invalid characters in containerID"),
    ({"CNI_IFNAME": "a" * 16}, errors.INVALID_ENV, "too long"),
    ({"CNI_IFNAME": ".."}, errors.INVALID_ENV, ". or .."),
    ({"CNI_IFNAME": "eth:0"}, errors.INVALID_ENV, "/ or :"),
    ({"CNI_IFNAME": "eth 0"}, errors.INVALID_ENV, "whitespace"),
    ({"CNI_ARGS": "IP"}, errors.INVALID_ENV, "invalid pair"),
])
def test_env_rules(changes: dict[str, str], code: int, needle: str) -> None:
    with pytest.raises(CNIError) as info:
        parse_env({**BASE, **changes})
    assert info.value.code == code
    assert needle in str(info.value)


def test_env_parsed() -> None:
    req = parse_env({**BASE, "CNI_ARGS": "IgnoreUnknown=1;IP=10.0.0.5;K8S_POD_NAME=web"})
    assert req.command == "ADD" and req.container_id == "abc" and req.ifname == "eth0"
    assert req.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert req.arg("IP") == "10.0.0.5" and req.arg("K8S_POD_NAME") == "web" and req.arg("nope") == ""


@pytest.mark.parametrize("command,env,ok", [
    ("DEL", {"CNI_CONTAINERID": "a", "CNI_IFNAME": "eth0"}, True),            # NETNS optional on DEL
    ("GC", {"CNI_PATH": "/x"}, True),
    ("GC", {}, False),                                                        # GC needs CNI_PATH
    ("VERSION", {}, True),
    ("STATUS", {}, True),
    ("CHECK", {"CNI_CONTAINERID": "a", "CNI_IFNAME": "eth0"}, False),         # CHECK needs NETNS
])
def test_required_per_command(command: str, env: dict[str, str], ok: bool) -> None:
    if ok:
        assert parse_env({"CNI_COMMAND": command, **env}).command == command
    else:
        with pytest.raises(CNIError):
            parse_env({"CNI_COMMAND": command, **env})


def test_cni_args_skips_empty_pairs() -> None:
    assert parse_cni_args("A=1;;B=") == (("A", "1"), ("B", ""))


CONF = {"cniVersion": "1.0.0", "name": "net", "type": "podnet-bridge", "x-unknown": {"kept": True},
        "ipam": {"type": "podnet-ipam"}}


def test_netconf_keeps_unknown_fields() -> None:
    conf = parse_netconf(json.dumps(CONF).encode())
    assert conf.name == "net" and conf.type == "podnet-bridge" and conf.cni_version == "1.0.0"
    assert conf.raw["x-unknown"] == {"kept": True} and conf.ipam["type"] == "podnet-ipam"


def test_netconf_from_conflist() -> None:
    conflist = {"cniVersion": "1.1.0", "name": "lst", "plugins": [{"type": "podnet-bridge", "bridge": "b0"}]}
    conf = parse_netconf(json.dumps(conflist).encode())
    assert (conf.name, conf.type, conf.cni_version, conf.raw["bridge"]) == ("lst", "podnet-bridge", "1.1.0", "b0")


@pytest.mark.parametrize("data,code", [
    (b"{not json", errors.DECODE_FAILURE),
    (b"[]", errors.DECODE_FAILURE),
    (json.dumps({**CONF, "cniVersion": "0.2.0"}).encode(), errors.INCOMPATIBLE_VERSION),
    (json.dumps({**CONF, "cniVersion": "9.9.9"}).encode(), errors.INCOMPATIBLE_VERSION),
    (json.dumps({k: v for k, v in CONF.items() if k != "name"}).encode(), errors.INVALID_CONFIG),
    (json.dumps({k: v for k, v in CONF.items() if k != "type"}).encode(), errors.INVALID_CONFIG),
])
def test_netconf_errors(data: bytes, code: int) -> None:
    with pytest.raises(CNIError) as info:
        parse_netconf(data)
    assert info.value.code == code


@pytest.mark.parametrize("command,version,ok", [
    ("CHECK", "0.3.1", False), ("CHECK", "0.4.0", True), ("GC", "1.0.0", False), ("GC", "1.1.0", True),
    ("STATUS", "1.0.0", False), ("STATUS", "1.1.0", True),
])
def test_command_needs_version(command: str, version: str, ok: bool) -> None:
    data = json.dumps({**CONF, "cniVersion": version}).encode()
    if ok:
        parse_netconf(data, command)
    else:
        with pytest.raises(CNIError) as info:
            parse_netconf(data, command)
        assert info.value.code == errors.INCOMPATIBLE_VERSION


def test_valid_attachments_both_keys() -> None:
    conf = parse_netconf(json.dumps({**CONF, "cniVersion": "1.1.0",
                                     "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}],
                                     "cni.dev/attachments": [{"containerID": "b", "ifname": "net1"}]}).encode())
    assert valid_attachments(conf) == {Attachment("a", "eth0"), Attachment("b", "net1")}


RESULT = {"cniVersion": "1.0.0",
          "interfaces": [{"name": "cni0", "mac": "aa:bb:cc:dd:ee:ff"},
                         {"name": "eth0", "mac": "aa:bb:cc:dd:ee:01", "sandbox": "/run/netns/x", "mtu": 1400}],
          "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1},
                  {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 1}],
          "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.2.0.0/16", "gw": "10.1.0.254", "mtu": 1300}],
          "dns": {"nameservers": ["10.96.0.10"]}}


def test_result_roundtrip_1_0() -> None:
    assert render_result(parse_result(RESULT), "1.0.0") == RESULT


def test_result_legacy_versions() -> None:
    old = render_result(parse_result(RESULT), "0.4.0")
    assert old["cniVersion"] == "0.4.0"
    assert [ip["version"] for ip in old["ips"]] == ["4", "6"]
    # and a 0.4.0 prevResult is read back (its `version` fields dropped)
    assert render_result(parse_result(old), "1.0.0") == RESULT


def _handler(req, conf):  # type: ignore[no-untyped-def]
    if req.command == "ADD":
        raise CNIError(errors.NO_ADDRESSES, "no IP addresses available", "range set 0")
    return None


def test_runner_error_json_uses_config_version() -> None:
    code, out = execute(_handler, BASE, json.dumps({**CONF, "cniVersion": "0.4.0"}).encode())
    assert code == 1
    assert json.loads(out) == {"cniVersion": "0.4.0", "code": 100, "msg": "no IP addresses available",
                               "details": "range set 0"}


def test_runner_version_and_bad_env() -> None:
    code, out = execute(_handler, {"CNI_COMMAND": "VERSION"}, b"{}")
    assert code == 0 and json.loads(out)["supportedVersions"] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    code, out = execute(_handler, {"CNI_COMMAND": "ADD"}, json.dumps(CONF).encode())
    assert code == 1 and json.loads(out)["code"] == errors.INVALID_ENV
    assert json.loads(out)["cniVersion"] == "1.0.0"


def test_runner_internal_error_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    def boom(req, conf):  # type: ignore[no-untyped-def]
        raise RuntimeError("kaput")
    code, out = execute(boom, BASE, json.dumps(CONF).encode())
    assert code == 1 and json.loads(out)["code"] == errors.INTERNAL and "kaput" in json.loads(out)["msg"]
