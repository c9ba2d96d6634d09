"""Start-up plumbing shared by every long-running `podnet` command (controlplane, endpoints, proxy,
dns, agent): the API source flags, the client built from them, logging, and SIGTERM/SIGINT -> stop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controlplane.client import Client

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_api_source_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """`--server URL | --kubeconfig FILE`, exactly one (when `required`)."""
    src = parser.add_mutually_exclusive_group(required=required)
    src.add_argument("--server", help="API server URL, e.g. http://127.0.0.1:6443")
    src.add_argument("--kubeconfig", help="kubeconfig file (its current context)")


def client_from_args(args: argparse.Namespace) -> "Client":
    """The shared client for `--server` or `--kubeconfig` (raises KubeConfigError / APIError)."""
    from controlplane.client import Client

    return Client.from_kubeconfig(args.kubeconfig) if args.kubeconfig else Client(args.server)


def setup_logging(level: str | int = "INFO", fmt: str = LOG_FORMAT) -> None:
    if isinstance(level, str):
        level = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=level, format=fmt)


def stop_on_signals(stop: asyncio.Event | None = None) -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call inside the running loop)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
