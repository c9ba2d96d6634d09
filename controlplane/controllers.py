"""In-process controllers: each registered controller is `async def run(client, stop, **options)`,
loaded lazily by "module:function" and run as an asyncio task with a Client pointed at the
server's own loopback URL. A controller module that does not exist yet is skipped with a warning;
one that crashes is restarted with backoff until the server stops.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any, Callable

log = logging.getLogger(__name__)

REGISTERED: dict[str, str] = {
    "endpoints": "endpoints.controller:run",
    "nodeipam": "controlplane.nodeipam:run",
    "scheduler": "controlplane.scheduler:run",
}


def parse_names(text: str | None) -> list[str]:
    """--controllers: None = all registered; "" = none; else a comma-separated subset."""
    if text is None:
        return list(REGISTERED)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in REGISTERED]
    if unknown:
        raise ValueError(f"unknown controller(s) {', '.join(unknown)}; known: {', '.join(REGISTERED)}")
    return names


def load(name: str) -> Callable[..., Any] | None:
    module_name, _, func = REGISTERED[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            log.warning("controller %s: module %s does not exist yet; not started", name, module_name)
            return None
        log.exception("controller %s: cannot import %s; not started", name, module_name)
        return None
    except Exception:  # a broken controller must not take the API server down
        log.exception("controller %s: cannot import %s; not started", name, module_name)
        return None
    run = getattr(module, func, None)
    if run is None:
        log.error("controller %s: %s has no %s(); not started", name, module_name, func)
    return run  # type: ignore[no-any-return]


async def _supervise(name: str, run: Callable[..., Any], client: Any, stop: asyncio.Event,
                     options: dict[str, Any]) -> None:
    delay = 0.5
    while not stop.is_set():
        try:
            await run(client, stop, **options)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("controller %s crashed; restarting in %.1fs", name, delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except asyncio.TimeoutError:
            pass
        delay = min(delay * 2, 30.0)


async def start(names: list[str], url: str, stop: asyncio.Event, options: dict[str, Any], *,
                ssl_context: Any = None) -> tuple[Any, list[asyncio.Task[None]]]:
    """Start the named controllers; returns (client or None, tasks)."""
    runs = [(n, r) for n in names for r in (load(n),) if r is not None]
    if not runs:
        return None, []
    try:
        from controlplane.client import Client
    except ModuleNotFoundError:
        log.warning("controlplane.client does not exist yet; controllers not started")
        return None, []
    client = Client(url, ssl_context=ssl_context) if ssl_context is not None else Client(url)
    tasks = [asyncio.create_task(_supervise(n, r, client, stop, options), name=f"controller-{n}") for n, r in runs]
    log.info("controllers started: %s", ", ".join(n for n, _ in runs))
    return client, tasks


async def stop_all(client: Any, tasks: list[asyncio.Task[None]], timeout: float = 5.0) -> None:
    if tasks:
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    if client is not None:
        await client.close()
