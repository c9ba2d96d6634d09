"""`python -m lab.relay --listen 127.0.0.1:PORT --netns NS --upstream HOST:PORT`: the lab's only
root-namespace piece, a loopback TCP relay whose upstream sockets are created inside NS
(podnet.netns.relay), so kubectl in the root namespace reaches the lab's control plane."""

from __future__ import annotations

import argparse
import asyncio
import signal


def main(argv: list[str] | None = None) -> int:
    from podnet import netns

    p = argparse.ArgumentParser(prog="python -m lab.relay")
    p.add_argument("--listen", required=True)
    p.add_argument("--netns", required=True)
    p.add_argument("--upstream", required=True)
    args = p.parse_args(argv)
    lhost, _, lport = args.listen.rpartition(":")
    uhost, _, uport = args.upstream.rpartition(":")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await netns.relay(lhost, int(lport), args.netns, uhost, int(uport), stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
