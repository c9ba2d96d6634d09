"""The client over https: CA data from a kubeconfig, insecure-skip-tls-verify, and failures."""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from controlplane.client import Client, ClientError
from controlplane.client.fake import FakeAPIServer
from controlplane.resources import PODS

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")]


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "tls.crt", d / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=podnet-test", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(crt)], check=True, capture_output=True)
    return crt, key


def kubeconfig(path: Path, url: str, cluster_extra: str) -> Path:
    path.write_text(f"""apiVersion: v1
kind: Config
current-context: c
clusters:
- name: k
  cluster:
    server: {url}
{cluster_extra}
users:
- name: u
  user: {{token: abc}}
contexts:
- name: c
  context: {{cluster: k, user: u}}
""")
    return path


async def test_https_with_ca_and_insecure(cert: tuple[Path, Path], tmp_path: Path) -> None:
    crt, key = cert
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(crt), str(key))
    async with FakeAPIServer(ssl_context=ctx) as fake:
        assert fake.url.startswith("https://")
        ca = base64.b64encode(crt.read_bytes()).decode()
        kc = kubeconfig(tmp_path / "ca", fake.url, f"    certificate-authority-data: {ca}")
        async with Client.from_kubeconfig(kc) as c:
            await c.create(PODS, {"metadata": {"name": "a"}})
        assert fake.requests[-1].headers["Authorization"] == "Bearer abc"
        kc_file = kubeconfig(tmp_path / "cafile", fake.url, f"    certificate-authority: {crt}")
        async with Client.from_kubeconfig(kc_file) as c:
            assert (await c.get(PODS, "a"))["metadata"]["name"] == "a"
        kc2 = kubeconfig(tmp_path / "skip", fake.url, "    insecure-skip-tls-verify: true")
        async with Client.from_kubeconfig(kc2) as c:
            assert (await c.get(PODS, "a"))["metadata"]["name"] == "a"
        kc3 = kubeconfig(tmp_path / "none", fake.url, "")
        async with Client.from_kubeconfig(kc3) as c:
            with pytest.raises(ClientError, match="(?i)certificate"):
                await c.get(PODS, "a")


async def test_client_certificate(cert: tuple[Path, Path], tmp_path: Path) -> None:
    crt, key = cert
    ccrt, ckey = tmp_path / "client.crt", tmp_path / "client.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=admin/O=system:masters", "-keyout", str(ckey), "-out", str(ccrt)],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(crt), str(key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(str(ccrt))
    b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
    async with FakeAPIServer(ssl_context=ctx) as fake:
        kc = tmp_path / "kc"
        kc.write_text(f"""apiVersion: v1
kind: Config
current-context: c
clusters:
- name: k
  cluster: {{server: "{fake.url}", certificate-authority-data: {b64(crt)}}}
users:
- name: u
  user: {{client-certificate: {ccrt}, client-key-data: {b64(ckey)}}}
- name: anon
  user: {{}}
contexts:
- name: c
  context: {{cluster: k, user: u}}
- name: nocert
  context: {{cluster: k, user: anon}}
""")
        async with Client.from_kubeconfig(kc) as c:
            await c.create(PODS, {"metadata": {"name": "a"}})
        async with Client.from_kubeconfig(kc, "nocert") as c:
            with pytest.raises(ClientError):
                await c.get(PODS, "a")
