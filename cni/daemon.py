"""`podnet cni daemon`: the node-local server behind the `podnet-bridge` shim.

It keeps pyroute2 (and the podnet-ipam core) loaded and serves each request on its own
thread. It only serves peers that are root (or its own uid) and that run in the daemon's own
network namespace (checked with SO_PEERCRED and /proc/<pid>/ns/net); anyone else is told
to fall back to in-process work, so a request is never applied to the wrong node namespace.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import sys
import threading
import time
from typing import TextIO

from cni.bridge import DEFAULT_SOCKET
from cni.bridge_main import MAGIC
from cni import ipam_main
from cni.plugin import run
from cni.runner import execute

_UCRED = struct.Struct("3i")
DRAIN_SECONDS = 60.0  # on SIGTERM, in-flight requests get this long to finish (never cut one in half)


class _ThreadStderr(io.TextIOBase):
    """sys.stderr that a request thread can capture (to return it to its shim)."""

    def __init__(self, real: TextIO) -> None:
        self.real = real
        self.local = threading.local()

    def write(self, text: str) -> int:
        buf = getattr(self.local, "buf", None)
        return buf.write(text) if buf is not None else self.real.write(text)

    def flush(self) -> None:
        self.real.flush()


def _netns_id(pid: int | str) -> tuple[int, int]:
    st = os.stat(f"/proc/{pid}/ns/net")
    return st.st_dev, st.st_ino


class Daemon:
    def __init__(self, path: str = DEFAULT_SOCKET, log: TextIO | None = None, verbose: bool = False) -> None:
        self.path = path
        self.verbose = verbose
        self.log = log if log is not None else sys.stderr
        self.own_ns = _netns_id("self")
        self.own_uid = os.geteuid()
        self.stop = threading.Event()
        self.listener: socket.socket | None = None
        self.stderr = _ThreadStderr(sys.stderr)
        self.active: list[threading.Thread] = []
        self.active_lock = threading.Lock()

    def bind(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o755, exist_ok=True)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
            raise SystemExit(f"podnet cni daemon: {self.path} is already served by another daemon")
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        finally:
            probe.close()
        if os.path.exists(self.path):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        sock.listen(128)
        sock.settimeout(0.5)
        self.listener = sock

    def serve(self) -> None:
        assert self.listener is not None
        sys.stderr = self.stderr
        print(f"podnet cni daemon: serving on {self.path}", file=self.log, flush=True)
        try:
            while not self.stop.is_set():
                try:
                    conn, _ = self.listener.accept()
                except socket.timeout:
                    continue
                except OSError:
                    if self.stop.is_set():
                        break
                    raise
                worker = threading.Thread(target=self._serve_one, args=(conn,), daemon=True)
                with self.active_lock:
                    self.active = [t for t in self.active if t.is_alive()] + [worker]
                worker.start()
        finally:
            self.close()  # stop taking requests, then let the ones in flight finish
            with self.active_lock:
                pending = list(self.active)
            deadline = time.monotonic() + DRAIN_SECONDS
            for worker in pending:
                worker.join(max(0.0, deadline - time.monotonic()))
            sys.stderr = self.stderr.real

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def _peer_refusal(self, conn: socket.socket) -> str:
        pid, uid, _ = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        if uid not in (0, self.own_uid):
            return f"uid {uid} not allowed"
        try:
            if _netns_id(pid) != self.own_ns:
                return "caller runs in another network namespace"
        except OSError as exc:
            return f"cannot inspect caller: {exc.strerror}"
        return ""

    def _serve_one(self, conn: socket.socket) -> None:
        started = time.perf_counter()
        what, code = "?", "fallback"
        try:
            conn.settimeout(30)
            refusal = self._peer_refusal(conn)
            data = _read_all(conn)  # read it all even when refusing: closing unread data resets
            if refusal:
                conn.sendall(b"FALLBACK " + refusal.encode() + b"\n")
                return
            env, stdin = decode_request(data)
            what = f"{env.get('CNI_COMMAND', '?')} {env.get('CNI_CONTAINERID', '')}/{env.get('CNI_IFNAME', '')}"
            buf = io.StringIO()
            self.stderr.local.buf = buf
            try:
                if env.get("PODNET_CNI_PLUGIN") == "podnet-ipam":
                    what = "ipam " + what
                    rc, out = execute(ipam_main.handle, env, stdin)
                else:
                    rc, out = run(env, stdin)
            finally:
                self.stderr.local.buf = None
            code = str(rc)
            conn.sendall(encode_reply(rc, out.encode(), buf.getvalue().encode()))
        except (OSError, ValueError) as exc:
            code = f"failed: {exc}"
        finally:
            conn.close()
            took = (time.perf_counter() - started) * 1000
            if self.verbose or code != "0":
                print(f"podnet cni daemon: {what} -> {code} ({took:.1f} ms)", file=self.log, flush=True)


def decode_request(data: bytes) -> tuple[dict[str, str], bytes]:
    """The shim's request (cni.bridge_main.encode_request) -> (environment, stdin)."""
    head, sep, body = data.partition(b"\n")
    magic, _, size = head.partition(b" ")
    if not sep or magic != MAGIC or not size.isdigit():
        raise ValueError("not a podnet-bridge request")
    n = int(size)
    env: dict[str, str] = {}
    for item in body[:n].split(b"\0"):
        key, eq, value = item.partition(b"=")
        if eq:
            env[os.fsdecode(key)] = os.fsdecode(value)
    return env, body[n:]


def encode_reply(code: int, out: bytes, err: bytes) -> bytes:
    return f"{code} {len(out)} {len(err)}\n".encode() + out + err


def _read_all(conn: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
