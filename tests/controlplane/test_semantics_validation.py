"""Defaulting and validation: kube-apiserver's field paths, reasons and messages, table-driven."""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

from controlplane import errors
from controlplane.validation import (
    default_object, dns1035_label_errors, dns1123_label_errors, dns1123_subdomain_errors, iana_svc_name_errors,
    label_value_errors, qualified_name_errors, validate_object,
)


def causes(kind: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    try:
        validate_object(kind, obj, old)
    except errors.Invalid as exc:
        assert exc.code == 422 and exc.kind == kind
        return [(c.field, c.reason, c.message) for c in exc.causes]
    return []


def svc(**spec: Any) -> dict[str, Any]:
    base = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    base["spec"].update(spec)
    return default_object("Service", base)


def pod(**spec: Any) -> dict[str, Any]:
    base = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    base["spec"].update(spec)
    return default_object("Pod", base)


# ------------------------------------------------------------------ name helpers

@pytest.mark.parametrize("fn,value,ok", [
    (dns1123_label_errors, "my-name", True),
    (dns1123_label_errors, "123-abc", True),
    (dns1123_label_errors, "My-Name", False),
    (dns1123_label_errors, "a.b", False),
    (dns1123_label_errors, "-a", False),
    (dns1123_label_errors, "a" * 64, False),
    (dns1123_subdomain_errors, "example.com", True),
    (dns1123_subdomain_errors, "a..b", False),
    (dns1123_subdomain_errors, "a" * 254, False),
    (dns1035_label_errors, "abc-123", True),
    (dns1035_label_errors, "1abc", False),
    (qualified_name_errors, "app", True),
    (qualified_name_errors, "example.com/My_Name.x", True),
    (qualified_name_errors, "/x", False),
    (qualified_name_errors, "a/", False),
    (qualified_name_errors, "a/b/c", False),
    (qualified_name_errors, "_x", False),
    (label_value_errors, "", True),
    (label_value_errors, "My_value.1", True),
    (label_value_errors, "bad value", False),
    (iana_svc_name_errors, "http", True),
    (iana_svc_name_errors, "h--p", False),
    (iana_svc_name_errors, "80", False),
    (iana_svc_name_errors, "a-very-long-name-x", False),
    (iana_svc_name_errors, "-http", False),
])
def test_name_checks(fn: Callable[[str], list[str]], value: str, ok: bool) -> None:
    assert (fn(value) == []) is ok


# ------------------------------------------------------------------ defaulting

def test_service_defaults() -> None:
    raw = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP",
                                                                          "targetPort": "dns"}]}}
    before = copy.deepcopy(raw)
    out = default_object("Service", raw)
    assert raw == before  # input untouched
    spec = out["spec"]
    assert spec["type"] == "ClusterIP" and spec["sessionAffinity"] == "None"
    assert spec["internalTrafficPolicy"] == "Cluster" and "externalTrafficPolicy" not in spec
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80},
                             {"port": 53, "protocol": "UDP", "targetPort": "dns"}]
    assert spec["ipFamilyPolicy"] == "SingleStack" and "ipFamilies" not in spec  # the allocator knows the family


def test_service_defaults_by_type() -> None:
    np = default_object("Service", {"spec": {"type": "NodePort", "clusterIP": "fd00::5", "ports": [{"port": 1}]}})
    assert np["spec"]["externalTrafficPolicy"] == "Cluster"
    assert np["spec"]["clusterIPs"] == ["fd00::5"] and np["spec"]["ipFamilies"] == ["IPv6"]
    lb = default_object("Service", {"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP"}})
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    assert lb["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    en = default_object("Service", {"spec": {"type": "ExternalName", "externalName": "db.example.com"}})
    assert "internalTrafficPolicy" not in en["spec"] and "ipFamilies" not in en["spec"]
    cips = default_object("Service", {"spec": {"clusterIPs": ["10.96.0.7"]}})
    assert cips["spec"]["clusterIP"] == "10.96.0.7"


def test_pod_defaults() -> None:
    out = default_object("Pod", {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]},
        {"name": "b", "image": "nginx:1.25"}, {"name": "c", "image": "nginx:latest"},
        {"name": "d", "image": "r.io/x@sha256:abc"}]}})
    spec = out["spec"]
    assert (spec["restartPolicy"], spec["dnsPolicy"], spec["terminationGracePeriodSeconds"],
            spec["schedulerName"]) == ("Always", "ClusterFirst", 30, "default-scheduler")
    assert [c["imagePullPolicy"] for c in spec["containers"]] == ["Always", "IfNotPresent", "Always", "IfNotPresent"]
    assert spec["containers"][0]["ports"][0]["protocol"] == "TCP"
    assert spec["containers"][0]["terminationMessagePath"] == "/dev/termination-log"
    assert out["status"]["phase"] == "Pending"


