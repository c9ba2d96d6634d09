"""podnet: a Kubernetes-style node network stack."""

__version__ = "0.1.0"
