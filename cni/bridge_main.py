"""`podnet-bridge` entry point: a thin shim that imports only os, sys and _socket.

(`podnet cni install` puts the native twin, cni/shim.c, in front of it when a C compiler is
available; that one falls back to running this module.)

(`socket` and `json` pull in enum/re and cost ~11 ms of the startup budget; this stays at
the interpreter's bare ~9 ms.) It hands the invocation (environment + stdin) to
`podnet cni daemon` over a unix socket -- PODNET_CNI_SOCKET, else the config's
`daemonSocket`, else /run/podnet/cni.sock -- and relays the daemon's answer. When no daemon
listens (or it runs in another network namespace) it does the work in-process
(`cni.plugin`), paying the pyroute2 import. PODNET_CNI_DAEMON=off forces in-process.

Wire format (see cni.daemon):
  request  b"PNCNI1 <len(env)>\\n" + b"\\0".join(b"K=V" ...) + stdin      (then SHUT_WR)
  reply    b"<exit code> <len(stdout)> <len(stderr)>\\n" + stdout + stderr
           or b"FALLBACK <reason>\\n"
"""

import os
import sys

import _socket

DEFAULT_SOCKET = "/run/podnet/cni.sock"
TIMEOUT = 120.0
MAGIC = b"PNCNI1"


def _json_string_field(stdin: bytes, key: bytes) -> str:
    """A top-level string field of the config without importing json (plain values only)."""
    at = stdin.find(b'"' + key + b'"')
    if at < 0:
        return ""
    rest = stdin[at + len(key) + 2:].lstrip()
    if not rest.startswith(b":"):
        return ""
    rest = rest[1:].lstrip()
    if not rest.startswith(b'"'):
        return ""
    end = rest.find(b'"', 1)
    value = rest[1:end] if end > 0 else b""
    return "" if b"\\" in value else value.decode("utf-8", "replace")


def socket_path(env: dict, stdin: bytes) -> str:  # type: ignore[type-arg]
    if env.get(b"PODNET_CNI_DAEMON", b"").lower() in (b"off", b"0", b"false", b"no"):
        return ""
    if env.get(b"PODNET_CNI_SOCKET"):
        return os.fsdecode(env[b"PODNET_CNI_SOCKET"])
    return _json_string_field(stdin, b"daemonSocket") or DEFAULT_SOCKET


def encode_request(env: dict, stdin: bytes) -> bytes:  # type: ignore[type-arg]
    blob = b"\0".join(k + b"=" + v for k, v in env.items())
    return MAGIC + b" " + str(len(blob)).encode() + b"\n" + blob + stdin


def _daemon_lost(stdin: bytes, detail: str) -> tuple[int, bytes, bytes]:
    version = _json_string_field(stdin, b"cniVersion") or "1.1.0"
    detail = detail.replace("\\", "\\\\").replace('"', '\\"')
    out = ('{"cniVersion": "%s", "code": 11, "msg": "podnet cni daemon did not answer", "details": "%s"}'
           % (version, detail))
    return 1, out.encode(), b""


def ask_daemon(path: str, env: dict, stdin: bytes):  # type: ignore[no-untyped-def, type-arg]
    """(code, stdout, stderr) from the daemon, or None when it cannot serve us (then: in-process)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(path)
        except OSError:
            return None
        try:
            sock.sendall(encode_request(env, stdin))
            sock.shutdown(_socket.SHUT_WR)
        except OSError:
            return None
        try:
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError as exc:  # the request may be half done: never silently redo it in-process
            return _daemon_lost(stdin, str(exc))
        data = b"".join(chunks)
        head, sep, body = data.partition(b"\n")
        if head.startswith(b"FALLBACK"):
            return None
        try:
            code, n_out, n_err = (int(x) for x in head.split())
        except ValueError:
            return _daemon_lost(stdin, "malformed reply")
        return code, body[:n_out], body[n_out:n_out + n_err]
    finally:
        sock.close()


def in_process(env: dict, stdin: bytes) -> tuple[int, bytes, bytes]:  # type: ignore[type-arg]
    if sys.flags.no_site:
        import site

        site.main()
    from cni.plugin import run

    code, out = run({os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}, stdin)
    return code, out.encode(), b""


def main() -> int:
    stdin = sys.stdin.buffer.read() if sys.stdin is not None else b""
    env = dict(os.environb)
    path = socket_path(env, stdin)
    reply = ask_daemon(path, env, stdin) if path else None
    code, out, err = reply if reply is not None else in_process(env, stdin)
    if err:
        sys.stderr.buffer.write(err)
        sys.stderr.flush()
    if out:
        sys.stdout.buffer.write(out if out.endswith(b"\n") else out + b"\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
