"""The agent's process and sandbox shell: pod network namespaces, container processes, state.

A pod's infra namespace is `pod-<uid>` (podnet.netns). Each container runs as
`ip netns exec pod-<uid> unshare --uts sh -c SHIM ...`: `ip netns exec` gives it a private
mount namespace, in which the shim bind-mounts the pod's resolv.conf and hosts over
/etc/resolv.conf and /etc/hosts, sets the pod hostname, runs the command, forwards SIGTERM
and records the exit status in a file, so an agent restarted later still learns how its
adopted containers ended. State (pids, netns, CNI result) lives in <root>/pods/<uid>/state.json.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from agent.core import ContainerState, Termination, termination_reason
from agent.spec import Container
from podnet import netns

SHIM = r'''
R=$1; H=$2; X=$3; N=$4; shift 4
if [ -n "$N" ]; then hostname "$N" 2>/dev/null; fi
if [ -n "$R" ]; then mount --bind "$R" /etc/resolv.conf || exit 126; fi
if [ -n "$H" ]; then mount --bind "$H" /etc/hosts || exit 126; fi
rm -f "$X"
"$@" <&0 &
c=$!
trap 'kill -TERM $c 2>/dev/null' TERM
trap 'kill -INT $c 2>/dev/null' INT
while :; do wait $c; s=$?; kill -0 $c 2>/dev/null || break; done
echo $s > "$X.tmp" && mv "$X.tmp" "$X"
exit $s
'''

EXEC_SHIM = r'''
R=$1; shift
if [ -n "$R" ] && [ -f "$R" ]; then mount --bind "$R" /etc/resolv.conf; fi
exec "$@"
'''


def netns_name(uid: str) -> str:
    return f"pod-{uid}"


def proc_starttime(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie process, else None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class ContainerProc:
    name: str
    pid: int = 0
    starttime: int = 0
    started_at: float = 0.0
    restart_count: int = 0
    last: dict[str, Any] | None = None  # Termination as a dict
    running: bool = False
    waiting_reason: str = "ContainerCreating"

    def state(self, ready: bool) -> ContainerState:
        last = Termination(**self.last) if self.last else None
        return ContainerState(self.name, self.running, self.pid, self.started_at, self.restart_count, last,
                              ready and self.running, "" if self.running else self.waiting_reason)


@dataclass
class PodRecord:
    uid: str
    namespace: str
    name: str
    netns: str
    container_id: str
    ifname: str = "eth0"
    network: dict[str, Any] | None = None  # the conflist used for ADD (DEL uses the same)
    cni_result: dict[str, Any] | None = None
    runtime_config: dict[str, Any] = field(default_factory=dict)  # what ADD got (DEL gets the same)
    pod_ips: list[str] = field(default_factory=list)
    start_time: float = 0.0
    sandbox_ready: bool = False
    sandbox_released: bool = False
    containers: dict[str, ContainerProc] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PodRecord":
        raw = json.loads(text)
        raw["containers"] = {k: ContainerProc(**v) for k, v in (raw.get("containers") or {}).items()}
        return cls(**raw)


class Runtime:
    """Owns <root>/pods/<uid>/ and the processes and namespaces of this node's pods."""

    def __init__(self, root_dir: str | Path) -> None:
        self.root = Path(root_dir)
        self.pods_dir = self.root / "pods"
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # -- state ---------------------------------------------------------------------------------
    def pod_dir(self, uid: str) -> Path:
        return self.pods_dir / uid

    def save(self, rec: PodRecord) -> None:
        d = self.pod_dir(rec.uid)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "state.json.tmp"
        tmp.write_text(rec.to_json())
        os.replace(tmp, d / "state.json")

    def load_all(self) -> dict[str, PodRecord]:
        out: dict[str, PodRecord] = {}
        for d in sorted(self.pods_dir.iterdir()) if self.pods_dir.is_dir() else []:
            try:
                rec = PodRecord.from_json((d / "state.json").read_text())
            except (OSError, ValueError, TypeError):
                continue
            out[rec.uid] = rec
        return out

    def forget(self, uid: str) -> None:
        shutil.rmtree(self.pod_dir(uid), ignore_errors=True)

    # -- sandbox ---------------------------------------------------------------------------------
    def write_files(self, uid: str, resolv: str, hosts: str) -> None:
        d = self.pod_dir(uid)
        d.mkdir(parents=True, exist_ok=True)
        (d / "resolv.conf").write_text(resolv)
        (d / "hosts").write_text(hosts)

    def create_netns(self, rec: PodRecord) -> None:
        if rec.netns and not netns.exists(rec.netns):
            netns.create(rec.netns)

    def delete_netns(self, rec: PodRecord) -> None:
        if rec.netns:
            netns.delete(rec.netns)

    # -- containers ----------------------------------------------------------------------------
    def start(self, rec: PodRecord, c: Container, hostname: str) -> ContainerProc:
        d = self.pod_dir(rec.uid)
        proc = rec.containers.get(c.name) or ContainerProc(c.name)
        if proc.last is not None:
            proc.restart_count += 1
        env = {"PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
               "HOSTNAME": hostname, **dict(c.env)}
        if rec.netns:
            argv = ["ip", "netns", "exec", rec.netns, "unshare", "--uts", "sh", "-c", SHIM, "podnet-shim",
                    str(d / "resolv.conf"), str(d / "hosts"), str(d / f"{c.name}.exit"), hostname, *c.command]
        else:  # hostNetwork: the node's network, hostname and /etc/hosts; a private mount for resolv.conf
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", SHIM, "podnet-shim",
                    str(d / "resolv.conf"), "", str(d / f"{c.name}.exit"), "", *c.command]
        log = open(d / f"{c.name}.log", "ab")
        try:
            child = subprocess.Popen(argv, env=env, cwd=c.working_dir or "/", stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        self._children[child.pid] = child
        proc.pid = child.pid
        proc.starttime = proc_starttime(child.pid) or 0
        proc.started_at = time.time()
        proc.running = True
        proc.waiting_reason = ""
        rec.containers[c.name] = proc
        return proc

    def observe(self, rec: PodRecord) -> bool:
        """Refresh running/exit state of the pod's containers; True when something changed."""
        changed = False
        for proc in rec.containers.values():
            if not proc.running:
                continue
            child = self._children.get(proc.pid)
            if child is not None and child.poll() is None:
                continue
            if child is None and proc.starttime and proc_starttime(proc.pid) == proc.starttime:
                continue  # adopted and alive
            code = self._exit_code(rec, proc, child)
            self._children.pop(proc.pid, None)
            now = time.time()
            sig = code - 128 if code > 128 else 0
            proc.last = asdict(Termination(code, termination_reason(code, sig), proc.started_at, now, sig))
            proc.running = False
            proc.waiting_reason = ""
            changed = True
        return changed

    def _exit_code(self, rec: PodRecord, proc: ContainerProc, child: subprocess.Popen[bytes] | None) -> int:
        path = self.pod_dir(rec.uid) / f"{proc.name}.exit"
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            pass
        if child is not None and child.returncode is not None:
            rc = child.returncode
            return 128 - rc if rc < 0 else rc
        return 137  # killed without a record: SIGKILL

    def signal(self, proc: ContainerProc, sig: int, group: bool = False) -> None:
        if not proc.running or not proc.pid:
            return
        if proc.starttime and proc_starttime(proc.pid) != proc.starttime:
            return  # gone (or the pid was reused)
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                os.kill(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_all_now(self, rec: PodRecord) -> None:
        for proc in rec.containers.values():
            self.signal(proc, signal.SIGKILL, group=True)

    def exec_argv(self, rec: PodRecord, command: Sequence[str]) -> list[str]:
        """argv that runs `command` inside the pod (its netns and resolv.conf), e.g. exec probes."""
        resolv = str(self.pod_dir(rec.uid) / "resolv.conf")
        if not rec.netns:
            return ["unshare", "--mount", "--propagation", "private", "sh", "-c", EXEC_SHIM, "podnet-exec", resolv,
                    *command]
        return ["ip", "netns", "exec", rec.netns, "sh", "-c", EXEC_SHIM, "podnet-exec", resolv, *command]


def exec_in_pod_argv(root_dir: str | Path, uid: str, command: Sequence[str], node_netns: str = "") -> list[str]:
    """Same as Runtime.exec_argv for tools outside the agent (podnet lab exec); a hostNetwork pod
    runs in `node_netns` (the namespace its agent runs in)."""
    pod_dir = Path(root_dir) / "pods" / uid
    resolv = pod_dir / "resolv.conf"
    ns = netns_name(uid)
    try:
        ns = str(json.loads((pod_dir / "state.json").read_text()).get("netns", ns)) or node_netns
    except (OSError, ValueError):
        pass
    return ["ip", "netns", "exec", ns, "sh", "-c", EXEC_SHIM, "podnet-exec", str(resolv), *command]
