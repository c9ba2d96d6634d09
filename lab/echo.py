"""`python -m lab.echo [PORT]`: the demo's HTTP echo app. Answers every GET with its pod name
(the hostname the agent gives the pod) and the client address; /healthz answers "ok"."""

from __future__ import annotations

import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    server_version = "podnet-echo/1"

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path == "/healthz":
            body = b"ok\n"
        else:
            name = os.environ.get("POD_NAME") or socket.gethostname()
            body = f"{name} {self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    port = int(args[0]) if args else 8080
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    with ThreadingHTTPServer(("0.0.0.0", port), Handler) as srv:
        srv.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
