"""A CNI runtime (what libcni does for kubelet/containerd), for the agent.

Pure part: find the network config in a conf dir (`load_network`), build each plugin's
stdin (`plugin_stdin`) with name, cniVersion, runtimeConfig and prevResult injected.
Shell part: `CNIRuntime.add/delete/check` exec the plugin chain with the spec's environment
(CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS, CNI_PATH): conflist order for
ADD with each result chained as the next plugin's prevResult, reverse order for DEL.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from agent.spec import AgentError
from cni.delegate import locate_plugin

CONF_EXTENSIONS = (".conf", ".conflist", ".json")


class CNIError(AgentError):
    def __init__(self, message: str, code: int = 0, details: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.details = details


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    cni_version: str
    plugins: tuple[dict[str, Any], ...]
    source: str = ""
    disable_check: bool = False


def parse_network(raw: Mapping[str, Any], source: str = "") -> NetworkConfig:
    """A .conflist (plugins[]) or a single .conf, validated as libcni does."""
    name = raw.get("name")
    if not name:
        raise CNIError(f"{source or 'network config'}: missing network name")
    version = str(raw.get("cniVersion") or "0.4.0")
    if "plugins" in raw:
        plugins = raw.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise CNIError(f"{source}: plugins must be a non-empty list")
    else:
        plugins = [dict(raw)]
    for i, p in enumerate(plugins):
        if not isinstance(p, dict) or not p.get("type"):
            raise CNIError(f"{source}: plugins[{i}] has no type")
    return NetworkConfig(str(name), version, tuple(dict(p) for p in plugins), source,
                         bool(raw.get("disableCheck", False)))


def load_network(conf_dir: str | Path, files: Sequence[str] | None = None) -> NetworkConfig | None:
    """The first valid network config in lexicographic file order (kubelet's choice), or None."""
    base = Path(conf_dir)
    names = sorted(files) if files is not None else (
        sorted(p.name for p in base.iterdir() if p.suffix in CONF_EXTENSIONS) if base.is_dir() else [])
    for fname in names:
        try:
            raw = json.loads((base / fname).read_text())
            return parse_network(raw, str(base / fname))
        except (OSError, ValueError, CNIError):
            continue
    return None


def plugin_stdin(net: NetworkConfig, plugin: Mapping[str, Any], prev_result: Mapping[str, Any] | None,
                 runtime_config: Mapping[str, Any] | None = None) -> bytes:
    conf = dict(plugin)
    conf["name"] = net.name
    conf["cniVersion"] = net.cni_version
    caps = plugin.get("capabilities") or {}
    rc = {k: v for k, v in (runtime_config or {}).items() if caps.get(k)}
    if rc:
        conf["runtimeConfig"] = rc
    else:
        conf.pop("runtimeConfig", None)
    if prev_result is not None:
        conf["prevResult"] = dict(prev_result)
    else:
        conf.pop("prevResult", None)
    return json.dumps(conf).encode()


def cni_args(namespace: str, name: str, container_id: str, uid: str) -> str:
    return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};"
            f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}")


def result_ips(result: Mapping[str, Any]) -> list[str]:
    """Addresses (without prefix) of a CNI result: the container interface's first, IPv4 first."""
    ips = []
    for entry in result.get("ips") or []:
        addr = str(entry.get("address", "")).split("/")[0]
        if addr:
            ips.append(addr)
    return sorted(dict.fromkeys(ips), key=lambda a: 6 if ":" in a else 4)


@dataclass(frozen=True)
class Attachment:
    container_id: str
    netns: str  # path
    ifname: str
    args: str
    runtime_config: Mapping[str, Any] = field(default_factory=dict)  # e.g. portMappings, by capability


