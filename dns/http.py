"""A minimal HTTP/1.1 responder for /health, /ready and /metrics (GET/HEAD, no keep-alive).

Plain asyncio streams keep the DNS process small; the routes are a dict of path ->
callable returning (status, body, content type).
"""

from __future__ import annotations

import asyncio
from typing import Callable

Route = Callable[[], tuple[int, str, str]]
REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def split_hostport(value: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """'127.0.0.1:53' / ':8080' / '[::1]:53' / '5353' -> (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
    elif ":" in value:
        host, _, port = value.rpartition(":")
    else:
        host, port = "", value
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad listen address {value!r}: want HOST:PORT")
    return host or default_host, int(port)


async def _handle(routes: dict[str, Route], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        path = target.split("?", 1)[0]
        route = routes.get(path)
        if route is None:
            status, body, ctype = 404, "404 page not found\n", "text/plain"
        elif method not in ("GET", "HEAD"):
            status, body, ctype = 405, "method not allowed\n", "text/plain"
        else:
            status, body, ctype = route()
        raw = body.encode()
        writer.write((f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                      f"Content-Length: {len(raw)}\r\nConnection: close\r\n\r\n").encode()
                     + (b"" if method == "HEAD" else raw))
        await writer.drain()
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
            ConnectionError):
        pass
    finally:
        writer.close()


async def serve(listen: str, routes: dict[str, Route]) -> asyncio.Server:
    host, port = split_hostport(listen)
    return await asyncio.start_server(lambda r, w: _handle(routes, r, w), host, port, reuse_address=True)
