"""Renderer cases beyond the overall golden dump: policies, protocols, terminating endpoints,
masquerade modes, large clusters, partial syncs and stale chain deletion."""

from __future__ import annotations

from dataclasses import replace

from controlplane.model import ObjectRef
from proxy.iptables import names
from proxy.iptables.render import probability, render
from tests.proxy.proxy_helpers import NODE, dedent, jump_targets_exist, service, slice_, state, tcp


def nat_rules(text: str, chain: str) -> list[str]:
    nat = text.split("*nat\n", 1)[1]
    return [line for line in nat.splitlines() if line.startswith(f"-A {chain} ")]


def filter_rules(text: str, chain: str) -> list[str]:
    flt = text.split("*nat\n", 1)[0]
    return [line for line in flt.splitlines() if line.startswith(f"-A {chain} ")]


def test_chain_names_match_upstream_hashes() -> None:
    assert names.svc_chain("ns4/svc4:p80", "tcp") == "KUBE-SVC-4SW47YFZTEDKD3PK"
    assert names.ext_chain("ns3/svc3:p80", "tcp") == "KUBE-EXT-X27LE4BHSL4DOUIK"
    assert names.sep_chain("ns4/svc4:p80", "tcp", "10.180.0.4:80") == "KUBE-SEP-UKSFD7AGPMPPLUHC"
    assert len(names.sep_chain("a" * 300, "sctp", "1.2.3.4:5")) <= 28


def test_probabilities_are_one_over_n_minus_i() -> None:
    assert [probability(n) for n in (4, 3, 2)] == ["0.2500000000", "0.3333333333", "0.5000000000"]
    st = state([service("ns", "s", "172.30.0.1", [tcp("p", 80)])],
               [slice_("ns", "s", [{"addresses": [f"10.1.0.{i}"]} for i in range(1, 5)], [tcp("p", 8080)])])
    chain = names.svc_chain("ns/s:p", "tcp")
    rules = nat_rules(render(st).text, chain)
    probs = [r.split("--probability ")[1].split()[0] for r in rules if "--probability" in r]
    assert probs == ["0.2500000000", "0.3333333333", "0.5000000000"]
    assert "statistic" not in rules[-1] and rules[-1].endswith(names.sep_chain("ns/s:p", "tcp", "10.1.0.4:8080"))


def test_udp_and_sctp_cluster_ip() -> None:
    st = state([service("ns", "dns", "172.30.0.10", [{"name": "dns", "port": 53, "protocol": "UDP"},
                                                     {"name": "sctp", "port": 9, "protocol": "SCTP"}])],
               [slice_("ns", "dns", [{"addresses": ["10.1.0.1"]}],
                       [{"name": "dns", "port": 5353, "protocol": "UDP"}, {"name": "sctp", "port": 99, "protocol": "SCTP"}])],
               cluster_cidr="10.0.0.0/8")
    text = render(st).text
    assert ('-A KUBE-SERVICES -m comment --comment "ns/dns:dns cluster IP" -m udp -p udp -d 172.30.0.10 --dport 53 '
            f"-j {names.svc_chain('ns/dns:dns', 'udp')}") in text
    assert f"-m sctp -p sctp -j DNAT --to-destination 10.1.0.1:99" in text
    assert jump_targets_exist(text) == []


def test_no_cluster_cidr_no_masquerade_rule_and_masquerade_all() -> None:
    svcs = [service("ns", "s", "172.30.0.1", [tcp("p", 80)])]
    eps = [slice_("ns", "s", [{"addresses": ["10.1.0.1"]}], [tcp("p", 80)])]
    chain = names.svc_chain("ns/s:p", "tcp")
    plain = nat_rules(render(state(svcs, eps)).text, chain)
    assert not any("KUBE-MARK-MASQ" in r for r in plain)
    everything = nat_rules(render(state(svcs, eps, masquerade_all=True)).text, chain)
    assert everything[0] == (f'-A {chain} -m comment --comment "ns/s:p cluster IP" -m tcp -p tcp -d 172.30.0.1 '
                             "--dport 80 -j KUBE-MARK-MASQ")