def test_namespace_node_slice_defaults() -> None:
    ns = default_object("Namespace", {"metadata": {"name": "team-a"}})
    assert ns["spec"]["finalizers"] == ["kubernetes"] and ns["status"]["phase"] == "Active"
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "team-a"
    node = default_object("Node", {"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.244.1.0/24"},
                                   "status": {"capacity": {"cpu": "2"}}})
    assert node["spec"]["podCIDRs"] == ["10.244.1.0/24"] and node["status"]["allocatable"] == {"cpu": "2"}
    es = default_object("EndpointSlice", {"ports": [{"port": 80}]})
    assert es["ports"][0]["protocol"] == "TCP"
    ep = default_object("Endpoints", {"subsets": [{"ports": [{"port": 80}]}]})
    assert ep["subsets"][0]["ports"][0]["protocol"] == "TCP"


# ------------------------------------------------------------------ Service

SERVICE_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str, str]]]] = [
    ("valid", svc(), []),
    ("port out of range", svc(ports=[{"port": 70000}]),
     [("spec.ports[0].port", "FieldValueInvalid", "Invalid value: 70000: must be between 1 and 65535, inclusive"),
      ("spec.ports[0].targetPort", "FieldValueInvalid",
       "Invalid value: 70000: must be between 1 and 65535, inclusive")]),
    ("port zero", svc(ports=[{"port": 0, "targetPort": 80}]),
     [("spec.ports[0].port", "FieldValueInvalid", "Invalid value: 0: must be between 1 and 65535, inclusive")]),
    ("names required with several ports", svc(ports=[{"port": 80}, {"port": 81}]),
     [("spec.ports[0].name", "FieldValueRequired", "Required value"),
      ("spec.ports[1].name", "FieldValueRequired", "Required value")]),
    ("duplicate names", svc(ports=[{"port": 80, "name": "http"}, {"port": 81, "name": "http"}]),
     [("spec.ports[1].name", "FieldValueDuplicate", 'Duplicate value: "http"')]),
    ("bad port name", svc(ports=[{"port": 80, "name": "Http"}]),
     [("spec.ports[0].name", "FieldValueInvalid", None)]),
    ("bad protocol", svc(ports=[{"port": 80, "protocol": "ICMP"}]),
     [("spec.ports[0].protocol", "FieldValueNotSupported",
       'Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"')]),
    ("duplicate port+protocol", svc(ports=[{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]),
     [("spec.ports[1]", "FieldValueDuplicate", None)]),
    ("same port two protocols is fine", svc(ports=[{"port": 53, "name": "a", "protocol": "UDP"},
                                                   {"port": 53, "name": "b"}]), []),
    ("named targetPort", svc(ports=[{"port": 80, "targetPort": "http"}]), []),
    ("bad named targetPort", svc(ports=[{"port": 80, "targetPort": "ht--tp"}]),
     [("spec.ports[0].targetPort", "FieldValueInvalid", 'Invalid value: "ht--tp": must not contain consecutive '
                                                        "hyphens")]),
    ("targetPort out of range", svc(ports=[{"port": 80, "targetPort": 65536}]),
     [("spec.ports[0].targetPort", "FieldValueInvalid", None)]),
    ("bad type", svc(type="Magic"),
     [("spec.type", "FieldValueNotSupported",
       'Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"')]),
    ("externalName required", svc(type="ExternalName", ports=[]),
     [("spec.externalName", "FieldValueRequired", "Required value")]),
    ("externalName valid", svc(type="ExternalName", externalName="db.example.com."), []),
    ("externalName with clusterIP", svc(type="ExternalName", externalName="db.example.com", clusterIP="10.96.0.9"),
     [("spec.clusterIPs", "FieldValueForbidden", "Forbidden: may not be set for ExternalName services")]),
    ("headless", svc(clusterIP="None", ports=[]), []),
    ("bad clusterIP", svc(clusterIP="10.96.0.300"),
     [("spec.clusterIPs[0]", "FieldValueInvalid",
       'Invalid value: "10.96.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)')]),
    ("clusterIPs must start with clusterIP", svc(clusterIP="10.96.0.9", clusterIPs=["10.96.0.8"]),
     [("spec.clusterIPs", "FieldValueInvalid", None)]),
    ("headless NodePort", svc(type="NodePort", clusterIP="None"),
     [("spec.clusterIPs[0]", "FieldValueInvalid", """Invalid value: "None": may not be set to 'None' for """
                                                  "NodePort services")]),
    ("nodePort on ClusterIP", svc(ports=[{"port": 80, "nodePort": 30080}]),
     [("spec.ports[0].nodePort", "FieldValueForbidden", "Forbidden: may not be used when `type` is 'ClusterIP'")]),
    ("nodePort on NodePort", svc(type="NodePort", ports=[{"port": 80, "nodePort": 30080}]), []),
    ("duplicate nodePort", svc(type="NodePort", ports=[{"port": 80, "name": "a", "nodePort": 30080},
                                                       {"port": 81, "name": "b", "nodePort": 30080}]),
     [("spec.ports[1].nodePort", "FieldValueDuplicate", "Duplicate value: 30080")]),
    ("ClientIP timeout", svc(sessionAffinity="ClientIP",
                             sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86401}}),
     [("spec.sessionAffinityConfig.clientIP.timeoutSeconds", "FieldValueInvalid",
       "Invalid value: 86401: must be greater than 0 and less than 86400")]),
    ("ClientIP ok", svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86400}}),
     []),
    ("bad sessionAffinity", svc(sessionAffinity="Sticky"),
     [("spec.sessionAffinity", "FieldValueNotSupported", None)]),
    ("externalTrafficPolicy on ClusterIP", svc(externalTrafficPolicy="Local"),
     [("spec.externalTrafficPolicy", "FieldValueInvalid", None)]),
    ("bad internalTrafficPolicy", svc(internalTrafficPolicy="Nearby"),
     [("spec.internalTrafficPolicy", "FieldValueNotSupported", None)]),
    ("ports required", svc(ports=[]), [("spec.ports", "FieldValueRequired", "Required value")]),
    ("bad externalIP", svc(externalIPs=["1.2.3"]), [("spec.externalIPs[0]", "FieldValueInvalid", None)]),
    ("bad selector", svc(selector={"app": "bad value"}), [("spec.selector", "FieldValueInvalid", None)]),
]


