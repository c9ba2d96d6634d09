"""The sync loop (upstream async.BoundedFrequencyRunner) and the healthz / metrics HTTP servers."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Awaitable, Callable

from aiohttp import web

from proxy.health import ProxierHealth, utc_now
from proxy.metrics import Metric, ProxyMetrics

log = logging.getLogger("podnet.proxy")


class BoundedFrequencyRunner:
    """Runs `fn` when asked, at most `burst` times back to back and then once per `min_interval`;
    at least once per `max_interval`; `retry_after` schedules a run after a failure."""

    def __init__(self, fn: Callable[[], Awaitable[object]], min_interval: float, max_interval: float,
                 burst: int = 2) -> None:
        self.fn = fn
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.last_refill = time.monotonic()
        self.wake = asyncio.Event()
        self.retry_at: float | None = None
        self.last_run = time.monotonic()

    def run(self) -> None:
        self.wake.set()

    def retry_after(self, seconds: float) -> None:
        at = time.monotonic() + seconds
        if self.retry_at is None or at < self.retry_at:
            self.retry_at = at

    def _refill(self) -> None:
        now = time.monotonic()
        if self.min_interval <= 0:
            self.tokens = float(self.burst)
        else:
            self.tokens = min(float(self.burst), self.tokens + (now - self.last_refill) / self.min_interval)
        self.last_refill = now

    async def loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = time.monotonic()
            deadline = self.last_run + self.max_interval
            if self.retry_at is not None:
                deadline = min(deadline, self.retry_at)
            if not self.wake.is_set() and now < deadline:
                waiter = asyncio.ensure_future(self.wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, timeout=deadline - now, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                if stop.is_set():
                    return
            self._refill()
            if self.tokens < 1.0:
                await asyncio.sleep((1.0 - self.tokens) * self.min_interval)
                self._refill()
            self.tokens -= 1.0
            self.wake.clear()
            self.retry_at = None
            self.last_run = time.monotonic()
            try:
                await self.fn()
            except Exception:  # never let one bad sync kill the loop
                log.exception("sync raised")
                self.retry_after(self.min_interval or 1.0)


def _probe(check: Callable[[datetime], tuple[int, str]],
           counter: Metric) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A /healthz or /livez handler: the JSON answer of `check`, counted by status code."""
    async def handle(_req: web.Request) -> web.Response:
        code, body = check(utc_now())
        counter.inc(code=str(code))
        return web.Response(status=code, text=body, content_type="application/json",
                            headers={"X-Content-Type-Options": "nosniff"})

    return handle


def health_app(health: ProxierHealth, metrics: ProxyMetrics) -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", _probe(health.healthz, metrics.healthz_total))
    app.router.add_get("/livez", _probe(health.livez, metrics.livez_total))
    return app


def metrics_app(metrics: ProxyMetrics, health: ProxierHealth) -> web.Application:
    async def serve_metrics(_req: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"}, charset="utf-8")

    async def healthz(_req: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    app.router.add_get("/healthz", healthz)
    return app


def split_hostport(value: str, default_port: int) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host:
        return value or "0.0.0.0", default_port
    return host.strip("[]"), int(port or default_port)


async def serve(app: web.Application, bind: str, default_port: int) -> web.AppRunner:
    host, port = split_hostport(bind, default_port)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
