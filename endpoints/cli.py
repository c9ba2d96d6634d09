"""`podnet endpoints`: run the endpoints / EndpointSlice controller alone against an API server."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from podnet.daemon import add_api_source_args, client_from_args, setup_logging, stop_on_signals
from endpoints.core import DEFAULT_MAX_ENDPOINTS_PER_SLICE, MAX_ENDPOINTS_PER_SLICE_LIMIT


def _per_slice(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= MAX_ENDPOINTS_PER_SLICE_LIMIT:
        raise argparse.ArgumentTypeError(f"{value} is out of range (1..{MAX_ENDPOINTS_PER_SLICE_LIMIT})")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podnet endpoints",
                                description="Keep Endpoints and EndpointSlices of selector Services true.")
    add_api_source_args(p)
    p.add_argument("--max-endpoints-per-slice", type=_per_slice, default=DEFAULT_MAX_ENDPOINTS_PER_SLICE,
                   help=f"endpoints per EndpointSlice (1..{MAX_ENDPOINTS_PER_SLICE_LIMIT}, "
                        f"default {DEFAULT_MAX_ENDPOINTS_PER_SLICE})")
    p.add_argument("--workers", type=_positive, default=1, help="concurrent Service syncs (default 1)")
    p.add_argument("--no-mirroring", dest="mirroring", action="store_false",
                   help="do not mirror hand-written Endpoints of selector-less Services to EndpointSlices")
    p.add_argument("--mirroring-max-endpoints-per-subset", type=_positive, default=1000,
                   help="addresses mirrored per Endpoints subset (default 1000)")
    p.add_argument("--log-level", default=os.environ.get("PODNET_LOG_LEVEL", "INFO"))
    return p


async def _serve(args: argparse.Namespace) -> int:
    from controlplane import errors
    from controlplane.client import KubeConfigError
    from endpoints.controller import run

    try:
        client = client_from_args(args)
    except (errors.APIError, KubeConfigError, OSError) as exc:
        print(f"podnet endpoints: {exc}", file=sys.stderr)
        return 2
    stop = stop_on_signals()
    try:
        await run(client, stop, max_endpoints_per_slice=args.max_endpoints_per_slice, workers=args.workers,
                  mirroring=args.mirroring, mirroring_max_endpoints_per_subset=args.mirroring_max_endpoints_per_subset)
    finally:
        await client.close()
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(str(args.log_level))
    return asyncio.run(_serve(args))