class CNIRuntime:
    """Execs the plugins of the network found in conf_dir, binaries searched in bin_dirs."""

    def __init__(self, bin_dirs: Sequence[str], conf_dir: str, timeout: float = 60.0) -> None:
        self.bin_dirs = [d for d in bin_dirs if d]
        self.conf_dir = conf_dir
        self.timeout = timeout

    def network(self) -> NetworkConfig | None:
        return load_network(self.conf_dir)

    def find(self, plugin_type: str) -> str:
        path = locate_plugin(plugin_type, self.bin_dirs)
        if path is None:
            raise CNIError(f"failed to find plugin {plugin_type!r} in path {self.bin_dirs}")
        return path

    async def _exec(self, command: str, net: NetworkConfig, plugin: Mapping[str, Any], att: Attachment,
                    prev: Mapping[str, Any] | None) -> dict[str, Any] | None:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
               "CNI_CONTAINERID": att.container_id, "CNI_NETNS": att.netns, "CNI_IFNAME": att.ifname,
               "CNI_ARGS": att.args, "CNI_PATH": ":".join(self.bin_dirs)}
        for keep in ("PYTHONPATH", "VIRTUAL_ENV", "PODNET_CNI_SOCKET"):
            if keep in os.environ:
                env[keep] = os.environ[keep]
        binary = self.find(str(plugin["type"]))
        proc = await asyncio.create_subprocess_exec(binary, env=env, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(plugin_stdin(net, plugin, prev, att.runtime_config)),
                                              self.timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise CNIError(f"plugin {plugin['type']} {command} timed out after {self.timeout}s") from None
        if proc.returncode != 0:
            try:
                body = json.loads(out or b"{}")
            except ValueError:
                body = {}
            msg = body.get("msg") or (err or out).decode(errors="replace").strip() or f"exit {proc.returncode}"
            raise CNIError(f"plugin type={plugin['type']!r} name={net.name!r} {command} failed: {msg}",
                           int(body.get("code") or 0), str(body.get("details") or ""))
        if command != "ADD":
            return None
        try:
            return dict(json.loads(out))
        except ValueError:
            raise CNIError(f"plugin {plugin['type']} ADD printed invalid JSON: {out[:200]!r}") from None

    async def add(self, net: NetworkConfig, att: Attachment) -> dict[str, Any]:
        """ADD through the chain; on failure the chain is DELeted (best effort) and the error raised."""
        prev: dict[str, Any] | None = None
        try:
            for plugin in net.plugins:
                prev = await self._exec("ADD", net, plugin, att, prev)
        except CNIError:
            try:
                await self.delete(net, att, prev)
            except CNIError:
                pass
            raise
        return prev or {}

    async def delete(self, net: NetworkConfig, att: Attachment, prev: Mapping[str, Any] | None) -> None:
        """DEL in reverse order; every plugin is called, the first error is raised at the end."""
        first: CNIError | None = None
        for plugin in reversed(net.plugins):
            try:
                await self._exec("DEL", net, plugin, att, prev)
            except CNIError as exc:
                first = first or exc
        if first is not None:
            raise first

    async def check(self, net: NetworkConfig, att: Attachment, prev: Mapping[str, Any]) -> None:
        if net.disable_check:
            return
        for plugin in net.plugins:
            await self._exec("CHECK", net, plugin, att, prev)


def network_to_dict(net: NetworkConfig) -> dict[str, Any]:
    return {"name": net.name, "cniVersion": net.cni_version, "plugins": [dict(p) for p in net.plugins]}


def render_conflist(name: str, pod_cidr: str, *, bridge: str = "cni0", data_dir: str = "",
                    plugin: str = "podnet-bridge", ipam: str = "podnet-ipam", mtu: int = 0,
                    ip_masq: bool = False, cni_version: str = "1.0.0", daemon_socket: str = "",
                    portmap: bool = False) -> dict[str, Any]:
    """The conflist the agent writes for its podCIDR (kubenet-style: bridge + host-local IPAM)."""
    ipam_conf: dict[str, Any] = {"type": ipam, "ranges": [[{"subnet": pod_cidr}]]}
    if data_dir:
        ipam_conf["dataDir"] = data_dir
    bridge_conf: dict[str, Any] = {"type": plugin, "bridge": bridge, "isGateway": True, "isDefaultGateway": True,
                                   "ipMasq": ip_masq, "hairpinMode": True, "ipam": ipam_conf}
    if mtu:
        bridge_conf["mtu"] = mtu
    if daemon_socket:
        bridge_conf["daemonSocket"] = daemon_socket  # podnet-bridge's node-local fast path
    plugins: list[dict[str, Any]] = [bridge_conf]
    if portmap:  # hostPort support through the runtime's portMappings capability
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
    return {"cniVersion": cni_version, "name": name, "plugins": plugins}


def port_mappings(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The portMappings runtimeConfig for a pod's containers' hostPorts (as kubelet/CRI pass them)."""
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                m: dict[str, Any] = {"hostPort": int(p["hostPort"]), "containerPort": int(p.get("containerPort") or 0),
                                     "protocol": str(p.get("protocol") or "TCP").lower()}
                if p.get("hostIP"):
                    m["hostIP"] = str(p["hostIP"])
                out.append(m)
    return out
