"""Shared plugin shell: env + stdin in, (exit code, stdout) out, errors as SPEC.md JSON."""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any, Callable, Mapping

from cni.errors import CNIError, INTERNAL
from cni.spec import NetConf, Request, parse_env, parse_netconf, peek_version, version_reply

# handler(request, config) -> result JSON to print, or None to print nothing
Handler = Callable[[Request, NetConf], "dict[str, Any] | None"]


def execute(handler: Handler, env: Mapping[str, str], stdin: bytes) -> tuple[int, str]:
    """Run one invocation; never raises. Returns (exit code, text for stdout)."""
    version = peek_version(stdin)
    try:
        req = parse_env(env, stdin)
        if req.command == "VERSION":
            return 0, json.dumps(version_reply())
        conf = parse_netconf(stdin, req.command)
        version = conf.cni_version
        out = handler(req, conf)
        return 0, (json.dumps(out, indent=1) if out is not None else "")
    except CNIError as exc:
        return 1, json.dumps(exc.to_json(version))
    except Exception as exc:  # a bug: still answer with a spec error, details on stderr
        traceback.print_exc(file=sys.stderr)
        return 1, json.dumps(CNIError(INTERNAL, f"internal error: {exc}").to_json(version))


def main_with(handler: Handler, env: Mapping[str, str] | None = None) -> int:
    import os

    stdin = b"" if sys.stdin is None or sys.stdin.closed else sys.stdin.buffer.read()
    code, out = execute(handler, os.environ if env is None else env, stdin)
    if out:
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
    return code
