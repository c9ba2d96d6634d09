"""Agent pure cores: lifecycle decisions, phases, probes, status, resolv.conf, routes, spec parsing."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from agent import core
from agent.core import ContainerState, Step, Termination
from agent.spec import AgentError, ProbeKind, RestartPolicy, expand, parse_pod_spec, resolve_port
from controlplane.model import Node, parse_service


def raw_pod(policy: str = "Always", **container: Any) -> dict[str, Any]:
    c = {"name": "main", "image": "x", "command": ["sleep", "9"], **container}
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "a"}},
            "spec": {"nodeName": "n1", "restartPolicy": policy, "containers": [c]}}


def exited(code: int, restarts: int = 0, at: float = 100.0) -> ContainerState:
    return ContainerState("main", False, 0, 50.0, restarts, Termination(code, core.termination_reason(code), 50.0, at))


@pytest.mark.parametrize("policy,code,restart", [
    ("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False), ("OnFailure", 2, True),
    ("Never", 0, False), ("Never", 1, False)])
def test_should_restart(policy: str, code: int, restart: bool) -> None:
    assert core.should_restart(RestartPolicy(policy), code) is restart


def test_container_decisions_and_backoff() -> None:
    always = RestartPolicy.ALWAYS
    assert core.container_decision(always, None, 0).step is Step.START
    running = ContainerState("main", True, 10, 1.0)
    assert core.container_decision(always, running, 5).step is Step.NOTHING
    assert core.container_decision(always, exited(1, 0), 100).step is Step.START  # first restart at once
    d = core.container_decision(always, exited(1, 2), 101, backoff_base=10)
    assert d.step is Step.WAIT and d.at == 120.0
    assert core.container_decision(always, exited(1, 2), 120, backoff_base=10).step is Step.START
    assert core.container_decision(RestartPolicy.NEVER, exited(1), 500).step is Step.NOTHING
    assert core.backoff(20) == core.MAX_BACKOFF


@pytest.mark.parametrize("policy,codes,phase", [
    ("Always", [0], "Running"), ("Never", [0], "Succeeded"), ("Never", [3], "Failed"),
    ("OnFailure", [0], "Succeeded"), ("OnFailure", [1], "Running")])
def test_phase_of_exited_containers(policy: str, codes: list[int], phase: str) -> None:
    spec = parse_pod_spec(raw_pod(policy))
    assert core.pod_phase(spec, {"main": exited(codes[0])}, True) == phase


def test_phase_pending_until_sandbox_and_start() -> None:
    spec = parse_pod_spec(raw_pod())
    assert core.pod_phase(spec, {}, True) == "Pending"
    assert core.pod_phase(spec, {"main": ContainerState("main", True)}, False) == "Pending"
    assert core.pod_phase(spec, {"main": ContainerState("main", True)}, True) == "Running"


def test_probe_thresholds() -> None:
    spec = parse_pod_spec(raw_pod(readinessProbe={"tcpSocket": {"port": 80}, "successThreshold": 2,
                                                  "failureThreshold": 2}))
    probe = spec.containers[0].readiness
    assert probe is not None and probe.kind is ProbeKind.TCP_SOCKET
    s = core.ProbeState(False)
    s = core.probe_record(probe, s, True)
    assert not s.ready
    s = core.probe_record(probe, s, True)
    assert s.ready
    s = core.probe_record(probe, s, False)
    assert s.ready
    s = core.probe_record(probe, s, False)
    assert not s.ready


def test_pod_status_shape() -> None:
    spec = parse_pod_spec(raw_pod())
    states = {"main": ContainerState("main", True, 42, 1000.0, 2, exited(137).last, ready=True)}
    st = core.render_pod_status(spec, states, sandbox_ready=True, pod_ips=["10.244.0.5"], host_ip="10.250.0.11",
                                start_time=990.0, now=1001.0)
    assert st["phase"] == "Running" and st["podIP"] == "10.244.0.5" and st["podIPs"] == [{"ip": "10.244.0.5"}]
    assert st["hostIP"] == "10.250.0.11"
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                     "ContainersReady": "True", "PodScheduled": "True"}
    cs = st["containerStatuses"][0]
    assert cs["restartCount"] == 2 and cs["ready"] and cs["state"]["running"]["startedAt"] == "1970-01-01T00:16:40Z"
    assert cs["lastState"]["terminated"]["exitCode"] == 137
    # transition times are kept while a condition holds
    later = core.render_pod_status(spec, states, sandbox_ready=True, pod_ips=["10.244.0.5"], host_ip="h",
                                   start_time=990.0, now=2000.0, previous=st)
    assert later["conditions"][2]["lastTransitionTime"] == st["conditions"][2]["lastTransitionTime"]
    unready = dict(states, main=ContainerState("main", True, 42, 1000.0))
    st2 = core.render_pod_status(spec, unready, sandbox_ready=True, pod_ips=[], host_ip="h", start_time=1, now=3)
    ready = next(c for c in st2["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"
    assert "podIP" not in st2


def test_resolv_conf() -> None:
    text = core.render_resolv_conf("web", ["10.96.0.10"], "cluster.local")
    assert text == ("nameserver 10.96.0.10\nsearch web.svc.cluster.local svc.cluster.local cluster.local\n"
                    "options ndots:5\n")
    host = "nameserver 1.1.1.1\nsearch corp\n"
    assert core.render_resolv_conf("web", ["10.96.0.10"], "cluster.local", "Default", host) == \
        "nameserver 1.1.1.1\nsearch corp\n"
    custom = core.render_resolv_conf("a", ["10.96.0.10"], "c.l", dns_config={
        "nameservers": ["1.2.3.4"], "searches": ["x.y"], "options": [{"name": "ndots", "value": "2"}]})
    assert "nameserver 10.96.0.10\nnameserver 1.2.3.4\n" in custom and "x.y" in custom
    assert custom.endswith("options ndots:2\n")


def test_hosts_file() -> None:
    text = core.render_hosts("10.244.0.5", "web-1", "", "sub", "ns")
    assert "10.244.0.5\tweb-1.sub.ns.svc.cluster.local\tweb-1" in text


def test_routes() -> None:
    def node(name: str, ip: str, cidr: str) -> Node:
        return Node(name, (ipaddress.ip_address(ip),), (ipaddress.ip_network(cidr),), True, False, ())
    nodes = [node("n1", "10.250.0.11", "10.244.0.0/24"), node("n2", "10.250.0.12", "10.244.1.0/24"),
             Node("n3", (), (), True, False, ())]
    desired = core.desired_routes("n1", nodes)
    assert desired == {"10.244.1.0/24": "10.250.0.12"}
    put, drop = core.diff_routes(desired, {"10.244.1.0/24": "10.250.0.99", "10.244.7.0/24": "10.250.0.17"})
    assert put == [("10.244.1.0/24", "10.250.0.12")] and drop == ["10.244.7.0/24"]
    assert core.diff_routes(desired, desired) == ([], [])


def test_plan_pods() -> None:
    I = core.PodIntent
    desired = {"u1": I(), "u2": I(deleting=True), "u4": I(terminal=True), "u5": I(deleting=True), "u6": I()}
    plan = core.plan_pods(desired, ["u2", "u3", "u6"])
    assert plan.create == ("u1",)  # u4 finished before: nothing to run
    assert plan.kill == ("u2", "u3") and plan.keep == ("u6",)
    assert plan.finalize == ("u5",)  # deleting, nothing running here


def test_spec_env_expansion_and_field_refs() -> None:
    pod = raw_pod(command=["echo", "$(GREETING) $(POD)", "$$(KEEP)"], args=["$(MISSING)"],
                  env=[{"name": "GREETING", "value": "hi"},
                       {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                       {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                       {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}])
    spec = parse_pod_spec(pod, pod_ip="10.244.0.9", base_env={"K": "v"})
    c = spec.containers[0]
    assert c.command == ("echo", "hi p", "$(KEEP)", "$(MISSING)")
    env = dict(c.env)
    assert env["IP"] == "10.244.0.9" and env["APP"] == "a" and env["K"] == "v"
    assert expand("$(A)-$(B)", {"A": "1"}) == "1-$(B)"


def test_spec_errors_are_clear() -> None:
    with pytest.raises(AgentError, match="has no command"):
        parse_pod_spec(raw_pod(command=[]))
    with pytest.raises(AgentError, match="restartPolicy"):
        parse_pod_spec(raw_pod("Sometimes"))
    spec = parse_pod_spec(raw_pod(ports=[{"name": "http", "containerPort": 8080}],
                                  livenessProbe={"httpGet": {"port": "http", "path": "/h"}}))
    c = spec.containers[0]
    assert c.liveness is not None and resolve_port(c.liveness.port, c) == 8080
    with pytest.raises(AgentError, match="no port named"):
        resolve_port("grpc", c)


def test_service_env() -> None:
    svc = parse_service({"metadata": {"name": "my-svc", "namespace": "ns"},
                         "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80}]}})
    env = core.service_env([svc])
    assert env["MY_SVC_SERVICE_HOST"] == "10.96.0.5" and env["MY_SVC_SERVICE_PORT_HTTP"] == "80"
    assert env["MY_SVC_PORT"] == "tcp://10.96.0.5:80" and env["MY_SVC_PORT_80_TCP_ADDR"] == "10.96.0.5"


def test_node_status() -> None:
    st = core.render_node_status("10.250.0.11", "n1", ready=True, reason="KubeletReady", message="ok", now=10.0)
    assert st["addresses"][0] == {"type": "InternalIP", "address": "10.250.0.11"}
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds["Ready"] == "True" and conds["MemoryPressure"] == "False"


def test_pre_stop_hooks() -> None:
    spec = parse_pod_spec(raw_pod(lifecycle={"preStop": {"sleep": {"seconds": 2}}}))
    hook = spec.containers[0].pre_stop
    assert hook is not None and hook.kind == "sleep" and hook.seconds == 2
    spec = parse_pod_spec(raw_pod(lifecycle={"preStop": {"exec": {"command": ["nginx", "-s", "quit"]}}}))
    assert spec.containers[0].pre_stop.command == ("nginx", "-s", "quit")  # type: ignore[union-attr]
    with pytest.raises(AgentError, match="lifecycle handler"):
        parse_pod_spec(raw_pod(lifecycle={"preStop": {"tcpSocket": {}}}))


def test_init_containers_run_in_order_then_the_app() -> None:
    pod = raw_pod("Always")
    pod["spec"]["initContainers"] = [{"name": "i1", "image": "x", "command": ["true"]},
                                     {"name": "i2", "image": "x", "command": ["true"]}]
    spec = parse_pod_spec(pod)
    assert [c.name for c in spec.init_containers] == ["i1", "i2"]
    p = core.init_progress(spec, {}, 0)
    assert not p.done and p.name == "i1" and p.decision.step is Step.START
    ok = ContainerState("i1", False, 0, 1.0, 0, Termination(0, "Completed", 1.0, 2.0))
    running = ContainerState("i2", True, 5, 3.0)
    p = core.init_progress(spec, {"i1": ok}, 5)
    assert p.name == "i2" and p.decision.step is Step.START
    p = core.init_progress(spec, {"i1": ok, "i2": running}, 5)
    assert p.name == "i2" and p.decision.step is Step.NOTHING and not p.done
    assert core.pod_phase(spec, {"i1": ok, "i2": running}, True) == "Pending"
    done = {"i1": ok, "i2": ContainerState("i2", False, 0, 3.0, 0, Termination(0, "Completed", 3.0, 4.0))}
    assert core.init_progress(spec, done, 5).done
    st = core.render_pod_status(spec, done, sandbox_ready=True, pod_ips=[], host_ip="h", start_time=1, now=5)
    assert next(c for c in st["conditions"] if c["type"] == "Initialized")["status"] == "True"
    assert [s["name"] for s in st["initContainerStatuses"]] == ["i1", "i2"]
    pending = core.render_pod_status(spec, {"i1": ok}, sandbox_ready=True, pod_ips=[], host_ip="h", start_time=1,
                                     now=5)
    init_cond = next(c for c in pending["conditions"] if c["type"] == "Initialized")
    assert init_cond["status"] == "False" and init_cond["message"] == "containers with incomplete status: [i2]"


def test_failed_init_container_restarts_or_fails_the_pod() -> None:
    bad = ContainerState("i1", False, 0, 1.0, 1, Termination(1, "Error", 1.0, 2.0))
    for policy, phase in (("Never", "Failed"), ("OnFailure", "Pending"), ("Always", "Pending")):
        pod = raw_pod(policy)
        pod["spec"]["initContainers"] = [{"name": "i1", "image": "x", "command": ["false"]}]
        spec = parse_pod_spec(pod)
        assert core.pod_phase(spec, {"i1": bad}, True) == phase
    p = core.init_progress(spec, {"i1": bad}, 3.0, backoff_base=10)
    assert p.decision.step is Step.WAIT and p.decision.at == 12.0
