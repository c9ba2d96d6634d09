"""CNI benchmark: podnet-bridge + podnet-ipam vs the reference bridge + host-local."""
