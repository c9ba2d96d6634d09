"""The node agent's main shell: Node registration and heartbeat, pod workers, host-gw routes.

Watches the Pods bound to this Node (fieldSelector spec.nodeName), all Nodes (routes, own
podCIDR) and Services (service-link environment). Each pod uid gets a `PodWorker`. On start
it loads <root>/pods/*/state.json and adopts what still runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import core
from agent.cni import CNIRuntime, render_conflist
from agent.pods import PodWorker, services_env
from agent.runtime import Runtime
from agent.spec import PodSpec
from controlplane.model import parse_node
from controlplane.resources import NODES, PODS, SERVICES

log = logging.getLogger("podnet.agent")

ROUTE_PROTO = "188"  # marks the host-gw routes this agent owns
HEARTBEAT_SECONDS = 10.0
MASQ_CHAIN = "PODNET-POSTROUTING"


@dataclass
class Options:
    node: str
    node_ip: str
    cni_bin_dirs: list[str]
    cni_conf_dir: str
    cluster_dns: list[str]
    cluster_domain: str = "cluster.local"
    root_dir: str = "/var/lib/podnet/agent"
    write_cni_conf: bool = False
    cni_plugin: str = "podnet-bridge"
    cni_ipam: str = "podnet-ipam"
    non_masquerade_cidr: str = ""
    host_gw: bool = True
    restart_backoff: float = 10.0
    labels: dict[str, str] = field(default_factory=dict)
    max_parallel_cni: int = 8
    cni_daemon_socket: str = ""
    cni_portmap: bool = False


class Agent:
    def __init__(self, client: Any, opts: Options) -> None:
        from controlplane.client import Informer, PatchType

        self.client = client
        self.opts = opts
        self.node_ip = opts.node_ip
        self.merge = PatchType.MERGE
        self.runtime = Runtime(opts.root_dir)
        self.cni = CNIRuntime(opts.cni_bin_dirs, opts.cni_conf_dir)
        self.cni_slots = asyncio.Semaphore(opts.max_parallel_cni)
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={opts.node}")
        self.pods.add_index("uid", lambda o: [str(o["metadata"].get("uid", ""))])
        self.nodes = Informer(client, NODES)
        self.services = Informer(client, SERVICES)
        self.workers: dict[str, PodWorker] = {}
        self.node_changed = asyncio.Event()
        self.net_ready = False
        self.pod_cidr = ""
        self._last_node_status: dict[str, Any] | None = None
        self.started = False  # no pod workers before the pod cache is synced and state adopted
        self._finalizing: set[str] = set()

    # -- lookups used by workers -------------------------------------------------------------------
    def pod_object(self, uid: str) -> dict[str, Any] | None:
        found = self.pods.by_index("uid", uid)
        return found[0] if found else None

    def service_env(self, pod: dict[str, Any]) -> dict[str, str]:
        if (pod.get("spec") or {}).get("enableServiceLinks", True) is False:
            return services_env([s for s in self.services.list()
                                 if s["metadata"].get("name") == "kubernetes"], "default")
        return services_env(self.services.list(), str(pod["metadata"].get("namespace", "default")))

    def resolv_conf(self, spec: PodSpec) -> str:
        host = ""
        try:
            host = Path("/etc/resolv.conf").read_text()
        except OSError:
            pass
        raw = self.pod_object(spec.uid) or {}
        policy = spec.dns_policy
        if spec.host_network and policy == "ClusterFirst":
            policy = "Default"  # kubelet: hostNetwork pods need ClusterFirstWithHostNet for cluster DNS
        return core.render_resolv_conf(spec.namespace, self.opts.cluster_dns, self.opts.cluster_domain,
                                       policy, host, (raw.get("spec") or {}).get("dnsConfig"))

    def forget_worker(self, uid: str) -> None:
        self.workers.pop(uid, None)

    # -- main ----------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        await self.register()
        self.pods.add_handler(on_add=self._on_pod, on_update=lambda o, n: self._on_pod(n), on_delete=self._on_pod)
        self.nodes.add_handler(on_add=self._on_node, on_update=lambda o, n: self._on_node(n),
                               on_delete=self._on_node)
        for inf in (self.services, self.nodes, self.pods):
            await inf.start()
        for inf in (self.services, self.nodes, self.pods):
            while not stop.is_set() and not await inf.wait_synced(timeout=1):
                pass
        tasks = [asyncio.create_task(self._heartbeat(stop)), asyncio.create_task(self._node_loop(stop))]
        self._adopt()
        self.started = True
        try:
            while not stop.is_set():
                self._reconcile()
                try:
                    await asyncio.wait_for(stop.wait(), 2.0)
                except asyncio.TimeoutError:
                    pass
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in list(self.workers.values()):
                if w.task is not None:
                    w.task.cancel()
            for inf in (self.pods, self.nodes, self.services):
                await inf.stop()

    def _adopt(self) -> None:
        records = self.runtime.load_all()
        for uid, rec in records.items():
            if uid not in self.workers:
                log.info("adopting pod %s/%s (%s)", rec.namespace, rec.name, uid)
                w = PodWorker(self, uid, rec)
                self.workers[uid] = w
                w.start()

    def _reconcile(self) -> None:
        objs = {str(o["metadata"].get("uid", "")): o for o in self.pods.list()}
        objs.pop("", None)
        intents = {uid: core.PodIntent(bool(o["metadata"].get("deletionTimestamp")),
                                       (o.get("status") or {}).get("phase") in ("Succeeded", "Failed"))
                   for uid, o in objs.items()}
        plan = core.plan_pods(intents, self.workers)
        for uid in plan.create:
            w = PodWorker(self, uid, None)
            self.workers[uid] = w
            w.start()
        for uid in plan.kill:  # the worker sees the deletion and tears the pod down
            self.workers[uid].poke()
        for uid in plan.finalize:
            if uid not in self._finalizing:
                self._finalizing.add(uid)
                asyncio.get_running_loop().create_task(self._final_delete(objs[uid]))

    async def _final_delete(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        try:
            await self.client.delete(PODS, meta["name"], namespace=meta.get("namespace"), grace_period_seconds=0)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "code", 0) != 404:
                log.warning("pod %s/%s: final delete failed: %s", meta.get("namespace"), meta["name"], exc)
                self._finalizing.discard(str(meta.get("uid", "")))

    def _on_pod(self, obj: dict[str, Any]) -> None:
        if not self.started:
            return
        uid = str(obj["metadata"].get("uid", ""))
        w = self.workers.get(uid)
        if w is not None:
            w.poke()
        else:
            self._reconcile()

    def _on_node(self, obj: dict[str, Any]) -> None:
        self.node_changed.set()

    # -- node ------------------------------------------------------------------------------------------
    async def register(self) -> None:
        from controlplane import errors

        labels = {"kubernetes.io/hostname": self.opts.node, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(),
                                                                                     platform.machine()),
                  **self.opts.labels}
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.opts.node, "labels": labels},
                "spec": {}}
        while True:
            try:
                await self.client.create(NODES, body)
                log.info("registered node %s", self.opts.node)
                break
            except errors.AlreadyExists:
                await self.client.patch(NODES, self.opts.node, {"metadata": {"labels": labels}},
                                        patch_type=self.merge)
                break
            except Exception as exc:  # noqa: BLE001 - wait for the API server
                log.warning("registering node %s: %s; retrying", self.opts.node, exc)
                await asyncio.sleep(1.0)
        await self.update_node_status(force=True)

    async def update_node_status(self, force: bool = False) -> None:
        ready = self.net_ready
        reason, message = ("KubeletReady", "kubelet is posting ready status") if ready else (
            "KubeletNotReady", "container runtime network not ready: NetworkReady=false "
            "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized")
        current = self.nodes.get(self.opts.node) if self.nodes.has_synced else None
        status = core.render_node_status(
            self.node_ip, socket.gethostname() if not self.opts.node else self.opts.node, ready=ready,
            reason=reason, message=message, now=time.time(), previous=(current or {}).get("status"),
            capacity={"cpu": str(os.cpu_count() or 1), "memory": _memory(), "pods": "110"},
            info={"kubeletVersion": "v1.32.0-podnet", "kubeProxyVersion": "v1.32.0-podnet",
                  "operatingSystem": "linux", "architecture": platform.machine(),
                  "kernelVersion": platform.release(), "containerRuntimeVersion": "podnet://0.1.0",
                  "osImage": "podnet", "machineID": "", "systemUUID": "", "bootID": ""})
        try:
            await self.client.patch(NODES, self.opts.node, {"status": status}, patch_type=self.merge,
                                    subresource="status")
            self._last_node_status = status
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "code", 0) == 404 and not force:
                log.warning("node %s was deleted; registering it again", self.opts.node)
                await self.register()
                return
            log.warning("node status update failed: %s", exc)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.update_node_status()
            try:
                await asyncio.wait_for(stop.wait(), HEARTBEAT_SECONDS)
            except asyncio.TimeoutError:
                pass

    async def _node_loop(self, stop: asyncio.Event) -> None:
        """Own podCIDR -> CNI config; other Nodes -> host-gw routes."""
        while not stop.is_set():
            self.node_changed.clear()
            try:
                await self._sync_network()
            except Exception:  # noqa: BLE001
                log.exception("network sync failed")
            try:
                await asyncio.wait_for(self.node_changed.wait(), 30.0)
            except asyncio.TimeoutError:
                pass

    async def _sync_network(self) -> None:
        me = self.nodes.get(self.opts.node)
        views = [parse_node(n) for n in self.nodes.list()]
        if me is not None:
            cidrs = [str(c) for c in parse_node(me).pod_cidrs]
            if cidrs and cidrs[0] != self.pod_cidr:
                self.pod_cidr = cidrs[0]
                log.info("node %s: podCIDR %s", self.opts.node, self.pod_cidr)
                if self.opts.write_cni_conf:
                    self._write_cni_conf()
                if self.opts.non_masquerade_cidr:
                    await asyncio.to_thread(ensure_masquerade, self.opts.non_masquerade_cidr)
        was = self.net_ready
        self.net_ready = self.cni.network() is not None
        if self.net_ready != was:
            await self.update_node_status(force=True)
            for w in self.workers.values():
                w.poke()
        if self.opts.host_gw:
            await asyncio.to_thread(sync_routes, core.desired_routes(self.opts.node, views))

    def _write_cni_conf(self) -> None:
        conf = render_conflist("podnet", self.pod_cidr, data_dir=str(Path(self.opts.root_dir) / "ipam"),
                               plugin=self.opts.cni_plugin, ipam=self.opts.cni_ipam,
                               daemon_socket=self.opts.cni_daemon_socket, portmap=self.opts.cni_portmap)
        d = Path(self.opts.cni_conf_dir)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / ".10-podnet.conflist.tmp"
        tmp.write_text(json.dumps(conf, indent=2) + "\n")
        os.replace(tmp, d / "10-podnet.conflist")


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1])}Ki"
    except OSError:
        pass
    return "0"


# ---------------------------------------------------------------- network shell (current netns)

def existing_routes() -> dict[str, str]:
    out = subprocess.run(["ip", "-j", "route", "show", "proto", ROUTE_PROTO], capture_output=True, text=True)
    routes: dict[str, str] = {}
    try:
        for r in json.loads(out.stdout or "[]"):
            if r.get("gateway"):
                routes[str(r["dst"])] = str(r["gateway"])
    except ValueError:
        pass
    return routes


def sync_routes(desired: dict[str, str]) -> None:
    put, drop = core.diff_routes(desired, existing_routes())
    for dst, via in put:
        res = subprocess.run(["ip", "route", "replace", dst, "via", via, "proto", ROUTE_PROTO],
                             capture_output=True, text=True)
        if res.returncode != 0:
            log.warning("route %s via %s: %s", dst, via, res.stderr.strip())
        else:
            log.info("route %s via %s", dst, via)
    for dst in drop:
        subprocess.run(["ip", "route", "del", dst, "proto", ROUTE_PROTO], capture_output=True, text=True)
        log.info("route %s removed", dst)


def render_masquerade(non_masquerade_cidr: str) -> str:
    return (f"*nat\n:{MASQ_CHAIN} - [0:0]\n"
            f"-A {MASQ_CHAIN} -s {non_masquerade_cidr} ! -d {non_masquerade_cidr} -m addrtype ! --dst-type LOCAL "
            f"-m comment --comment \"podnet agent: SNAT pod traffic leaving the cluster network\" -j MASQUERADE\n"
            "COMMIT\n")


def ensure_masquerade(non_masquerade_cidr: str) -> None:
    """kubenet's non-masquerade-cidr rule, in this (node) namespace's nat table."""
    subprocess.run(["iptables-restore", "--noflush", "-w", "5"], input=render_masquerade(non_masquerade_cidr),
                   capture_output=True, text=True, check=False)
    check = ["iptables", "-w", "5", "-t", "nat", "-C", "POSTROUTING", "-j", MASQ_CHAIN]
    if subprocess.run(check, capture_output=True).returncode != 0:
        subprocess.run(["iptables", "-w", "5", "-t", "nat", "-A", "POSTROUTING", "-j", MASQ_CHAIN],
                       capture_output=True, check=False)
