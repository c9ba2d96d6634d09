"""The agent's pure core: pod lifecycle decisions, pod/node status, resolv.conf, routes.

Nothing here touches processes, namespaces or the network. The shell (`agent.runtime`,
`agent.agent`) observes what runs, asks these functions what to do, and does it.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

from agent.spec import Container, PodSpec, Probe, RestartPolicy
from controlplane.model import Node, Service

MAX_BACKOFF = 300.0


# ---------------------------------------------------------------- containers

@dataclass(frozen=True)
class Termination:
    exit_code: int
    reason: str
    started_at: float
    finished_at: float
    signal: int = 0


@dataclass(frozen=True)
class ContainerState:
    """What the shell observed about one container (times are epoch seconds)."""

    name: str
    running: bool = False
    pid: int = 0
    started_at: float = 0.0
    restart_count: int = 0
    last: Termination | None = None  # the most recent exit (current state when not running)
    ready: bool = False
    waiting_reason: str = "ContainerCreating"

    @property
    def ever_started(self) -> bool:
        return self.running or self.last is not None


class Step(str, enum.Enum):
    NOTHING = "nothing"
    START = "start"
    WAIT = "wait"  # back-off: start at `at`


@dataclass(frozen=True)
class Decision:
    step: Step
    at: float = 0.0


def should_restart(policy: RestartPolicy, exit_code: int) -> bool:
    if policy is RestartPolicy.ALWAYS:
        return True
    if policy is RestartPolicy.ON_FAILURE:
        return exit_code != 0
    return False


def backoff(restart_count: int, base: float = 10.0) -> float:
    """kubelet's crash-loop back-off: first restart at once, then base, 2*base, ... up to 5 min."""
    if restart_count <= 0 or base <= 0:
        return 0.0
    return min(MAX_BACKOFF, base * (2 ** (restart_count - 1)))


def container_decision(policy: RestartPolicy, state: ContainerState | None, now: float,
                       backoff_base: float = 10.0) -> Decision:
    if state is None or not state.ever_started:
        return Decision(Step.START)
    if state.running or state.last is None:
        return Decision(Step.NOTHING)
    if not should_restart(policy, state.last.exit_code):
        return Decision(Step.NOTHING)
    at = state.last.finished_at + backoff(state.restart_count, backoff_base)
    return Decision(Step.START) if now >= at else Decision(Step.WAIT, at)


def init_completed(state: ContainerState | None) -> bool:
    return state is not None and not state.running and state.last is not None and state.last.exit_code == 0


@dataclass(frozen=True)
class InitProgress:
    done: bool  # every init container exited 0: the app containers may start
    failed: bool  # an init container failed and the policy (Never) does not retry: pod Failed
    decision: Decision  # for `name`
    name: str = ""  # the init container to act on


def init_progress(spec: PodSpec, states: Mapping[str, ContainerState], now: float,
                  backoff_base: float = 10.0) -> InitProgress:
    """Init containers run in order, each to a zero exit; a failure restarts it (with back-off)
    unless restartPolicy is Never, which fails the pod (kubelet's rules)."""
    for c in spec.init_containers:
        s = states.get(c.name)
        if s is None or not s.ever_started:
            return InitProgress(False, False, Decision(Step.START), c.name)
        if s.running or s.last is None:
            return InitProgress(False, False, Decision(Step.NOTHING), c.name)
        if s.last.exit_code == 0:
            continue
        if spec.restart_policy is RestartPolicy.NEVER:
            return InitProgress(False, True, Decision(Step.NOTHING), c.name)
        at = s.last.finished_at + backoff(s.restart_count, backoff_base)
        return InitProgress(False, False, Decision(Step.START) if now >= at else Decision(Step.WAIT, at), c.name)
    return InitProgress(True, False, Decision(Step.NOTHING))