@pytest.mark.parametrize("title,obj,expected", SERVICE_CASES, ids=[c[0] for c in SERVICE_CASES])
def test_service_validation(title: str, obj: dict[str, Any], expected: list[tuple[str, str, Any]]) -> None:
    got = causes("Service", obj)
    assert [(f, r) for f, r, _ in got] == [(f, r) for f, r, _ in expected], got
    for (_, _, msg), (_, _, want) in zip(got, expected):
        if want is not None:
            assert msg == want


def test_invalid_status_body_like_upstream() -> None:
    with pytest.raises(errors.Invalid) as info:
        validate_object("Service", svc(ports=[{"port": 80, "nodePort": 30080}]))
    body = info.value.status()
    assert body["reason"] == "Invalid" and body["code"] == 422
    assert body["message"] == ("Service \"web\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used "
                               "when `type` is 'ClusterIP'")
    assert body["details"]["kind"] == "Service" and body["details"]["name"] == "web"
    assert body["details"]["causes"] == [{"reason": "FieldValueForbidden", "field": "spec.ports[0].nodePort",
                                          "message": "Forbidden: may not be used when `type` is 'ClusterIP'"}]


def test_service_update_rules() -> None:
    old = svc(clusterIP="10.96.0.10")
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = new["spec"]["clusterIPs"][0] = "10.96.0.11"
    assert causes("Service", new, old) == [("spec.clusterIP", "FieldValueInvalid",
                                            'Invalid value: "10.96.0.11": field is immutable')]
    kept = copy.deepcopy(old)
    del kept["spec"]["clusterIP"], kept["spec"]["clusterIPs"]
    assert causes("Service", kept, old) == []  # omitted clusterIP keeps the old one, as upstream
    np_old = svc(type="NodePort", clusterIP="10.96.0.10", ports=[{"port": 80, "nodePort": 30080}])
    to_cip = copy.deepcopy(np_old)
    to_cip["spec"]["type"] = "ClusterIP"
    assert causes("Service", to_cip, np_old) == []  # the old nodePort is dropped, not rejected
    to_en = copy.deepcopy(old)
    to_en["spec"].update(type="ExternalName", externalName="x.example.com")
    assert causes("Service", to_en, old) == []
    fresh_en = svc(type="ExternalName", externalName="x.example.com", ipFamilyPolicy="SingleStack")
    assert [(f, r) for f, r, _ in causes("Service", fresh_en)] == [("spec.ipFamilyPolicy", "FieldValueForbidden")]


