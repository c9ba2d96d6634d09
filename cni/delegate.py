"""IPAM delegation (shell): exec the IPAM plugin through CNI_PATH exactly as SPEC.md says,
or, when the IPAM type is `podnet-ipam`, run it in-process (same store, same result).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Mapping, Sequence

from cni.errors import CNIError, DECODE_FAILURE, IPAM_FAILED
from cni.spec import NetConf, Request, Result, parse_result

IN_PROCESS_TYPES = ("podnet-ipam",)


def locate_plugin(plugin: str, paths: Sequence[str]) -> str | None:
    """The executable `plugin` in the first of `paths` that has it (CNI_PATH search), or None.
    Shared by plugins delegating to IPAM and by the agent acting as a CNI runtime."""
    for d in paths:
        candidate = os.path.join(d, plugin)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_in_path(plugin: str, paths: tuple[str, ...]) -> str:
    if not plugin or "/" in plugin:
        raise CNIError(IPAM_FAILED, "invalid IPAM plugin type", repr(plugin))
    found = locate_plugin(plugin, paths)
    if found is None:
        raise CNIError(IPAM_FAILED, f"failed to find plugin {plugin!r} in path {list(paths)}")
    return found


def delegate(command: str, req: Request, conf: NetConf, env: Mapping[str, str],
             in_process: bool = True) -> dict[str, Any] | None:
    """Run IPAM `command` with the same environment (CNI_COMMAND replaced) and the full config."""
    plugin = str(conf.ipam.get("type") or "")
    if in_process and plugin in IN_PROCESS_TYPES:
        from dataclasses import replace

        from cni import ipam_main

        return ipam_main.handle(replace(req, command=command), conf)
    binary = find_in_path(plugin, req.path)
    child_env = dict(env)
    child_env["CNI_COMMAND"] = command
    proc = subprocess.run([binary], input=req.stdin, env=child_env, capture_output=True)
    if proc.stderr:
        sys.stderr.write(proc.stderr.decode(errors="replace"))
    if proc.returncode != 0:
        try:
            data = json.loads(proc.stdout or b"null")
        except ValueError:
            data = None
        raise CNIError.from_json(data, f"{plugin} {command} failed (exit {proc.returncode}): "
                                 f"{proc.stdout.decode(errors='replace').strip()}")
    if not proc.stdout.strip():
        return None
    try:
        out = json.loads(proc.stdout)
    except ValueError as exc:
        raise CNIError(DECODE_FAILURE, f"failed to decode {plugin} result", str(exc)) from None
    return out if isinstance(out, dict) else None


def supports(req: Request, conf: NetConf, env: Mapping[str, str], version: str) -> bool:
    """Does the IPAM plugin list `version` in its VERSION answer? (podnet-ipam: yes.)"""
    plugin = str(conf.ipam.get("type") or "")
    if plugin in IN_PROCESS_TYPES:
        return True
    binary = find_in_path(plugin, req.path)
    child_env = {**env, "CNI_COMMAND": "VERSION"}
    proc = subprocess.run([binary], input=json.dumps({"cniVersion": conf.cni_version}).encode(), env=child_env,
                          capture_output=True)
    try:
        return version in json.loads(proc.stdout).get("supportedVersions", [])
    except (ValueError, AttributeError):
        return False


def delegate_1_1(command: str, req: Request, conf: NetConf, env: Mapping[str, str]) -> None:
    """GC / STATUS go to IPAM only if it speaks 1.1.0 (as libcni does for the plugins it runs)."""
    if supports(req, conf, env, "1.1.0"):
        delegate(command, req, conf, env)
    else:
        sys.stderr.write(f"podnet-bridge: IPAM {conf.ipam.get('type')!r} does not support CNI 1.1.0, "
                         f"not forwarding {command}\n")


def ipam_add(req: Request, conf: NetConf, env: Mapping[str, str]) -> Result:
    out = delegate("ADD", req, conf, env)
    if not out:
        raise CNIError(IPAM_FAILED, "IPAM plugin returned no result")
    result = parse_result(out)
    if not result.ips:
        raise CNIError(IPAM_FAILED, "IPAM plugin returned missing IP config")
    return result
