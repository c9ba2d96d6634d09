"""CNI protocol core (SPEC.md 1.0.0 / 1.1.0): environment, config, versions, results.

Pure: it parses the plugin's environment and stdin into values and renders results;
it never touches the system. The I/O shells (`cni.plugin`, `cni.ipam_main`) move bytes.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Union

from cni.errors import (CNIError, DECODE_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG, INVALID_ENV,
                        UNKNOWN_CONTAINER)

SUPPORTED_VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")
_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_IFNAME_BAD = re.compile(r"[/:\s]")
IFNAMSIZ = 16

IPNetwork = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        raise CNIError(INCOMPATIBLE_VERSION, "invalid version", repr(version)) from None


def at_least(version: str, minimum: str) -> bool:
    return version_tuple(version) >= version_tuple(minimum)


# ---------------------------------------------------------------- environment

@dataclass(frozen=True)
class Request:
    """One plugin invocation: the CNI_* environment plus the raw stdin config."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: tuple[tuple[str, str], ...] = ()
    path: tuple[str, ...] = ()
    stdin: bytes = b""

    def arg(self, key: str, default: str = "") -> str:
        for k, v in self.args:
            if k == key:
                return v
        return default


_REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": ("CNI_PATH",),
    "STATUS": (),
    "VERSION": (),
}


def parse_cni_args(text: str) -> tuple[tuple[str, str], ...]:
    """CNI_ARGS `K=V;K2=V2` (empty pairs skipped); a pair without `=` is an error."""
    pairs: list[tuple[str, str]] = []
    for item in text.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CNIError(INVALID_ENV, "CNI_ARGS: invalid pair", item)
        pairs.append((key, value))
    return tuple(pairs)


def validate_container_id(cid: str) -> None:
    if not cid:
        raise CNIError(UNKNOWN_CONTAINER, "missing containerID")
    if not _CONTAINER_ID.match(cid):
        raise CNIError(INVALID_ENV, "invalid characters in containerID", cid)


def validate_ifname(name: str) -> None:
    if not name:
        raise CNIError(INVALID_ENV, "interface name is empty")
    if len(name) >= IFNAMSIZ:
        raise CNIError(INVALID_ENV, "interface name is too long", f"interface name should be less than {IFNAMSIZ} characters")
    if name in (".", ".."):
        raise CNIError(INVALID_ENV, "interface name is . or ..", name)
    if _IFNAME_BAD.search(name):
        raise CNIError(INVALID_ENV, "interface name contains / or : or whitespace characters", name)


def parse_env(env: Mapping[str, str], stdin: bytes = b"") -> Request:
    """Validate the CNI_* variables for the command (SPEC.md "Parameters")."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CNIError(INVALID_ENV, "required env variables [CNI_COMMAND] missing")
    if command not in COMMANDS:
        raise CNIError(INVALID_ENV, "unknown CNI_COMMAND", command)
    missing = [k for k in _REQUIRED[command] if not env.get(k)]
    if missing:
        raise CNIError(INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
    cid = env.get("CNI_CONTAINERID", "")
    ifname = env.get("CNI_IFNAME", "")
    if command in ("ADD", "CHECK", "DEL"):
        validate_container_id(cid)
        validate_ifname(ifname)
    return Request(
        command=command, container_id=cid, netns=env.get("CNI_NETNS", ""), ifname=ifname,
        args=parse_cni_args(env.get("CNI_ARGS", "")),
        path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p), stdin=stdin)


# ---------------------------------------------------------------- config

@dataclass(frozen=True)
class NetConf:
    """The fields every plugin reads; `raw` keeps the whole object (unknown fields pass through)."""

    cni_version: str
    name: str
    type: str
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ipam(self) -> Mapping[str, Any]:
        value = self.raw.get("ipam") or {}
        return value if isinstance(value, dict) else {}

    @property
    def runtime_config(self) -> Mapping[str, Any]:
        value = self.raw.get("runtimeConfig") or {}
        return value if isinstance(value, dict) else {}

    @property
    def prev_result(self) -> Mapping[str, Any] | None:
        value = self.raw.get("prevResult")
        return value if isinstance(value, dict) else None


def decode_json(data: bytes | str, what: str = "network configuration") -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CNIError(DECODE_FAILURE, f"failed to decode {what}", str(exc)) from None
    if not isinstance(value, dict):
        raise CNIError(DECODE_FAILURE, f"failed to decode {what}", "not a JSON object")
    return value


def peek_version(stdin: bytes) -> str:
    """The config's cniVersion if it can be read at all (for error replies), else LATEST."""
    try:
        value = json.loads(stdin or b"{}")
        version = value.get("cniVersion") if isinstance(value, dict) else None
        return version if isinstance(version, str) and version in SUPPORTED_VERSIONS else LATEST
    except (ValueError, UnicodeDecodeError):
        return LATEST


