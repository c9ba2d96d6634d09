"""Serve a fixed set of objects from controlplane.client.fake.FakeAPIServer in its own process.

`python -m bench.dns.fakeapi --objects FILE --port P` (FILE from cluster.write_objects); prints
"ready <url>" once listening and serves until SIGTERM. Used by the benchmark, where what is
measured is the DNS server, not the API server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from controlplane.client.fake import FakeAPIServer
from controlplane.resources import ENDPOINTSLICES, NAMESPACES, SERVICES


async def serve(path: str, port: int) -> None:
    data = json.loads(open(path).read())
    api = FakeAPIServer(port)
    for ns in sorted({o["metadata"]["namespace"] for o in data.get("services", [])}):
        api.put(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for obj in data.get("services", []):
        api.put(SERVICES, obj)
    for obj in data.get("endpointslices", []):
        api.put(ENDPOINTSLICES, obj)
    api.history.clear()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with api:
        print(f"ready {api.url}", flush=True)
        await stop.wait()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--objects", required=True)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    asyncio.run(serve(args.objects, args.port))


if __name__ == "__main__":
    main()
