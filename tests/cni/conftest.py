"""Fixtures for the CNI netns tests: a node namespace with the plugins installed in a temp
bin dir, a temp IPAM dataDir, helpers to call a plugin *inside the node namespace* (never the
root one) against pod namespaces the test created, and an optional `podnet cni daemon`."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from podnet import netns
from tests.conftest import REPO, podnet_argv

REFERENCE_DIR = "/usr/lib/cni"


@dataclass
class Reply:
    code: int
    out: dict[str, Any] | None
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass
class CNINode:
    box: netns.Sandbox
    ns: str
    bin_dir: Path
    data_dir: Path
    work: Path
    socket: str = ""
    daemon: subprocess.Popen[bytes] | None = None
    pods: list[str] = field(default_factory=list)

    def pod(self) -> str:
        name = self.box.netns("p")
        self.pods.append(name)
        return name

    def conf(self, **fields: Any) -> dict[str, Any]:
        ipam = {"type": "podnet-ipam", "subnet": "10.244.7.0/24", "dataDir": str(self.data_dir),
                "routes": [{"dst": "0.0.0.0/0"}]}
        ipam.update(fields.pop("ipam", {}))
        base = {"cniVersion": "1.0.0", "name": "testnet", "type": "podnet-bridge", "bridge": "cni-t0",
                "isGateway": True, "ipMasq": True, "ipam": ipam}
        base.update(fields)
        return base

    def call(self, command: str, conf: dict[str, Any], cid: str = "", pod: str | None = "", ifname: str = "eth0",
             plugin: str | None = None, daemon: bool | None = None, extra_env: dict[str, str] | None = None,
             in_ns: str | None = None) -> Reply:
        """Exec a plugin (default: the conf's type) inside the node namespace, as a runtime would."""
        name = plugin or conf["type"]
        binary = os.path.join(REFERENCE_DIR, name) if name in ("bridge", "host-local") else str(self.bin_dir / name)
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
               "CNI_CONTAINERID": cid, "CNI_NETNS": netns.path_of(pod) if pod else "",
               "CNI_IFNAME": ifname, "CNI_PATH": f"{self.bin_dir}:{REFERENCE_DIR}"}
        if command in ("VERSION", "GC", "STATUS"):
            for key in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"):
                env.pop(key)
        use_daemon = self.daemon is not None if daemon is None else daemon
        if use_daemon:
            env["PODNET_CNI_SOCKET"] = self.socket
        else:
            env["PODNET_CNI_DAEMON"] = "off"
        env.update(extra_env or {})
        proc = netns.run(in_ns or self.ns, [binary], input=json.dumps(conf), env=env, check=False, timeout=60)
        out = json.loads(proc.stdout) if proc.stdout.strip() else None
        return Reply(proc.returncode, out, proc.stderr)

    def start_daemon(self) -> None:
        self.socket = str(self.work / "cni.sock")
        log = open(self.work / "daemon.log", "ab")
        self.daemon = self.box.popen(self.ns, podnet_argv("cni", "daemon", "--verbose", "--socket", self.socket),
                                     stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        log.close()
        if not netns.wait_for(lambda: os.path.exists(self.socket), timeout=20):
            raise RuntimeError("podnet cni daemon did not start: " + (self.work / "daemon.log").read_text()[-2000:])

    def sh(self, *argv: str, ns: str | None = None) -> str:
        return netns.run(ns or self.ns, list(argv)).stdout

    def nat_rules(self, v6: bool = False) -> str:
        return self.sh("ip6tables-save" if v6 else "iptables-save", "-t", "nat")

    def allocated(self) -> list[str]:
        d = self.data_dir / "testnet"
        if not d.exists():
            return []
        return sorted(p.name for p in d.iterdir() if p.name != "lock" and not p.name.startswith("last_reserved"))

    def links(self, ns: str | None = None) -> list[str]:
        return [line.split()[1].split("@")[0].rstrip(":") for line in
                self.sh("ip", "-o", "link", "show", ns=ns).splitlines()]


@pytest.fixture(scope="session")
def cni_bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Plugin bin dirs installed once: "default" (native shim when cc works) and "python"."""
    from cni.cli import install

    root = tmp_path_factory.mktemp("cnibin")
    dirs = {"default": root / "default", "python": root / "python"}
    install(str(dirs["default"]), "", "10.244.0.0/24", "cni0", "/run/podnet/cni.sock", False, shim="auto")
    install(str(dirs["python"]), "", "10.244.0.0/24", "cni0", "/run/podnet/cni.sock", False, shim="python")
    return dirs


@pytest.fixture
def cninode(sandbox: netns.Sandbox, tmp_path: Path, cni_bins: dict[str, Path]) -> Iterator[CNINode]:
    node = CNINode(sandbox, sandbox.netns("n"), cni_bins["default"], tmp_path / "ipam", tmp_path)
    yield node


@pytest.fixture
def cnidaemon(cninode: CNINode) -> Iterator[CNINode]:
    cninode.start_daemon()
    yield cninode
