"""podnet CNI plugins: podnet-bridge and podnet-ipam (kept import-free: the shim lives here)."""
