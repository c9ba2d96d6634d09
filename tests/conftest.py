"""Fixtures shared by every test folder.

- `sandbox`: a podnet.netns.Sandbox (namespaces + processes) removed at teardown; skips
  unless root with iproute2.
- `controlplane`: a live `podnet controlplane` on a free loopback port with a temp data dir.
- `free_port`, `run_podnet`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from podnet import netns

REPO = Path(__file__).resolve().parent.parent


def is_root_with_netns() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


requires_root = pytest.mark.skipif(not is_root_with_netns(), reason="needs root and iproute2")
requires_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")


def free_port_number() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def free_port() -> int:
    return free_port_number()


@pytest.fixture
def sandbox() -> Iterator[netns.Sandbox]:
    if not is_root_with_netns():
        pytest.skip("needs root and iproute2")
    box = netns.Sandbox(prefix="pt")
    try:
        yield box
    finally:
        box.close()


def podnet_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "podnet", *args]


@dataclass
class ControlPlane:
    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def kubectl(self, *args: str, input: str | None = None, check: bool = False,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
                              text=True, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def stop(self, sig: int = 15) -> None:
        stop_process(self.proc, sig)


def stop_process(proc: "subprocess.Popen[bytes]", sig: int = 15, timeout: float = 10.0) -> None:
    """Stop one process a test or bench started, by its pid: `sig`, then SIGKILL after `timeout`."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition",
               interval: float = 0.05) -> Any:
    """Poll `check()` until it returns something truthy (returned); AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def wait_http_ok(url: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


def start_controlplane(data_dir: Path, port: int, *extra: str) -> ControlPlane:
    log = data_dir / "controlplane.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            podnet_argv("controlplane", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir), *extra),
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    cp = ControlPlane(f"http://127.0.0.1:{port}", data_dir, proc, port, log)
    if not wait_http_ok(cp.url + "/version"):
        cp.stop(9)
        raise RuntimeError(f"podnet controlplane did not start: {log.read_text()[-3000:]}")
    return cp


@contextlib.contextmanager
def running_controlplane(data_dir: Path, *extra: str) -> Iterator[ControlPlane]:
    """A `podnet controlplane` on a free loopback port for the duration of the block."""
    cp = start_controlplane(data_dir, free_port_number(), *extra)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def controlplane(tmp_path: Path) -> Iterator[ControlPlane]:
    with running_controlplane(tmp_path / "cp") as cp:
        yield cp


@pytest.fixture(scope="module")
def bare_controlplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One `podnet controlplane --controllers ""` shared by a whole test module."""
    with running_controlplane(tmp_path_factory.mktemp("cp") / "cp", "--controllers", "") as cp:
        yield cp


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that take the `sandbox` fixture need root: mark them, so `make unit` (-m "not root") skips them."""
    for item in items:
        if "sandbox" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.root)
