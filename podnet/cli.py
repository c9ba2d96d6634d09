"""The one `podnet` command: dispatches to each component's own `main(argv)`.

Components are imported lazily so that `podnet cni ...` does not pay for aiohttp and
`podnet dns ...` does not pay for pyroute2.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Sequence

# subcommand -> (module, help). Each module exposes `main(argv: list[str]) -> int`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "controlplane": ("controlplane.cli", "run the API server (Kubernetes JSON API, SQLite storage)"),
    "endpoints": ("endpoints.cli", "run the endpoints / EndpointSlice controller alone"),
    "proxy": ("proxy.cli", "run kube-proxy (iptables mode)"),
    "dns": ("dns.cli", "run the cluster DNS server"),
    "cni": ("cni.cli", "CNI plugin tools (install, ...)"),
    "agent": ("agent.cli", "run the node agent"),
    "lab": ("lab.cli", "multi-node lab clusters in network namespaces"),
    "demo": ("lab.demo", "build a lab, deploy an app, show it working"),
}


def _usage() -> str:
    lines = ["usage: podnet <command> [options]", "", "commands:"]
    for name, (_, help_) in SUBCOMMANDS.items():
        lines.append(f"  {name:<13} {help_}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] == "--version":
        from podnet import __version__

        print(__version__)
        return 0
    entry = SUBCOMMANDS.get(args[0])
    if entry is None:
        print(f"podnet: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(entry[0])
    except ModuleNotFoundError as exc:
        if exc.name and entry[0].startswith(exc.name):
            print(f"podnet: command {args[0]!r} is not available yet", file=sys.stderr)
            return 2
        raise
    run: Callable[[list[str]], int] = getattr(module, "main")
    return int(run(args[1:]) or 0)
