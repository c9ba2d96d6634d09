"""Cluster DNS: `podnet dns` (see README.md)."""
