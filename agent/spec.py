"""Typed views of what the agent runs: a pod's containers, probes and policies (pure).

Parsed once from the Pod JSON; the lifecycle core (`agent.core`) and the shell read these.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Mapping

DEFAULT_GRACE_SECONDS = 30


class AgentError(Exception):
    """The agent's one base error; the message names the pod/value at fault."""


class RestartPolicy(str, enum.Enum):
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


class ProbeKind(str, enum.Enum):
    EXEC = "exec"
    HTTP_GET = "httpGet"
    TCP_SOCKET = "tcpSocket"


@dataclass(frozen=True)
class Probe:
    kind: ProbeKind
    command: tuple[str, ...] = ()
    path: str = "/"
    port: int | str = 0
    host: str = ""
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True)
class Hook:
    """A lifecycle handler (preStop): exec a command, sleep, or GET a URL in the pod."""

    kind: str  # "exec" | "sleep" | "httpGet"
    command: tuple[str, ...] = ()
    seconds: float = 0.0
    path: str = "/"
    port: int | str = 0


@dataclass(frozen=True)
class Container:
    name: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    working_dir: str = ""
    ports: tuple[tuple[str, int], ...] = ()  # (name, containerPort)
    readiness: Probe | None = None
    liveness: Probe | None = None
    startup: Probe | None = None
    image: str = ""
    pre_stop: Hook | None = None


@dataclass(frozen=True)
class PodSpec:
    uid: str
    namespace: str
    name: str
    containers: tuple[Container, ...]
    restart_policy: RestartPolicy
    grace_seconds: int
    dns_policy: str
    hostname: str
    subdomain: str
    deleting: bool  # metadata.deletionTimestamp set
    deletion_grace: int | None  # metadata.deletionGracePeriodSeconds
    host_network: bool = False
    init_containers: tuple[Container, ...] = ()  # run one by one to completion before `containers`

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _probe(raw: Mapping[str, Any] | None) -> Probe | None:
    if not raw:
        return None
    common = dict(
        initial_delay=float(raw.get("initialDelaySeconds") or 0),
        period=float(raw.get("periodSeconds") or 10),
        timeout=float(raw.get("timeoutSeconds") or 1),
        success_threshold=int(raw.get("successThreshold") or 1),
        failure_threshold=int(raw.get("failureThreshold") or 3),
    )
    if raw.get("exec"):
        return Probe(ProbeKind.EXEC, command=tuple(str(c) for c in raw["exec"].get("command") or ()), **common)  # type: ignore[arg-type]
    if raw.get("httpGet"):
        h = raw["httpGet"]
        headers = tuple((str(x.get("name", "")), str(x.get("value", ""))) for x in h.get("httpHeaders") or [])
        return Probe(ProbeKind.HTTP_GET, path=str(h.get("path") or "/"), port=_port(h.get("port")),
                     host=str(h.get("host") or ""), scheme=str(h.get("scheme") or "HTTP"), headers=headers,
                     **common)  # type: ignore[arg-type]
    if raw.get("tcpSocket"):
        t = raw["tcpSocket"]
        return Probe(ProbeKind.TCP_SOCKET, port=_port(t.get("port")), host=str(t.get("host") or ""), **common)  # type: ignore[arg-type]
    raise AgentError(f"probe {dict(raw)!r} has no exec, httpGet or tcpSocket handler")


def _hook(raw: Mapping[str, Any] | None) -> Hook | None:
    if not raw:
        return None
    if raw.get("exec"):
        return Hook("exec", command=tuple(str(c) for c in raw["exec"].get("command") or ()))
    if raw.get("sleep"):
        return Hook("sleep", seconds=float(raw["sleep"].get("seconds") or 0))
    if raw.get("httpGet"):
        h = raw["httpGet"]
        return Hook("httpGet", path=str(h.get("path") or "/"), port=_port(h.get("port")))
    raise AgentError(f"lifecycle handler {dict(raw)!r} has no exec, sleep or httpGet")


def _port(value: Any) -> int | str:
    if isinstance(value, int):
        return value
    text = str(value or "")
    return int(text) if text.isdigit() else text


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes $(VAR) expansion: known vars replaced, unknown left as is, $$ -> $."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR.sub(sub, text)


