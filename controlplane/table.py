"""Server-side printing: meta.k8s.io/v1 Table answers for `Accept: ...;as=Table` (kubectl get).

Columns and cell formatting follow kubernetes/pkg/printers/internalversion/printers.go; the
server prints wide columns too, marked priority 1 (kubectl shows them with -o wide).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from controlplane.resources import Resource

JSON = dict[str, Any]

NAME_DESC = ("Name must be unique within a namespace. Is required when creating resources, although some "
             "resources may allow a client to request the generation of an appropriate name automatically. "
             "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
             "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
AGE_DESC = ("CreationTimestamp is a timestamp representing the server time when this object was created. It is "
            "not guaranteed to be set in happens-before order across separate operations. Clients may not set "
            "this value. It is represented in RFC3339 form and is in UTC.")


@dataclass(frozen=True)
class Column:
    name: str
    description: str = ""
    type: str = "string"
    format: str = ""
    priority: int = 0

    def to_dict(self) -> JSON:
        return {"name": self.name, "type": self.type, "format": self.format, "description": self.description,
                "priority": self.priority}


NAME = Column("Name", NAME_DESC, format="name")
AGE = Column("Age", AGE_DESC)

# ------------------------------------------------------------------ time


def parse_time(value: Any) -> _dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: Any, now: _dt.datetime) -> str:
    t = parse_time(timestamp)
    if t is None:
        return "<unknown>"
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return human_duration((now - t).total_seconds())


# ------------------------------------------------------------------ helpers

def _d(v: Any) -> JSON:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _meta(obj: Mapping[str, Any]) -> JSON:
    return _d(obj.get("metadata"))


def _more(items: list[str], count: int, limit: int, empty: str) -> str:
    text = ",".join(items)
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or empty


def _host_port(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# ------------------------------------------------------------------ pods

def _pod_status(obj: Mapping[str, Any]) -> tuple[str, int, int, int, str]:
    """(reason, ready, total, restarts, last restart time) as kubectl's printPod computes them."""
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    total = len(_l(spec.get("containers")))
    reason = str(status.get("reason") or status.get("phase") or "")
    restarts, ready = 0, 0
    last_restart = ""
    for cond in _l(status.get("conditions")):
        c = _d(cond)
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    initializing = False
    inits = _l(spec.get("initContainers"))
    for i, cs in enumerate(_l(status.get("initContainerStatuses"))):
        cs = _d(cs)
        restarts += int(cs.get("restartCount") or 0)
        state = _d(cs.get("state"))
        term, wait = _d(state.get("terminated")), _d(state.get("waiting"))
        if state.get("terminated") is not None and int(term.get("exitCode") or 0) == 0:
            continue
        if state.get("terminated") is not None:
            if term.get("reason"):
                reason = "Init:" + str(term["reason"])
            elif term.get("signal"):
                reason = f"Init:Signal:{term['signal']}"
            else:
                reason = f"Init:ExitCode:{term.get('exitCode')}"
        elif wait.get("reason") and wait.get("reason") != "PodInitializing":
            reason = "Init:" + str(wait["reason"])
        else:
            reason = f"Init:{i}/{len(inits)}"
        initializing = True
        break
    initialized = any(_d(c).get("type") == "Initialized" and _d(c).get("status") == "True"
                      for c in _l(status.get("conditions")))
    if not initializing or initialized:
        restarts, has_running = 0, False
        for cs in reversed(_l(status.get("containerStatuses"))):
            cs = _d(cs)
            restarts += int(cs.get("restartCount") or 0)
            finished = _d(_d(cs.get("lastState")).get("terminated")).get("finishedAt")
            if finished and str(finished) > last_restart:
                last_restart = str(finished)
            state = _d(cs.get("state"))
            term, wait = _d(state.get("terminated")), _d(state.get("waiting"))
            if wait.get("reason"):
                reason = str(wait["reason"])
            elif term.get("reason"):
                reason = str(term["reason"])
            elif state.get("terminated") is not None:
                reason = f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode')}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(_d(c).get("type") == "Ready" and _d(c).get("status") == "True"
                            for c in _l(status.get("conditions")))
            reason = "Running" if pod_ready else "NotReady"
    meta = _meta(obj)
    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and status.get("phase") not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason, ready, total, restarts, last_restart


POD_COLUMNS = (
    NAME,
    Column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", "The aggregate status of the containers in this pod."),
    Column("Restarts", "The number of times the containers in this pod have been restarted and when the last "
           "container in this pod has restarted."),
    AGE,
    Column("IP", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet "
           "allocated.", priority=1),
    Column("Node", "NodeName is a request to schedule this pod onto a specific node.", priority=1),
    Column("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node.",
           priority=1),
    Column("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.",
           priority=1),
)