def test_internal_traffic_policy_local() -> None:
    svcs = [service("ns", "s", "172.30.0.1", [tcp("p", 80)], internalTrafficPolicy="Local")]
    remote = [slice_("ns", "s", [{"addresses": ["10.1.0.1"], "nodeName": "other"}], [tcp("p", 80)])]
    text = render(state(svcs, remote, cluster_cidr="10.0.0.0/8")).text
    assert filter_rules(text, "KUBE-SERVICES") == [
        '-A KUBE-SERVICES -m comment --comment "ns/s:p has no local endpoints" -m tcp -p tcp -d 172.30.0.1 '
        "--dport 80 -j DROP"]
    assert names.svl_chain("ns/s:p", "tcp") not in text
    local = [slice_("ns", "s", [{"addresses": ["10.1.0.1"], "nodeName": "other"},
                                {"addresses": ["10.1.0.2"], "nodeName": NODE}], [tcp("p", 80)])]
    text = render(state(svcs, local, cluster_cidr="10.0.0.0/8")).text
    svl = names.svl_chain("ns/s:p", "tcp")
    assert f"--dport 80 -j {svl}" in text
    assert nat_rules(text, svl)[-1] == (f'-A {svl} -m comment --comment "ns/s:p -> 10.1.0.2:80" '
                                        f"-j {names.sep_chain('ns/s:p', 'tcp', '10.1.0.2:80')}")
    assert names.sep_chain("ns/s:p", "tcp", "10.1.0.1:80") not in text  # remote endpoint unreachable here
    assert jump_targets_exist(text) == []


def test_external_traffic_policy_local_with_local_endpoint() -> None:
    svcs = [service("ns", "s", "172.30.0.1", [tcp("p", 80, nodePort=30001)], type="NodePort",
                    externalTrafficPolicy="Local")]
    eps = [slice_("ns", "s", [{"addresses": ["10.1.0.1"], "nodeName": NODE},
                              {"addresses": ["10.1.0.2"], "nodeName": "other"}], [tcp("p", 80)])]
    text = render(state(svcs, eps, cluster_cidr="10.0.0.0/8")).text
    ext, svc, svl = (f("ns/s:p", "tcp") for f in (names.ext_chain, names.svc_chain, names.svl_chain))
    assert nat_rules(text, ext) == [
        f'-A {ext} -m comment --comment "pod traffic for ns/s:p external destinations" -s 10.0.0.0/8 -j {svc}',
        f'-A {ext} -m comment --comment "masquerade LOCAL traffic for ns/s:p external destinations" '
        f"-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
        f'-A {ext} -m comment --comment "route LOCAL traffic for ns/s:p external destinations" '
        f"-m addrtype --src-type LOCAL -j {svc}",
        f"-A {ext} -j {svl}",
    ]
    assert len([r for r in nat_rules(text, svc) if "KUBE-SEP" in r]) == 2  # cluster chain: both
    assert len([r for r in nat_rules(text, svl) if "KUBE-SEP" in r]) == 1  # local chain: ours
    assert filter_rules(text, "KUBE-EXTERNAL-SERVICES") == []
    assert jump_targets_exist(text) == []


def test_terminating_endpoints_used_only_without_ready_ones() -> None:
    svcs = [service("ns", "s", "172.30.0.1", [tcp("p", 80)])]
    term = {"ready": False, "serving": True, "terminating": True}
    mixed = [slice_("ns", "s", [{"addresses": ["10.1.0.1"]},
                                {"addresses": ["10.1.0.2"], "conditions": term}], [tcp("p", 80)])]
    text = render(state(svcs, mixed)).text
    assert "10.1.0.1:80" in text and "10.1.0.2:80" not in text
    only_term = [slice_("ns", "s", [{"addresses": ["10.1.0.2"], "conditions": term},
                                    {"addresses": ["10.1.0.3"], "conditions": {"ready": False, "serving": False,
                                                                               "terminating": True}}], [tcp("p", 80)])]
    text = render(state(svcs, only_term)).text
    assert "10.1.0.2:80" in text and "10.1.0.3:80" not in text
    not_ready = [slice_("ns", "s", [{"addresses": ["10.1.0.4"], "conditions": {"ready": False}}], [tcp("p", 80)])]
    assert '"ns/s:p has no endpoints"' in render(state(svcs, not_ready)).text


def test_no_endpoints_reject_everywhere() -> None:
    svcs = [service("ns", "s", "172.30.0.1", [tcp("p", 80, nodePort=30001)], type="LoadBalancer",
                    externalIPs=["192.168.0.9"], status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}})]
    text = render(state(svcs, [])).text
    rules = filter_rules(text, "KUBE-SERVICES") + filter_rules(text, "KUBE-EXTERNAL-SERVICES")
    assert [r.rsplit(" ", 1)[1] for r in rules] == ["REJECT"] * 4
    assert "-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30001 -j REJECT" in text
    assert nat_rules(text, "KUBE-NODEPORTS") == [] and "KUBE-SVC-" not in text