def test_service_update_with_garbage_ports_is_invalid_not_a_crash() -> None:
    old = svc(type="NodePort", clusterIP="10.96.0.10", ports=[{"port": 80, "nodePort": 30080}])
    for bad_port in ([[]], {"x": 1}):
        new = copy.deepcopy(old)
        new["spec"]["ports"] = [{"port": bad_port, "nodePort": [30080], "protocol": {}}]
        assert causes("Service", new, old), bad_port  # reported as causes, never a TypeError
        garbage_old = copy.deepcopy(old)
        garbage_old["spec"]["type"] = ["NodePort"]
        garbage_old["spec"]["ports"] = [{"port": bad_port, "nodePort": {}}]
        causes("Service", copy.deepcopy(old), garbage_old)


def test_metadata_rules() -> None:
    bad = svc()
    bad["metadata"] = {"name": "Web_1", "namespace": "default", "labels": {"-x": "y", "ok": "bad value"},
                       "annotations": {"a/b/c": "v"}}
    got = causes("Service", bad)
    assert [f for f, _, _ in got] == ["metadata.name", "metadata.labels", "metadata.labels", "metadata.annotations"]
    assert "a DNS-1035 label must consist of" in got[0][2]
    missing = svc()
    missing["metadata"] = {"namespace": "default"}
    assert causes("Service", missing)[0] == ("metadata.name", "FieldValueRequired",
                                            "Required value: name or generateName is required")
    pod_name = pod()
    pod_name["metadata"]["name"] = "web.v1"  # a subdomain is fine for pods
    assert causes("Pod", pod_name) == []
    ns = default_object("Namespace", {"metadata": {"name": "a.b"}})
    assert causes("Namespace", ns)[0][0] == "metadata.name"
    huge = svc()
    huge["metadata"]["annotations"] = {"big": "x" * 300_000}
    assert causes("Service", huge) == [("metadata.annotations", "FieldValueTooLong",
                                        "Too long: must have at most 262144 bytes")]


# ------------------------------------------------------------------ Pod

