"""Merge patch, JSON patch, strategic merge patch and server-side apply, table-driven."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controlplane import errors
from controlplane.patch import (
    apply_json_patch, apply_merge_patch, apply_server_side, apply_strategic_merge_patch, decode_fields, field_set,
    record_update,
)

# ------------------------------------------------------------------ RFC 7386 (its appendix A examples)

MERGE_CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize("obj,patch,expected", MERGE_CASES)
def test_merge_patch_rfc7386(obj: Any, patch: Any, expected: Any) -> None:
    before = copy.deepcopy(obj)
    assert apply_merge_patch(obj, patch) == expected
    assert obj == before


def test_merge_patch_kubectl_label() -> None:
    pod = {"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "c"}]}}
    out = apply_merge_patch(pod, {"metadata": {"labels": {"b": None, "c": "3"}}})
    assert out["metadata"]["labels"] == {"a": "1", "c": "3"}
    assert out["spec"] == pod["spec"] and out["spec"] is not pod["spec"]


# ------------------------------------------------------------------ RFC 6902

DOC = {"metadata": {"name": "x", "labels": {"a/b": "1", "m~n": "2"}}, "spec": {"ports": [{"port": 80}, {"port": 81}]}}

JSON_PATCH_CASES = [
    ([{"op": "add", "path": "/metadata/labels/c", "value": "3"}], lambda d: d["metadata"]["labels"]["c"] == "3"),
    ([{"op": "add", "path": "/spec/ports/-", "value": {"port": 82}}], lambda d: d["spec"]["ports"][-1]["port"] == 82),
    ([{"op": "add", "path": "/spec/ports/0", "value": {"port": 79}}],
     lambda d: [p["port"] for p in d["spec"]["ports"]] == [79, 80, 81]),
    ([{"op": "remove", "path": "/metadata/labels/a~1b"}], lambda d: "a/b" not in d["metadata"]["labels"]),
    ([{"op": "remove", "path": "/metadata/labels/m~0n"}], lambda d: "m~n" not in d["metadata"]["labels"]),
    ([{"op": "replace", "path": "/spec/ports/1/port", "value": 91}], lambda d: d["spec"]["ports"][1]["port"] == 91),
    ([{"op": "move", "from": "/metadata/labels/a~1b", "path": "/metadata/labels/z"}],
     lambda d: d["metadata"]["labels"].get("z") == "1" and "a/b" not in d["metadata"]["labels"]),
    ([{"op": "copy", "from": "/spec/ports/0", "path": "/spec/ports/-"}],
     lambda d: d["spec"]["ports"] == [{"port": 80}, {"port": 81}, {"port": 80}]),
    ([{"op": "test", "path": "/metadata/name", "value": "x"},
      {"op": "replace", "path": "/metadata/name", "value": "y"}], lambda d: d["metadata"]["name"] == "y"),
    ([{"op": "replace", "path": "", "value": {"a": 1}}], lambda d: d == {"a": 1}),
]


@pytest.mark.parametrize("ops,check", JSON_PATCH_CASES)
def test_json_patch(ops: list[Any], check: Any) -> None:
    before = copy.deepcopy(DOC)
    assert check(apply_json_patch(DOC, ops))
    assert DOC == before


@pytest.mark.parametrize("ops,error,fragment", [
    ([{"op": "test", "path": "/metadata/name", "value": "nope"}], errors.Invalid, "test failed"),
    ([{"op": "remove", "path": "/metadata/nothing"}], errors.Invalid, "nonexistent"),
    ([{"op": "replace", "path": "/spec/missing", "value": 1}], errors.Invalid, "missing"),
    ([{"op": "add", "path": "/spec/ports/7", "value": 1}], errors.Invalid, "out of bounds"),
    ([{"op": "add", "path": "/no/such/path", "value": 1}], errors.Invalid, "missing"),
    ([{"op": "remove", "path": "/spec/ports/x"}], errors.Invalid, "invalid index"),
    ([{"op": "move", "from": "/spec", "path": "/spec/ports/0"}], errors.Invalid, "child"),
    ([{"op": "frob", "path": "/a"}], errors.BadRequest, "Unexpected kind: frob"),
    ([{"op": "add", "value": 1}], errors.BadRequest, "missing 'path'"),
    ([{"op": "add", "path": "/a"}], errors.BadRequest, "missing 'value'"),
    ([{"op": "add", "path": "a", "value": 1}], errors.BadRequest, "must start with '/'"),
    ({"op": "add"}, errors.BadRequest, "list of operations"),
    (["add"], errors.BadRequest, "must be an object"),
])
def test_json_patch_errors(ops: Any, error: type, fragment: str) -> None:
    with pytest.raises(error) as info:
        apply_json_patch(DOC, ops)
    assert fragment in str(info.value)


def test_json_patch_failure_is_atomic() -> None:
    before = copy.deepcopy(DOC)
    with pytest.raises(errors.Invalid):
        apply_json_patch(DOC, [{"op": "add", "path": "/metadata/labels/q", "value": "1"},
                               {"op": "test", "path": "/metadata/name", "value": "other"}])
    assert DOC == before


# ------------------------------------------------------------------ strategic merge patch

SVC = {"metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a.io/x"]},
       "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                          {"name": "metrics", "port": 81, "protocol": "TCP", "targetPort": 81}],
                "externalIPs": ["1.2.3.4", "1.2.3.5"]}}

POD = {"metadata": {"name": "p", "ownerReferences": [{"uid": "u1", "name": "rs", "kind": "ReplicaSet"}]},
       "spec": {"containers": [
           {"name": "app", "image": "nginx:1", "ports": [{"containerPort": 80, "name": "http"}],
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
           {"name": "side", "image": "busybox"}],
           "volumes": [{"name": "data", "emptyDir": {}}],
           "tolerations": [{"key": "a", "operator": "Exists"}]},
       "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}}


def ports(obj: dict[str, Any]) -> list[Any]:
    return [(p["port"], p.get("name")) for p in obj["spec"]["ports"]]


SMP_CASES: list[tuple[str, dict[str, Any], dict[str, Any], Any]] = [
    ("kubectl apply: replace port 81 by 82, keep order",
     SVC, {"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 82}],
                    "ports": [{"name": "m2", "port": 82, "targetPort": 82}, {"$patch": "delete", "port": 81}]}},
     lambda o: ports(o) == [(80, "http"), (82, "m2")]),
    ("the issue's exact patch",
     SVC, {"spec": {"$setElementOrder/ports": [{"port": 82}],
                    "ports": [{"name": "x", "port": 82}, {"$patch": "delete", "port": 81}]}},
     lambda o: ports(o) == [(82, "x"), (80, "http")]),  # upstream mergeSortedSlice: listed items first
    ("merge an existing port by key",
     SVC, {"spec": {"ports": [{"port": 81, "targetPort": 9090}]}},
     lambda o: o["spec"]["ports"][1] == {"name": "metrics", "port": 81, "protocol": "TCP", "targetPort": 9090}),
    ("setElementOrder reorders",
     SVC, {"spec": {"$setElementOrder/ports": [{"port": 81}, {"port": 80}]}},
     lambda o: ports(o) == [(81, "metrics"), (80, "http")]),
    ("null deletes a key in a list item",
     SVC, {"spec": {"ports": [{"port": 80, "name": None}]}},
     lambda o: "name" not in o["spec"]["ports"][0]),
    ("non-merge lists are replaced whole",
     SVC, {"spec": {"externalIPs": ["9.9.9.9"]}},
     lambda o: o["spec"]["externalIPs"] == ["9.9.9.9"]),
    ("maps merge, null deletes",
     SVC, {"metadata": {"labels": {"app": None, "tier": "x"}}, "spec": {"selector": {"tier": "x"}}},
     lambda o: o["metadata"]["labels"] == {"tier": "x"} and o["spec"]["selector"] == {"app": "web", "tier": "x"}),
    ("$patch: replace on a map",
     SVC, {"spec": {"selector": {"$patch": "replace", "only": "this"}}},
     lambda o: o["spec"]["selector"] == {"only": "this"}),
    ("$patch: delete on a map",
     SVC, {"spec": {"selector": {"$patch": "delete"}}},
     lambda o: "selector" not in o["spec"]),
    ("$patch: replace on a list",
     SVC, {"spec": {"ports": [{"$patch": "replace"}, {"port": 90, "name": "only"}]}},
     lambda o: ports(o) == [(90, "only")]),
    ("kubectl apply with the live order kept: server-only item stays in place",
     {"spec": {"ports": [{"port": 1}, {"port": 2}, {"port": 3}]}},
     {"spec": {"$setElementOrder/ports": [{"port": 1}, {"port": 3}], "ports": [{"port": 3, "name": "c"}]}},
     lambda o: [p["port"] for p in o["spec"]["ports"]] == [1, 2, 3]),
    ("merged items keep the live order when the patch agrees",
     {"spec": {"ports": [{"port": 1}, {"port": 2}, {"port": 3}]}},
     {"spec": {"ports": [{"port": 1, "name": "a"}, {"port": 3, "name": "c"}]}},
     lambda o: [p["port"] for p in o["spec"]["ports"]] == [1, 2, 3]),
    ("primitive merge list (finalizers) unions",
     SVC, {"metadata": {"finalizers": ["b.io/y", "a.io/x"]}},
     lambda o: o["metadata"]["finalizers"] == ["b.io/y", "a.io/x"]),  # patch order wins
    ("$deleteFromPrimitiveList",
     SVC, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.io/x"]}},
     lambda o: o["metadata"]["finalizers"] == []),
    ("same port, another protocol is a separate entry",
     {"spec": {"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}},
     {"spec": {"ports": [{"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}},
     lambda o: [(p["port"], p["protocol"], p["name"]) for p in o["spec"]["ports"]]
     == [(53, "TCP", "dns-tcp"), (53, "UDP", "dns")]),
    ("same port, same protocol merges",
     {"spec": {"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "t", "port": 53, "protocol": "TCP"}]}},
     {"spec": {"ports": [{"port": 53, "protocol": "TCP", "targetPort": 5353}]}},
     lambda o: o["spec"]["ports"][1] == {"name": "t", "port": 53, "protocol": "TCP", "targetPort": 5353}),
    ("new list where there was none",
     {"spec": {}}, {"spec": {"ports": [{"port": 1, "$patch": "merge"}, {"$patch": "delete", "port": 2}]}},
     lambda o: o["spec"]["ports"] == [{"port": 1}]),
    ("$retainKeys clears what is not listed",
     {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
     {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
     lambda o: o["spec"]["strategy"] == {"type": "Recreate"}),
]


@pytest.mark.parametrize("title,obj,patch,check", SMP_CASES, ids=[c[0] for c in SMP_CASES])
def test_strategic_merge_service(title: str, obj: dict[str, Any], patch: dict[str, Any], check: Any) -> None:
    before = copy.deepcopy(obj)
    patch_before = copy.deepcopy(patch)
    out = apply_strategic_merge_patch(obj, patch, "Service")
    assert check(out), out
    assert obj == before and patch == patch_before


POD_CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("container image by name (kubectl set image)",
     {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}},
     lambda o: [c["image"] for c in o["spec"]["containers"]] == ["nginx:2", "busybox"]
     and o["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "name": "http"}]),
    ("new container appended",
     {"spec": {"containers": [{"name": "third", "image": "x"}]}},
     lambda o: [c["name"] for c in o["spec"]["containers"]] == ["third", "app", "side"]),  # as upstream
    ("container deleted",
     {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}},
     lambda o: [c["name"] for c in o["spec"]["containers"]] == ["app"]),
    ("env merged by name",
     {"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}]}},
     lambda o: o["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "20"},
                                                     {"name": "C", "value": "3"}]),
    ("container ports merged by containerPort",
     {"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 443, "name": "https"}]}]}},
     lambda o: [p["containerPort"] for p in o["spec"]["containers"][0]["ports"]] == [443, 80]),
    ("volumeMounts by mountPath",
     {"spec": {"containers": [{"name": "app", "volumeMounts": [{"mountPath": "/data", "readOnly": True}]}]}},
     lambda o: o["spec"]["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data",
                                                               "readOnly": True}]),
    ("volumes by name",
     {"spec": {"volumes": [{"name": "cfg", "configMap": {"name": "c"}}]}},
     lambda o: [v["name"] for v in o["spec"]["volumes"]] == ["cfg", "data"]),
    ("volume source replaced with $retainKeys",
     {"spec": {"volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}},
     lambda o: o["spec"]["volumes"] == [{"name": "data", "hostPath": {"path": "/x"}}]),
    ("tolerations replaced whole",
     {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}},
     lambda o: o["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]),
    ("status conditions by type",
     {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
     lambda o: o["status"]["conditions"] == [{"type": "Ready", "status": "True"},
                                             {"type": "PodScheduled", "status": "True"}]),
    ("ownerReferences by uid",
     {"metadata": {"ownerReferences": [{"uid": "u2", "name": "other", "kind": "Job"}]}},
     lambda o: [r["uid"] for r in o["metadata"]["ownerReferences"]] == ["u2", "u1"]),
    ("kubectl apply pod: order containers, drop one",
     {"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
               "containers": [{"name": "side", "image": "busybox:2"}]}},
     lambda o: [(c["name"], c["image"]) for c in o["spec"]["containers"]] == [("side", "busybox:2"),
                                                                             ("app", "nginx:1")]),
]


@pytest.mark.parametrize("title,patch,check", POD_CASES, ids=[c[0] for c in POD_CASES])
def test_strategic_merge_pod(title: str, patch: dict[str, Any], check: Any) -> None:
    before = copy.deepcopy(POD)
    out = apply_strategic_merge_patch(POD, patch, "Pod")
    assert check(out), out
    assert POD == before


def test_strategic_merge_node_and_slices() -> None:
    node = {"spec": {"podCIDRs": ["10.244.1.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                                     {"type": "Hostname", "address": "n1"}],
                       "conditions": [{"type": "Ready", "status": "False"}]}}
    out = apply_strategic_merge_patch(node, {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}],
                                                        "conditions": [{"type": "Ready", "status": "True"}]}},
                                      "Node")
    assert out["status"]["addresses"] == [{"type": "InternalIP", "address": "10.0.0.2"},
                                          {"type": "Hostname", "address": "n1"}]
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
    es = {"endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}
    out = apply_strategic_merge_patch(es, {"endpoints": [{"addresses": ["10.0.0.3"]}]}, "EndpointSlice")
    assert out["endpoints"] == [{"addresses": ["10.0.0.3"]}]
    ep = {"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]}
    out = apply_strategic_merge_patch(ep, {"subsets": [{"addresses": [{"ip": "10.0.0.9"}]}]}, "Endpoints")
    assert out["subsets"] == [{"addresses": [{"ip": "10.0.0.9"}]}]


@pytest.mark.parametrize("patch,fragment", [
    ({"spec": {"ports": [{"name": "no-key"}]}}, "does not contain declared merge key: port"),
    ({"spec": {"$patch": "frobnicate"}}, "unknown patch type"),
    ({"spec": {"ports": ["80"]}}, "must hold objects"),
    ({"spec": {"strategy": {"$retainKeys": ["a"], "b": 1}}}, "not in $retainKeys"),
    ({"$patch": "delete"}, "whole object"),
    (["not", "a", "map"], "must be a JSON object"),
])
def test_strategic_merge_errors(patch: Any, fragment: str) -> None:
    with pytest.raises(errors.BadRequest) as info:
        apply_strategic_merge_patch(SVC, patch, "Service")
    assert fragment in info.value.message


# ------------------------------------------------------------------ server-side apply

APPLIED = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default",
                                                               "labels": {"app": "web"}},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"].update(uid="u-1", resourceVersion="7", creationTimestamp="2026-01-01T00:00:00Z")
    return out


def test_apply_creates_with_managed_fields() -> None:
    out = apply_server_side(None, APPLIED, "Service", "kubectl", False, now="2026-01-01T00:00:00Z")
    mf = out["metadata"]["managedFields"]
    assert len(mf) == 1 and mf[0]["manager"] == "kubectl" and mf[0]["operation"] == "Apply"
    assert mf[0]["fieldsType"] == "FieldsV1" and mf[0]["time"] == "2026-01-01T00:00:00Z"
    fields = mf[0]["fieldsV1"]
    assert fields["f:spec"]["f:ports"]['k:{"port":80,"protocol":"TCP"}'] == {".": {}, "f:name": {}, "f:port": {}}
    assert "f:name" not in fields["f:metadata"]  # identity is stripped, as upstream
    assert out["spec"] == APPLIED["spec"]


def test_apply_updates_keeps_identity_and_removes_dropped_fields() -> None:
    live = stored(apply_server_side(None, APPLIED, "Service", "kubectl", False))
    live["spec"]["clusterIP"] = "10.96.0.10"  # server-set, owned by nobody
    again = copy.deepcopy(APPLIED)
    again["metadata"]["labels"] = {"tier": "front"}  # dropped app label
    again["spec"]["ports"] = [{"name": "https", "port": 443}]  # dropped port 80
    again["metadata"]["uid"] = "forged"
    out = apply_server_side(live, again, "Service", "kubectl", False)
    assert out["metadata"]["uid"] == "u-1" and out["metadata"]["resourceVersion"] == "7"
    assert out["metadata"]["creationTimestamp"] == "2026-01-01T00:00:00Z"
    assert out["metadata"]["labels"] == {"tier": "front"}
    assert [p["port"] for p in out["spec"]["ports"]] == [443]
    assert out["spec"]["clusterIP"] == "10.96.0.10"
    assert [m["manager"] for m in out["metadata"]["managedFields"]] == ["kubectl"]


def test_apply_conflict_and_force() -> None:
    live = stored(apply_server_side(None, APPLIED, "Service", "kubectl", False))
    other = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
             "spec": {"selector": {"app": "other"}}}
    with pytest.raises(errors.Conflict) as info:
        apply_server_side(live, other, "Service", "ci", False)
    assert info.value.code == 409
    assert 'conflict with "kubectl"' in info.value.message and ".spec.selector.app" in info.value.message
    assert info.value.causes[0].reason == "FieldManagerConflict"
    out = apply_server_side(live, other, "Service", "ci", True)
    assert out["spec"]["selector"] == {"app": "other"}
    owners = {m["manager"]: decode_fields(m["fieldsV1"]) for m in out["metadata"]["managedFields"]}
    assert ("f:spec", "f:selector", "f:app") in owners["ci"]
    assert ("f:spec", "f:selector", "f:app") not in owners["kubectl"]
    # same value: shared ownership, no conflict
    same = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}}
    shared = apply_server_side(live, same, "Service", "ci", False)
    assert len(shared["metadata"]["managedFields"]) == 2


def test_apply_shared_field_survives_when_one_manager_drops_it() -> None:
    live = stored(apply_server_side(None, APPLIED, "Service", "kubectl", False))
    same = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}}
    live = apply_server_side(live, same, "Service", "ci", False)
    dropped = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    out = apply_server_side(live, dropped, "Service", "kubectl", False)
    assert out["spec"]["selector"] == {"app": "web"}  # still owned by ci


def test_apply_errors() -> None:
    with pytest.raises(errors.BadRequest):
        apply_server_side(None, APPLIED, "Service", "", False)
    with pytest.raises(errors.BadRequest):
        apply_server_side(None, ["x"], "Service", "m", False)  # type: ignore[arg-type]


def test_record_update_takes_changed_fields() -> None:
    live = stored(apply_server_side(None, APPLIED, "Service", "kubectl", False))
    new = copy.deepcopy(live)
    new["spec"]["selector"]["app"] = "edited"
    out = record_update(live, new, "Service", "kubectl-edit")
    owners = {m["manager"]: decode_fields(m["fieldsV1"]) for m in out["metadata"]["managedFields"]}
    assert owners["kubectl-edit"] == {("f:spec", "f:selector", "f:app")}
    assert ("f:spec", "f:selector", "f:app") not in owners["kubectl"]
    with pytest.raises(errors.Conflict):
        apply_server_side(out, APPLIED, "Service", "kubectl", False)


def test_field_set_for_primitive_and_atomic_lists() -> None:
    fs = field_set({"metadata": {"finalizers": ["a"]}, "spec": {"externalIPs": ["1.2.3.4"]}}, "Service")
    assert ("f:metadata", "f:finalizers", 'v:"a"') in fs
    assert ("f:spec", "f:externalIPs") in fs


def test_kubectl_apply_primitive_list_directives() -> None:
    live = {"metadata": {"finalizers": ["a.io/x", "b.io/y", "c.io/z"]}}
    patch = {"metadata": {"$setElementOrder/finalizers": ["c.io/z", "d.io/w"],
                          "$deleteFromPrimitiveList/finalizers": ["a.io/x"], "finalizers": ["d.io/w"]}}
    out = apply_strategic_merge_patch(live, patch, "Pod")
    assert out["metadata"]["finalizers"] == ["b.io/y", "c.io/z", "d.io/w"]
    node = {"spec": {"podCIDRs": ["10.244.1.0/24"]}}
    out = apply_strategic_merge_patch(node, {"spec": {"podCIDRs": ["fd00:1::/64"]}}, "Node")
    assert out["spec"]["podCIDRs"] == ["fd00:1::/64", "10.244.1.0/24"]


def test_fuzz_only_api_errors_escape() -> None:
    import random

    rng = random.Random(7)
    atoms: list[Any] = [None, 0, 1, "x", "", True, [], {}, ["a"], {"port": 1}, {"$patch": "delete"},
                        {"$patch": "replace"}, {"$patch": "bogus"}, {"name": "c"}, [{"port": 2}], [None], [1, 2]]
    keys = ["spec", "ports", "containers", "metadata", "finalizers", "port", "name", "$patch",
            "$setElementOrder/ports", "$retainKeys", "$deleteFromPrimitiveList/finalizers", "labels", "a"]

    def value(depth: int) -> Any:
        if depth <= 0 or rng.random() < 0.3:
            return copy.deepcopy(rng.choice(atoms))
        if rng.random() < 0.5:
            return [value(depth - 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(keys): value(depth - 1) for _ in range(rng.randint(0, 3))}

    for _ in range(400):
        obj, patch = value(4), value(4)
        for fn in (lambda: apply_merge_patch(obj, patch),
                   lambda: apply_strategic_merge_patch(obj, patch, rng.choice(["Service", "Pod", "Node"])),
                   lambda: apply_json_patch(obj, [{"op": rng.choice(["add", "remove", "replace", "move", "copy",
                                                                     "test"]),
                                                   "path": rng.choice(["", "/spec", "/spec/ports/0", "/a~1b",
                                                                       "/spec/ports/-", "/x/y"]),
                                                   "from": rng.choice(["/spec", "/metadata", "/q"]),
                                                   "value": value(2)}]),
                   lambda: apply_server_side(obj if isinstance(obj, dict) else None,
                                             patch if isinstance(patch, dict) else {"a": patch}, "Service", "m",
                                             rng.random() < 0.5)):
            try:
                fn()
            except errors.APIError:
                pass