def test_large_cluster_drops_endpoint_comments() -> None:
    svcs = [service("ns", f"s{i}", f"172.30.{i // 250}.{i % 250 + 1}", [tcp("p", 80)]) for i in range(201)]
    eps = [slice_("ns", f"s{i}", [{"addresses": [f"10.{i // 250}.{i % 250}.{j}"]} for j in range(1, 6)],
                  [tcp("p", 80)]) for i in range(201)]
    r = render(state(svcs, eps))
    assert r.large_cluster  # 1005 endpoints > 1000
    sep = names.sep_chain("ns/s0:p", "tcp", "10.0.0.1:80")
    assert nat_rules(r.text, sep) == [f"-A {sep} -s 10.0.0.1 -j KUBE-MARK-MASQ",
                                      f"-A {sep} -m tcp -p tcp -j DNAT --to-destination 10.0.0.1:80"]
    assert '"ns/s0:p cluster IP"' in r.text  # service-level comments stay


def test_partial_sync_writes_only_changed_services_and_deletes_stale_chains() -> None:
    svcs = [service("ns", "a", "172.30.0.1", [tcp("p", 80)]), service("ns", "b", "172.30.0.2", [tcp("p", 80)])]
    eps = [slice_("ns", "a", [{"addresses": ["10.1.0.1"]}], [tcp("p", 80)]),
           slice_("ns", "b", [{"addresses": ["10.1.0.2"]}], [tcp("p", 80)])]
    full = render(state(svcs, eps))
    stale = names.sep_chain("ns/b:p", "tcp", "10.9.9.9:80")
    st = replace(state(svcs, eps), changed=frozenset({ObjectRef("ns", "b")}),
                 existing_nat_chains=full.active_nat_chains | {stale, "KUBE-SOMEONE-ELSE"})
    part = render(st)
    a_svc, b_svc = names.svc_chain("ns/a:p", "tcp"), names.svc_chain("ns/b:p", "tcp")
    assert f":{a_svc} " not in part.text and f":{b_svc} " in part.text
    assert f"-j {a_svc}" in part.text  # KUBE-SERVICES is always rewritten in full
    assert part.text.rstrip().endswith(f"-X {stale}\nCOMMIT")
    assert "KUBE-SOMEONE-ELSE" not in part.text
    assert part.active_nat_chains == full.active_nat_chains
    assert part.nat_rules == full.nat_rules and part.nat_rules_written < full.nat_rules


def test_minimal_dump_exact() -> None:
    st = state([service("ns", "s", "172.30.0.1", [tcp("", 80)])],
               [slice_("ns", "s", [{"addresses": ["10.1.0.1"]}], [tcp("", 8080)])], random_fully=True,
               localhost_nodeports=False, conntrack_tcp_liberal=True)
    svc = names.svc_chain("ns/s", "tcp")
    sep = names.sep_chain("ns/s", "tcp", "10.1.0.1:8080")
    assert render(st).text == dedent(f"""
        *filter
        :KUBE-NODEPORTS - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-EXTERNAL-SERVICES - [0:0]
        :KUBE-FORWARD - [0:0]
        :KUBE-PROXY-FIREWALL - [0:0]
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        COMMIT
        *nat
        :KUBE-NODEPORTS - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-MARK-MASQ - [0:0]
        :KUBE-POSTROUTING - [0:0]
        :{sep} - [0:0]
        :{svc} - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns/s cluster IP" -m tcp -p tcp -d 172.30.0.1 --dport 80 -j {svc}
        -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS
        -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
        -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
        -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
        -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
        -A {sep} -m comment --comment ns/s -s 10.1.0.1 -j KUBE-MARK-MASQ
        -A {sep} -m comment --comment ns/s -m tcp -p tcp -j DNAT --to-destination 10.1.0.1:8080
        -A {svc} -m comment --comment "ns/s -> 10.1.0.1:8080" -j {sep}
        COMMIT
    """)


def test_headless_and_external_name_are_skipped() -> None:
    svcs = [service("ns", "h", "None", [tcp("p", 80)]),
            {"metadata": {"namespace": "ns", "name": "e"}, "spec": {"type": "ExternalName", "externalName": "x.y"}}]
    text = render(state(svcs, [slice_("ns", "h", [{"addresses": ["10.1.0.1"]}], [tcp("p", 80)])])).text
    assert "ns/h" not in text and "ns/e" not in text


