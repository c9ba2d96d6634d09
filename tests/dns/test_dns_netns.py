"""`podnet dns --listen 0.0.0.0:PORT` on a multi-homed host answers from the address each query
was sent to (IP_PKTINFO), on both UDP paths (recvmmsg and recvfrom). Runs in its own network
namespaces (root): the server namespace has 10.201.0.1/24 on a veth and 10.202.0.1/32 on lo; the
client routes 10.202.0.1 via the veth, so a reply from the route's source (10.201.0.1) would be
rejected by dig as coming from an unexpected source.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from podnet import netns
from tests.conftest import REPO, requires_root

pytestmark = [requires_root, pytest.mark.root]

CP_PORT = 16443


def _dig(ns: str, port: int, name: str) -> str:
    return netns.run(ns, ["dig", "@10.202.0.1", "-p", str(port), "+time=1", "+tries=1", name],
                     check=False, timeout=20).stdout


@pytest.mark.timeout(120)
def test_wildcard_listener_replies_from_queried_address(sandbox: netns.Sandbox, tmp_path: Path) -> None:
    srv, cli = sandbox.netns("ds"), sandbox.netns("dc")
    netns.add_veth(srv, "v0", cli, "v1")
    netns.add_addr(srv, "v0", "10.201.0.1/24")
    netns.add_addr(cli, "v1", "10.201.0.2/24")
    netns.ip("addr", "add", "10.202.0.1/32", "dev", "lo", netns=srv)
    netns.add_route(cli, "10.202.0.1/32", via="10.201.0.1")
    data = tmp_path / "cp"
    log = open(tmp_path / "logs.txt", "wb")
    try:
        sandbox.popen(srv, [sys.executable, "-m", "podnet", "controlplane", "--listen", f"127.0.0.1:{CP_PORT}",
                            "--data-dir", str(data), "--controllers", ""], stdout=log, stderr=log, cwd=REPO)
        deadline = time.monotonic() + 30
        while not (data / "kubeconfig").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        ports = {"1": 5353, "0": 5354}
        for mmsg, port in ports.items():
            sandbox.popen(srv, ["env", f"PODNET_DNS_MMSG={mmsg}", sys.executable, "-m", "podnet", "dns",
                                "--kubeconfig", str(data / "kubeconfig"), "--listen", f"0.0.0.0:{port}",
                                "--upstream", "none", "--health-listen", "", "--ready-listen", "",
                                "--metrics-listen", ""], stdout=log, stderr=log, cwd=REPO)
        for port in ports.values():
            name = "kubernetes.default.svc.cluster.local"
            deadline = time.monotonic() + 40
            out = ""
            while time.monotonic() < deadline:
                out = _dig(cli, port, name)
                if "status: NOERROR" in out:
                    break
                time.sleep(0.2)
            assert "status: NOERROR" in out and "10.96.0.1" in out, out + (tmp_path / "logs.txt").read_text()[-3000:]
            again = _dig(cli, port, name)  # the cache-hit path
            assert "status: NOERROR" in again and "unexpected source" not in again, again
            missing = _dig(cli, port, "nope.default.svc.cluster.local")  # the slow path
            assert "status: NXDOMAIN" in missing, missing
    finally:
        sandbox.close()
        log.close()