def pod_phase(spec: PodSpec, states: Mapping[str, ContainerState], sandbox_ready: bool) -> str:
    if spec.init_containers:
        init = init_progress(spec, states, 0.0)
        if init.failed:
            return "Failed"
        if not init.done:
            return "Pending"
    current = [states.get(c.name) for c in spec.containers]
    if not sandbox_ready or any(s is None or not s.ever_started for s in current):
        return "Pending"
    done = [s for s in current if s is not None and not s.running]
    if len(done) < len(current):
        return "Running"
    codes = [s.last.exit_code for s in done if s.last is not None]
    if spec.restart_policy is RestartPolicy.ALWAYS:
        return "Running"
    if all(c == 0 for c in codes):
        return "Succeeded"
    if spec.restart_policy is RestartPolicy.ON_FAILURE:
        return "Running"
    return "Failed"


def termination_reason(exit_code: int, signal: int = 0) -> str:
    if exit_code == 0:
        return "Completed"
    return "Error"


# ---------------------------------------------------------------- probes

@dataclass(frozen=True)
class ProbeState:
    ready: bool  # current result (readiness starts False, liveness starts True)
    successes: int = 0
    failures: int = 0


def probe_failed(probe: Probe, state: ProbeState) -> bool:
    """A startup or liveness probe that reached its failure threshold (the container is restarted)."""
    return state.failures >= probe.failure_threshold


def probe_record(probe: Probe, state: ProbeState, ok: bool) -> ProbeState:
    """Apply one probe result with success/failure thresholds."""
    if ok:
        n = state.successes + 1
        return ProbeState(state.ready or n >= probe.success_threshold, n, 0)
    n = state.failures + 1
    return ProbeState(state.ready and n < probe.failure_threshold, 0, n)


def container_ready(container: Container, state: ContainerState | None, readiness: ProbeState | None,
                    started: bool = True) -> bool:
    """Ready: running, past its startup probe, and its readiness probe (if any) says so."""
    if state is None or not state.running or not started:
        return False
    if container.readiness is None:
        return True
    return bool(readiness and readiness.ready)


# ---------------------------------------------------------------- pod status

def iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _container_status(c: Container, s: ContainerState | None, pod_uid: str) -> dict[str, Any]:
    s = s or ContainerState(c.name)
    status: dict[str, Any] = {"name": c.name, "ready": s.ready, "started": s.running,
                              "restartCount": s.restart_count, "image": c.image or "host",
                              "imageID": "", "containerID": f"podnet://{pod_uid}/{c.name}"}
    if s.running:
        status["state"] = {"running": {"startedAt": iso(s.started_at)}}
    elif s.last is not None and s.waiting_reason == "":
        status["state"] = {"terminated": _terminated(s.last)}
    else:
        status["state"] = {"waiting": {"reason": s.waiting_reason or "ContainerCreating"}}
    if s.last is not None and (s.running or s.waiting_reason):
        status["lastState"] = {"terminated": _terminated(s.last)}
    else:
        status["lastState"] = {}
    return status


def _terminated(t: Termination) -> dict[str, Any]:
    out: dict[str, Any] = {"exitCode": t.exit_code, "reason": t.reason, "startedAt": iso(t.started_at),
                           "finishedAt": iso(t.finished_at)}
    if t.signal:
        out["signal"] = t.signal
    return out


def render_pod_status(spec: PodSpec, states: Mapping[str, ContainerState], *, sandbox_ready: bool,
                      pod_ips: Sequence[str], host_ip: str, start_time: float, now: float,
                      previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The pod's .status as kubelet reports it (conditions keep their transition times)."""
    phase = pod_phase(spec, states, sandbox_ready)
    ready_all = bool(spec.containers) and all(states.get(c.name) is not None and states[c.name].ready
                                              for c in spec.containers)
    not_ready = sorted(c.name for c in spec.containers if not (states.get(c.name) and states[c.name].ready))
    prev = {c.get("type"): c for c in ((previous or {}).get("conditions") or [])}

    def cond(kind: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
        value = "True" if ok else "False"
        old = prev.get(kind) or {}
        since = old.get("lastTransitionTime") if old.get("status") == value else None
        out = {"type": kind, "status": value, "lastProbeTime": None, "lastTransitionTime": since or iso(now)}
        if not ok and reason:
            out["reason"], out["message"] = reason, message
        return out

    initialized = init_progress(spec, states, now).done
    pending_init = [c.name for c in spec.init_containers if not init_completed(states.get(c.name))]
    reason = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
    msg = "" if reason == "PodCompleted" else f"containers with unready status: [{' '.join(not_ready)}]"
    ready = ready_all and phase == "Running"
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [
            cond("PodReadyToStartContainers", sandbox_ready),
            cond("Initialized", initialized, "ContainersNotInitialized",
                 f"containers with incomplete status: [{' '.join(pending_init)}]"),
            cond("Ready", ready, reason, msg),
            cond("ContainersReady", ready, reason, msg),
            cond("PodScheduled", True),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}] if host_ip else [],
        "startTime": iso(start_time),
        "containerStatuses": [_container_status(c, states.get(c.name), spec.uid) for c in spec.containers],
        "qosClass": "BestEffort",
    }
    if spec.init_containers:
        status["initContainerStatuses"] = [_container_status(c, states.get(c.name), spec.uid)
                                           for c in spec.init_containers]
    if pod_ips:
        status["podIP"] = pod_ips[0]
        status["podIPs"] = [{"ip": ip} for ip in pod_ips]
    return status