def _incremental(svcs_before, eps_before, svcs_after, eps_after, changed):  # type: ignore[no-untyped-def]
    before = render(state(svcs_before, eps_before))
    after_state = replace(state(svcs_after, eps_after), changed=frozenset(changed),
                          existing_nat_chains=before.active_nat_chains, previous=before.memo)
    return before, render(after_state), render(state(svcs_after, eps_after))


def test_incremental_endpoint_change_touches_only_that_services_chains() -> None:
    svcs = [service("ns", "a", "172.30.0.1", [tcp("p", 80)]), service("ns", "b", "172.30.0.2", [tcp("p", 80)])]
    eps1 = [slice_("ns", "a", [{"addresses": ["10.1.0.1"]}], [tcp("p", 80)]),
            slice_("ns", "b", [{"addresses": ["10.1.0.2"]}], [tcp("p", 80)])]
    eps2 = [eps1[0], slice_("ns", "b", [{"addresses": ["10.1.0.3"]}], [tcp("p", 80)])]
    _before, inc, full = _incremental(svcs, eps1, svcs, eps2, {ObjectRef("ns", "b")})
    b_svc = names.svc_chain("ns/b:p", "tcp")
    old_sep = names.sep_chain("ns/b:p", "tcp", "10.1.0.2:80")
    assert inc.text == dedent(f"""
        *filter
        COMMIT
        *nat
        :{names.sep_chain("ns/b:p", "tcp", "10.1.0.3:80")} - [0:0]
        :{b_svc} - [0:0]
        :{old_sep} - [0:0]
        {chr(10).join(nat_rules(full.text, names.sep_chain("ns/b:p", "tcp", "10.1.0.3:80")))}
        {chr(10).join(nat_rules(full.text, b_svc))}
        -X {old_sep}
        COMMIT
    """)
    assert inc.nat_rules == full.nat_rules and inc.filter_rules == full.filter_rules
    assert inc.active_nat_chains == full.active_nat_chains


def test_incremental_add_and_remove_service_use_rule_deltas() -> None:
    a = service("ns", "a", "172.30.0.1", [tcp("p", 80, nodePort=30001)], type="NodePort")
    b = service("ns", "b", "172.30.0.2", [tcp("p", 80)])
    ea = slice_("ns", "a", [{"addresses": ["10.1.0.1"]}], [tcp("p", 80)])
    eb = slice_("ns", "b", [{"addresses": ["10.1.0.2"]}], [tcp("p", 80)])
    _b, inc, full = _incremental([a], [ea], [a, b], [ea, eb], {ObjectRef("ns", "b")})
    b_svc = names.svc_chain("ns/b:p", "tcp")
    assert (f'-I KUBE-SERVICES 1 -m comment --comment "ns/b:p cluster IP" -m tcp -p tcp -d 172.30.0.2 --dport 80 '
            f"-j {b_svc}") in inc.text.splitlines()
    assert ":KUBE-SERVICES " not in inc.text and ":KUBE-NODEPORTS " not in inc.text
    # removing a NodePort Service: its KUBE-SERVICES / KUBE-NODEPORTS rules are deleted, chains -X'd
    _b, inc, full = _incremental([a, b], [ea, eb], [b], [eb], {ObjectRef("ns", "a")})
    lines = inc.text.splitlines()
    assert any(ln.startswith("-D KUBE-SERVICES -m comment --comment \"ns/a:p cluster IP\"") for ln in lines)
    assert any(ln.startswith("-D KUBE-NODEPORTS -m comment --comment ns/a:p") for ln in lines)
    assert f"-X {names.svc_chain('ns/a:p', 'tcp')}" in lines and f"-X {names.ext_chain('ns/a:p', 'tcp')}" in lines
    assert inc.nat_rules == full.nat_rules


def test_incremental_losing_all_endpoints_moves_rule_to_filter_reject() -> None:
    a = service("ns", "a", "172.30.0.1", [tcp("p", 80)])
    ea = slice_("ns", "a", [{"addresses": ["10.1.0.1"]}], [tcp("p", 80)])
    _b, inc, _full = _incremental([a], [ea], [a], [], {ObjectRef("ns", "a")})
    flt, nat = inc.text.split("*nat\n")
    assert '-A KUBE-SERVICES -m comment --comment "ns/a:p has no endpoints"' in flt
    assert '-D KUBE-SERVICES -m comment --comment "ns/a:p cluster IP"' in nat