POD_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("valid", pod(), []),
    ("containers required", pod(containers=[]), [("spec.containers", "FieldValueRequired")]),
    ("container name and image required", pod(containers=[{}]),
     [("spec.containers[0].name", "FieldValueRequired"), ("spec.containers[0].image", "FieldValueRequired")]),
    ("duplicate container names", pod(containers=[{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]),
     [("spec.containers[1].name", "FieldValueDuplicate")]),
    ("init and app containers share the name space",
     pod(initContainers=[{"name": "a", "image": "x"}], containers=[{"name": "a", "image": "y"}]),
     [("spec.containers[0].name", "FieldValueDuplicate")]),
    ("bad container port", pod(containers=[{"name": "a", "image": "x", "ports": [{"containerPort": 0}]}]),
     [("spec.containers[0].ports[0].containerPort", "FieldValueRequired")]),
    ("container port out of range",
     pod(containers=[{"name": "a", "image": "x", "ports": [{"containerPort": 65536, "protocol": "TCP"}]}]),
     [("spec.containers[0].ports[0].containerPort", "FieldValueInvalid")]),
    ("duplicate port names",
     pod(containers=[{"name": "a", "image": "x", "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"},
                                                           {"containerPort": 81, "name": "http",
                                                            "protocol": "TCP"}]}]),
     [("spec.containers[0].ports[1].name", "FieldValueDuplicate")]),
    ("bad restartPolicy", pod(restartPolicy="Sometimes"), [("spec.restartPolicy", "FieldValueNotSupported")]),
    ("bad dnsPolicy", pod(dnsPolicy="Google"), [("spec.dnsPolicy", "FieldValueNotSupported")]),
    ("bad env name", pod(containers=[{"name": "a", "image": "x", "env": [{"name": "1X"}]}]),
     [("spec.containers[0].env[0].name", "FieldValueInvalid")]),
    ("duplicate volumes", pod(volumes=[{"name": "v"}, {"name": "v"}]), [("spec.volumes[1].name",
                                                                        "FieldValueDuplicate")]),
    ("bad podIP", {**pod(), "status": {"phase": "Running", "podIPs": [{"ip": "x"}]}},
     [("status.podIPs[0].ip", "FieldValueInvalid")]),
]


