"""Node IPAM controller shell against the client's fake API server."""

import asyncio

from controlplane import nodeipam
from controlplane.client import Client
from controlplane.client.fake import FakeAPIServer
from controlplane.resources import NODES


def node(name: str, cidr: str = "") -> dict:
    spec = {"podCIDR": cidr, "podCIDRs": [cidr]} if cidr else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec}


async def wait_cidr(client: Client, name: str) -> str:
    for _ in range(100):
        obj = await client.get(NODES, name)
        if (obj.get("spec") or {}).get("podCIDR"):
            return str(obj["spec"]["podCIDR"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} got no podCIDR")


async def test_assigns_rebuilds_and_releases() -> None:
    async with FakeAPIServer() as fake:
        fake.put(NODES, node("old", "10.244.0.0/24"))
        fake.put(NODES, node("n1"))
        client = Client(fake.url)
        stop = asyncio.Event()
        task = asyncio.create_task(nodeipam.run(client, stop, cluster_cidr="10.244.0.0/16"))
        try:
            assert await wait_cidr(client, "n1") == "10.244.1.0/24"
            await client.create(NODES, node("n2"))
            assert await wait_cidr(client, "n2") == "10.244.2.0/24"
            got = await client.get(NODES, "n2")
            assert got["spec"]["podCIDRs"] == ["10.244.2.0/24"]
            await client.delete(NODES, "old")
            await asyncio.sleep(0.2)
            for i in range(3, 256):  # fill the rest: the released block comes back last
                await client.create(NODES, node(f"x{i}"))
            await client.create(NODES, node("last"))
            assert await wait_cidr(client, "last") == "10.244.0.0/24"
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await client.close()
