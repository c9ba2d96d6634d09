"""The in-process controllers hook: lazy loading, tolerance of missing/broken modules, and a live check
that `podnet controlplane` runs the registered controllers against itself."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import types
import urllib.request
from typing import Any

import pytest

from controlplane import controllers
from tests.conftest import ControlPlane


def test_parse_names() -> None:
    assert controllers.parse_names(None) == ["endpoints", "nodeipam", "scheduler"]
    assert controllers.parse_names("") == []
    assert controllers.parse_names(" nodeipam , scheduler") == ["nodeipam", "scheduler"]
    with pytest.raises(ValueError, match="unknown controller"):
        controllers.parse_names("nodeipam,kube-proxy")


def test_missing_and_broken_modules_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "podnet_test_ok_ctl", types.SimpleNamespace(run=lambda *a, **k: None))
    monkeypatch.setattr(controllers, "REGISTERED", {
        "missing": "podnet_test_no_such_module:run", "norun": "podnet_test_ok_ctl:nothing",
        "ok": "podnet_test_ok_ctl:run"})
    assert controllers.load("missing") is None
    assert controllers.load("norun") is None
    assert controllers.load("ok") is not None


async def test_supervise_restarts_a_crashing_controller() -> None:
    calls: list[int] = []
    stop = asyncio.Event()

    async def run(client: Any, stop_: asyncio.Event, **options: Any) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("boom")
        await stop_.wait()

    task = asyncio.create_task(controllers._supervise("t", run, None, stop, {}))
    deadline = time.monotonic() + 10
    while len(calls) < 3:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_live_server_runs_its_controllers(controlplane: ControlPlane) -> None:
    """Default --controllers: a Node gets a pod CIDR (nodeipam), a selector Service gets its
    EndpointSlice (endpoints controller)."""
    url = controlplane.url
    _post(url + "/api/v1/nodes", {"metadata": {"name": "ctl-n1"}})
    _post(url + "/api/v1/namespaces/default/services", {"metadata": {"name": "ctl-web"},
          "spec": {"selector": {"app": "ctl-web"}, "ports": [{"port": 80}]}})
    deadline = time.monotonic() + 20
    cidr = slices = None
    while time.monotonic() < deadline and not (cidr and slices):
        cidr = _get(url + "/api/v1/nodes/ctl-n1")["spec"].get("podCIDR")
        slices = _get(url + "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
                      "?labelSelector=kubernetes.io%2Fservice-name%3Dctl-web")["items"]
        time.sleep(0.1)
    log = controlplane.log.read_text()
    assert cidr, log[-3000:]
    assert slices, log[-3000:]
