"""`podnet controlplane`: the API server process (flags in controlplane/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import fcntl
import ipaddress
import logging
import os
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podnet.daemon import setup_logging, stop_on_signals

log = logging.getLogger("controlplane")


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--listen wants HOST:PORT, got {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise argparse.ArgumentTypeError(f"--listen host must be an IP address, got {host!r}") from None
    return host, int(port)


def parse_port_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi if sep else lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--node-port-range wants LOW-HIGH, got {text!r}") from None
    if not (0 < a <= b < 65536):
        raise argparse.ArgumentTypeError(f"--node-port-range {text!r} is not a valid port range")
    return a, b


def parse_cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a CIDR: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podnet controlplane", description="Kubernetes-compatible API server "
                                "(JSON over HTTP, SQLite storage)")
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 6443), help="HOST:PORT (127.0.0.1:6443)")
    p.add_argument("--data-dir", type=Path, required=True, help="state.db and kubeconfig go here")
    p.add_argument("--service-cidr", type=parse_cidr, default="10.96.0.0/12")
    p.add_argument("--node-port-range", type=parse_port_range, default=(30000, 32767))
    p.add_argument("--controllers", default=None,
                   help='comma-separated subset of endpoints,nodeipam,scheduler ("" = none; default all)')
    p.add_argument("--advertise-address", default=None, help="IP of the kubernetes Endpoints (default: listen host)")
    p.add_argument("--cluster-cidr", type=parse_cidr, default=None, help="pod CIDR for the nodeipam controller")
    p.add_argument("--node-cidr-mask-size", type=int, default=None, help="per-node pod CIDR size (nodeipam)")
    p.add_argument("--history", type=int, default=20_000, help="watch history kept, in events")
    p.add_argument("--bookmark-interval", type=float, default=10.0, help="seconds between watch BOOKMARKs")
    p.add_argument("--tls-cert-file", default=None, help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-private-key-file", default=None, help="the certificate's private key (PEM)")
    p.add_argument("--tls-ca-file", default=None,
                   help="CA written into the kubeconfig (default: the certificate itself, for self-signed ones)")
    p.add_argument("--pod-gc-margin", type=float, default=30.0,
                   help="seconds after a pod's grace period before the server deletes it itself")
    p.add_argument("--log-level", default=os.environ.get("PODNET_LOG_LEVEL", "INFO"))
    return p


def loopback_url(host: str, port: int, scheme: str = "http") -> str:
    ip = ipaddress.ip_address("127.0.0.1" if host in ("localhost", "0.0.0.0") else host)
    if ip.is_unspecified:
        ip = ipaddress.ip_address("::1")
    return f"{scheme}://[{ip}]:{port}" if ip.version == 6 else f"{scheme}://{ip}:{port}"


def public_url(host: str, port: int, scheme: str) -> str:
    if host in ("0.0.0.0", "::"):
        return loopback_url(host, port, scheme)
    return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"


@dataclass(frozen=True)
class TLS:
    """--tls-cert-file/--tls-private-key-file: the server context, the CA the kubeconfig trusts, and
    the context the in-process controllers use on loopback (that CA, no host-name check)."""

    server: ssl.SSLContext
    ca_pem: bytes
    loopback: ssl.SSLContext


def load_tls(args: argparse.Namespace) -> TLS | None:
    if not args.tls_cert_file and not args.tls_private_key_file:
        return None
    if not (args.tls_cert_file and args.tls_private_key_file):
        raise ValueError("--tls-cert-file and --tls-private-key-file go together")
    try:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(args.tls_cert_file, args.tls_private_key_file)
        ca_pem = Path(args.tls_ca_file or args.tls_cert_file).read_bytes()
        loopback = ssl.create_default_context(cadata=ca_pem.decode())
        loopback.check_hostname = False
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ValueError(f"cannot load the TLS certificate/key: {exc}") from None
    return TLS(server, ca_pem, loopback)


def write_kubeconfig(path: Path, url: str, ca_pem: bytes | None = None) -> None:
    ca = f"    certificate-authority-data: {base64.b64encode(ca_pem).decode()}\n" if ca_pem else ""
    text = (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: podnet\n  cluster:\n    server: {url}\n{ca}"
        "contexts:\n- name: podnet\n  context:\n    cluster: podnet\n    user: podnet\n    namespace: default\n"
        "current-context: podnet\n"
        "preferences: {}\n"
        "users:\n- name: podnet\n  user:\n    token: podnet\n"  # any or no token is accepted
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def lock_data_dir(data_dir: Path) -> Any:
    """An exclusive lock on DIR/lock for the life of the process: two servers never share a store."""
    f = open(data_dir / "lock", "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise ValueError(f"{data_dir} is in use by another podnet controlplane") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


async def sweep(registry: Any, stop: asyncio.Event, margin: float, every: float = 5.0) -> None:
    """Finish graceful pod deletions that nobody finished (see Registry.sweep_terminating_pods)."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass
        if stop.is_set():
            return
        try:
            registry.sweep_terminating_pods(margin)
        except Exception:
            log.exception("terminating-pod sweep failed")


