"""Lab topology core: names, addresses, argv, DNS objects."""

from pathlib import Path

import pytest

from lab import topology as topo


def test_plan_names_and_addresses(tmp_path: Path) -> None:
    t = topo.plan("demo", 3, tmp_path)
    assert t.hub == "pnlab-demo-hub" and t.client == "pnlab-demo-client"
    assert [n.name for n in t.nodes] == ["node-1", "node-2", "node-3"]
    assert [n.ip for n in t.nodes] == ["10.250.0.11", "10.250.0.12", "10.250.0.13"]
    assert all(len(n.hub_if) <= 15 for n in t.nodes)
    assert t.namespaces[0] == t.hub and t.namespaces[-1] == t.client
    assert t.state_file == tmp_path / "demo" / "state.json"
    assert t.node("node-2") is t.nodes[1] and t.node("x") is None


@pytest.mark.parametrize("name,nodes", [("Bad_Name", 2), ("", 1), ("ok", 0), ("ok", 10), ("x" * 21, 1)])
def test_plan_rejects(name: str, nodes: int) -> None:
    with pytest.raises(topo.LabError):
        topo.plan(name, nodes)


def test_argv(tmp_path: Path) -> None:
    t = topo.plan("l", 2, tmp_path)
    n = t.nodes[0]
    agent = topo.agent_argv(t, n, "py")
    assert agent[:4] == ["py", "-m", "podnet", "agent"]
    assert agent[agent.index("--server") + 1] == "http://10.250.0.1:6443"
    assert agent[agent.index("--cluster-dns") + 1] == "10.96.0.10"
    assert "--write-cni-conf" in agent and str(n.root_dir) in agent
    cp = topo.controlplane_argv(t, "py")
    assert cp[cp.index("--advertise-address") + 1] == topo.HUB_IP
    assert cp[cp.index("--listen") + 1] == "10.250.0.1:6443"
    assert topo.relay_argv(t, 5000, "py")[-5:] == ["127.0.0.1:5000", "--netns", t.hub, "--upstream",
                                                    "10.250.0.1:6443"]


def test_dns_objects() -> None:
    svc, *pods = topo.dns_objects("py")
    assert svc["kind"] == "Service" and svc["spec"]["clusterIP"] == "10.96.0.10"  # type: ignore[index]
    ports = svc["spec"]["ports"]  # type: ignore[index]
    assert [(p["name"], p["port"], p["protocol"]) for p in ports][:2] == [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]
    assert len(pods) == 2 and all(p["metadata"]["namespace"] == "kube-system" for p in pods)  # type: ignore[index]


def test_kubeconfig_text() -> None:
    text = topo.kubeconfig_text("http://127.0.0.1:1234", "podnet-lab")
    assert "server: http://127.0.0.1:1234" in text and "current-context: podnet-lab" in text
