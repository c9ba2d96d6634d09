"""The lab's shell: build, inspect and tear down a multi-node cluster made of network namespaces.

Everything the lab makes is listed in /run/podnet/lab/<name>/state.json as it is made
(namespaces, processes with their start times), so `down` removes it all, also after a crash.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.runtime import exec_in_pod_argv, netns_name, proc_starttime
from lab import topology as topo
from lab.topology import LabError, Topology
from podnet import netns

REPO = Path(__file__).resolve().parent.parent


@dataclass
class State:
    name: str
    nodes: int
    relay_port: int = 0
    cni: str = "podnet"
    namespaces: list[str] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)  # role, pid, starttime
    created: float = 0.0

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1)


def load_state(name: str, root: Path = topo.STATE_ROOT) -> State | None:
    try:
        raw = json.loads((root / name / "state.json").read_text())
        return State(**raw)
    except (OSError, ValueError, TypeError):
        return None


def _alive(p: dict[str, Any]) -> bool:
    return bool(p.get("pid")) and proc_starttime(int(p["pid"])) == p.get("starttime")


class Lab:
    def __init__(self, name: str = "lab", nodes: int = 2, state_root: Path = topo.STATE_ROOT,
                 log=None) -> None:  # type: ignore[no-untyped-def]
        existing = load_state(name, state_root)
        self.requested_nodes = nodes
        self.state_root = state_root
        self.topology: Topology = topo.plan(name, existing.nodes if existing else nodes, state_root)
        self.state = existing or State(name, nodes)
        self.say = log or (lambda msg: None)
        self._children: list[subprocess.Popen[bytes]] = []

    # -- state ------------------------------------------------------------------------------------
    @property
    def t(self) -> Topology:
        return self.topology

    def save(self) -> None:
        self.t.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.t.state_file.with_suffix(".tmp")
        tmp.write_text(self.state.to_json())
        os.replace(tmp, self.t.state_file)

    def is_up(self) -> bool:
        return any(_alive(p) for p in self.state.processes)

    @property
    def kubeconfig(self) -> Path:
        return self.t.kubeconfig

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.state.relay_port}"

    def client(self) -> Any:
        from controlplane.client import Client

        return Client(self.api_url)

    # -- up ---------------------------------------------------------------------------------------
    def up(self, dns: bool = True, timeout: float = 90.0, cni: str = "podnet") -> None:
        if self.is_up():
            raise LabError(f"lab {self.t.name!r} is already up; `podnet lab down --name {self.t.name}` first")
        if self.t.state_dir.exists() or any(netns.exists(n) for n in self.t.namespaces):
            self.down()  # leftovers of a crashed lab
        self.topology = topo.plan(self.t.name, self.requested_nodes, self.state_root)
        if cni not in ("podnet", "reference"):
            raise LabError(f"--cni {cni!r}: use podnet or reference")
        self.state = State(self.t.name, len(self.t.nodes), created=time.time(), cni=cni)
        self.save()
        try:
            self._build_network()
            self._start_processes()
            asyncio.run(self._wait_cluster(dns, timeout))
            self.kubeconfig.write_text(topo.kubeconfig_text(self.api_url, f"podnet-{self.t.name}"))
        except BaseException:
            self.say("lab up failed; removing what was made")
            self.down()
            raise

    def _netns(self, name: str) -> None:
        netns.create(name)
        self.state.namespaces.append(name)
        self.save()

    def _build_network(self) -> None:
        t = self.t
        self.say(f"namespaces: hub {t.hub}, nodes {', '.join(n.netns for n in t.nodes)}, client {t.client}")
        self._netns(t.hub)
        netns.ip("link", "add", "br0", "type", "bridge", netns=t.hub)
        netns.add_addr(t.hub, "br0", f"{topo.HUB_IP}/24")
        netns.ip("link", "set", "br0", "up", netns=t.hub)
        for node in t.nodes:
            self._netns(node.netns)
            self._attach(node.netns, node.hub_if, node.ip)
            netns.ip("route", "replace", "default", "via", topo.HUB_IP, netns=node.netns)
            netns.sysctl(node.netns, "net.ipv4.ip_forward", "1")
        self._netns(t.client)
        self._attach(t.client, "cl", topo.CLIENT_IP)

    def _attach(self, ns: str, hub_if: str, ip: str) -> None:
        netns.add_veth(self.t.hub, hub_if, ns, "eth0")
        netns.ip("link", "set", hub_if, "master", "br0", netns=self.t.hub)
        netns.add_addr(ns, "eth0", f"{ip}/24")

    def _spawn(self, role: str, ns: str | None, argv: list[str]) -> subprocess.Popen[bytes]:
        logs = self.t.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{role}.log", "ab") as out:
            if ns is None:
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        cwd=REPO, start_new_session=True)
            else:
                proc = netns.popen_net(ns, argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       cwd=REPO)
        self._children.append(proc)
        self.state.processes.append({"role": role, "pid": proc.pid, "starttime": proc_starttime(proc.pid)})
        self.save()
        return proc

    def _start_processes(self) -> None:
        t = self.t
        out = subprocess.run([sys.executable, "-m", "podnet", "cni", "install", "--bin-dir", str(t.cni_bin_dir),
                              "--conf-dir", ""], capture_output=True, text=True, cwd=REPO)
        if out.returncode != 0:
            raise LabError(f"podnet cni install failed: {out.stderr.strip()[-1000:]}")
        self._spawn("controlplane", t.hub, topo.controlplane_argv(t))
        self.state.relay_port = _free_port()
        self._spawn("relay", None, topo.relay_argv(t, self.state.relay_port))
        for node in t.nodes:
            node.root_dir.mkdir(parents=True, exist_ok=True)
            if self.state.cni == "podnet":
                self._spawn(f"{node.name}-cni", node.netns, topo.cni_daemon_argv(node))
            self._spawn(f"{node.name}-agent", node.netns, topo.agent_argv(t, node, cni=self.state.cni))
            self._spawn(f"{node.name}-proxy", node.netns, topo.proxy_argv(t, node))
        self.say(f"control plane {t.api_url} (kubectl via 127.0.0.1:{self.state.relay_port}), "
                 f"{len(t.nodes)} agents ({self.state.cni} CNI plugins) and proxies started")

    async def _wait_cluster(self, dns: bool, timeout: float) -> None:
        from controlplane.resources import NODES, PODS, SERVICES

        deadline = time.monotonic() + timeout
        async with self.client() as c:
            await _until(deadline, lambda: _get_ok(c, "/version"), "the control plane to answer", self)
            want = {n.name for n in self.t.nodes}

            async def nodes_ready() -> bool:
                items = (await c.list(NODES)).items
                ready = {n["metadata"]["name"] for n in items if _cond(n, "Ready")}
                return want <= ready
            await _until(deadline, nodes_ready, "all nodes to be Ready", self)
            self.say(f"nodes Ready: {', '.join(sorted(want))}")
            if not dns:
                return
            for obj in topo.dns_objects():
                res = SERVICES if obj["kind"] == "Service" else PODS
                try:
                    await c.create(res, obj)
                except Exception as exc:  # noqa: BLE001
                    if getattr(exc, "code", 0) != 409:
                        raise

            async def dns_ready() -> bool:
                pods = (await c.list(PODS, namespace="kube-system", label_selector="k8s-app=kube-dns")).items
                return bool(pods) and all(_cond(p, "Ready") for p in pods)
            await _until(deadline, dns_ready, "the kube-dns pods to be Ready", self)
            self.say(f"cluster DNS: kube-dns Service {topo.CLUSTER_DNS} with 2 pods Ready")

    def restart(self, role: str) -> int:
        """Stop one lab process (e.g. node-1-agent) by pid and start it again; returns the new pid."""
        argv = self._argv_of(role)
        self._stop([p for p in self.state.processes if p["role"] == role], grace=10)
        self.state.processes = [p for p in self.state.processes if p["role"] != role]
        node = next((n for n in self.t.nodes if role.startswith(n.name + "-")), None)
        return self._spawn(role, node.netns if node else self.t.hub, argv).pid

    def _argv_of(self, role: str) -> list[str]:
        for n in self.t.nodes:
            if role == f"{n.name}-agent":
                return topo.agent_argv(self.t, n, cni=self.state.cni)
            if role == f"{n.name}-proxy":
                return topo.proxy_argv(self.t, n)
            if role == f"{n.name}-cni":
                return topo.cni_daemon_argv(n)
        if role == "controlplane":
            return topo.controlplane_argv(self.t)
        raise LabError(f"no lab process {role!r}")

    def pid_of(self, role: str) -> int:
        return next((int(p["pid"]) for p in self.state.processes if p["role"] == role and _alive(p)), 0)

    # -- down -------------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove every process, namespace and file of the lab; returns what was removed."""
        removed: list[str] = []
        procs = list(reversed(self.state.processes))
        self._stop(procs, grace=5)
        removed.extend(f"process {p['role']} ({p['pid']})" for p in procs)
        for pid in self._stray_relays():
            try:
                os.kill(pid, signal.SIGKILL)
                removed.append(f"process relay ({pid})")
            except ProcessLookupError:
                pass
        for uid in self._pod_uids():
            if netns.exists(netns_name(uid)):
                netns.delete(netns_name(uid))
                removed.append(f"pod namespace {netns_name(uid)}")
        prefix = f"pnlab-{self.t.name}-"
        names = set(self.state.namespaces) | set(self.t.namespaces) | {
            n for n in netns.names() if n.startswith(prefix)}
        for name in sorted(names):
            if netns.exists(name):
                netns.delete(name)
                removed.append(f"namespace {name}")
        if self.t.state_dir.exists():
            shutil.rmtree(self.t.state_dir, ignore_errors=True)
            removed.append(f"files {self.t.state_dir}")
        self.state = State(self.t.name, len(self.t.nodes))
        return removed

    def _stop(self, procs: list[dict[str, Any]], grace: float) -> None:
        """SIGTERM the process groups of procs, wait up to grace seconds, then SIGKILL the rest (by pid)."""
        _killpg([p for p in procs if _alive(p)], signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in procs):
            self._reap()
            time.sleep(0.05)
        _killpg([p for p in procs if _alive(p)], signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        for child in self._children:
            child.poll()

    def _pod_uids(self) -> list[str]:
        uids: list[str] = []
        nodes = self.t.state_dir / "nodes"
        for pods in (nodes.glob("*/pods") if nodes.is_dir() else []):
            uids.extend(d.name for d in pods.iterdir())
        return uids

    def _stray_relays(self) -> list[int]:
        """Relay processes of this lab the state file does not list (it was lost in a crash)."""
        want = f"--netns\0{self.t.hub}\0".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"lab.relay" in cmd and want in cmd:
                found.append(int(entry.name))
        return found

    # -- status / exec ------------------------------------------------------------------------------
    async def status(self) -> str:
        from controlplane.resources import NODES, PODS

        lines = [f"lab {self.t.name}: {'up' if self.is_up() else 'down'} (state {self.t.state_dir})"]
        if not self.state.processes:
            return lines[0]
        lines.append(f"kubeconfig: {self.kubeconfig}   (kubectl --kubeconfig {self.kubeconfig} get nodes)")
        for p in self.state.processes:
            lines.append(f"  {p['role']:<16} pid {p['pid']:<8} {'running' if _alive(p) else 'NOT RUNNING'}")
        for ns in self.state.namespaces:
            lines.append(f"  netns {ns:<28} {'present' if netns.exists(ns) else 'MISSING'}")
        try:
            async with self.client() as c:
                nodes = (await c.list(NODES)).items
                pods = (await c.list(PODS)).items
        except Exception as exc:  # noqa: BLE001
            lines.append(f"API not reachable: {exc}")
            return "\n".join(lines)
        lines.append("NODE        READY  INTERNAL-IP    POD-CIDR")
        for n in nodes:
            addr = next((a["address"] for a in (n.get("status") or {}).get("addresses") or []
                         if a.get("type") == "InternalIP"), "")
            lines.append(f"{n['metadata']['name']:<11} {str(_cond(n, 'Ready')):<6} {addr:<14} "
                         f"{(n.get('spec') or {}).get('podCIDR', '')}")
        lines.append("POD                                 PHASE      IP             NODE")
        for p in pods:
            key = f"{p['metadata']['namespace']}/{p['metadata']['name']}"
            st = p.get("status") or {}
            lines.append(f"{key:<35} {st.get('phase', ''):<10} {st.get('podIP', ''):<14} "
                         f"{(p.get('spec') or {}).get('nodeName', '')}")
        return "\n".join(lines)

    async def exec_argv(self, target: str, command: list[str], namespace: str = "default") -> list[str]:
        """argv running `command` on a node (node-1, hub, client) or in a pod (its netns + resolv.conf)."""
        node = self.t.node(target)
        if node is not None:
            return ["ip", "netns", "exec", node.netns, *command]
        if target in ("hub", "controlplane"):
            return ["ip", "netns", "exec", self.t.hub, *command]
        if target == "client":
            return ["ip", "netns", "exec", self.t.client, *command]
        from controlplane.resources import PODS

        ns, _, name = target.rpartition("/")
        async with self.client() as c:
            try:
                pod = await c.get(PODS, name, namespace=ns or namespace)
            except Exception as exc:  # noqa: BLE001
                raise LabError(f"{target!r} is neither a node ({', '.join(n.name for n in self.t.nodes)}, hub, "
                               f"client) nor a pod: {exc}") from None
        where = self.t.node((pod.get("spec") or {}).get("nodeName", ""))
        if where is None:
            raise LabError(f"pod {target} is not running on a lab node yet")
        return exec_in_pod_argv(where.root_dir, pod["metadata"]["uid"], command, where.netns)


def _killpg(procs: list[dict[str, Any]], sig: int) -> None:
    for p in procs:
        try:
            os.killpg(int(p["pid"]), sig)
        except ProcessLookupError:
            pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cond(obj: dict[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


async def _get_ok(c: Any, path: str) -> bool:
    await c.request("GET", path)
    return True


async def _until(deadline: float, check, what: str, lab: Lab) -> None:  # type: ignore[no-untyped-def]
    last = ""
    while time.monotonic() < deadline:
        for p in lab.state.processes:
            if not _alive(p):
                log = lab.t.state_dir / "logs" / f"{p['role']}.log"
                tail = log.read_text()[-1500:] if log.exists() else ""
                raise LabError(f"{p['role']} exited while waiting for {what}:\n{tail}")
        try:
            if await check():
                return
        except Exception as exc:  # noqa: BLE001
            last = str(exc)
        await asyncio.sleep(0.1)
    raise LabError(f"timed out waiting for {what}{': ' + last if last else ''}")
