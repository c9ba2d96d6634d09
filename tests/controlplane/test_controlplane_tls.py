"""`podnet controlplane` serving HTTPS (--tls-cert-file/--tls-private-key-file): kubectl through the
written kubeconfig, the official Python client with the CA, and the in-process controllers over TLS."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO, free_port_number

pytestmark = [pytest.mark.kubectl,
              pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("kubectl") is None,
                                 reason="needs openssl and kubectl")]


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem"), "-days", "2", "-subj", "/CN=podnet",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    port = free_port_number()
    log = open(d / "cp.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "podnet", "controlplane", "--listen", f"127.0.0.1:{port}",
                             "--data-dir", str(d / "cp"), "--controllers", "nodeipam",
                             "--tls-cert-file", str(d / "cert.pem"), "--tls-private-key-file", str(d / "key.pem")],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"https://127.0.0.1:{port}"
    ctx = ssl.create_default_context(cafile=str(d / "cert.pem"))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url + "/version", context=ctx, timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, (d / "cp.log").read_text()
                time.sleep(0.1)
        yield url, d / "cp" / "kubeconfig", d / "cert.pem"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def test_kubectl_over_https(tls_server: tuple[str, Path, Path]) -> None:
    url, kubeconfig, _ = tls_server
    assert f"server: {url}" in kubeconfig.read_text() and "certificate-authority-data:" in kubeconfig.read_text()
    out = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "ns", "-o", "name"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "namespace/default" in out.stdout, out.stderr
    with pytest.raises(OSError):  # plain HTTP to the TLS port is refused
        urllib.request.urlopen(url.replace("https", "http") + "/version", timeout=2)


def test_python_client_and_controllers_over_https(tls_server: tuple[str, Path, Path]) -> None:
    from kubernetes import client as k8s

    url, _, cert = tls_server
    cfg = k8s.Configuration(host=url)
    cfg.ssl_ca_cert = str(cert)
    with k8s.ApiClient(cfg) as api:
        core = k8s.CoreV1Api(api)
        core.create_node(k8s.V1Node(metadata=k8s.V1ObjectMeta(name="tls-n1")))
        deadline = time.monotonic() + 20
        while not core.read_node("tls-n1").spec.pod_cidr:  # the nodeipam controller reached us over TLS
            assert time.monotonic() < deadline
            time.sleep(0.1)
        ctx = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(url + "/api/v1/nodes/tls-n1", context=ctx) as resp:
            assert json.loads(resp.read())["spec"]["podCIDR"]
