"""Rules for Pods: containers, volumes, policies, and upstream ValidatePodUpdate."""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

from controlplane.errors import Cause
from controlplane.validation.common import (
    IP_MSG, JSON, _dict, _each, _h, _list, _protocol_causes, copy_json, dns1123_label_errors,
    dns1123_subdomain_errors, duplicate, forbidden, iana_svc_name_errors, invalid, not_supported, parse_ip,
    port_number_errors, required,
)

_ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def _container_causes(c: JSON, path: str, port_names: set[str]) -> Iterator[Cause]:
    name = c.get("name")
    if not name:
        yield required(f"{path}.name")
    else:
        yield from _each(str(name), f"{path}.name", dns1123_label_errors(str(name)))
    if not c.get("image"):
        yield required(f"{path}.image")
    ipp = c.get("imagePullPolicy")
    if ipp and ipp not in PULL_POLICIES:
        yield not_supported(f"{path}.imagePullPolicy", ipp, PULL_POLICIES)
    yield from _container_port_causes(c, path, port_names)
    yield from _env_causes(c, path)
    yield from _volume_mount_causes(c, path)


def _container_port_causes(c: JSON, path: str, port_names: set[str]) -> Iterator[Cause]:
    for i, p in enumerate(_list(c.get("ports"))):
        ppath = f"{path}.ports[{i}]"
        p = _dict(p)
        cp = p.get("containerPort")
        if not cp:
            yield required(f"{ppath}.containerPort")
        else:
            for m in port_number_errors(cp):
                yield invalid(f"{ppath}.containerPort", cp, m)
        if p.get("hostPort"):
            for m in port_number_errors(p["hostPort"]):
                yield invalid(f"{ppath}.hostPort", p["hostPort"], m)
        pname = p.get("name")
        if pname:
            yield from _each(str(pname), f"{ppath}.name", iana_svc_name_errors(str(pname)))
            if _h(pname) in port_names:
                yield duplicate(f"{ppath}.name", pname)
            port_names.add(_h(pname))
        yield from _protocol_causes(f"{ppath}.protocol", p.get("protocol"))


def _env_causes(c: JSON, path: str) -> Iterator[Cause]:
    for i, env in enumerate(_list(c.get("env"))):
        ename = _dict(env).get("name")
        if not ename:
            yield required(f"{path}.env[{i}].name")
        elif not _ENV_VAR_NAME.match(str(ename)):
            yield invalid(f"{path}.env[{i}].name", ename,
                          "a valid environment variable name must consist of alphabetic characters, digits, "
                          "'_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or "
                          "'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is "
                          "'[-._a-zA-Z][-._a-zA-Z0-9]*')")


def _volume_mount_causes(c: JSON, path: str) -> Iterator[Cause]:
    for i, vm in enumerate(_list(c.get("volumeMounts"))):
        vm = _dict(vm)
        if not vm.get("name"):
            yield required(f"{path}.volumeMounts[{i}].name")
        if not vm.get("mountPath"):
            yield required(f"{path}.volumeMounts[{i}].mountPath")


def pod_rule(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> Iterator[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        yield required("spec")
        return
    yield from _containers_causes(spec)
    yield from _volume_causes(spec)
    yield from _pod_field_causes(spec)
    node = spec.get("nodeName")
    status = _dict(obj.get("status"))
    for i, pip in enumerate(_list(status.get("podIPs"))):
        if parse_ip(_dict(pip).get("ip")) is None:
            yield invalid(f"status.podIPs[{i}].ip", _dict(pip).get("ip"), IP_MSG)
    if old is not None:
        onode = _dict(old.get("spec")).get("nodeName")
        if onode and node != onode:
            yield invalid("spec.nodeName", node or "", "field is immutable")
        yield from _pod_spec_update_causes(spec, _dict(old.get("spec")))


def _containers_causes(spec: JSON) -> Iterator[Cause]:
    containers = _list(spec.get("containers"))
    if not containers:
        yield required("spec.containers")
    names: set[str] = set()
    port_names: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(_list(spec.get(key))):
            path = f"spec.{key}[{i}]"
            if not isinstance(c, dict):
                yield invalid(path, c, "must be an object")
                continue
            yield from _container_causes(c, path, port_names if key == "containers" else set())
            name = c.get("name")
            if name and _h(name) in names:
                yield duplicate(f"{path}.name", name)
            if name:
                names.add(_h(name))


def _volume_causes(spec: JSON) -> Iterator[Cause]:
    vol_names: set[str] = set()
    for i, v in enumerate(_list(spec.get("volumes"))):
        vname = _dict(v).get("name")
        if not vname:
            yield required(f"spec.volumes[{i}].name")
            continue
        yield from _each(str(vname), f"spec.volumes[{i}].name", dns1123_label_errors(str(vname)))
        if _h(vname) in vol_names:
            yield duplicate(f"spec.volumes[{i}].name", vname)
        vol_names.add(_h(vname))


def _pod_field_causes(spec: JSON) -> Iterator[Cause]:
    for field, allowed in (("restartPolicy", RESTART_POLICIES), ("dnsPolicy", DNS_POLICIES)):
        val = spec.get(field)
        if val and val not in allowed:
            yield not_supported(f"spec.{field}", val, allowed)
    for field in ("hostname", "subdomain"):
        val = spec.get(field)
        if val:
            yield from _each(str(val), f"spec.{field}", dns1123_label_errors(str(val)))
    tgps = spec.get("terminationGracePeriodSeconds")
    if tgps is not None and (not isinstance(tgps, int) or tgps < 0):
        yield invalid("spec.terminationGracePeriodSeconds", tgps, "must be greater than or equal to 0")
    node = spec.get("nodeName")
    if node:
        yield from _each(str(node), "spec.nodeName", dns1123_subdomain_errors(str(node)))


POD_UPDATE_MSG = ("pod updates may not change fields other than `spec.containers[*].image`,"
                  "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions "
                  "to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                  "previously negative)")


def _first_difference(a: Any, b: Any, path: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return path


def _pod_spec_update_causes(spec: JSON, ospec: JSON) -> Iterator[Cause]:
    """Upstream ValidatePodUpdate: a pod's spec is immutable but for a few fields; the node may be
    set once (the binding), gates only removed, tolerations only added."""
    for key in ("containers", "initContainers"):
        if len(_list(spec.get(key))) != len(_list(ospec.get(key))):
            yield forbidden(f"spec.{key}", "pod updates may not add or remove containers")
            return
    munged = copy_json(spec)
    for key in ("containers", "initContainers"):
        for c, oc in zip(_list(munged.get(key)), _list(ospec.get(key))):
            if isinstance(c, dict) and isinstance(oc, dict):
                c["image"] = oc.get("image")
    for key in ("activeDeadlineSeconds", "terminationGracePeriodSeconds", "nodeName"):
        if key in ospec:
            munged[key] = ospec[key]
        else:
            munged.pop(key, None)
    old_tol = _list(ospec.get("tolerations"))
    if all(t in _list(spec.get("tolerations")) for t in old_tol):
        munged["tolerations"] = old_tol
        if not old_tol and "tolerations" not in ospec:
            munged.pop("tolerations", None)
    old_gates = _list(ospec.get("schedulingGates"))
    if all(g in old_gates for g in _list(spec.get("schedulingGates"))):
        munged["schedulingGates"] = old_gates
        if "schedulingGates" not in ospec:
            munged.pop("schedulingGates", None)
    if munged != ospec:
        where = _first_difference(munged, ospec, "spec")
        yield forbidden("spec", f"{POD_UPDATE_MSG} (first difference at {where})")