def field_value(pod: Mapping[str, Any], path: str, pod_ip: str = "", host_ip: str = "") -> str:
    """Downward API fieldRef values the agent knows."""
    meta = pod.get("metadata") or {}
    if path == "metadata.name":
        return str(meta.get("name", ""))
    if path == "metadata.namespace":
        return str(meta.get("namespace", ""))
    if path == "metadata.uid":
        return str(meta.get("uid", ""))
    if path == "spec.nodeName":
        return str((pod.get("spec") or {}).get("nodeName", ""))
    if path == "spec.serviceAccountName":
        return str((pod.get("spec") or {}).get("serviceAccountName", "default"))
    if path in ("status.podIP", "status.podIPs"):
        return pod_ip
    if path in ("status.hostIP", "status.hostIPs"):
        return host_ip
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise AgentError(f"unsupported fieldRef fieldPath {path!r}")


def container_env(pod: Mapping[str, Any], raw: Mapping[str, Any], pod_ip: str, host_ip: str,
                  base: Mapping[str, str] = {}) -> dict[str, str]:
    """A container's environment: base (service links) then env in order, with $(VAR) expansion."""
    env = dict(base)
    for item in raw.get("env") or []:
        name = str(item.get("name", ""))
        if "value" in item or "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "") or ""), env)
            continue
        ref = (item.get("valueFrom") or {}).get("fieldRef")
        if ref:
            env[name] = field_value(pod, str(ref.get("fieldPath", "")), pod_ip, host_ip)
        else:
            env[name] = ""  # secrets/configmaps are not served by podnet
    return env


def parse_container(pod: Mapping[str, Any], raw: Mapping[str, Any], pod_ip: str = "", host_ip: str = "",
                    base_env: Mapping[str, str] = {}) -> Container:
    name = str(raw.get("name", ""))
    env = container_env(pod, raw, pod_ip, host_ip, base_env)
    argv = [expand(str(a), env) for a in [*(raw.get("command") or []), *(raw.get("args") or [])]]
    if not argv:
        raise AgentError(f"container {name!r} has no command: podnet runs host commands, images are not pulled")
    return Container(
        name=name,
        command=tuple(argv),
        env=tuple(sorted(env.items())),
        working_dir=str(raw.get("workingDir") or ""),
        ports=tuple((str(p.get("name", "") or ""), int(p.get("containerPort") or 0)) for p in raw.get("ports") or []),
        readiness=_probe(raw.get("readinessProbe")),
        liveness=_probe(raw.get("livenessProbe")),
        startup=_probe(raw.get("startupProbe")),
        image=str(raw.get("image", "") or ""),
        pre_stop=_hook((raw.get("lifecycle") or {}).get("preStop")),
    )


def parse_pod_spec(pod: Mapping[str, Any], pod_ip: str = "", host_ip: str = "",
                   base_env: Mapping[str, str] = {}) -> PodSpec:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    try:
        policy = RestartPolicy(spec.get("restartPolicy") or "Always")
    except ValueError:
        raise AgentError(f"pod {meta.get('name')}: unknown restartPolicy {spec.get('restartPolicy')!r}") from None
    grace = spec.get("terminationGracePeriodSeconds")
    dgrace = meta.get("deletionGracePeriodSeconds")
    return PodSpec(
        uid=str(meta.get("uid", "")),
        namespace=str(meta.get("namespace", "default")),
        name=str(meta.get("name", "")),
        containers=tuple(parse_container(pod, c, pod_ip, host_ip, base_env) for c in spec.get("containers") or []),
        restart_policy=policy,
        grace_seconds=DEFAULT_GRACE_SECONDS if grace is None else int(grace),
        dns_policy=str(spec.get("dnsPolicy") or "ClusterFirst"),
        hostname=str(spec.get("hostname") or ""),
        subdomain=str(spec.get("subdomain") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
        deletion_grace=None if dgrace is None else int(dgrace),
        host_network=bool(spec.get("hostNetwork", False)),
        init_containers=tuple(parse_container(pod, c, pod_ip, host_ip, base_env)
                              for c in spec.get("initContainers") or []),
    )


def resolve_port(port: int | str, container: Container) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    for name, number in container.ports:
        if name == port:
            return number
    raise AgentError(f"container {container.name!r} has no port named {port!r}")
