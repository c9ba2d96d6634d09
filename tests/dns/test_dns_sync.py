"""ViewSync against the in-process FakeAPIServer: the compacting, namespace-by-namespace list,
its fallback, and updates reaching the published view."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Callable

from controlplane.client import Client
from controlplane.client.fake import FakeAPIServer
from controlplane.resources import ENDPOINTSLICES, NAMESPACES, SERVICES
from dns.sync import ViewSync
from dns.view import ClusterView


def _svc(ns: str, name: str, ip: str) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}


async def _until(pred: Callable[[], bool], timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _run(fail_namespaces: bool) -> None:
    async with FakeAPIServer() as api:
        for ns in ("a", "b"):
            api.put(NAMESPACES, {"metadata": {"name": ns}})
        api.put(SERVICES, _svc("a", "web", "10.96.0.1"))
        api.put(SERVICES, _svc("b", "db", "None"))
        api.put(ENDPOINTSLICES, {"metadata": {"name": "db-1", "namespace": "b",
                                              "labels": {"kubernetes.io/service-name": "db"}},
                                 "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.0.4"]}]})
        if fail_namespaces:
            api.fail_next(1, 403, "Forbidden")
        views: list[ClusterView] = []
        async with Client(api.url) as client:
            sync = ViewSync(client, "cluster.local", views.append)
            await sync.start()
            try:
                await _until(lambda: bool(views))
                v = views[-1]
                assert set(v.services) == {("a", "web"), ("b", "db")}
                assert v.service("b", "db").endpoints[0].address == ipaddress.ip_address("10.1.0.4")  # type: ignore
                store = sync.informers[0].list()
                assert all(set(o) == {"metadata", "dns"} for o in store)  # compacted
                api.put(NAMESPACES, {"metadata": {"name": "c"}})
                api.put(SERVICES, _svc("c", "new", "10.96.0.3"))
                api.remove(SERVICES, "a", "web")
                await _until(lambda: ("c", "new") in views[-1].services and ("a", "web") not in views[-1].services)
                assert ipaddress.ip_address("10.96.0.1") not in views[-1].reverse
                assert sync.not_ready() == [] and sync.synced
            finally:
                await sync.stop()


async def test_sync_namespace_by_namespace() -> None:
    await _run(fail_namespaces=False)


async def test_sync_falls_back_when_namespaces_cannot_be_listed() -> None:
    await _run(fail_namespaces=True)
