"""podnet.netns.socket_in / relay: the loopback bridge from the root namespace into a lab."""

import asyncio
import sys
import urllib.request

import pytest

from podnet import netns
from tests.conftest import free_port_number, requires_root

pytestmark = [requires_root, pytest.mark.root]


async def test_relay_reaches_a_server_only_inside_the_namespace(sandbox: netns.Sandbox) -> None:
    ns = sandbox.netns("rl")
    netns.add_addr(ns, "lo", "10.250.9.1/32")
    sandbox.popen(ns, [sys.executable, "-m", "http.server", "--bind", "10.250.9.1", "8089"],
                  stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    port = free_port_number()
    stop = asyncio.Event()
    task = asyncio.create_task(netns.relay("127.0.0.1", port, ns, "10.250.9.1", 8089, stop))
    try:
        def get() -> int:
            for _ in range(100):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                        return int(r.status)
                except OSError:
                    import time
                    time.sleep(0.05)
            return 0
        assert await asyncio.to_thread(get) == 200
    finally:
        stop.set()
        await task