def parse_netconf(stdin: bytes | str, command: str = "ADD") -> NetConf:
    """Parse one plugin's config (already extracted from a conflist by the runtime).

    A whole conflist (`plugins` list) is accepted too: its top-level name/cniVersion are
    combined with the first plugin entry, the way libcni builds each plugin's config.
    """
    raw = decode_json(stdin)
    if isinstance(raw.get("plugins"), list) and "type" not in raw:
        plugins = raw["plugins"]
        if not plugins or not isinstance(plugins[0], dict):
            raise CNIError(INVALID_CONFIG, "conflist has no plugins")
        raw = {**plugins[0], "name": raw.get("name"), "cniVersion": raw.get("cniVersion")}
    version = raw.get("cniVersion") or "0.1.0"
    if not isinstance(version, str) or version not in SUPPORTED_VERSIONS:
        raise CNIError(INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f"config is {version!r}, plugin supports {list(SUPPORTED_VERSIONS)}")
    for key in ("name", "type"):
        if not isinstance(raw.get(key), str) or not raw.get(key):
            raise CNIError(INVALID_CONFIG, f"missing or invalid network config field {key!r}")
    minimum = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}.get(command)
    if minimum and not at_least(version, minimum):
        raise CNIError(INCOMPATIBLE_VERSION, f"config version does not allow {command}", version)
    return NetConf(cni_version=version, name=raw["name"], type=raw["type"], raw=raw)


def version_reply() -> dict[str, Any]:
    return {"cniVersion": LATEST, "supportedVersions": list(SUPPORTED_VERSIONS)}


@dataclass(frozen=True)
class Attachment:
    container_id: str
    ifname: str


def valid_attachments(conf: NetConf) -> frozenset[Attachment]:
    """GC's valid set: `cni.dev/valid-attachments` (SPEC 1.1), also libcni's `cni.dev/attachments`."""
    found: set[Attachment] = set()
    for key in ("cni.dev/valid-attachments", "cni.dev/attachments"):
        items = conf.raw.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            raise CNIError(INVALID_CONFIG, f"{key} must be a list")
        for item in items:
            if not isinstance(item, dict):
                raise CNIError(INVALID_CONFIG, f"{key} entries must be objects", repr(item))
            found.add(Attachment(str(item.get("containerID", "")), str(item.get("ifname", ""))))
    return frozenset(found)


# ---------------------------------------------------------------- results

def parse_interface(text: str, what: str = "address") -> IPNetwork:
    try:
        return ipaddress.ip_interface(text)
    except (ValueError, TypeError):
        raise CNIError(INVALID_CONFIG, f"invalid {what}", repr(text)) from None


def parse_ip(text: Any, what: str = "IP") -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except (ValueError, TypeError):
        raise CNIError(INVALID_CONFIG, f"invalid {what}", repr(text)) from None


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0
    extra: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class IPConfig:
    address: IPNetwork
    gateway: IPAddress | None = None
    interface: int | None = None


@dataclass(frozen=True)
class Route:
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    gw: IPAddress | None = None
    extra: tuple[tuple[str, Any], ...] = ()   # 1.1 mtu/advmss/priority/table/scope pass through


