"""kube-proxy (iptables mode) benchmark: `python -m bench.proxy`."""
