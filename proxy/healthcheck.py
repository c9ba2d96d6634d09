"""Per-Service health check node ports (upstream pkg/proxy/healthcheck/service_health.go).

For each `type: LoadBalancer, externalTrafficPolicy: Local` Service, an HTTP server on its
healthCheckNodePort answers 200 when this node has local ready endpoints (and the proxy is
healthy), else 503, so load balancers only send traffic to nodes that can serve it.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Mapping

from aiohttp import web

from controlplane.model import ObjectRef
from proxy.health import ProxierHealth

log = logging.getLogger("podnet.proxy")


def health_body(ref: ObjectRef, local_endpoints: int, proxy_healthy: bool) -> tuple[int, str]:
    body = {"service": {"namespace": ref.namespace, "name": ref.name}, "localEndpoints": local_endpoints,
            "serviceProxyHealthy": proxy_healthy}
    return (200 if local_endpoints > 0 and proxy_healthy else 503), json.dumps(body)


class ServiceHealthServer:
    def __init__(self, health: ProxierHealth, bind_host: str = "0.0.0.0") -> None:
        self.health = health
        self.bind_host = bind_host
        self.local: dict[ObjectRef, int] = {}
        self.runners: dict[int, web.AppRunner] = {}
        self.opened: dict[int, ObjectRef] = {}

    def _app(self, ref: ObjectRef) -> web.Application:
        async def handle(_req: web.Request) -> web.Response:
            healthy = self.health.healthy(datetime.now(timezone.utc))
            code, body = health_body(ref, self.local.get(ref, 0), healthy)
            return web.Response(status=code, text=body, content_type="application/json",
                                headers={"X-Content-Type-Options": "nosniff", "X-Load-Balancing-Endpoint-Weight":
                                         str(self.local.get(ref, 0))})

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        return app

    async def sync(self, ports: Mapping[ObjectRef, int], local_endpoints: Mapping[ObjectRef, int]) -> None:
        """Open servers for new health check ports, close the ones no longer wanted."""
        self.local = dict(local_endpoints)
        wanted = {port: ref for ref, port in ports.items()}
        for port in list(self.runners):
            if wanted.get(port) != self.opened.get(port):
                self.opened.pop(port, None)
                await self.runners.pop(port).cleanup()
        for port, ref in wanted.items():
            if port in self.runners:
                continue
            runner = web.AppRunner(self._app(ref), access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, self.bind_host, port).start()
            except OSError as exc:
                log.error("cannot open health check node port %d for %s: %s", port, ref, exc)
                await runner.cleanup()
                continue
            self.runners[port] = runner
            self.opened[port] = ref

    async def close(self) -> None:
        for runner in self.runners.values():
            await runner.cleanup()
        self.runners.clear()
        self.opened.clear()
