"""Probe execution (the shell): httpGet and tcpSocket from the node to the pod IP, exec in the pod.

kubelet probes from the node's network namespace; the agent runs there, so a plain connect to
the pod IP is what kubelet does. Each function returns (ok, message).
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from agent.spec import AgentError, Container, Probe, ProbeKind, resolve_port


async def run_probe(probe: Probe, container: Container, pod_ip: str, exec_argv: Sequence[str],
                    env: dict[str, str]) -> tuple[bool, str]:
    try:
        if probe.kind is ProbeKind.EXEC:
            return await _exec(list(exec_argv), env, probe.timeout)
        port = resolve_port(probe.port, container)
        host = probe.host or pod_ip
        if probe.kind is ProbeKind.TCP_SOCKET:
            return await _tcp(host, port, probe.timeout)
        return await _http(host, port, probe, probe.timeout)
    except AgentError as exc:
        return False, str(exc)


async def _tcp(host: str, port: int, timeout: float) -> tuple[bool, str]:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return False, f"dial tcp {host}:{port}: {exc or 'timeout'}"
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True, ""


async def _http(host: str, port: int, probe: Probe, timeout: float) -> tuple[bool, str]:
    if probe.scheme.upper() == "HTTPS":
        return False, "HTTPS probes are not supported by podnet"
    url = f"http://{host}:{port}{probe.path}"
    headers = {"Host": f"{host}:{port}", "User-Agent": "kube-probe/1.32", "Accept": "*/*",
               "Connection": "close", **dict(probe.headers)}
    request = f"GET {probe.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"

    async def go() -> tuple[bool, str]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request.encode())
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
        parts = line.decode(errors="replace").split()
        if len(parts) < 2 or not parts[1].isdigit():
            return False, f"GET {url}: malformed status line {line[:80]!r}"
        code = int(parts[1])
        return (200 <= code < 400), f"HTTP probe failed with statuscode: {code}"

    try:
        return await asyncio.wait_for(go(), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return False, f"Get {url}: {exc or 'context deadline exceeded'}"


async def _exec(argv: list[str], env: dict[str, str], timeout: float) -> tuple[bool, str]:
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return False, f"command timed out after {timeout:g}s"
    return proc.returncode == 0, out.decode(errors="replace")[-200:]
