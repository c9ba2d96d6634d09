"""`podnet lab` through its CLI: up, status, exec, kubeconfig, and down after a crash."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, is_root_with_netns
from tests.e2e.e2e_helpers import leftovers

pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(not is_root_with_netns(), reason="needs root and iproute2")]


def lab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "podnet", "lab", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_up_status_exec_and_down_after_a_crash() -> None:
    name = f"lt-{secrets.token_hex(3)}"
    try:
        up = lab("up", "--name", name, "--nodes", "1", "--no-dns")
        assert up.returncode == 0, up.stdout + up.stderr
        kubeconfig = lab("kubeconfig", "--name", name).stdout.strip()
        assert kubeconfig == f"/run/podnet/lab/{name}/kubeconfig"
        nodes = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "nodes", "-o", "json"],
                               capture_output=True, text=True, timeout=30)
        if nodes.returncode == 0:  # kubectl is optional for this test
            assert [n["metadata"]["name"] for n in json.loads(nodes.stdout)["items"]] == ["node-1"]
        status = lab("status", "--name", name)
        assert status.returncode == 0 and "node-1-agent" in status.stdout and "True" in status.stdout
        addr = lab("exec", "--name", name, "node-1", "--", "ip", "-4", "-o", "addr", "show", "eth0")
        assert "10.250.0.11/24" in addr.stdout
        route = lab("exec", "--name", name, "hub", "--", "ip", "route")
        assert "default" not in route.stdout  # no way out of the lab
        out = lab("exec", "--name", name, "node-1", "--", "ip", "route", "get", "192.0.2.1")
        assert "via 10.250.0.1" in out.stdout  # the node's default goes to the hub ...
        out = lab("exec", "--name", name, "hub", "--", "ip", "route", "get", "192.0.2.1")
        assert out.returncode != 0 and "unreachable" in out.stderr  # ... which has no uplink
        bad = lab("exec", "--name", name, "nosuchpod", "--", "true")
        assert bad.returncode == 1 and "neither a node" in bad.stderr
        again = lab("up", "--name", name, "--nodes", "1")
        assert again.returncode == 1 and "already up" in again.stderr
        # crash: every lab process dies at once, nothing is cleaned up
        state = json.loads(Path(f"/run/podnet/lab/{name}/state.json").read_text())
        for p in state["processes"]:
            try:
                os.killpg(p["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert lab("status", "--name", name).returncode == 3
        down = lab("down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert leftovers(name) == []
    finally:
        lab("down", "--name", name)
        assert leftovers(name) == []


def test_down_of_a_lab_that_never_existed_is_fine() -> None:
    out = lab("down", "--name", f"none-{secrets.token_hex(2)}")
    assert out.returncode == 0
    assert lab("kubeconfig", "--name", "never-up").returncode == 1


def test_down_without_a_state_file() -> None:
    """Even with state.json gone (the worst crash), down finds the lab by its names."""
    name = f"ls-{secrets.token_hex(3)}"
    try:
        up = lab("up", "--name", name, "--nodes", "1", "--no-dns")
        assert up.returncode == 0, up.stdout + up.stderr
        Path(f"/run/podnet/lab/{name}/state.json").unlink()
        down = lab("down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert leftovers(name) == []
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert f"pnlab-{name}-hub" not in ps  # the root-namespace relay too
    finally:
        lab("down", "--name", name)