def pod_cells(obj: Mapping[str, Any], now: _dt.datetime) -> list[Any]:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    reason, ready, total, restarts, last = _pod_status(obj)
    restarts_text = str(restarts)
    if restarts and last:
        restarts_text = f"{restarts} ({age(last, now)} ago)"
    ips = [_d(p).get("ip") for p in _l(status.get("podIPs"))] or ([status["podIP"]] if status.get("podIP") else [])
    gates = _l(spec.get("readinessGates"))
    gates_text = "<none>"
    if gates:
        conds = {_d(c).get("type"): _d(c).get("status") for c in _l(status.get("conditions"))}
        true = sum(1 for g in gates if conds.get(_d(g).get("conditionType")) == "True")
        gates_text = f"{true}/{len(gates)}"
    return [_meta(obj).get("name", ""), f"{ready}/{total}", reason, restarts_text,
            age(_meta(obj).get("creationTimestamp"), now), ips[0] if ips and ips[0] else "<none>",
            spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", gates_text]


# ------------------------------------------------------------------ services

SERVICE_COLUMNS = (
    NAME,
    Column("Type", "The type of the service."),
    Column("Cluster-IP", "The IP address of the service."),
    Column("External-IP", "The external IP address of the service."),
    Column("Port(s)", "The ports that the service is listening on."),
    AGE,
    Column("Selector", "Route service traffic to pods with label keys and values matching this selector.",
           priority=1),
)


def _port_string(ports: list[Any]) -> str:
    out = []
    for p in ports:
        p = _d(p)
        proto = p.get("protocol") or "TCP"
        if p.get("nodePort"):
            out.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            out.append(f"{p.get('port')}/{proto}")
    return ",".join(out)


def _service_external_ip(spec: JSON, status: JSON) -> str:
    stype = spec.get("type") or "ClusterIP"
    external = [str(x) for x in _l(spec.get("externalIPs"))]
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if stype == "LoadBalancer":
        ingress = [str(_d(i).get("ip") or _d(i).get("hostname") or "")
                   for i in _l(_d(status.get("loadBalancer")).get("ingress"))]
        lb = [x for x in ingress if x]
        if external:
            return ",".join(external + lb)
        return ",".join(lb) or "<pending>"
    if stype == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def format_labels(labels: Mapping[str, Any] | None) -> str:
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def service_cells(obj: Mapping[str, Any], now: _dt.datetime) -> list[Any]:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    ips = _l(spec.get("clusterIPs")) or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [_meta(obj).get("name", ""), spec.get("type") or "ClusterIP", ips[0] if ips else "<none>",
            _service_external_ip(spec, status), _port_string(_l(spec.get("ports"))) or "<none>",
            age(_meta(obj).get("creationTimestamp"), now), format_labels(_d(spec.get("selector")))]


# ------------------------------------------------------------------ namespaces, nodes

NAMESPACE_COLUMNS = (NAME, Column("Status", "The status of the namespace"), AGE)


def namespace_cells(obj: Mapping[str, Any], now: _dt.datetime) -> list[Any]:
    return [_meta(obj).get("name", ""), _d(obj.get("status")).get("phase") or "",
            age(_meta(obj).get("creationTimestamp"), now)]


NODE_COLUMNS = (
    NAME,
    Column("Status", "The status of the node"),
    Column("Roles", "The roles of the node"),
    AGE,
    Column("Version", "Kubelet Version reported by the node."),
    Column("Internal-IP", "List of addresses reachable to the node. Queried from cloud provider, if available.",
           priority=1),
    Column("External-IP", "List of addresses reachable to the node. Queried from cloud provider, if available.",
           priority=1),
    Column("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
           priority=1),
    Column("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
           priority=1),
    Column("Container-Runtime", "Container runtime version reported by the node through runtime remote API "
           "(e.g. containerd://1.4.2).", priority=1),
)


def _node_roles(labels: Mapping[str, Any]) -> str:
    roles = set()
    for k, v in labels.items():
        if k.startswith("node-role.kubernetes.io/"):
            role = k[len("node-role.kubernetes.io/"):]
            if role:
                roles.add(role)
        elif k == "kubernetes.io/role" and v:
            roles.add(str(v))
    return ",".join(sorted(roles)) or "<none>"


def node_cells(obj: Mapping[str, Any], now: _dt.datetime) -> list[Any]:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    states = []
    for c in _l(status.get("conditions")):
        c = _d(c)
        if c.get("type") == "Ready":
            states = ["Ready" if c.get("status") == "True" else "NotReady"]
    states = states or ["Unknown"]
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    info = _d(status.get("nodeInfo"))
    addrs = _l(status.get("addresses"))

    def addr(kind: str) -> str:
        return next((str(_d(a).get("address")) for a in addrs if _d(a).get("type") == kind), "<none>")

    return [_meta(obj).get("name", ""), ",".join(states), _node_roles(_d(_meta(obj).get("labels"))),
            age(_meta(obj).get("creationTimestamp"), now), info.get("kubeletVersion") or "",
            addr("InternalIP"), addr("ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]


# ------------------------------------------------------------------ endpoints, endpointslices

ENDPOINTS_COLUMNS = (NAME, Column("Endpoints", "Endpoints of the resource"), AGE)
MAX_LISTED = 3


def format_endpoints(subsets: list[Any]) -> str:
    if not subsets:
        return "<none>"
    items: list[str] = []
    count = 0
    for ss in subsets:
        ss = _d(ss)
        addrs = [str(_d(a).get("ip", "")) for a in _l(ss.get("addresses"))]
        ports = _l(ss.get("ports"))
        targets = [(ip, None) for ip in addrs] if not ports else \
            [(ip, _d(p).get("port")) for p in ports for ip in addrs]
        count += len(targets)
        for ip, port in targets:
            if len(items) < MAX_LISTED:
                items.append(ip if port is None else _host_port(ip, port))
    return _more(items, count, MAX_LISTED, "<none>")


def endpoints_cells(obj: Mapping[str, Any], now: _dt.datetime) -> list[Any]:
    return [_meta(obj).get("name", ""), format_endpoints(_l(obj.get("subsets"))),
            age(_meta(obj).get("creationTimestamp"), now)]


ENDPOINTSLICE_COLUMNS = (
    NAME,
    Column("AddressType", "The IP protocol for this slice"),
    Column("Ports", "The ports exposed by this slice"),
    Column("Endpoints", "The endpoints of this slice"),
    AGE,
)


def endpointslice_cells(obj: Mapping[str, Any], now: _dt.datetime) -> list[Any]:
    ports = [str(_d(p).get("port") if _d(p).get("port") is not None else (_d(p).get("name") or "*"))
             for p in _l(obj.get("ports"))]
    addrs = [str(a) for e in _l(obj.get("endpoints")) for a in _l(_d(e).get("addresses"))]
    return [_meta(obj).get("name", ""), obj.get("addressType") or "",
            _more(ports[:MAX_LISTED], len(ports), MAX_LISTED, "<unset>"),
            _more(addrs[:MAX_LISTED], len(addrs), MAX_LISTED, "<unset>"),
            age(_meta(obj).get("creationTimestamp"), now)]


# ------------------------------------------------------------------ table

def default_cells(obj: Mapping[str, Any], now: _dt.datetime) -> list[Any]:
    return [_meta(obj).get("name", ""), age(_meta(obj).get("creationTimestamp"), now)]


Printer = tuple[tuple[Column, ...], Callable[[Mapping[str, Any], _dt.datetime], list[Any]]]

PRINTERS: dict[str, Printer] = {
    "Pod": (POD_COLUMNS, pod_cells),
    "Service": (SERVICE_COLUMNS, service_cells),
    "Namespace": (NAMESPACE_COLUMNS, namespace_cells),
    "Node": (NODE_COLUMNS, node_cells),
    "Endpoints": (ENDPOINTS_COLUMNS, endpoints_cells),
    "EndpointSlice": (ENDPOINTSLICE_COLUMNS, endpointslice_cells),
}


def _partial(obj: Mapping[str, Any]) -> JSON:
    meta = {k: v for k, v in _meta(obj).items() if k != "managedFields"}
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}


def render_table(resource: Resource, objects: list[JSON], list_resource_version: str,
                 now: _dt.datetime | None = None, include_object: str = "Metadata") -> JSON:
    """A meta.k8s.io/v1 Table of `objects` (includeObject: Metadata (default), Object or None)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    columns, cells = PRINTERS.get(resource.kind, ((NAME, AGE), default_cells))
    rows = []
    for obj in objects:
        row: JSON = {"cells": cells(obj, now)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = _partial(obj)
        if resource.kind == "Pod" and _d(obj.get("status")).get("phase") in ("Succeeded", "Failed"):
            row["conditions"] = [{"type": "Completed", "status": "True", "reason":
                                  _d(obj.get("status")).get("phase"), "message": "The pod has completed successfully."}]
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": list_resource_version},
        "columnDefinitions": [c.to_dict() for c in columns],
        "rows": rows,
    }
