"""Known fields of the served kinds (v1.32), for field validation (`fieldValidation=Strict|Warn|Ignore`).

Pure. A schema node is a dict of field name -> node (an object with these fields), `ListOf(node)`,
or `ANY` (a scalar, a string map, or a subtree we do not enumerate). `unknown_fields(kind, obj)`
returns the paths upstream's strict decoder would name, e.g. `spec.containers[0].imagee`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from controlplane import errors
from controlplane.resources import Resource

ANY: Any = None
JSON = dict[str, Any]


@dataclass(frozen=True)
class ListOf:
    item: Any


Node = Union[dict, ListOf, None]  # type: ignore[type-arg]


def fields(*names: str, **nested: Any) -> dict[str, Any]:
    out: dict[str, Any] = {n: ANY for n in names}
    out.update(nested)
    return out


OWNER_REF = fields("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion")
OBJECT_META = fields(
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "finalizers", "managedFields",
    ownerReferences=ListOf(OWNER_REF))
OBJECT_REF = fields("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
CONDITION = fields("type", "status", "lastProbeTime", "lastHeartbeatTime", "lastTransitionTime", "reason",
                   "message", "observedGeneration")

# ---------------------------------------------------------------- Pod
PROBE = fields("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold",
               "terminationGracePeriodSeconds",
               exec=fields("command"), httpGet=fields("path", "port", "host", "scheme", "httpHeaders"),
               tcpSocket=fields("port", "host"), grpc=fields("port", "service"))
HANDLER = fields(exec=fields("command"), httpGet=fields("path", "port", "host", "scheme", "httpHeaders"),
                 tcpSocket=fields("port", "host"), sleep=fields("seconds"))
CONTAINER = fields(
    "name", "image", "command", "args", "workingDir", "envFrom", "resources", "resizePolicy", "restartPolicy",
    "volumeMounts", "volumeDevices", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy",
    "securityContext", "stdin", "stdinOnce", "tty",
    ports=ListOf(fields("name", "hostPort", "containerPort", "protocol", "hostIP")),
    env=ListOf(fields("name", "value", "valueFrom")),
    livenessProbe=PROBE, readinessProbe=PROBE, startupProbe=PROBE,
    lifecycle=fields("stopSignal", postStart=HANDLER, preStop=HANDLER))
EPHEMERAL_CONTAINER = dict(CONTAINER, targetContainerName=ANY)
POD_SPEC = fields(
    "volumes", "restartPolicy", "terminationGracePeriodSeconds", "activeDeadlineSeconds", "dnsPolicy",
    "nodeSelector", "serviceAccountName", "serviceAccount", "automountServiceAccountToken", "nodeName",
    "hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace", "securityContext", "imagePullSecrets", "hostname",
    "subdomain", "affinity", "schedulerName", "tolerations", "hostAliases", "priorityClassName", "priority",
    "dnsConfig", "readinessGates", "runtimeClassName", "enableServiceLinks", "preemptionPolicy", "overhead",
    "topologySpreadConstraints", "setHostnameAsFQDN", "os", "hostUsers", "schedulingGates", "resourceClaims",
    "resources",
    containers=ListOf(CONTAINER), initContainers=ListOf(CONTAINER), ephemeralContainers=ListOf(EPHEMERAL_CONTAINER))
POD_STATUS = fields(
    "phase", "message", "reason", "nominatedNodeName", "hostIP", "podIP", "startTime", "initContainerStatuses",
    "containerStatuses", "qosClass", "ephemeralContainerStatuses", "resize", "resourceClaimStatuses",
    "observedGeneration",
    conditions=ListOf(CONDITION), hostIPs=ListOf(fields("ip")), podIPs=ListOf(fields("ip")))

# ---------------------------------------------------------------- Service
SERVICE_PORT = fields("name", "protocol", "appProtocol", "port", "targetPort", "nodePort")
SERVICE_SPEC = fields(
    "selector", "clusterIP", "clusterIPs", "type", "externalIPs", "sessionAffinity", "loadBalancerIP",
    "loadBalancerSourceRanges", "externalName", "externalTrafficPolicy", "healthCheckNodePort",
    "publishNotReadyAddresses", "ipFamilies", "ipFamilyPolicy", "allocateLoadBalancerNodePorts",
    "loadBalancerClass", "internalTrafficPolicy", "trafficDistribution",
    ports=ListOf(SERVICE_PORT), sessionAffinityConfig=fields(clientIP=fields("timeoutSeconds")))
SERVICE_STATUS = fields("loadBalancer", conditions=ListOf(CONDITION))

# ---------------------------------------------------------------- Endpoints / EndpointSlice
ENDPOINT_ADDRESS = fields("ip", "hostname", "nodeName", targetRef=OBJECT_REF)
ENDPOINT_PORT = fields("name", "port", "protocol", "appProtocol")
ENDPOINT_SUBSET = fields(addresses=ListOf(ENDPOINT_ADDRESS), notReadyAddresses=ListOf(ENDPOINT_ADDRESS),
                         ports=ListOf(ENDPOINT_PORT))
SLICE_ENDPOINT = fields(
    "addresses", "hostname", "nodeName", "zone", "deprecatedTopology",
    conditions=fields("ready", "serving", "terminating"), targetRef=OBJECT_REF,
    hints=fields(forZones=ListOf(fields("name")), forNodes=ListOf(fields("name"))))

# ---------------------------------------------------------------- Node / Namespace
NODE_SPEC = fields("podCIDR", "podCIDRs", "providerID", "unschedulable", "configSource", "externalID",
                   taints=ListOf(fields("key", "value", "effect", "timeAdded")))
NODE_STATUS = fields("capacity", "allocatable", "phase", "daemonEndpoints", "nodeInfo", "images", "volumesInUse",
                     "volumesAttached", "config", "runtimeHandlers", "features",
                     conditions=ListOf(CONDITION), addresses=ListOf(fields("type", "address")))

TOP = fields("apiVersion", "kind", metadata=OBJECT_META)
KINDS: dict[str, dict[str, Any]] = {
    "Pod": dict(TOP, spec=POD_SPEC, status=POD_STATUS),
    "Service": dict(TOP, spec=SERVICE_SPEC, status=SERVICE_STATUS),
    "Endpoints": dict(TOP, subsets=ListOf(ENDPOINT_SUBSET)),
    "EndpointSlice": dict(TOP, addressType=ANY, endpoints=ListOf(SLICE_ENDPOINT), ports=ListOf(ENDPOINT_PORT)),
    "Node": dict(TOP, spec=NODE_SPEC, status=NODE_STATUS),
    "Namespace": dict(TOP, spec=fields("finalizers"), status=fields("phase", conditions=ListOf(CONDITION))),
}


def _walk(node: Any, value: Any, path: str, out: list[str]) -> None:
    if node is ANY:
        return
    if isinstance(node, ListOf):
        if isinstance(value, list):
            for i, item in enumerate(value):
                _walk(node.item, item, f"{path}[{i}]", out)
        return
    if not isinstance(value, dict):
        return  # a wrong type is validation's business, not an unknown field
    for key, sub in value.items():
        here = f"{path}.{key}" if path else key
        if key not in node:
            out.append(here)
        else:
            _walk(node[key], sub, here, out)


def unknown_fields(kind: str, obj: Any) -> list[str]:
    """Paths of fields the API does not know, in document order ([] for unknown kinds)."""
    node = KINDS.get(kind)
    if node is None:
        return []
    out: list[str] = []
    _walk(node, obj, "", out)
    return out


@dataclass
class FieldCheck:
    """fieldValidation: Strict rejects unknown fields (400), Warn collects warnings, Ignore does
    nothing. Unknown fields are kept, not pruned; fields the stored object already had are not
    reported again."""

    mode: str = "Warn"
    warnings: list[str] = field(default_factory=list)

    def check(self, res: Resource, new: JSON, old: JSON | None) -> None:
        if self.mode == "Ignore":
            return
        unknown = unknown_fields(res.kind, new)
        if unknown and old is not None:
            before = set(unknown_fields(res.kind, old))
            unknown = [u for u in unknown if u not in before]
        if not unknown:
            return
        listed = ", ".join(f'unknown field "{u}"' for u in unknown)
        if self.mode == "Strict":
            raise errors.BadRequest(f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: '
                                    f"strict decoding error: {listed}")
        self.warnings.extend(f'unknown field "{u}"' for u in unknown)
