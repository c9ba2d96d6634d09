"""One worker per pod: sandbox, containers, probes, status, teardown (the shell around agent.core)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent import core
from agent.cni import Attachment, CNIError, cni_args, network_to_dict, parse_network, port_mappings, result_ips
from agent.probes import run_probe
from agent.runtime import PodRecord, netns_name
from agent.spec import AgentError, Container, PodSpec, Probe, ProbeKind, parse_pod_spec
from controlplane.model import parse_service
from controlplane.resources import PODS

if TYPE_CHECKING:
    from agent.agent import Agent

log = logging.getLogger("podnet.agent")


@dataclass
class ProbeTimer:
    state: core.ProbeState
    due: float


class PodWorker:
    """Drives one pod (by uid) until it is torn down."""

    def __init__(self, agent: "Agent", uid: str, record: PodRecord | None) -> None:
        self.agent = agent
        self.uid = uid
        self.record = record
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.readiness: dict[str, ProbeTimer] = {}
        self.liveness: dict[str, ProbeTimer] = {}
        self.startup: dict[str, ProbeTimer] = {}
        self.last_status: dict[str, Any] | None = None
        self.error = ""
        self.spec: PodSpec | None = None
        self.retry_at = 0.0

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop(), name=f"pod {self.uid}")

    def poke(self) -> None:
        self.wake.set()

    async def _loop(self) -> None:
        while True:
            self.wake.clear()
            try:
                delay = await self.sync()
            except Exception:  # noqa: BLE001 - a worker never dies silently
                log.exception("pod %s: sync failed", self.uid)
                delay = 2.0
            if delay is None:
                return
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.05, delay))
            except asyncio.TimeoutError:
                pass

    # -- one pass --------------------------------------------------------------------------------
    async def sync(self) -> float | None:
        """Returns seconds until the next pass is due, or None when the pod is gone for good."""
        obj = self.agent.pod_object(self.uid)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            await self.terminate(obj)
            return None
        pod_ip = self.record.pod_ips[0] if self.record and self.record.pod_ips else ""
        try:
            spec = parse_pod_spec(obj, pod_ip, self.agent.node_ip, self.agent.service_env(obj))
        except AgentError as exc:
            await self._report_error(obj, "CreateContainerConfigError", str(exc))
            return 5.0
        self.spec = spec
        now = time.time()
        if self.record is None or not (self.record.sandbox_ready or self.record.sandbox_released):
            if now < self.retry_at:
                return self.retry_at - now
            if not await self._create_sandbox(obj, spec):
                return max(0.1, self.retry_at - time.time())
            pod_ip = self.record.pod_ips[0] if self.record and self.record.pod_ips else ""
            spec = parse_pod_spec(obj, pod_ip, self.agent.node_ip, self.agent.service_env(obj))
            self.spec = spec
        rec = self.record
        assert rec is not None
        rt = self.agent.runtime
        if rt.observe(rec):
            rt.save(rec)
        next_due = now + 1.0
        phase = core.pod_phase(spec, self._states(spec), rec.sandbox_ready or rec.sandbox_released)
        if phase not in ("Succeeded", "Failed"):
            next_due = min(next_due, self._start_containers(rec, spec, now))
            next_due = min(next_due, await self._probe(rec, spec))
        elif not rec.sandbox_released:
            await self._release_sandbox(rec)
        await self._report(obj, spec)
        poll = 0.25 if any(p.running for p in rec.containers.values()) else 1.0
        return max(0.0, min(next_due, time.time() + poll) - time.time())

    def _states(self, spec: PodSpec) -> dict[str, core.ContainerState]:
        rec = self.record
        if rec is None:
            return {}
        out = {}
        for c in spec.init_containers:
            proc = rec.containers.get(c.name)
            if proc is not None:
                st = proc.state(False)
                out[c.name] = core.with_ready(st, core.init_completed(st))  # a finished init is "ready"
        for c in spec.containers:
            proc = rec.containers.get(c.name)
            if proc is None:
                continue
            probe = self.readiness.get(c.name)
            ready = core.container_ready(c, proc.state(True), probe.state if probe else None, self._started(c))
            out[c.name] = proc.state(ready)
        return out

    async def _create_sandbox(self, obj: dict[str, Any], spec: PodSpec) -> bool:
        agent = self.agent
        if spec.host_network:
            return self._create_host_sandbox(spec)
        net = agent.cni.network()
        if net is None:
            self.error = "network is not ready: no CNI network config in " + agent.cni.conf_dir
            self.retry_at = time.time() + 1.0
            await self._report_error(obj, "ContainerCreating", self.error)
            return False
        rec = self.record or PodRecord(spec.uid, spec.namespace, spec.name, netns_name(spec.uid), spec.uid,
                                       start_time=time.time())
        self.record = rec
        rt = agent.runtime
        if rec.network is not None:  # an ADD was interrupted (agent crash): undo it before a new one
            log.info("pod %s: cleaning up an interrupted sandbox set-up", spec.key)
            await self._release_sandbox(rec)
            rec.network, rec.cni_result, rec.sandbox_released = None, None, False
        t0 = time.monotonic()
        try:
            await asyncio.to_thread(rt.create_netns, rec)
            t1 = time.monotonic()
            rec.network = network_to_dict(net)
            rt.save(rec)  # before ADD: a crash now still lets the next agent DEL it
            rec.runtime_config = {"portMappings": port_mappings(obj)} if port_mappings(obj) else {}
            att = Attachment(rec.container_id, f"/run/netns/{rec.netns}", rec.ifname,
                             cni_args(spec.namespace, spec.name, rec.container_id, spec.uid), rec.runtime_config)
            async with agent.cni_slots:
                t2 = time.monotonic()
                result = await agent.cni.add(net, att)
            log.debug("pod %s: netns %.0f ms, CNI wait %.0f ms, CNI ADD %.0f ms", spec.key, (t1 - t0) * 1000,
                      (t2 - t1) * 1000, (time.monotonic() - t2) * 1000)
        except Exception as exc:  # noqa: BLE001 - CNIError, OSError, ...: report and retry
            self.error = f"failed to set up sandbox: {exc}"
            log.warning("pod %s: %s", spec.key, self.error)
            self.retry_at = time.time() + 2.0
            await self._report_error(obj, "ContainerCreating", self.error)
            return False
        rec.cni_result = result
        rec.pod_ips = result_ips(result)
        pod_ip = rec.pod_ips[0] if rec.pod_ips else ""
        rt.write_files(rec.uid, agent.resolv_conf(spec), core.render_hosts(
            pod_ip, spec.name, spec.hostname, spec.subdomain, spec.namespace, agent.opts.cluster_domain))
        rec.sandbox_ready = True
        rt.save(rec)
        self.error = ""
        log.info("pod %s: sandbox %s ip %s", spec.key, rec.netns, pod_ip)
        return True

    def _create_host_sandbox(self, spec: PodSpec) -> bool:
        """hostNetwork: no namespace, no CNI; the pod IP is the node IP."""
        rec = self.record or PodRecord(spec.uid, spec.namespace, spec.name, "", spec.uid, start_time=time.time())
        self.record = rec
        rec.pod_ips = [self.agent.node_ip]
        self.agent.runtime.write_files(rec.uid, self.agent.resolv_conf(spec), "")
        rec.sandbox_ready = True
        self.agent.runtime.save(rec)
        return True

    def _start_containers(self, rec: PodRecord, spec: PodSpec, now: float) -> float:
        if spec.init_containers:
            init = core.init_progress(spec, self._states(spec), now, self.agent.opts.restart_backoff)
            if not init.done:
                return self._step_init(rec, spec, init, now)
        next_due = now + 60
        changed = False
        for c in spec.containers:
            proc = rec.containers.get(c.name)
            state = proc.state(False) if proc else None
            d = core.container_decision(spec.restart_policy, state, now, self.agent.opts.restart_backoff)
            if d.step is core.Step.START:
                self.agent.runtime.start(rec, c, "" if spec.host_network else spec.hostname or spec.name)
                self._reset_probes(c, time.time())
                changed = True
            elif d.step is core.Step.WAIT and proc is not None:
                proc.waiting_reason = "CrashLoopBackOff"
                next_due = min(next_due, d.at)
        if changed:
            self.agent.runtime.save(rec)
        return next_due

    def _started(self, c: Container) -> bool:
        timer = self.startup.get(c.name)
        return c.startup is None or (timer is not None and timer.state.ready)

    def _step_init(self, rec: PodRecord, spec: PodSpec, init: core.InitProgress, now: float) -> float:
        c = next(c for c in spec.init_containers if c.name == init.name) if init.name else None
        if c is None or init.failed:
            return now + 60
        if init.decision.step is core.Step.START:
            self.agent.runtime.start(rec, c, "" if spec.host_network else spec.hostname or spec.name)
            self.agent.runtime.save(rec)
            return now + 0.1
        proc = rec.containers.get(c.name)
        if init.decision.step is core.Step.WAIT and proc is not None:
            proc.waiting_reason = "CrashLoopBackOff"
            return init.decision.at
        return now + 0.25

    def _reset_probes(self, c: Container, now: float) -> None:
        if c.startup:
            self.startup[c.name] = ProbeTimer(core.ProbeState(False), now + c.startup.initial_delay)
        if c.readiness:
            self.readiness[c.name] = ProbeTimer(core.ProbeState(False), now + c.readiness.initial_delay)
        if c.liveness:
            self.liveness[c.name] = ProbeTimer(core.ProbeState(True), now + c.liveness.initial_delay)

    async def _probe(self, rec: PodRecord, spec: PodSpec) -> float:
        now = time.time()
        next_due = now + 60
        jobs = []
        for c in spec.containers:
            proc = rec.containers.get(c.name)
            if proc is None or not proc.running:
                continue
            kinds: list[tuple[str, dict[str, ProbeTimer], Probe | None]] = [
                ("readiness", self.readiness, c.readiness), ("liveness", self.liveness, c.liveness)]
            if not self._started(c):  # readiness and liveness wait for the startup probe
                kinds = [("startup", self.startup, c.startup)]
            for kind, timers, probe in kinds:
                if probe is None:
                    continue
                timer = timers.get(c.name)
                if timer is None:
                    timer = timers[c.name] = ProbeTimer(core.ProbeState(kind == "liveness"), now + probe.initial_delay)
                if timer.due <= now:
                    jobs.append(self._one_probe(rec, c, probe, kind, timer))
                    timer.due = now + probe.period
                next_due = min(next_due, timer.due)
        if jobs:
            await asyncio.gather(*jobs)
        return next_due

    async def _one_probe(self, rec: PodRecord, c: Container, probe: Probe, kind: str, timer: ProbeTimer) -> None:
        pod_ip = rec.pod_ips[0] if rec.pod_ips else ""
        argv = self.agent.runtime.exec_argv(rec, probe.command)
        ok, msg = await run_probe(probe, c, pod_ip, argv, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **dict(c.env)})
        timer.state = core.probe_record(probe, timer.state, ok)
        if not ok:
            log.info("pod %s/%s container %s: %s probe failed: %s", rec.namespace, rec.name, c.name, kind, msg)
        failed = (kind == "liveness" and not timer.state.ready) or (
            kind == "startup" and not timer.state.ready and core.probe_failed(probe, timer.state))
        if failed:
            log.info("pod %s/%s container %s failed %s probe, will be restarted",
                     rec.namespace, rec.name, c.name, kind)
            proc = rec.containers[c.name]
            await self._kill_container(rec, proc.name, self.spec.grace_seconds if self.spec else 30)
            timer.state = core.ProbeState(kind == "liveness")
            self.readiness.pop(c.name, None)

    async def _pre_stop(self, rec: PodRecord, name: str, grace: float) -> None:
        """Run the container's preStop hook (bounded by the grace period), as kubelet does."""
        spec = self.spec
        c = next((c for c in spec.containers if c.name == name), None) if spec else None
        hook = c.pre_stop if c else None
        if hook is None or c is None or grace <= 0:
            return
        try:
            if hook.kind == "sleep":
                await asyncio.sleep(min(hook.seconds, grace))
            elif hook.kind == "exec":
                probe = Probe(ProbeKind.EXEC, command=hook.command, timeout=grace)
                await run_probe(probe, c, "", self.agent.runtime.exec_argv(rec, hook.command),
                                {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **dict(c.env)})
            else:
                probe = Probe(ProbeKind.HTTP_GET, path=hook.path, port=hook.port, timeout=grace)
                await run_probe(probe, c, rec.pod_ips[0] if rec.pod_ips else "", [], {})
        except Exception as exc:  # noqa: BLE001 - a failing hook never blocks the kill
            log.info("pod %s/%s container %s: preStop hook failed: %s", rec.namespace, rec.name, name, exc)

    async def _kill_container(self, rec: PodRecord, name: str, grace: float) -> None:
        rt = self.agent.runtime
        proc = rec.containers[name]
        start = time.time()
        await self._pre_stop(rec, name, grace)
        grace = max(0.0, grace - (time.time() - start))
        rt.signal(proc, signal.SIGTERM)
        deadline = time.time() + grace
        while time.time() < deadline:
            rt.observe(rec)
            if not proc.running:
                break
            await asyncio.sleep(0.05)
        if proc.running:
            rt.signal(proc, signal.SIGKILL, group=True)
            for _ in range(100):
                rt.observe(rec)
                if not proc.running:
                    break
                await asyncio.sleep(0.02)
        rt.save(rec)

    # -- status ----------------------------------------------------------------------------------
    async def _report(self, obj: dict[str, Any], spec: PodSpec) -> None:
        rec = self.record
        assert rec is not None
        status = core.render_pod_status(spec, self._states(spec),
                                        sandbox_ready=rec.sandbox_ready or rec.sandbox_released,
                                        pod_ips=rec.pod_ips, host_ip=self.agent.node_ip,
                                        start_time=rec.start_time, now=time.time(), previous=obj.get("status"))
        await self._send(obj, status)

    async def _report_error(self, obj: dict[str, Any], reason: str, message: str) -> None:
        spec = obj.get("spec") or {}
        status = {"phase": "Pending", "hostIP": self.agent.node_ip, "hostIPs": [{"ip": self.agent.node_ip}],
                  "conditions": [{"type": "PodScheduled", "status": "True"},
                                 {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                  "containerStatuses": [{"name": c.get("name", ""), "ready": False, "restartCount": 0,
                                         "image": c.get("image") or "host", "imageID": "",
                                         "state": {"waiting": {"reason": reason, "message": message}}}
                                        for c in spec.get("containers") or []]}
        await self._send(obj, status)

    async def _send(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        if status == self.last_status:
            return
        meta = obj["metadata"]
        try:
            await self.agent.client.patch(PODS, meta["name"], {"status": status}, namespace=meta.get("namespace"),
                                          patch_type=self.agent.merge, subresource="status")
            self.last_status = status
        except Exception as exc:  # noqa: BLE001 - the next pass retries
            if getattr(exc, "code", 0) != 404:
                log.warning("pod %s/%s: status update failed: %s", meta.get("namespace"), meta["name"], exc)

    # -- teardown --------------------------------------------------------------------------------
    async def terminate(self, obj: dict[str, Any] | None) -> None:
        rec = self.record
        spec = self.spec
        if obj is not None:
            try:
                spec = self.spec = parse_pod_spec(obj)
            except AgentError:
                pass
        grace = core.kill_grace(spec)
        if rec is not None:
            await self._stop_all(rec, grace)
            await self._release_sandbox(rec)
            self.agent.runtime.forget(rec.uid)
            log.info("pod %s/%s: torn down", rec.namespace, rec.name)
        if obj is not None:
            await self._finalize(obj)
        self.agent.forget_worker(self.uid)

    async def _stop_all(self, rec: PodRecord, grace: float) -> None:
        rt = self.agent.runtime
        rt.observe(rec)
        names = [n for n, p in rec.containers.items() if p.running]
        await asyncio.gather(*(self._kill_container(rec, n, grace) for n in names))

    async def _release_sandbox(self, rec: PodRecord) -> None:
        rt = self.agent.runtime
        rt.kill_all_now(rec)  # nothing may outlive the sandbox
        if rec.network is not None and rec.netns:
            try:
                net = parse_network(rec.network)
                att = Attachment(rec.container_id, f"/run/netns/{rec.netns}", rec.ifname,
                                 cni_args(rec.namespace, rec.name, rec.container_id, rec.uid), rec.runtime_config)
                async with self.agent.cni_slots:
                    await self.agent.cni.delete(net, att, rec.cni_result)
            except CNIError as exc:
                log.warning("pod %s/%s: CNI DEL failed: %s", rec.namespace, rec.name, exc)
        await asyncio.to_thread(rt.delete_netns, rec)
        rec.sandbox_released = True
        rec.sandbox_ready = False
        if rt.pod_dir(rec.uid).exists():
            rt.save(rec)

    async def _finalize(self, obj: dict[str, Any]) -> None:
        """Final status, then the grace-0 delete that lets the API server drop the object."""
        meta = obj["metadata"]
        ns, name = meta.get("namespace"), meta["name"]
        try:
            await self.agent.client.delete(PODS, name, namespace=ns, grace_period_seconds=0,
                                           resource_version=None)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "code", 0) != 404:
                log.warning("pod %s/%s: final delete failed: %s", ns, name, exc)


def services_env(services: list[dict[str, Any]], namespace: str) -> dict[str, str]:
    views = []
    for s in services:
        meta = s.get("metadata") or {}
        if meta.get("namespace") == namespace or (meta.get("namespace") == "default" and meta.get("name") == "kubernetes"):
            try:
                views.append(parse_service(s))
            except (ValueError, KeyError):
                continue
    env = core.service_env(views)
    kube = next((v for v in views if v.namespace == "default" and v.name == "kubernetes"), None)
    if kube is not None and kube.cluster_ip is not None and kube.ports:
        env["KUBERNETES_SERVICE_HOST"] = str(kube.cluster_ip)
        env["KUBERNETES_SERVICE_PORT"] = str(kube.ports[0].port)
    return env
