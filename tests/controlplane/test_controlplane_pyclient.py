"""The official `kubernetes` Python client against a live `podnet controlplane`."""

from __future__ import annotations

import threading
import uuid
from typing import Any, Iterator

import pytest

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client as k8s  # noqa: E402
from kubernetes import watch as k8s_watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from tests.conftest import ControlPlane  # noqa: E402


@pytest.fixture(scope="module")
def cp(bare_controlplane: ControlPlane) -> ControlPlane:
    return bare_controlplane


@pytest.fixture(scope="module")
def api(cp: ControlPlane) -> Iterator[k8s.ApiClient]:
    cfg = k8s.Configuration(host=cp.url)
    with k8s.ApiClient(cfg) as c:
        yield c


@pytest.fixture
def ns(api: k8s.ApiClient) -> Iterator[str]:
    name = "py-" + uuid.uuid4().hex[:8]
    k8s.CoreV1Api(api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    k8s.CoreV1Api(api).delete_namespace(name)


def v1pod(name: str, **labels: str) -> k8s.V1Pod:
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=name, labels=labels or None),
                     spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="nginx")]))


def test_namespaces_round_trip(api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    name = "py-ns-" + uuid.uuid4().hex[:6]
    created = core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    assert created.status.phase == "Active" and created.metadata.uid
    assert name in [n.metadata.name for n in core.list_namespace().items]
    patched = core.patch_namespace(name, {"metadata": {"labels": {"team": "a"}}})
    assert patched.metadata.labels["team"] == "a"
    core.delete_namespace(name)
    with pytest.raises(ApiException) as exc:
        core.read_namespace(name)
    assert exc.value.status == 404


def test_pods_create_list_patch_delete(api: k8s.ApiClient, ns: str) -> None:
    core = k8s.CoreV1Api(api)
    p = core.create_namespaced_pod(ns, v1pod("a", app="web"))
    assert p.metadata.resource_version and p.status.phase == "Pending"
    gen = core.create_namespaced_pod(ns, k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(generate_name="gen-"),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="x")])))
    assert gen.metadata.name.startswith("gen-") and len(gen.metadata.name) == 9
    lst = core.list_namespaced_pod(ns, label_selector="app=web")
    assert [i.metadata.name for i in lst.items] == ["a"] and lst.metadata.resource_version
    assert core.list_namespaced_pod(ns, label_selector="app=nothing").items == []
    assert len(core.list_pod_for_all_namespaces(field_selector=f"metadata.namespace={ns}").items) == 2
    core.patch_namespaced_pod("a", ns, {"metadata": {"labels": {"x": "1"}}})
    st = core.patch_namespaced_pod_status("a", ns, {"status": {"phase": "Running", "podIP": "10.244.0.5",
                                                               "podIPs": [{"ip": "10.244.0.5"}]}})
    assert st.status.pod_ip == "10.244.0.5" and st.metadata.labels["x"] == "1"
    assert core.list_namespaced_pod(ns, field_selector="status.phase=Running").items[0].metadata.name == "a"
    body = core.read_namespaced_pod("a", ns)
    body.spec.node_name = None
    replaced = core.replace_namespaced_pod("a", ns, body)
    assert replaced.status.phase == "Running"
    body.metadata.resource_version = "1"
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_pod("a", ns, body)
    assert exc.value.status == 409
    deleted = core.delete_namespaced_pod("a", ns)
    assert deleted.metadata.name == "a"
    with pytest.raises(ApiException) as exc:
        core.delete_namespaced_pod("a", ns)
    assert exc.value.status == 404


def test_pod_binding(api: k8s.ApiClient, ns: str) -> None:
    core = k8s.CoreV1Api(api)
    core.create_namespaced_pod(ns, v1pod("b"))
    binding = k8s.V1Binding(metadata=k8s.V1ObjectMeta(name="b"), target=k8s.V1ObjectReference(kind="Node", name="n1"))
    core.create_namespaced_pod_binding("b", ns, binding, _preload_content=False)
    assert core.read_namespaced_pod("b", ns).spec.node_name == "n1"
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod_binding("b", ns, binding, _preload_content=False)
    assert exc.value.status == 409 and "already assigned to node" in exc.value.body
    core.create_namespaced_pod(ns, v1pod("b2"))
    core.create_namespaced_binding(ns, k8s.V1Binding(metadata=k8s.V1ObjectMeta(name="b2"),
                                                     target=k8s.V1ObjectReference(kind="Node", name="n2")),
                                   _preload_content=False)
    assert core.read_namespaced_pod("b2", ns).spec.node_name == "n2"


def test_services_allocation_and_release(api: k8s.ApiClient, ns: str) -> None:
    core = k8s.CoreV1Api(api)
    svc = k8s.V1Service(metadata=k8s.V1ObjectMeta(name="np"), spec=k8s.V1ServiceSpec(
        type="NodePort", selector={"app": "web"}, ports=[k8s.V1ServicePort(port=80, node_port=30777)]))
    created = core.create_namespaced_service(ns, svc)
    assert created.spec.cluster_ip and created.spec.ports[0].node_port == 30777
    with pytest.raises(ApiException) as exc:
        svc.metadata.name = "np2"
        core.create_namespaced_service(ns, svc)
    assert exc.value.status == 422 and "provided port is already allocated" in exc.value.body
    core.patch_namespaced_service("np", ns, {"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": None}]}})
    again = core.create_namespaced_service(ns, svc)  # 30777 was freed by the type change
    assert again.spec.ports[0].node_port == 30777
    core.delete_namespaced_service("np2", ns)
    svc.metadata.name = "np3"
    assert core.create_namespaced_service(ns, svc).spec.ports[0].node_port == 30777  # freed on delete
    headless = core.create_namespaced_service(ns, k8s.V1Service(
        metadata=k8s.V1ObjectMeta(name="hl"), spec=k8s.V1ServiceSpec(cluster_ip="None", ports=[
            k8s.V1ServicePort(port=53, protocol="UDP")])))
    assert headless.spec.cluster_ip == "None"
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_service("np", ns, {"spec": {"clusterIP": "10.96.0.99", "clusterIPs": ["10.96.0.99"]}})
    assert exc.value.status == 422