# ---------------------------------------------------------------- pods on this node

@dataclass(frozen=True)
class PodIntent:
    """What the API says about a pod bound to this node."""

    deleting: bool = False  # metadata.deletionTimestamp set
    terminal: bool = False  # status.phase Succeeded/Failed


@dataclass(frozen=True)
class PodPlan:
    create: tuple[str, ...]  # uids to set up
    kill: tuple[str, ...]  # uids to tear down (object gone or deleting)
    keep: tuple[str, ...]  # uids to keep syncing
    finalize: tuple[str, ...]  # deleting pods with nothing running here: just finish the delete


def plan_pods(desired: Mapping[str, PodIntent], actual: Iterable[str]) -> PodPlan:
    """Desired pods (from the API, bound here, by uid) vs the ones we run (by uid)."""
    running = set(actual)
    create = sorted(u for u, s in desired.items() if u not in running and not s.deleting and not s.terminal)
    kill = sorted(u for u in running if u not in desired or desired[u].deleting)
    keep = sorted(u for u in running if u in desired and not desired[u].deleting)
    finalize = sorted(u for u, s in desired.items() if u not in running and s.deleting)
    return PodPlan(tuple(create), tuple(kill), tuple(keep), tuple(finalize))


def kill_grace(spec: PodSpec | None, default: int = 30) -> int:
    if spec is None:
        return default
    if spec.deletion_grace is not None:
        return spec.deletion_grace
    return spec.grace_seconds


# ---------------------------------------------------------------- DNS and hosts

def render_resolv_conf(namespace: str, cluster_dns: Sequence[str], domain: str, dns_policy: str = "ClusterFirst",
                       host_resolv: str = "", dns_config: Mapping[str, Any] | None = None) -> str:
    """kubelet's pod resolv.conf: cluster DNS, `<ns>.svc.<zone> svc.<zone> <zone>` search, ndots:5."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if dns_policy in ("ClusterFirst", "ClusterFirstWithHostNet") and cluster_dns:
        nameservers = list(cluster_dns)
        searches = [f"{namespace}.svc.{domain}", f"svc.{domain}", domain]
        options = ["ndots:5"]
    elif dns_policy != "None":
        for line in host_resolv.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                nameservers.append(parts[1])
            elif parts and parts[0] in ("search", "domain"):
                searches.extend(parts[1:])
            elif parts and parts[0] == "options":
                options.extend(parts[1:])
    cfg = dns_config or {}
    nameservers += [str(n) for n in cfg.get("nameservers") or []]
    searches += [str(s) for s in cfg.get("searches") or []]
    for opt in cfg.get("options") or []:
        name = str(opt.get("name", ""))
        options = [o for o in options if o.split(":")[0] != name]
        options.append(f"{name}:{opt['value']}" if opt.get("value") is not None else name)
    lines = [f"nameserver {n}" for n in _unique(nameservers)[:3]]
    if searches:
        lines.append("search " + " ".join(_unique(searches)[:32]))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def _unique(items: Sequence[str]) -> list[str]:
    out: list[str] = []
    for i in items:
        if i not in out:
            out.append(i)
    return out


def render_hosts(pod_ip: str, pod_name: str, hostname: str = "", subdomain: str = "", namespace: str = "",
                 domain: str = "cluster.local") -> str:
    """kubelet's managed /etc/hosts."""
    host = hostname or pod_name
    lines = ["# Kubernetes-managed hosts file (podnet agent).", "127.0.0.1\tlocalhost",
             "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet", "fe00::1\tip6-allnodes",
             "fe00::2\tip6-allrouters"]
    if pod_ip:
        fqdn = f"{host}.{subdomain}.{namespace}.svc.{domain}\t" if subdomain else ""
        lines.append(f"{pod_ip}\t{fqdn}{host}")
    return "\n".join(lines) + "\n"


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_").replace(".", "_")


