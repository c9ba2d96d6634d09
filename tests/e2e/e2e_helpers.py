"""Helpers for the end-to-end tests: kubectl against a lab, pod manifests, polling."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from lab.lab import Lab
from podnet import netns

REPO = Path(__file__).resolve().parents[2]


def kubectl(lab: Lab, *args: str, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(["kubectl", "--kubeconfig", str(lab.kubeconfig), *args], capture_output=True, text=True,
                          input=input, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr}")
    return proc.stdout


def kget(lab: Lab, *args: str) -> Any:
    return json.loads(kubectl(lab, "get", *args, "-o", "json"))


def apply(lab: Lab, obj: dict[str, Any]) -> None:
    kubectl(lab, "apply", "-f", "-", input=json.dumps(obj))


def lab_exec(lab: Lab, target: str, *cmd: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "podnet", "lab", "exec", "--name", lab.t.name, target, "--", *cmd]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def echo_pod(name: str, app: str = "echo", node: str = "", readiness_file: str = "") -> dict[str, Any]:
    probe: dict[str, Any] = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
    if readiness_file:
        probe = {"exec": {"command": ["test", "-e", readiness_file]}, "periodSeconds": 1}
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "echo", "image": "podnet/echo", "command": [sys.executable, "-m", "lab.echo", "8080"],
                        "workingDir": str(REPO), "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": probe}]}
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}}, "spec": spec}


def wait(pred: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = pred()
            if got:
                return got
        except (AssertionError, subprocess.SubprocessError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def pod_ready(p: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (p.get("status") or {}).get("conditions") or [])


def ready_addresses(lab: Lab, service: str, namespace: str = "default") -> set[str]:
    slices = kget(lab, "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}")
    return {a for s in slices["items"] for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready", True) for a in e.get("addresses") or []}


def leftovers(name: str) -> list[str]:
    """Anything of lab `name` still on the machine."""
    found = []
    found += [f"netns {ns}" for ns in netns.names() if f"pnlab-{name}-" in ns]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link {line}" for line in links.splitlines() if f"pnlab-{name}" in line]
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found += [f"process {line.strip()}" for line in ps.splitlines()
              if f"/run/podnet/lab/{name}/" in line or f"pnlab-{name}-" in line]
    if Path(f"/run/podnet/lab/{name}").exists():
        found.append(f"dir /run/podnet/lab/{name}")
    return found
