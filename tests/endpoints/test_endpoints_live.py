"""Live tests: `podnet controlplane` + the endpoints controller, checked with kubectl.

The standalone controller (`podnet endpoints --server URL`) runs against a server started with
`--controllers ""`; one test uses the server's in-process controller. Everything is on loopback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.conftest import (
    stop_process,
    wait_until,
    REPO, ControlPlane, podnet_argv, requires_kubectl, running_controlplane, start_controlplane,
)

pytestmark = [requires_kubectl, pytest.mark.kubectl, pytest.mark.timeout(180)]

NS = "default"


class API:
    """Tiny synchronous JSON client for bulk set-up writes (checks go through kubectl)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None, ctype: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": ctype})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def pod(self, name: str, labels: dict[str, str] | None = None, port_name: str = "web", port: int = 8080) -> None:
        self.call("POST", f"/api/v1/namespaces/{NS}/pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [
                {"name": "c", "image": "app", "ports": [{"name": port_name, "containerPort": port}]}]}})

    def status(self, name: str, ip: str, ready: bool = True, phase: str = "Running") -> None:
        self.call("PATCH", f"/api/v1/namespaces/{NS}/pods/{name}/status", {"status": {
            "phase": phase, "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}},
            "application/merge-patch+json")

    def delete(self, plural: str, name: str) -> None:
        group = "/apis/discovery.k8s.io/v1" if plural == "endpointslices" else "/api/v1"
        self.call("DELETE", f"{group}/namespaces/{NS}/{plural}/{name}")


def service(name: str = "web", target: str | int = "web", port_name: str = "http", **spec: Any) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"tier": "fe"}},
                       "spec": {"selector": {"app": "web"}, "ports": [
                           {"name": port_name, "port": 80, "targetPort": target}], **spec}})


