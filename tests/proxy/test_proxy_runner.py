"""The bounded-frequency sync runner and the healthz/metrics HTTP apps."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

from aiohttp.test_utils import TestClient, TestServer

from proxy.health import ProxierHealth
from proxy.metrics import ProxyMetrics
from proxy.runner import BoundedFrequencyRunner, health_app, metrics_app, split_hostport


async def test_runner_batches_bursts_with_min_interval() -> None:
    runs: list[float] = []
    loop = asyncio.get_running_loop()

    async def fn() -> None:
        runs.append(loop.time())

    r = BoundedFrequencyRunner(fn, min_interval=0.2, max_interval=60, burst=2)
    stop = asyncio.Event()
    task = asyncio.create_task(r.loop(stop))
    for _ in range(20):  # a burst of 20 change notifications over ~0.5 s
        r.run()
        await asyncio.sleep(0.025)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert 2 <= len(runs) <= 6, runs  # burst of 2, then at most one per 0.2 s
    gaps = [b - a for a, b in zip(runs[1:], runs[2:])]
    assert all(g >= 0.15 for g in gaps), gaps


async def test_runner_retries_and_runs_periodically() -> None:
    runs: list[int] = []

    async def fn() -> None:
        runs.append(1)

    r = BoundedFrequencyRunner(fn, min_interval=0.01, max_interval=0.1, burst=2)
    stop = asyncio.Event()
    task = asyncio.create_task(r.loop(stop))
    await asyncio.sleep(0.35)  # no notifications: max_interval drives it
    stop.set()
    await asyncio.wait_for(task, 2)
    assert len(runs) >= 2


async def test_health_and_metrics_apps() -> None:
    health = ProxierHealth(timeout=0.0)
    metrics = ProxyMetrics()
    health.updated(datetime.now(timezone.utc))
    async with TestClient(TestServer(health_app(health, metrics))) as c:
        resp = await c.get("/healthz")
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
        assert set(json.loads(await resp.text())) == {"lastUpdated", "currentTime", "nodeEligible"}
        health.queued_update(datetime(2000, 1, 1, tzinfo=timezone.utc))  # stalled update
        assert (await c.get("/healthz")).status == 503
        assert (await c.get("/livez")).status == 503
    async with TestClient(TestServer(metrics_app(metrics, health))) as c:
        text = await (await c.get("/metrics")).text()
        assert 'kubeproxy_proxy_healthz_total{code="503"} 1' in text
        assert "kubeproxy_sync_proxy_rules_duration_seconds_bucket" in text


def test_split_hostport() -> None:
    assert split_hostport("0.0.0.0:10256", 1) == ("0.0.0.0", 10256)
    assert split_hostport("[::1]:9", 1) == ("::1", 9)


async def test_service_health_check_node_ports() -> None:
    import aiohttp

    from controlplane.model import ObjectRef
    from proxy.healthcheck import ServiceHealthServer
    from tests.conftest import free_port_number

    health = ProxierHealth(timeout=60.0)
    health.updated(datetime.now(timezone.utc))
    srv = ServiceHealthServer(health, bind_host="127.0.0.1")
    ref = ObjectRef("ns", "lb")
    port = free_port_number()
    try:
        await srv.sync({ref: port}, {ref: 0})
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/") as resp:
                assert resp.status == 503
                assert json.loads(await resp.text()) == {"service": {"namespace": "ns", "name": "lb"},
                                                         "localEndpoints": 0, "serviceProxyHealthy": True}
            await srv.sync({ref: port}, {ref: 2})
            async with s.get(f"http://127.0.0.1:{port}/") as resp:
                assert resp.status == 200 and json.loads(await resp.text())["localEndpoints"] == 2
            await srv.sync({}, {})
            assert srv.runners == {}
    finally:
        await srv.close()