def controller_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"service_cidr": args.service_cidr}
    if args.cluster_cidr:
        options["cluster_cidr"] = args.cluster_cidr
    if args.node_cidr_mask_size:
        options["node_cidr_mask_size"] = args.node_cidr_mask_size
    return options


async def serve(args: argparse.Namespace) -> int:
    from controlplane import controllers
    from controlplane.storage import Store

    data_dir: Path = args.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    names = controllers.parse_names(args.controllers)
    lock = lock_data_dir(data_dir)
    try:
        store = Store(data_dir / "state.db", history_capacity=args.history)
        try:
            return await _serve(args, store, names)
        finally:
            await store.stop_writer()
            store.close()
    finally:
        lock.close()


async def _serve(args: argparse.Namespace, store: Any, names: list[str]) -> int:
    from aiohttp import web

    from controlplane import controllers
    from controlplane.bootstrap import bootstrap
    from controlplane.registry import Registry
    from controlplane.server import APIServer
    from controlplane.watch import Hub

    host, port = args.listen
    tls = load_tls(args)
    scheme = "https" if tls else "http"
    hub = Hub(store)
    registry = Registry(store, args.service_cidr, args.node_port_range)
    advertise = args.advertise_address or ("127.0.0.1" if host in ("0.0.0.0", "localhost", "::") else host)
    bootstrap(registry, args.service_cidr, advertise, port)
    # the writer thread holds the GIL only briefly; a short switch interval keeps the event loop from
    # waiting the default 5 ms for it (a convoy that shows in create latency)
    sys.setswitchinterval(0.001)
    store.start_writer()  # group commit from here on
    api = APIServer(registry, hub, bookmark_interval=args.bookmark_interval)
    runner = web.AppRunner(api.app(), handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True, backlog=1024,
                          ssl_context=tls.server if tls else None).start()
        url = loopback_url(host, port, scheme)
        write_kubeconfig(args.data_dir / "kubeconfig", public_url(host, port, scheme), tls.ca_pem if tls else None)
        log.info("podnet controlplane serving on %s:%d (data %s, rv %d)", host, port, args.data_dir, store.rv)
        stop = stop_on_signals()
        client, tasks = await controllers.start(names, url, stop, controller_options(args),
                                                ssl_context=tls.loopback if tls else None)
        sweeper = asyncio.create_task(sweep(registry, stop, args.pod_gc_margin))
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            stop.set()
            await sweeper
            api.stopping.set()
            hub.close_all()
            await controllers.stop_all(client, tasks)
    finally:
        await runner.cleanup()
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(str(args.log_level))
    try:
        return asyncio.run(serve(args))
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot serve: %s", exc)
        return 1