def service_env(services: Iterable[Service]) -> dict[str, str]:
    """Docker-link style variables kubelet injects for Services (enableServiceLinks)."""
    env: dict[str, str] = {}
    for svc in sorted(services, key=lambda s: (s.namespace, s.name)):
        ip = svc.cluster_ip
        if ip is None or svc.headless or not svc.ports:
            continue
        base = _env_name(svc.name)
        first = svc.ports[0]
        env[f"{base}_SERVICE_HOST"] = str(ip)
        env[f"{base}_SERVICE_PORT"] = str(first.port)
        for p in svc.ports:
            proto = p.protocol.value.lower()
            if p.name:
                env[f"{base}_SERVICE_PORT_{_env_name(p.name)}"] = str(p.port)
            prefix = f"{base}_PORT_{p.port}_{p.protocol.value}"
            env[prefix] = f"{proto}://{ip}:{p.port}"
            env[f"{prefix}_PROTO"] = proto
            env[f"{prefix}_PORT"] = str(p.port)
            env[f"{prefix}_ADDR"] = str(ip)
        env[f"{base}_PORT"] = f"{first.protocol.value.lower()}://{ip}:{first.port}"
    return env


# ---------------------------------------------------------------- host-gw routes

def desired_routes(self_name: str, nodes: Iterable[Node]) -> dict[str, str]:
    """podCIDR -> next hop (that Node's InternalIP of the same family) for every other Node."""
    routes: dict[str, str] = {}
    for node in nodes:
        if node.name == self_name:
            continue
        for cidr in node.pod_cidrs:
            via = next((ip for ip in node.internal_ips if ip.version == cidr.version), None)
            if via is not None:
                routes[str(cidr)] = str(via)
    return routes


def diff_routes(desired: Mapping[str, str], existing: Mapping[str, str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(routes to add or replace, destinations to delete), sorted."""
    put = sorted((dst, via) for dst, via in desired.items() if existing.get(dst) != via)
    drop = sorted(dst for dst in existing if dst not in desired)
    return put, drop


# ---------------------------------------------------------------- node status

def render_node_status(node_ip: str, hostname: str, *, ready: bool, reason: str, message: str, now: float,
                       previous: Mapping[str, Any] | None = None, capacity: Mapping[str, str] | None = None,
                       info: Mapping[str, str] | None = None) -> dict[str, Any]:
    prev = {c.get("type"): c for c in ((previous or {}).get("conditions") or [])}

    def cond(kind: str, ok: bool, why: str, msg: str) -> dict[str, Any]:
        value = "True" if ok else "False"
        old = prev.get(kind) or {}
        since = old.get("lastTransitionTime") if old.get("status") == value else None
        return {"type": kind, "status": value, "reason": why, "message": msg,
                "lastHeartbeatTime": iso(now), "lastTransitionTime": since or iso(now)}

    cap = dict(capacity or {"cpu": "2", "memory": "2Gi", "pods": "110"})
    conditions = [
        cond("MemoryPressure", False, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        cond("DiskPressure", False, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond("PIDPressure", False, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        cond("Ready", ready, reason, message),
    ]
    return {
        "addresses": [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": hostname}],
        "capacity": cap,
        "allocatable": cap,
        "conditions": conditions,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": dict(info or {}),
    }


def with_ready(state: ContainerState, ready: bool) -> ContainerState:
    return state if state.ready == ready else replace(state, ready=ready)


def ip_family_sorted(ips: Iterable[str]) -> list[str]:
    """Pod IPs as kubelet lists them: IPv4 first, then IPv6."""
    return sorted(ips, key=lambda s: ipaddress.ip_address(s).version)
