"""The one network-namespace helper shared by cni, agent, lab, proxy tests and benches.

It drives iproute2 (`ip netns ...`) and runs commands inside namespaces. Everything it
creates through a `Sandbox` is removed by `Sandbox.close()` (also on failure), so tests
and the lab never leave namespaces, links or processes behind. Nothing here touches the
root namespace except creating/removing named namespaces and veth ends that are moved
straight into them.
"""

from __future__ import annotations

import os
import socket
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    import asyncio

NETNS_DIR = Path("/run/netns")


class NetnsError(Exception):
    """A namespace operation failed; the message names the command and its stderr."""


def unique_name(prefix: str = "pn") -> str:
    """A namespace/link-safe unique name (<= 15 chars so it can also name an interface)."""
    return f"{prefix[:8]}-{secrets.token_hex(3)}"


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS` (inside `netns` when given)."""
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def path_of(name: str) -> str:
    return str(NETNS_DIR / name)


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def names() -> list[str]:
    """The named namespaces (`ip netns list`)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def create(name: str) -> str:
    """Create a named namespace with loopback up; returns its path (/run/netns/NAME)."""
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)
    return path_of(name)


def delete(name: str) -> None:
    """Delete a namespace, killing whatever still runs in it. Missing is fine."""
    if not exists(name):
        return
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    ip("netns", "delete", name, check=False)


def run(name: str, argv: Sequence[str], *, check: bool = True, timeout: float | None = 60,
        input: str | None = None, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command inside the namespace and wait for it."""
    full = ["ip", "netns", "exec", name, *argv]
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input,
                          env=dict(env) if env is not None else None)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(full)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def popen(name: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a command inside the namespace (the caller must stop it: see `stop`)."""
    return subprocess.Popen(["ip", "netns", "exec", name, *argv], start_new_session=True, **kwargs)  # type: ignore[call-overload]


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stop a process started by `popen` (its whole process group), by pid."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout)


def add_veth(ns_a: str, if_a: str, ns_b: str, if_b: str, *, mtu: int | None = None) -> None:
    """A veth pair with one end in each namespace (created inside ns_a, never in the root ns)."""
    ip("link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b, netns=ns_a)
    for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
        if mtu:
            ip("link", "set", ifname, "mtu", str(mtu), netns=ns)
        ip("link", "set", ifname, "up", netns=ns)


def add_addr(ns: str, ifname: str, cidr: str) -> None:
    ip("addr", "add", cidr, "dev", ifname, netns=ns)


def add_route(ns: str, dst: str, via: str | None = None, dev: str | None = None) -> None:
    args = ["route", "replace", dst]
    if via:
        args += ["via", via]
    if dev:
        args += ["dev", dev]
    ip(*args, netns=ns)


def sysctl(ns: str, key: str, value: str) -> None:
    """Set a sysctl inside the namespace (per-netns keys such as net.ipv4.ip_forward)."""
    run(ns, ["sysctl", "-qw", f"{key}={value}"])


@dataclass
class Sandbox:
    """Tracks namespaces and processes it made; `close()` removes all of them.

    Use as a context manager or call close() in a finally/fixture teardown.
    """

    prefix: str = "pn"
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def netns(self, hint: str = "") -> str:
        name = unique_name(f"{self.prefix}{hint}")
        create(name)
        self.namespaces.append(name)
        return name

    def popen(self, ns: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc = popen(ns, argv, **kwargs)
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.processes):
            stop(proc)
        self.processes.clear()
        for name in reversed(self.namespaces):
            delete(name)
        self.namespaces.clear()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll `predicate()` until truthy or the timeout passes; returns the last result's truth."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ---------------------------------------------------------------- network-only entry (lab, agent)

def popen_net(name: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a command in the namespace's network only (`nsenter --net`), keeping the root mount
    namespace, so what it does with `ip netns add` (e.g. a node agent creating pod namespaces) is
    visible to everyone. The caller must stop it (see `stop`)."""
    return subprocess.Popen(["nsenter", f"--net={path_of(name)}", *argv], start_new_session=True,  # type: ignore[call-overload]
                            **kwargs)


_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns: {os.strerror(err)}")


def socket_in(name: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket created inside namespace NAME (the calling thread returns to its own namespace).

    Sockets keep the namespace they were created in, so the caller can connect/bind it from the
    root namespace: a loopback relay uses this to reach addresses that only exist in a lab."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path_of(name), os.O_RDONLY)
    try:
        _setns(target)
        try:
            return socket.socket(family, type)
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


async def relay(listen_host: str, listen_port: int, ns: str, upstream_host: str, upstream_port: int,
                stop: asyncio.Event | None = None) -> None:
    """A TCP relay: accept on listen_host:listen_port (this namespace, e.g. 127.0.0.1 in the root
    one) and connect each client to upstream_host:upstream_port from inside namespace `ns`."""
    import asyncio

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                if writer.can_write_eof():
                    writer.write_eof()
            except (OSError, RuntimeError):
                pass

    async def handle(creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        family = socket.AF_INET6 if ":" in upstream_host else socket.AF_INET
        sock = socket_in(ns, family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (upstream_host, upstream_port))
            ureader, uwriter = await asyncio.open_connection(sock=sock)
        except OSError:
            sock.close()
            cwriter.close()
            return
        await asyncio.gather(pipe(creader, uwriter), pipe(ureader, cwriter))
        for w in (uwriter, cwriter):
            w.close()

    server = await asyncio.start_server(handle, listen_host, listen_port, reuse_address=True)
    async with server:
        if stop is None:
            await server.serve_forever()
        else:
            await stop.wait()
