"""Control plane benchmark: `podnet controlplane` side by side with etcd (python -m bench.controlplane)."""
