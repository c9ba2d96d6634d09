"""`podnet cni ...`: run the node-local daemon, install the plugins into a CNI bin dir."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_CONF_DIR = "/etc/cni/net.d"
CONFLIST_NAME = "10-podnet.conflist"

SCRIPT = """#!{python} -IS
# {name}: installed by `podnet cni install`; runs {module}.main with {python}
import sys
sys.path.insert(0, {repo!r})
from {module} import main
sys.exit(main())
"""


def example_conflist(subnet: str, bridge: str, socket_path: str) -> dict[str, object]:
    return {
        "cniVersion": "1.1.0",
        "name": "podnet",
        "plugins": [{
            "type": "podnet-bridge",
            "bridge": bridge,
            "isGateway": True,
            "ipMasq": True,
            "hairpinMode": True,
            "daemonSocket": socket_path,
            "ipam": {"type": "podnet-ipam", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]},
        }],
    }


def compile_shim(target: str, python: str) -> str:
    """Build cni/shim.c into `target`; '' on success, else why not (then the Python shim is used)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return "no C compiler"
    source = REPO / "cni" / "shim.c"
    if any(c in f"{python}{REPO}" for c in "\"'\\"):
        return "paths with quotes or backslashes"
    proc = subprocess.run([cc, "-O2", "-Wall", f'-DPYTHON="{python}"', f'-DREPO="{REPO}"', "-o", target,
                           str(source)], capture_output=True, text=True)
    return "" if proc.returncode == 0 else proc.stderr.strip()[-500:]


def install(bin_dir: str, conf_dir: str, subnet: str, bridge: str, socket_path: str, force: bool,
            python: str = sys.executable, shim: str = "auto") -> list[str]:
    """Write the two plugin executables (and the example conflist unless one exists).

    shim: "native" (compile cni/shim.c, fail if impossible), "python", or "auto" (native when
    a C compiler works, else python).
    """
    written = []
    os.makedirs(bin_dir, exist_ok=True)
    native = ""
    for name, module in (("podnet-bridge", "cni.bridge_main"), ("podnet-ipam", "cni.ipam_main")):
        path = os.path.join(bin_dir, name)
        tmp = path + ".tmp"
        why = "not asked"
        if shim in ("auto", "native"):
            if native:  # one binary serves both names
                shutil.copyfile(native, tmp)
                why = ""
            else:
                why = compile_shim(tmp, python)
                native = "" if why else path
            if why and shim == "native":
                raise SystemExit(f"podnet cni install: cannot build the native shim: {why}")
        if why:
            with open(tmp, "w") as f:
                f.write(SCRIPT.format(python=python, name=name, module=module, repo=str(REPO)))
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        written.append(path)
    if conf_dir:
        os.makedirs(conf_dir, exist_ok=True)
        conf = os.path.join(conf_dir, CONFLIST_NAME)
        if force or not os.path.exists(conf):
            with open(conf, "w") as f:
                json.dump(example_conflist(subnet, bridge, socket_path), f, indent=2)
                f.write("\n")
            written.append(conf)
    return written


def run_daemon(socket_path: str, verbose: bool = False) -> int:
    from cni.daemon import Daemon

    daemon = Daemon(socket_path, verbose=verbose)
    daemon.bind()

    def _stop(signum: int, frame: object) -> None:
        daemon.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    daemon.serve()
    return 0


def main(argv: list[str]) -> int:
    from cni.bridge import DEFAULT_SOCKET

    parser = argparse.ArgumentParser(prog="podnet cni", description="podnet CNI plugins (podnet-bridge, podnet-ipam)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("daemon", help="serve podnet-bridge requests from a node-local unix socket")
    d.add_argument("--verbose", action="store_true", help="log every request (default: failures only)")
    d.add_argument("--socket", default=os.environ.get("PODNET_CNI_SOCKET", DEFAULT_SOCKET),
                   help=f"unix socket path (default {DEFAULT_SOCKET})")
    i = sub.add_parser("install", help="write podnet-bridge/podnet-ipam into a CNI bin dir and an example conflist")
    i.add_argument("--bin-dir", default=DEFAULT_BIN_DIR)
    i.add_argument("--conf-dir", default=DEFAULT_CONF_DIR, help="'' to skip the conflist")
    i.add_argument("--subnet", default="10.244.0.0/24", help="pod subnet of the example conflist")
    i.add_argument("--bridge", default="cni0")
    i.add_argument("--socket", default=DEFAULT_SOCKET, help="daemonSocket written into the conflist")
    i.add_argument("--force", action="store_true", help="overwrite an existing conflist")
    i.add_argument("--shim", choices=("auto", "native", "python"), default="auto",
                   help="podnet-bridge front end: native (cni/shim.c, needs cc), python, or auto")
    args = parser.parse_args(argv)
    if args.cmd == "daemon":
        return run_daemon(args.socket, args.verbose)
    for path in install(args.bin_dir, args.conf_dir, args.subnet, args.bridge, args.socket, args.force,
                        shim=args.shim):
        print(f"wrote {path}")
    return 0