@dataclass(frozen=True)
class Result:
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def with_(self, **changes: Any) -> "Result":
        return replace(self, **changes)


def parse_route(item: Mapping[str, Any]) -> Route:
    if not isinstance(item, Mapping) or "dst" not in item:
        raise CNIError(INVALID_CONFIG, "route needs a dst", repr(item))
    try:
        dst = ipaddress.ip_network(item["dst"], strict=False)
    except (ValueError, TypeError):
        raise CNIError(INVALID_CONFIG, "invalid route dst", repr(item.get("dst"))) from None
    gw = parse_ip(item["gw"], "route gw") if item.get("gw") else None
    extra = tuple(sorted((k, v) for k, v in item.items() if k not in ("dst", "gw")))
    return Route(dst, gw, extra)


def parse_result(data: Mapping[str, Any]) -> Result:
    """A result or prevResult in any supported version (0.3.x/0.4.0 `version` fields dropped)."""
    interfaces = []
    for item in data.get("interfaces") or []:
        extra = tuple(sorted((k, v) for k, v in item.items() if k not in ("name", "mac", "sandbox", "mtu")))
        interfaces.append(Interface(str(item.get("name", "")), str(item.get("mac", "")),
                                    str(item.get("sandbox", "")), int(item.get("mtu") or 0), extra))
    ips = []
    for item in data.get("ips") or []:
        gw = parse_ip(item["gateway"], "gateway") if item.get("gateway") else None
        idx = item.get("interface")
        ips.append(IPConfig(parse_interface(item.get("address", "")), gw, int(idx) if idx is not None else None))
    routes = tuple(parse_route(r) for r in data.get("routes") or [])
    dns = data.get("dns") or {}
    return Result(tuple(interfaces), tuple(ips), routes, dns if isinstance(dns, dict) else {})


def render_result(result: Result, version: str) -> dict[str, Any]:
    """The result JSON in the config's cniVersion (0.3.x/0.4.0 ips carry `version`)."""
    legacy = not at_least(version, "1.0.0")
    out: dict[str, Any] = {"cniVersion": version}
    if result.interfaces:
        out["interfaces"] = [render_interface(i) for i in result.interfaces]
    ips = []
    for ipc in result.ips:
        item: dict[str, Any] = {"address": str(ipc.address)}
        if legacy:
            item = {"version": str(ipc.address.version), **item}
        if ipc.gateway is not None:
            item["gateway"] = str(ipc.gateway)
        if ipc.interface is not None:
            item["interface"] = ipc.interface
        ips.append(item)
    out["ips"] = ips
    if result.routes:
        out["routes"] = [{"dst": str(r.dst), **({"gw": str(r.gw)} if r.gw else {}), **dict(r.extra)}
                         for r in result.routes]
    out["dns"] = dict(result.dns)
    return out


def render_interface(i: Interface) -> dict[str, Any]:
    item: dict[str, Any] = {"name": i.name}
    if i.mac:
        item["mac"] = i.mac
    if i.mtu:
        item["mtu"] = i.mtu
    if i.sandbox:
        item["sandbox"] = i.sandbox
    item.update(dict(i.extra))
    return item


def parse_dns(value: Any) -> dict[str, Any]:
    """The `dns` config block (nameservers, domain, search, options), validated, passed through."""
    if not value:
        return {}
    if not isinstance(value, dict):
        raise CNIError(INVALID_CONFIG, "dns must be an object", repr(value))
    out: dict[str, Any] = {}
    for key in ("nameservers", "search", "options"):
        if key in value and value[key] is not None:
            if not isinstance(value[key], list) or not all(isinstance(v, str) for v in value[key]):
                raise CNIError(INVALID_CONFIG, f"dns.{key} must be a list of strings", repr(value[key]))
            if value[key]:
                out[key] = list(value[key])
    if value.get("domain"):
        out["domain"] = str(value["domain"])
    return out
