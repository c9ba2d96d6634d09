"""A one-node cluster inside a sandbox namespace for agent tests: control plane + agent in the
node namespace, a loopback relay for the test's client, reference CNI plugins (or podnet's)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from controlplane.client import Client
from controlplane.resources import PODS
from podnet import netns

REPO = Path(__file__).resolve().parents[2]
NODE_IP = "10.250.8.2"


@dataclass
class OneNode:
    ns: str
    dir: Path
    client: Client
    cp: subprocess.Popen[bytes]
    agent: subprocess.Popen[bytes] | None
    box: netns.Sandbox
    plugin: str
    ipam: str
    bin_dir: str

    def start_agent(self) -> None:
        log = open(self.dir / "agent.log", "ab")
        self.agent = netns.popen_net(self.ns, [
            sys.executable, "-m", "podnet", "agent", "--server", "http://127.0.0.1:6443", "--node", "n1",
            "--node-ip", NODE_IP, "--cni-bin-dir", self.bin_dir, "--cni-conf-dir", str(self.dir / "net.d"),
            "--write-cni-conf", "--cni-plugin", self.plugin, "--cni-ipam", self.ipam, "--cni-portmap",
            "--root-dir", str(self.dir / "agent"), "--restart-backoff", "0.5", "--log-level", "DEBUG"],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        self.box.processes.append(self.agent)

    def stop_agent(self) -> None:
        if self.agent is not None:
            netns.stop(self.agent)
            self.box.processes.remove(self.agent)
            self.agent = None

    def log(self) -> str:
        try:
            return (self.dir / "agent.log").read_text()[-4000:]
        except OSError:
            return ""


async def wait_pod(client: Client, name: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 30,
                   namespace: str = "default") -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = await client.get(PODS, name, namespace=namespace)
            if pred(last):
                return last
        except Exception:  # noqa: BLE001
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"pod {name} did not reach the state; last status {last.get('status')}")


def is_ready(p: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (p.get("status") or {}).get("conditions") or [])


def pod(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    containers = spec.pop("containers", None) or [{"name": "main", "command": command}]
    containers = [{"image": "host", **c} for c in containers]
    if "initContainers" in spec:
        spec["initContainers"] = [{"image": "host", **c} for c in spec["initContainers"]]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default",
                                                             "labels": {"app": name}},
            "spec": {"containers": containers, **spec}}
