"""The two systems under test, each behind the same small async interface (aiohttp for both):

- PodnetAPI: `podnet controlplane --controllers ""` on a loopback port; objects are Pods in a
  namespace, written with POST / PUT (carrying resourceVersion), listed with GET, watched with
  `?watch=true&resourceVersion=N`.
- EtcdKV: Debian's `etcd` on loopback with a temp data dir, spoken to through its gRPC-gateway
  JSON API the way kube-apiserver's storage layer uses etcd: create = txn(create_revision == 0 ->
  put), update = txn(mod_revision == known -> put), list = range over the prefix, watch = /v3/watch
  from a revision. Values are the JSON objects podnet stored, byte for byte.

Both processes are started here and stopped by pid.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp

REPO = Path(__file__).resolve().parents[2]
OnEvent = Callable[[str, float], None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, method: str = "GET", data: bytes | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, data=data, method=method)
            with urllib.request.urlopen(req, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


class Proc:
    """A child process stopped by pid (SIGTERM, then SIGKILL)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """user + system CPU time the process has used so far (from /proc/PID/stat)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


async def _lines(resp: aiohttp.ClientResponse) -> Any:
    """Newline-delimited JSON objects of a streaming response."""
    async for line in resp.content:
        if line.strip():
            yield json.loads(line), time.perf_counter()


# ------------------------------------------------------------------ podnet

class PodnetAPI:
    name = "podnet"

    def __init__(self, data_dir: Path, profile: Path | None = None, script: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable]
        if profile is not None:
            argv += ["-m", "cProfile", "-o", str(profile)]
        argv += [str(script)] if script is not None else ["-m", "podnet"]  # script: an A/B experiment
        argv += ["controlplane", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(data_dir),
                 "--controllers", ""]
        self.proc = Proc(argv, data_dir.parent / "podnet.log")
        try:
            wait_http(self.url + "/version")
        except RuntimeError:
            self.proc.stop()
            raise
        self.rv: dict[str, str] = {}
        self.stored: dict[str, bytes] = {}
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        for ns in ("bench", "watch"):
            await self.session.post(self.url + "/api/v1/namespaces", json={"metadata": {"name": ns}})

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def stop(self) -> None:
        self.proc.stop()

    def _path(self, ns: str, name: str = "") -> str:
        return f"{self.url}/api/v1/namespaces/{ns}/pods" + (f"/{name}" if name else "")

    async def create(self, name: str, obj: dict[str, Any], ns: str = "bench") -> None:
        assert self.session is not None
        async with self.session.post(self._path(ns), data=json.dumps(obj).encode(),
                                     headers={"Content-Type": "application/json"}) as resp:
            body = await resp.read()
            if resp.status != 201:
                raise RuntimeError(f"podnet create {name}: {resp.status} {body[:300]!r}")
        if ns == "bench":
            self.stored[name] = body
            self.rv[name] = json.loads(body)["metadata"]["resourceVersion"]

    async def update(self, name: str, obj: dict[str, Any]) -> None:
        assert self.session is not None
        obj = dict(obj)
        obj["metadata"] = {**obj["metadata"], "resourceVersion": self.rv[name]}
        async with self.session.put(self._path("bench", name), data=json.dumps(obj).encode(),
                                    headers={"Content-Type": "application/json"}) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"podnet update {name}: {resp.status} {body[:300]!r}")
        self.rv[name] = json.loads(body)["metadata"]["resourceVersion"]

    async def list(self) -> int:
        assert self.session is not None
        async with self.session.get(self._path("bench")) as resp:
            body = await resp.json()
        return len(body["items"])

    async def watch_start(self) -> str:
        assert self.session is not None
        async with self.session.get(self._path("watch")) as resp:
            return str((await resp.json())["metadata"]["resourceVersion"])

    async def watch(self, since: str, ready: Callable[[], None], on_event: OnEvent) -> None:
        assert self.session is not None
        url = self._path("watch") + f"?watch=true&resourceVersion={since}&allowWatchBookmarks=false"
        async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
            ready()
            async for ev, t in _lines(resp):
                if ev.get("type") == "ADDED":
                    on_event(ev["object"]["metadata"]["name"], t)


# ------------------------------------------------------------------ etcd

def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


class EtcdKV:
    name = "etcd"

    def __init__(self, data_dir: Path) -> None:
        binary = shutil.which("etcd")
        if binary is None:
            raise RuntimeError("etcd not found (apt-get install etcd-server)")
        self.port, peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = Proc([binary, "--name", "bench", "--data-dir", str(data_dir),
                          "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                          "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                          "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                          "--initial-cluster", f"bench=http://127.0.0.1:{peer}",
                          "--quota-backend-bytes", str(4 << 30), "--log-level", "warn"],
                         data_dir.parent / "etcd.log")
        try:
            wait_http(self.url + "/v3/kv/range", method="POST", data=json.dumps({"key": _b64("x")}).encode())
        except RuntimeError:
            self.proc.stop()
            raise
        self.rev: dict[str, str] = {}
        self.session: aiohttp.ClientSession | None = None
        self.values: dict[str, bytes] = {}

    async def open(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def stop(self) -> None:
        self.proc.stop()

    @staticmethod
    def _key(ns: str, name: str) -> str:
        return f"/registry/pods/{ns}/{name}"

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.session is not None
        async with self.session.post(self.url + path, data=json.dumps(body).encode()) as resp:
            out: dict[str, Any] = await resp.json(content_type=None)
            if resp.status != 200:
                raise RuntimeError(f"etcd {path}: {resp.status} {out}")
            return out

    async def create(self, name: str, obj: dict[str, Any], ns: str = "bench") -> None:
        key = _b64(self._key(ns, name))
        value = self.values.get(name) or json.dumps(obj).encode()
        out = await self._post("/v3/kv/txn", {
            "compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": key, "value": _b64(value)}}]})
        if not out.get("succeeded"):
            raise RuntimeError(f"etcd create {name}: exists")
        if ns == "bench":
            self.rev[name] = out["header"]["revision"]

    async def update(self, name: str, obj: dict[str, Any]) -> None:
        key = _b64(self._key("bench", name))
        out = await self._post("/v3/kv/txn", {
            "compare": [{"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": self.rev[name]}],
            "success": [{"request_put": {"key": key, "value": _b64(json.dumps(obj).encode())}}]})
        if not out.get("succeeded"):
            raise RuntimeError(f"etcd update {name}: conflict")
        self.rev[name] = out["header"]["revision"]

    async def list(self) -> int:
        prefix = "/registry/pods/bench/"
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        out = await self._post("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(end)})
        for kv in out.get("kvs", []):  # decode like a storage layer would
            json.loads(base64.b64decode(kv["value"]))
        return len(out.get("kvs", []))

    async def watch_start(self) -> str:
        out = await self._post("/v3/kv/range", {"key": _b64("x"), "count_only": True})
        return str(int(out["header"]["revision"]) + 1)

    async def watch(self, since: str, ready: Callable[[], None], on_event: OnEvent) -> None:
        assert self.session is not None
        prefix = "/registry/pods/watch/"
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(end), "start_revision": since}}
        async with self.session.post(self.url + "/v3/watch", data=json.dumps(body).encode(),
                                     timeout=aiohttp.ClientTimeout(total=None)) as resp:
            async for msg, t in _lines(resp):
                result = msg.get("result") or {}
                if result.get("created"):
                    ready()
                for ev in result.get("events") or []:
                    kv = ev["kv"]
                    json.loads(base64.b64decode(kv["value"]))  # decode the object, as a watcher would
                    on_event(base64.b64decode(kv["key"]).decode().rsplit("/", 1)[-1], t)


Backend = PodnetAPI | EtcdKV
Step = Callable[[], Awaitable[None]]
