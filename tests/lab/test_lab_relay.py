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


def test_create_inproc_makes_a_named_namespace_with_lo_up() -> None:
    import subprocess

    name = netns.unique_name("ptin")
    try:
        assert netns.create_inproc(name) == netns.path_of(name)
        assert name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        link = netns.ip("-o", "link", "show", "lo", netns=name).stdout
        assert "UP" in link and "LOWER_UP" in link
        assert "127.0.0.1/8" in netns.ip("-o", "addr", "show", "lo", netns=name).stdout
        try:
            netns.create_inproc(name)
            raise AssertionError("a second create must fail")
        except FileExistsError:
            pass
    finally:
        netns.delete(name)
    assert not netns.exists(name)