def kget(cp: ControlPlane, *args: str) -> Any:
    out = cp.kubectl("get", *args, "-o", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def slices(cp: ControlPlane, svc: str = "web") -> list[dict[str, Any]]:
    return list(kget(cp, "endpointslices", "-l", f"kubernetes.io/service-name={svc}")["items"])


def endpoints(cp: ControlPlane, svc: str = "web") -> Any:
    out = cp.kubectl("get", "endpoints", svc, "-o", "json")
    return json.loads(out.stdout) if out.returncode == 0 else None


def slice_view(cp: ControlPlane, svc: str = "web") -> dict[str, tuple[bool, int]]:
    """pod name -> (ready, port) over all slices of the Service."""
    return {e["targetRef"]["name"]: (e["conditions"]["ready"], (s.get("ports") or [{"port": 0}])[0]["port"])
            for s in slices(cp, svc) for e in s.get("endpoints") or []}


def wait(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    return wait_until(check, timeout, what, interval=0.1)


def start_controller(cp: ControlPlane, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(podnet_argv("endpoints", "--server", cp.url, *extra), stdout=out,
                                stderr=subprocess.STDOUT, cwd=REPO)




@pytest.fixture
def bare_cp(tmp_path: Path) -> Iterator[ControlPlane]:
    """A server without in-process controllers."""
    with running_controlplane(tmp_path / "cp", "--controllers", "") as cp:
        yield cp


@pytest.fixture
def standalone(bare_cp: ControlPlane, tmp_path: Path) -> Iterator[tuple[ControlPlane, subprocess.Popen[bytes]]]:
    proc = start_controller(bare_cp, tmp_path / "endpoints.log", "--max-endpoints-per-slice", "10")
    try:
        yield bare_cp, proc
    finally:
        stop_process(proc)


def test_standalone_controller_lifecycle(standalone: tuple[ControlPlane, subprocess.Popen[bytes]]) -> None:
    cp, proc = standalone
    api = API(cp.url)
    cp.kubectl("apply", "-f", "-", input=service(), check=True)
    # no pods yet: the Endpoints object exists empty, and a placeholder slice
    ep = wait("empty Endpoints", lambda: endpoints(cp))
    assert ep.get("subsets") in (None, []) and ep["metadata"]["labels"]["tier"] == "fe"
    placeholder = wait("placeholder slice", lambda: slices(cp))
    assert len(placeholder) == 1 and not placeholder[0].get("endpoints")

    # scale up: 25 pods, max 10 per slice -> 3 slices; pod 0 is not ready
    for i in range(25):
        api.pod(f"web-{i}")
        api.status(f"web-{i}", f"10.244.0.{i + 10}", ready=i != 0)
    view = wait("25 endpoints", lambda: v if len(v := slice_view(cp)) == 25 else None)
    assert view["web-0"] == (False, 8080) and view["web-1"] == (True, 8080)
    got = slices(cp)
    assert sorted(len(s["endpoints"]) for s in got) == [5, 10, 10]
    for s in got:
        assert s["metadata"]["generateName"] == "web-" and s["addressType"] == "IPv4"
        assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
        assert s["metadata"]["ownerReferences"][0]["kind"] == "Service"
        assert "endpoints.kubernetes.io/last-change-trigger-time" in s["metadata"]["annotations"]
    ep = endpoints(cp)
    assert len(ep["subsets"][0]["addresses"]) == 24 and len(ep["subsets"][0]["notReadyAddresses"]) == 1
    assert ep["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]

    # flip readiness of one pod: only the slice holding it changes
    versions = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in got}
    holder = next(s["metadata"]["name"] for s in got if any(e["targetRef"]["name"] == "web-7" for e in s["endpoints"]))
    cp.kubectl("patch", "pod", "web-7", "--subresource=status", "--type=merge", "-p",
               json.dumps({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}), check=True)
    wait("web-7 not ready", lambda: slice_view(cp).get("web-7") == (False, 8080))
    after = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in slices(cp)}
    assert after.keys() == versions.keys()
    assert [n for n in after if after[n] != versions[n]] == [holder]
    wait("Endpoints not ready", lambda: "10.244.0.17" in json.dumps(endpoints(cp)["subsets"][0].get(
        "notReadyAddresses")))

    # scale down to 4 pods
    for i in range(4, 25):
        api.delete("pods", f"web-{i}")
    wait("4 endpoints", lambda: len(slice_view(cp)) == 4)
    wait("Endpoints with 4 addresses", lambda: sum(len(s.get("addresses", [])) + len(s.get("notReadyAddresses", []))
                                                   for s in endpoints(cp)["subsets"]) == 4)  # type: ignore[misc]
    assert len(slices(cp)) == 1

    # rename the named port: pods 2,3 now call it "api" on 9090; Service targets "api"
    for i in (2, 3):
        api.delete("pods", f"web-{i}")
        wait(f"web-{i} gone", lambda: f"web-{i}" not in slice_view(cp))
        api.pod(f"web-{i}", port_name="api", port=9090)
        api.status(f"web-{i}", f"10.244.1.{i}")
    cp.kubectl("apply", "-f", "-", input=service(target="api", port_name="grpc"), check=True)
    wait("renamed port", lambda: slice_view(cp).get("web-2") == (True, 9090))
    wait("pods without the port land in a port-less slice",
         lambda: sorted(len(s.get("ports") or []) for s in slices(cp)) == [0, 1])
    named = [s for s in slices(cp) if s.get("ports")]
    assert named[0]["ports"] == [{"name": "grpc", "port": 9090, "protocol": "TCP"}]
    assert sorted(e["targetRef"]["name"] for e in named[0]["endpoints"]) == ["web-2", "web-3"]
    wait("Endpoints on the renamed port",
         lambda: [s.get("ports") for s in endpoints(cp)["subsets"]] == [[{"name": "grpc", "port": 9090,
                                                                           "protocol": "TCP"}]])

    # the Service goes: its slices and Endpoints go too
    cp.kubectl("delete", "service", "web", check=True)
    wait("slices deleted", lambda: slices(cp) == [])
    wait("Endpoints deleted", lambda: endpoints(cp) is None)
    assert proc.poll() is None


def test_selectorless_and_external_name_left_alone(standalone: tuple[ControlPlane, subprocess.Popen[bytes]]) -> None:
    cp, _ = standalone
    api = API(cp.url)
    api.pod("web-0")
    api.status("web-0", "10.244.0.5")
    manual = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "manual"},
              "spec": {"ports": [{"name": "http", "port": 80}]}}
    user_ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual"},
               "subsets": [{"addresses": [{"ip": "10.9.9.9"}], "ports": [{"name": "http", "port": 80}]}]}
    ext = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
           "spec": {"type": "ExternalName", "externalName": "example.com", "selector": {"app": "web"}}}
    for obj in (manual, user_ep, ext):
        cp.kubectl("apply", "-f", "-", input=json.dumps(obj), check=True)
    cp.kubectl("apply", "-f", "-", input=service(), check=True)  # a selector Service as a progress marker
    wait("web slice", lambda: "web-0" in slice_view(cp))
    assert endpoints(cp, "manual")["subsets"][0]["addresses"][0]["ip"] == "10.9.9.9"
    assert slices(cp, "ext") == [] and endpoints(cp, "ext") is None
    # the hand-written Endpoints is untouched, and mirrored into an EndpointSlice for proxies/DNS
    mirrored = wait("mirrored slice", lambda: slices(cp, "manual"))
    assert mirrored[0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
        "endpointslicemirroring-controller.k8s.io"
    assert mirrored[0]["endpoints"][0]["addresses"] == ["10.9.9.9"] and mirrored[0]["ports"][0]["port"] == 80
    user_ep["subsets"][0]["addresses"].append({"ip": "10.9.9.10"})  # type: ignore[index]
    cp.kubectl("apply", "-f", "-", input=json.dumps(user_ep), check=True)
    wait("mirror follows the Endpoints", lambda: sorted(a for s in slices(cp, "manual") for e in s["endpoints"]
                                                        for a in e["addresses"]) == ["10.9.9.10", "10.9.9.9"])
    assert endpoints(cp, "manual")["metadata"].get("labels", {}).get("endpoints.kubernetes.io/managed-by") is None
    cp.kubectl("delete", "endpoints", "manual", check=True)
    wait("mirror removed with the Endpoints", lambda: slices(cp, "manual") == [])

    # a Service that loses its selector loses the managed objects
    cp.kubectl("patch", "service", "web", "--type=json", "-p",
               json.dumps([{"op": "remove", "path": "/spec/selector"}]), check=True)
    wait("managed slices removed", lambda: slices(cp) == [])
    wait("managed Endpoints removed", lambda: endpoints(cp) is None)


def test_restart_adopts_fixes_and_deletes_orphans(bare_cp: ControlPlane, tmp_path: Path) -> None:
    cp = bare_cp
    api = API(cp.url)
    cp.kubectl("apply", "-f", "-", input=service(), check=True)
    for i in range(3):
        api.pod(f"web-{i}")
        api.status(f"web-{i}", f"10.244.0.{i + 10}")
    managed = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    orphan = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": "gone-abcde", "labels": {"kubernetes.io/service-name": "gone", **managed}},
              "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.1.1"]}], "ports": []}
    stale = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "web-stale", "labels": {"kubernetes.io/service-name": "web", **managed}},
             "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.1.2"]}], "ports": []}
    orphan_ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {
        "name": "gone", "labels": {"endpoints.kubernetes.io/managed-by": "endpoint-controller"}}}
    for obj in (orphan, stale, orphan_ep):
        cp.kubectl("apply", "-f", "-", input=json.dumps(obj), check=True)

    proc = start_controller(cp, tmp_path / "endpoints.log")
    try:
        wait("orphan slice deleted", lambda: slices(cp, "gone") == [])
        wait("orphan Endpoints deleted", lambda: endpoints(cp, "gone") is None)
        wait("web adopted", lambda: sorted(slice_view(cp)) == ["web-0", "web-1", "web-2"])
        names = sorted(s["metadata"]["name"] for s in slices(cp))
        assert len(names) == 1  # the stale slice was reused (not owned -> replaced) or deleted

        # the API server goes away and comes back on the same port and data
        cp.stop()
        time.sleep(1.0)
        cp2 = start_controlplane(cp.data_dir, cp.port, "--controllers", "")
        cp.proc = cp2.proc  # the fixture stops whichever process runs now
        API(cp.url).status("web-1", "10.244.0.11", ready=False)
        wait("readiness after restart", lambda: slice_view(cp).get("web-1") == (False, 8080), timeout=30)
        assert proc.poll() is None
    finally:
        stop_process(proc)


def test_in_process_controller(controlplane: ControlPlane) -> None:
    cp = controlplane
    api = API(cp.url)
    cp.kubectl("apply", "-f", "-", input=service(target=8080, clusterIP="None"), check=True)
    api.pod("web-0")
    api.status("web-0", "10.244.0.10")
    s = wait("slice from the in-process controller", lambda: [x for x in slices(cp) if x.get("endpoints")])
    assert s[0]["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    ep = endpoints(cp)
    assert ep["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert ep["subsets"][0]["addresses"][0]["ip"] == "10.244.0.10"


def test_cli_rejects_bad_flags() -> None:
    out = subprocess.run(podnet_argv("endpoints", "--server", "http://127.0.0.1:1", "--max-endpoints-per-slice",
                                     "0"), capture_output=True, text=True, cwd=REPO, timeout=30)
    assert out.returncode == 2 and "out of range" in out.stderr
    out = subprocess.run(podnet_argv("endpoints"), capture_output=True, text=True, cwd=REPO, timeout=30)
    assert out.returncode == 2 and "--server" in out.stderr
    assert sys.executable
