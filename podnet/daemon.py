"""Start-up plumbing shared by every long-running `podnet` command (controlplane, endpoints, proxy,
dns, agent): the API source flags, the client built from them, logging, and SIGTERM/SIGINT -> stop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import TYPE_CHECKING, AsyncIterator, TypeVar

if TYPE_CHECKING:
    from controlplane.client import Client

T = TypeVar("T")

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


async def queue_items(queue: "asyncio.Queue[T]", stop: asyncio.Event) -> AsyncIterator[T]:
    """The items of a controller's work queue as they arrive, until `stop` is set."""
    stopper = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                return
            yield getter.result()
    finally:
        stopper.cancel()