@pytest.mark.parametrize("title,obj,expected", POD_CASES, ids=[c[0] for c in POD_CASES])
def test_pod_validation(title: str, obj: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert [(f, r) for f, r, _ in causes("Pod", obj)] == expected


def test_pod_node_name_immutable() -> None:
    old = pod(nodeName="n1")
    new = pod(nodeName="n2")
    assert causes("Pod", new, old) == [("spec.nodeName", "FieldValueInvalid", 'Invalid value: "n2": field is '
                                                                               "immutable")]
    assert causes("Pod", pod(nodeName="n1"), pod()) == []  # binding sets it once


# ------------------------------------------------------------------ Endpoints, EndpointSlice

def endpoints(subsets: list[Any]) -> dict[str, Any]:
    return default_object("Endpoints", {"metadata": {"name": "web", "namespace": "default"}, "subsets": subsets})


def test_endpoints_validation() -> None:
    ok = endpoints([{"addresses": [{"ip": "10.244.1.5", "nodeName": "n1"}], "notReadyAddresses": [{"ip": "fd00::1"}],
                     "ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}])
    assert causes("Endpoints", ok) == []
    bad = endpoints([{"addresses": [{"ip": "10.244.1.300"}, {"ip": "127.0.0.1"}],
                      "ports": [{"port": 0, "name": "a"}, {"port": 81}]}])
    assert [(f, r) for f, r, _ in causes("Endpoints", bad)] == [
        ("subsets[0].addresses[0].ip", "FieldValueInvalid"),
        ("subsets[0].addresses[1].ip", "FieldValueInvalid"),
        ("subsets[0].ports[0].port", "FieldValueInvalid"),
        ("subsets[0].ports[1].name", "FieldValueRequired"),
    ]
    assert "loopback" in causes("Endpoints", bad)[1][2]


def slice_(address_type: str | None, endpoints_: list[Any], ports: list[Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "web-abc", "namespace": "default"}, "endpoints": endpoints_,
                           "ports": ports or [{"name": "http", "port": 80}]}
    if address_type is not None:
        obj["addressType"] = address_type
    return default_object("EndpointSlice", obj)


SLICE_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("valid v4", slice_("IPv4", [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}, "nodeName": "n1"}]), []),
    ("valid v6", slice_("IPv6", [{"addresses": ["fd00::5"]}]), []),
    ("valid fqdn", slice_("FQDN", [{"addresses": ["db.example.com"]}]), []),
    ("addressType required", slice_(None, []), [("addressType", "FieldValueRequired")]),
    ("addressType unsupported", slice_("IPX", []), [("addressType", "FieldValueNotSupported")]),
    ("v6 address in v4 slice", slice_("IPv4", [{"addresses": ["fd00::5"]}]),
     [("endpoints[0].addresses[0]", "FieldValueInvalid")]),
    ("addresses required", slice_("IPv4", [{"addresses": []}]), [("endpoints[0].addresses", "FieldValueRequired")]),
    ("too many endpoints", slice_("IPv4", [{"addresses": ["10.0.0.1"]}] * 1001), [("endpoints", "FieldValueTooMany")]),
    ("port without number is allowed", slice_("IPv4", [], [{"name": "x"}]), []),
    ("bad port", slice_("IPv4", [], [{"name": "x", "port": 0}]), [("ports[0].port", "FieldValueInvalid")]),
    ("duplicate port names", slice_("IPv4", [], [{"name": "x", "port": 1}, {"name": "x", "port": 2}]),
     [("ports[1].name", "FieldValueDuplicate")]),
]


@pytest.mark.parametrize("title,obj,expected", SLICE_CASES, ids=[c[0] for c in SLICE_CASES])
def test_endpoint_slice_validation(title: str, obj: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert [(f, r) for f, r, _ in causes("EndpointSlice", obj)] == expected


def test_endpoint_slice_error_carries_group() -> None:
    with pytest.raises(errors.Invalid) as info:
        validate_object("EndpointSlice", slice_("nope", []))
    assert info.value.group == "discovery.k8s.io"
    assert info.value.message.startswith('EndpointSlice "web-abc" is invalid: addressType: Unsupported value')


def test_node_and_namespace() -> None:
    node = default_object("Node", {"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.244.1.0/24"]},
                                   "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}})
    assert causes("Node", node) == []
    bad = default_object("Node", {"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.244.1.0/33"],
                                                                        "taints": [{"key": "k", "effect": "Now"}]}})
    assert [(f, r) for f, r, _ in causes("Node", bad)] == [("spec.podCIDRs[0]", "FieldValueInvalid"),
                                                          ("spec.taints[0].effect", "FieldValueNotSupported")]
    changed = copy.deepcopy(node)
    changed["spec"]["podCIDRs"] = ["10.244.2.0/24"]
    assert causes("Node", changed, node)[0][1] == "FieldValueForbidden"
    ns = default_object("Namespace", {"metadata": {"name": "team-a"}})
    assert causes("Namespace", ns) == []
    namespaced_node = copy.deepcopy(node)
    namespaced_node["metadata"]["namespace"] = "default"
    assert causes("Node", namespaced_node)[0][:2] == ("metadata.namespace", "FieldValueForbidden")


def test_unknown_kind_checks_metadata_only() -> None:
    validate_object("ConfigMap", {"metadata": {"name": "x"}, "data": {}})
    with pytest.raises(errors.Invalid):
        validate_object("ConfigMap", {"metadata": {"name": "X"}})


def test_garbage_never_raises_python_errors() -> None:
    for kind in ("Service", "Pod", "Endpoints", "EndpointSlice", "Node", "Namespace"):
        for obj in ({}, {"metadata": None, "spec": "x"}, {"metadata": {"name": 5}, "spec": {"ports": "x"}},
                    {"metadata": {"name": "a", "namespace": "b", "labels": "x"}, "spec": {"containers": [1]},
                     "subsets": [1], "endpoints": [None], "ports": [5]}):
            defaulted = default_object(kind, obj)
            try:
                validate_object(kind, defaulted)
            except errors.Invalid:
                pass


