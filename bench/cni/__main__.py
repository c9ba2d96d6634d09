"""`python -m bench.cni`: median ADD/DEL wall time and peak memory, podnet vs the reference.

Everything happens inside namespaces this bench creates and removes: one node namespace per
contender (identical config apart from the plugin types: isGateway, ipMasq on, a /24),
20 pod namespaces each. The timing loop itself runs *inside* the node namespace (a runner
process started once with `ip netns exec`), so each measured call is just the runtime's
fork/exec of the plugin, as containerd or CRI-O would do it. Rounds alternate between the
contenders to spread out noise from other load on the machine.

Peak memory: ru_maxrss of the plugin process tree from wait4(2) (the reference bridge waits
for host-local and iptables, so they are included); for podnet's daemon mode the daemon's
own VmHWM is reported too, since it does the work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from podnet import netns

REPO = Path(__file__).resolve().parents[2]
REFERENCE = "/usr/lib/cni"
TIME = "/usr/bin/time"


def call(binary: str, env: dict[str, str], conf: bytes) -> tuple[float, int, int, bytes]:
    """(seconds, exit code, maxrss KiB, stdout) for one plugin exec."""
    started = time.perf_counter()
    proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(conf)
    proc.stdin.close()
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, proc.returncode, usage.ru_maxrss, out


def runner(spec_path: str) -> int:
    """Inside the node namespace: ADD all pods, CHECK, DEL, DEL again; print timings as JSON."""
    spec = json.loads(Path(spec_path).read_text())
    conf = spec["conf"]
    base = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_IFNAME": "eth0",
            "CNI_PATH": spec["cni_path"], **spec["env"]}
    out: dict[str, list[float]] = {"ADD": [], "CHECK": [], "DEL": [], "DEL-again": [], "rss": []}
    results = {}
    for i, pod in enumerate(spec["pods"]):
        env = {**base, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": f"bench{i}", "CNI_NETNS": pod}
        took, code, rss, stdout = call(spec["binary"], env, json.dumps(conf).encode())
        if code != 0:
            raise SystemExit(f"ADD failed: {stdout.decode()}")
        results[i] = json.loads(stdout)
        out["ADD"].append(took)
    for i, pod in enumerate(spec["pods"]):
        env = {**base, "CNI_COMMAND": "CHECK", "CNI_CONTAINERID": f"bench{i}", "CNI_NETNS": pod}
        took, code, rss, stdout = call(spec["binary"], env, json.dumps({**conf, "prevResult": results[i]}).encode())
        if code != 0:
            raise SystemExit(f"CHECK failed: {stdout.decode()}")
        out["CHECK"].append(took)
    for key in ("DEL", "DEL-again"):
        for i, pod in enumerate(spec["pods"]):
            env = {**base, "CNI_COMMAND": "DEL", "CNI_CONTAINERID": f"bench{i}", "CNI_NETNS": pod}
            took, code, rss, stdout = call(spec["binary"], env, json.dumps(conf).encode())
            if code != 0:
                raise SystemExit(f"DEL failed: {stdout.decode()}")
            out[key].append(took)
    out["rss"] = measure_rss(spec, base, conf)
    leftovers = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout.count("CNI-")
    print(json.dumps({**out, "leftover_rules": leftovers}))
    return 0


def measure_rss(spec: dict[str, Any], base: dict[str, str], conf: dict[str, Any]) -> list[float]:
    """Peak RSS (KiB) of ADD and DEL calls, from GNU time's %M on a few extra pods.

    (wait4's ru_maxrss of a child forked from this Python runner would count the runner's own
    pages, so the plugins are started from the small `time` program instead.)
    """
    if not os.path.exists(TIME):
        return []
    peaks: list[float] = []
    for i, pod in enumerate(spec["mem_pods"]):
        for command in ("ADD", "DEL"):
            env = {**base, "CNI_COMMAND": command, "CNI_CONTAINERID": f"mem{i}", "CNI_NETNS": pod}
            proc = subprocess.run([TIME, "-f", "%M", "-o", "/dev/stderr", spec["binary"]], env=env,
                                  input=json.dumps(conf).encode(), capture_output=True)
            if proc.returncode != 0:
                raise SystemExit(f"{command} failed: {proc.stdout.decode()}")
            peaks.append(float(proc.stderr.decode().split()[-1]))
    return peaks


def vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


CONTENDERS: dict[str, dict[str, Any]] = {
    "reference bridge + host-local": {"type": "bridge", "ipam": "host-local", "daemon": False},
    "podnet (daemon, native shim)": {"type": "podnet-bridge", "ipam": "podnet-ipam", "daemon": True, "shim": "native"},
    "podnet (daemon, Python shim)": {"type": "podnet-bridge", "ipam": "podnet-ipam", "daemon": True, "shim": "python"},
    "podnet (in-process, no daemon)": {"type": "podnet-bridge", "ipam": "podnet-ipam", "daemon": False,
                                       "shim": "python"},
}


def bench(pods: int, rounds: int, contenders: list[str]) -> dict[str, Any]:
    from cni.cli import install

    samples: dict[str, dict[str, list[float]]] = {c: {} for c in contenders}
    daemon_rss: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cni-") as tmp, netns.Sandbox(prefix="bc") as box:
        bins = {shim: Path(tmp) / f"bin-{shim}" for shim in ("native", "python")}
        for shim, path in bins.items():
            install(str(path), "", "10.244.0.0/24", "cni0", "/run/podnet/cni.sock", False, shim=shim)
        for rnd in range(rounds):
            for name in contenders:
                c = CONTENDERS[name]
                node = box.netns("n")
                pod_names = [box.netns("p") for _ in range(pods)]
                mem_pods = [box.netns("m") for _ in range(2)]
                data_dir = Path(tmp) / f"ipam-{rnd}-{len(samples[name])}-{c['type']}"
                conf = {"cniVersion": "1.0.0", "name": "testnet", "type": c["type"], "bridge": "cni-t0",
                        "isGateway": True, "ipMasq": True,
                        "ipam": {"type": c["ipam"], "subnet": "10.244.7.0/24", "dataDir": str(data_dir)}}
                env = {"PODNET_CNI_DAEMON": "off"}
                daemon = None
                if c["daemon"]:
                    sock = str(Path(tmp) / f"cni-{node}.sock")
                    daemon = box.popen(node, [sys.executable, "-m", "podnet", "cni", "daemon", "--socket", sock],
                                       cwd=str(REPO), stderr=subprocess.DEVNULL)
                    if not netns.wait_for(lambda: os.path.exists(sock), timeout=30):
                        raise SystemExit("podnet cni daemon did not start")
                    env = {"PODNET_CNI_SOCKET": sock}
                spec = {"binary": REFERENCE + "/bridge" if c["type"] == "bridge" else str(bins[c["shim"]] / str(c["type"])),
                        "conf": conf, "pods": [netns.path_of(p) for p in pod_names],
                        "mem_pods": [netns.path_of(p) for p in mem_pods],
                        "cni_path": f"{bins['python']}:{REFERENCE}", "env": env}
                spec_path = Path(tmp) / "spec.json"
                spec_path.write_text(json.dumps(spec))
                proc = netns.run(node, [sys.executable, "-m", "bench.cni", "--runner", str(spec_path)], timeout=600,
                                 env={**os.environ, "PYTHONPATH": str(REPO)})
                result = json.loads(proc.stdout)
                if result.pop("leftover_rules"):
                    print(f"warning: {name} left masquerade rules behind", file=sys.stderr)
                for key, values in result.items():
                    samples[name].setdefault(key, []).extend(values)
                if daemon is not None:
                    daemon_rss[name] = max(daemon_rss.get(name, 0), vm_hwm_kib(daemon.pid))
                    netns.stop(daemon)
                for p in pod_names + mem_pods + [node]:
                    netns.delete(p)
                    box.namespaces.remove(p)
    report: dict[str, Any] = {}
    for name, s in samples.items():
        report[name] = {k: round(statistics.median(v) * 1000, 1) for k, v in s.items() if k != "rss"}
        report[name]["peak_rss_mib"] = round(max(s["rss"] or [0]) / 1024, 1)
        if name in daemon_rss:
            report[name]["daemon_peak_rss_mib"] = round(daemon_rss[name] / 1024, 1)
    return report


def render(report: dict[str, Any], pods: int, rounds: int) -> str:
    ref = report.get("reference bridge + host-local", {})
    lines = [f"{pods} pods x {rounds} rounds, {platform.node() and 'this machine'}: "
             f"{os.cpu_count()} CPUs, kernel {platform.release()}, Python {platform.python_version()}", "",
             "| contender | ADD ms | CHECK ms | DEL ms | repeated DEL ms | peak RSS per call MiB | daemon RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    for name, r in report.items():
        lines.append(f"| {name} | {r['ADD']} | {r['CHECK']} | {r['DEL']} | {r['DEL-again']} | {r['peak_rss_mib']} | "
                     f"{r.get('daemon_peak_rss_mib', '-')} |")
    if ref:
        lines.append("")
        for name, r in report.items():
            if name == "reference bridge + host-local":
                continue
            lines.append(f"- {name}: ADD {r['ADD'] / ref['ADD']:.2f}x, DEL {r['DEL'] / ref['DEL']:.2f}x, "
                         f"CHECK {r['CHECK'] / ref['CHECK']:.2f}x the reference's median (lower is better)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cni")
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-in-process", action="store_true", help="skip the slow daemon-less contender")
    parser.add_argument("--no-python-shim", action="store_true", help="skip the daemon + Python shim contender")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runner", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runner:
        return runner(args.runner)
    if os.geteuid() != 0:
        print("bench.cni needs root (network namespaces)", file=sys.stderr)
        return 2
    contenders = [c for c in CONTENDERS if not (args.no_in_process and "in-process" in c)
                  and not (args.no_python_shim and "Python shim" in c)]
    report = bench(args.pods, args.rounds, contenders)
    print(json.dumps(report, indent=1) if args.json else render(report, args.pods, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