def test_endpoints_and_endpointslices(api: k8s.ApiClient, ns: str) -> None:
    core = k8s.CoreV1Api(api)
    disc = k8s.DiscoveryV1Api(api)
    ep = core.create_namespaced_endpoints(ns, k8s.V1Endpoints(
        metadata=k8s.V1ObjectMeta(name="e"), subsets=[k8s.V1EndpointSubset(
            addresses=[k8s.V1EndpointAddress(ip="10.1.0.1")], ports=[k8s.CoreV1EndpointPort(port=80)])]))
    assert ep.subsets[0].addresses[0].ip == "10.1.0.1"
    sl = disc.create_namespaced_endpoint_slice(ns, k8s.V1EndpointSlice(
        metadata=k8s.V1ObjectMeta(name="e-abc", labels={"kubernetes.io/service-name": "e"}), address_type="IPv4",
        endpoints=[k8s.V1Endpoint(addresses=["10.1.0.1"], conditions=k8s.V1EndpointConditions(ready=True))],
        ports=[k8s.DiscoveryV1EndpointPort(port=80, protocol="TCP")]))
    assert sl.endpoints[0].addresses == ["10.1.0.1"]
    lst = disc.list_namespaced_endpoint_slice(ns, label_selector="kubernetes.io/service-name=e")
    assert [i.metadata.name for i in lst.items] == ["e-abc"]
    disc.patch_namespaced_endpoint_slice("e-abc", ns, {"endpoints": [{"addresses": ["10.1.0.2"]}]})
    assert disc.read_namespaced_endpoint_slice("e-abc", ns).endpoints[0].addresses == ["10.1.0.2"]
    assert len(disc.list_endpoint_slice_for_all_namespaces().items) >= 2  # + default/kubernetes
    disc.delete_namespaced_endpoint_slice("e-abc", ns)
    core.delete_namespaced_endpoints("e", ns)
    assert core.list_namespaced_endpoints(ns).items == []


def test_watch_with_timeout(api: k8s.ApiClient, ns: str) -> None:
    core = k8s.CoreV1Api(api)
    core.create_namespaced_pod(ns, v1pod("w0"))
    rv = core.list_namespaced_pod(ns).metadata.resource_version
    seen: list[tuple[str, str]] = []

    def consume() -> None:
        w = k8s_watch.Watch()
        for ev in w.stream(core.list_namespaced_pod, ns, resource_version=rv, timeout_seconds=3):
            seen.append((ev["type"], ev["object"].metadata.name))
            if len(seen) == 3:
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    try:
        import time
        time.sleep(0.3)
        core.create_namespaced_pod(ns, v1pod("w1"))
        core.patch_namespaced_pod("w1", ns, {"metadata": {"labels": {"a": "b"}}})
        core.delete_namespaced_pod("w1", ns)
    finally:
        t.join(10)
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]
    replay: list[Any] = []
    for ev in k8s_watch.Watch().stream(core.list_namespaced_pod, ns, timeout_seconds=1):
        replay.append((ev["type"], ev["object"].metadata.name))
    assert replay == [("ADDED", "w0")]


def test_watch_too_old_is_410(api: k8s.ApiClient, ns: str) -> None:
    core = k8s.CoreV1Api(api)
    resp = core.list_namespaced_pod(ns, watch=True, resource_version="1", timeout_seconds=2,
                                    _preload_content=False)
    # history keeps everything in this short-lived server, so RV 1 is still resumable: no error
    assert b'"ERROR"' not in resp.read()


def test_paged_list(api: k8s.ApiClient, ns: str) -> None:
    core = k8s.CoreV1Api(api)
    for i in range(5):
        core.create_namespaced_pod(ns, v1pod(f"pg{i}"))
    names: list[str] = []
    token = None
    while True:
        page = core.list_namespaced_pod(ns, limit=2, _continue=token)
        names += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"pg{i}" for i in range(5)]


def test_self_subject_access_review(api: k8s.ApiClient) -> None:
    review = k8s.AuthorizationV1Api(api).create_self_subject_access_review(k8s.V1SelfSubjectAccessReview(
        spec=k8s.V1SelfSubjectAccessReviewSpec(resource_attributes=k8s.V1ResourceAttributes(
            verb="list", resource="pods"))))
    assert review.status.allowed is True and review.spec.resource_attributes.resource == "pods"


def test_nodes_round_trip(api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    name = "py-node-" + uuid.uuid4().hex[:6]
    created = core.create_node(k8s.V1Node(metadata=k8s.V1ObjectMeta(name=name, labels={"zone": "a"})))
    assert created.status.node_info.architecture == ""  # required strings are always there
    core.patch_node_status(name, {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
                                             "conditions": [{"type": "Ready", "status": "True"}]}})
    got = core.read_node(name)
    assert got.status.addresses[0].address == "10.0.0.5" and got.status.conditions[0].status == "True"
    assert [n.metadata.name for n in core.list_node(label_selector="zone=a").items] == [name]
    core.delete_node(name)
