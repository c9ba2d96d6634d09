"""`podnet lab up|status|exec|kubeconfig|down`: multi-node lab clusters in network namespaces."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podnet lab", description="a multi-node podnet cluster in network namespaces")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, help_ in (("up", "build the lab and start everything"), ("status", "show processes, nodes, pods"),
                        ("exec", "run a command on a node (node-1, hub, client) or in a pod"),
                        ("kubeconfig", "print the path of the lab's kubeconfig"),
                        ("down", "remove everything the lab made (also after a crash)")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--name", default="lab", help="lab name (default lab)")
        if name == "up":
            s.add_argument("--nodes", type=int, default=2, help="number of nodes, 1-9 (default 2)")
            s.add_argument("--no-dns", action="store_true", help="do not deploy cluster DNS")
            s.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for Ready (120)")
            s.add_argument("--cni", choices=["podnet", "reference"], default="podnet",
                           help="podnet-bridge/podnet-ipam (default) or the reference bridge/host-local")
        if name == "exec":
            s.add_argument("-n", "--namespace", default="default", help="pod namespace")
            s.add_argument("target", help="node-N, hub, client, or a POD (or NAMESPACE/POD); options go before it")
            s.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    return p


def main(argv: list[str]) -> int:
    from lab.lab import Lab
    from lab.topology import LabError
    from podnet.netns import NetnsError

    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        print("podnet lab: needs root (network namespaces)", file=sys.stderr)
        return 1
    say = lambda msg: print(f"lab: {msg}", flush=True)  # noqa: E731
    try:
        lab = Lab(args.name, getattr(args, "nodes", 2), log=say)
        if args.cmd == "up":
            lab.up(dns=not args.no_dns, timeout=args.timeout, cni=args.cni)
            print(f"lab {args.name} is up. kubeconfig: {lab.kubeconfig}")
            print(f"  kubectl --kubeconfig {lab.kubeconfig} get nodes -o wide")
            return 0
        if args.cmd == "down":
            removed = lab.down()
            print(f"lab {args.name} is down ({len(removed)} things removed)")
            return 0
        if args.cmd == "kubeconfig":
            if not lab.kubeconfig.exists():
                print(f"podnet lab: lab {args.name!r} is not up", file=sys.stderr)
                return 1
            print(lab.kubeconfig)
            return 0
        if args.cmd == "status":
            print(asyncio.run(lab.status()))
            return 0 if lab.is_up() else 3
        command = [c for c in args.command]
        if command and command[0] == "--":
            command = command[1:]
        if not command:
            print("podnet lab exec: give a command after --", file=sys.stderr)
            return 2
        argv_ = asyncio.run(lab.exec_argv(args.target, command, args.namespace))
        return subprocess.call(argv_)
    except (LabError, NetnsError) as exc:
        print(f"podnet lab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
