"""Reading a kubeconfig file (the subset kubectl's own loader honours for server, token and TLS).

`load(path, context)` resolves the context (default: current-context) to a `KubeConfig`:
server URL, bearer token (`token` or `tokenFile`), basic-auth-free TLS settings
(`insecure-skip-tls-verify`, `certificate-authority[-data]`, `client-certificate[-data]`,
`client-key[-data]`) and the context's default namespace.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controlplane import errors


class KubeConfigError(errors.APIError):
    """A kubeconfig that cannot be used; the message names the file and the missing/bad entry."""

    code = 400
    reason = "BadRequest"


@dataclass(frozen=True)
class KubeConfig:
    server: str
    token: str | None = None
    namespace: str = "default"
    insecure_skip_tls_verify: bool = False
    ca_data: bytes | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    tls_server_name: str | None = None

    def ssl_context(self) -> ssl.SSLContext | bool | None:
        """What aiohttp's `ssl=` wants: None for plain http / defaults, False to skip verification."""
        if not self.server.startswith("https"):
            return None
        if self.insecure_skip_tls_verify and not self.cert_data:
            return False
        ctx = ssl.create_default_context(cadata=self.ca_data.decode() if self.ca_data else None)
        if self.insecure_skip_tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_data and self.key_data:
            _load_cert_chain(ctx, self.cert_data, self.key_data)
        return ctx


def _load_cert_chain(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # ssl only loads client certificates from files: write them to a private temp dir briefly.
    with tempfile.TemporaryDirectory(prefix="podnet-kc-") as tmp:
        cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        ctx.load_cert_chain(str(cert_path), str(key_path))


def _named(doc: dict[str, Any], section: str, name: str, path: Path) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(section[:-1]) or {}
            if not isinstance(body, dict):
                raise KubeConfigError(f"{path}: {section[:-1]} {name!r} is not a mapping")
            return body
    raise KubeConfigError(f"{path}: no {section[:-1]} named {name!r}")


def _blob(entry: dict[str, Any], key: str, base: Path, path: Path) -> bytes | None:
    data = entry.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(data)
        except ValueError:
            raise KubeConfigError(f"{path}: {key}-data is not base64") from None
    file = entry.get(key)
    if file:
        target = Path(os.path.expanduser(str(file)))
        target = target if target.is_absolute() else base / target
        try:
            return target.read_bytes()
        except OSError as exc:
            raise KubeConfigError(f"{path}: cannot read {key} {target}: {exc.strerror}") from None
    return None


def default_path() -> Path:
    """kubectl's choice: the first file in $KUBECONFIG, else ~/.kube/config."""
    env = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return Path(os.path.expanduser(env[0] if env else "~/.kube/config"))


def load(path: str | Path, context: str | None = None) -> KubeConfig:
    path = Path(os.path.expanduser(str(path)))
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise KubeConfigError(f"kubeconfig {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise KubeConfigError(f"kubeconfig {path} is not a mapping")
    name = context or doc.get("current-context")
    if not name:
        raise KubeConfigError(f"{path}: no context given and no current-context set")
    ctx = _named(doc, "contexts", str(name), path)
    cluster = _named(doc, "clusters", str(ctx.get("cluster", "")), path)
    user: dict[str, Any] = _named(doc, "users", str(ctx["user"]), path) if ctx.get("user") else {}
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise KubeConfigError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    base = path.parent
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token_bytes = _blob({"tokenFile": user["tokenFile"]}, "tokenFile", base, path)
        token = token_bytes.decode().strip() if token_bytes else None
    return KubeConfig(
        server=server,
        token=str(token) if token else None,
        namespace=str(ctx.get("namespace") or "default"),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        ca_data=_blob(cluster, "certificate-authority", base, path),
        cert_data=_blob(user, "client-certificate", base, path),
        key_data=_blob(user, "client-key", base, path),
        tls_server_name=cluster.get("tls-server-name"),
    )
