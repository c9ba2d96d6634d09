"""The host-local on-disk store (shell): one file per IP, exactly as the reference lays it out.

    <dataDir>/<network>/<ip>                     "<containerID>\\r\\n<ifname>" (created O_EXCL)
    <dataDir>/<network>/last_reserved_ip.<idx>   the last IP handed out from range set <idx>
    <dataDir>/<network>/lock                     flock(2) held around allocate/release/GC
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
from typing import Iterator

from cni.errors import CNIError, IO_FAILURE
from cni.spec import Attachment, IPAddress

LINE_BREAK = "\r\n"
LAST_PREFIX = "last_reserved_ip."
LOCK_NAME = "lock"


class DiskStore:
    def __init__(self, data_dir: str, network: str) -> None:
        self.dir = os.path.join(data_dir, network)
        try:
            os.makedirs(self.dir, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise CNIError(IO_FAILURE, f"cannot create IPAM data dir {self.dir}", str(exc)) from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        try:
            fd = os.open(os.path.join(self.dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CNIError(IO_FAILURE, f"cannot open lock file in {self.dir}", str(exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the description drops the flock

    def _path(self, ip: IPAddress) -> str:
        return os.path.join(self.dir, str(ip))

    def reserve(self, cid: str, ifname: str, ip: IPAddress, range_id: int) -> bool:
        try:
            fd = os.open(self._path(ip), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise CNIError(IO_FAILURE, f"cannot reserve {ip} in {self.dir}", str(exc)) from None
        try:
            os.write(fd, f"{cid}{LINE_BREAK}{ifname}".encode())
        except OSError as exc:
            os.close(fd)
            os.unlink(self._path(ip))
            raise CNIError(IO_FAILURE, f"cannot write {self._path(ip)}", str(exc)) from None
        os.close(fd)
        try:
            with open(os.path.join(self.dir, f"{LAST_PREFIX}{range_id}"), "w") as f:
                f.write(str(ip))
        except OSError as exc:
            os.unlink(self._path(ip))
            raise CNIError(IO_FAILURE, "cannot record last reserved IP", str(exc)) from None
        return True

    def last_reserved(self, range_id: int) -> IPAddress | None:
        try:
            with open(os.path.join(self.dir, f"{LAST_PREFIX}{range_id}")) as f:
                return ipaddress.ip_address(f.read().strip())
        except (OSError, ValueError):
            return None

    def release(self, ip: IPAddress) -> None:
        try:
            os.unlink(self._path(ip))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise CNIError(IO_FAILURE, f"cannot release {ip}", str(exc)) from None

    def allocations(self) -> dict[IPAddress, Attachment]:
        out: dict[IPAddress, Attachment] = {}
        for name in os.listdir(self.dir):
            if name == LOCK_NAME or name.startswith(LAST_PREFIX):
                continue
            try:
                ip = ipaddress.ip_address(name)
                with open(os.path.join(self.dir, name), "rb") as f:
                    data = f.read().decode(errors="replace")
            except (ValueError, OSError):
                continue
            cid, _, ifname = data.strip().partition(LINE_BREAK)
            out[ip] = Attachment(cid.strip(), ifname.strip())
        return out

    def writable(self) -> str:
        """'' when a file can be created in the store, else the reason."""
        probe = os.path.join(self.dir, f".probe-{os.getpid()}")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            os.unlink(probe)
            return ""
        except OSError as exc:
            return os.strerror(exc.errno or errno.EIO)