def test_pod_spec_mostly_immutable() -> None:
    old = pod(nodeName="n1", tolerations=[{"key": "a", "operator": "Exists"}])
    image = copy.deepcopy(old)
    image["spec"]["containers"][0]["image"] = "nginx:2"
    image["spec"]["tolerations"].append({"key": "b", "operator": "Exists"})
    image["spec"]["activeDeadlineSeconds"] = 30
    assert causes("Pod", image, old) == []
    env = copy.deepcopy(old)
    env["spec"]["containers"][0]["env"] = [{"name": "X", "value": "1"}]
    got = causes("Pod", env, old)
    assert [(f, r) for f, r, _ in got] == [("spec", "FieldValueForbidden")]
    assert "pod updates may not change fields other than `spec.containers[*].image`" in got[0][2]
    assert "spec.containers[0].env" in got[0][2]
    more = copy.deepcopy(old)
    more["spec"]["containers"].append({"name": "d", "image": "x"})
    assert causes("Pod", default_object("Pod", more), old)[0][:2] == ("spec.containers", "FieldValueForbidden")
    fewer_tol = copy.deepcopy(old)
    fewer_tol["spec"]["tolerations"] = []
    assert causes("Pod", fewer_tol, old)[0][:2] == ("spec", "FieldValueForbidden")
    unbound = pod()
    bound = copy.deepcopy(unbound)
    bound["spec"]["nodeName"] = "n1"  # the binding sets the node once
    assert causes("Pod", bound, unbound) == []
    labels = copy.deepcopy(old)
    labels["metadata"]["labels"] = {"a": "b"}
    assert causes("Pod", labels, old) == []


def test_fuzz_semantics_never_raise_python_errors() -> None:
    import random

    from controlplane.allocators import RangeFull, ServiceAllocator
    from controlplane.resources import ALL, PODS
    from controlplane.selectors import parse_field_selector, parse_label_selector
    from controlplane.table import render_table

    rng = random.Random(11)
    atoms: list[Any] = [None, 0, -1, 70000, "x", "", "None", "10.96.0.5", "fd00::1", True, [], {}, 30080, "TCP",
                        "NodePort", "LoadBalancer", "ExternalName", "ClientIP", "Local", [{"port": 80}], "2026"]
    keys = ["metadata", "spec", "status", "name", "namespace", "labels", "ports", "port", "nodePort", "type",
            "clusterIP", "clusterIPs", "containers", "image", "subsets", "addresses", "ip", "endpoints",
            "addressType", "sessionAffinity", "sessionAffinityConfig", "targetPort", "protocol", "selector",
            "creationTimestamp", "conditions", "podCIDRs", "ipFamilies", "ipFamilyPolicy", "healthCheckNodePort"]

    def value(depth: int) -> Any:
        if depth <= 0 or rng.random() < 0.3:
            return copy.deepcopy(rng.choice(atoms))
        if rng.random() < 0.4:
            return [value(depth - 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(keys): value(depth - 1) for _ in range(rng.randint(0, 4))}

    alloc = ServiceAllocator("10.96.0.0/24")
    for _ in range(600):
        kind = rng.choice(["Service", "Pod", "Endpoints", "EndpointSlice", "Node", "Namespace"])
        obj = value(4)
        if not isinstance(obj, dict):
            obj = {"spec": obj}
        old = value(3) if rng.random() < 0.5 else None
        try:
            defaulted = default_object(kind, obj)
            validate_object(kind, defaulted, old if isinstance(old, dict) else None)
        except errors.APIError:
            pass
        try:
            alloc.plan(default_object("Service", obj), old if isinstance(old, dict) else None)
        except (errors.APIError, RangeFull):
            pass
        render_table(rng.choice(ALL), [obj], "1")
        text = "".join(rng.choice("ab=!,() in notin x.y/z-_ 1<>\\") for _ in range(rng.randint(0, 12)))
        for parse in (parse_label_selector, lambda t: parse_field_selector(t, PODS)):
            try:
                parse(text)
            except errors.APIError:
                pass
