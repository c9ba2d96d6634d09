"""The shared asyncio client and Informer (contract: docs/architecture.md, usage: README.md here)."""

from controlplane.client.client import ClientError, Client, ObjectList, PatchType, status_error
from controlplane.client.informer import Backoff, Handler, Informer
from controlplane.client.kubeconfig import KubeConfig, KubeConfigError
from controlplane.client.store import Delta, DeltaType, Store, StoreError, object_key
from controlplane.client.stream import WatchEvent

__all__ = [
    "Backoff", "Client", "ClientError", "Delta", "DeltaType", "Handler", "Informer", "KubeConfig",
    "KubeConfigError", "ObjectList", "PatchType", "Store", "StoreError", "WatchEvent", "object_key",
    "status_error",
]
