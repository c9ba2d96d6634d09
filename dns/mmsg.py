"""Batched UDP I/O with Linux recvmmsg(2)/sendmmsg(2) through ctypes.

The hot path of a cache-answering server is syscalls: one recvfrom and one sendto per query.
Here one recvmmsg reads up to `slots` datagrams and one sendmmsg sends all the cache hits of
the batch back, each to the address it came from (the kernel's sockaddr is reused in place).
Fixed buffers are set up once; per packet Python touches only memoryview slices.

Layout (x86-64 and aarch64 LP64): struct mmsghdr is 64 bytes = struct msghdr (56: name ptr,
namelen u32 + pad, iov ptr, iovlen u64, control ptr, controllen u64, flags i32 + pad) followed
by msg_len u32 + pad; struct iovec is 16 bytes (base ptr, len u64).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from typing import Any, Callable

MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20
MMSG = 64  # sizeof(struct mmsghdr)
NAME = 128  # sizeof(struct sockaddr_storage)
IOV = 16
CTL = 32  # CMSG_SPACE(sizeof(struct in_pktinfo))
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
# cmsghdr {len 28, IPPROTO_IP, IP_PKTINFO} + in_pktinfo.ipi_ifindex 0; then ipi_spec_dst, ipi_addr, pad
PKTINFO_HEAD = struct.pack("=QiiI", 28, socket.IPPROTO_IP, IP_PKTINFO, 0)


class MMsgError(Exception):
    """recvmmsg/sendmmsg are not usable here (not Linux, not LP64, no libc symbol)."""


def _libc() -> Any:
    if os.uname().sysname != "Linux" or ctypes.sizeof(ctypes.c_void_p) != 8:
        raise MMsgError("recvmmsg needs 64-bit Linux")
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        recv, send = libc.recvmmsg, libc.sendmmsg
    except AttributeError as exc:
        raise MMsgError(str(exc)) from None
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    recv.restype = ctypes.c_int
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    send.restype = ctypes.c_int
    return libc


class BatchIO:
    def __init__(self, fd: int, slots: int = 64, size: int = 4096, pktinfo: bool = False) -> None:
        libc = _libc()
        self.pktinfo = pktinfo
        self.rctl = ctypes.create_string_buffer(slots * CTL)
        self.sctl = ctypes.create_string_buffer(slots * CTL)
        self._recv, self._send = libc.recvmmsg, libc.sendmmsg
        self.fd, self.slots, self.size = fd, slots, size
        self.rbuf = ctypes.create_string_buffer(slots * size)
        self.sbuf = ctypes.create_string_buffer(slots * size)
        self.names = ctypes.create_string_buffer(slots * NAME)
        self.riov = ctypes.create_string_buffer(slots * IOV)
        self.siov = ctypes.create_string_buffer(slots * IOV)
        self.rmsg = ctypes.create_string_buffer(slots * MMSG)
        self.smsg = ctypes.create_string_buffer(slots * MMSG)
        self.pristine = ctypes.create_string_buffer(slots * MMSG)
        rbuf, sbuf, names = ctypes.addressof(self.rbuf), ctypes.addressof(self.sbuf), ctypes.addressof(self.names)
        riov, siov = ctypes.addressof(self.riov), ctypes.addressof(self.siov)
        for i in range(slots):
            struct.pack_into("QQ", self.riov, i * IOV, rbuf + i * size, size)
            struct.pack_into("QQ", self.siov, i * IOV, sbuf + i * size, 0)
            # msg_name, msg_namelen, msg_iov, msg_iovlen, control, controllen, flags, msg_len
            struct.pack_into("QI4xQQQQi4xI4x", self.pristine, i * MMSG, names + i * NAME, NAME,
                             riov + i * IOV, 1, ctypes.addressof(self.rctl) + i * CTL if pktinfo else 0,
                             CTL if pktinfo else 0, 0, 0)
            struct.pack_into("QI4xQQQQi4xI4x", self.smsg, i * MMSG, 0, 0, siov + i * IOV, 1, 0, 0, 0, 0)
        self.rview = memoryview(self.rbuf).cast("B")
        self.sview = memoryview(self.sbuf).cast("B")
        self.rmsg_u32 = memoryview(self.rmsg).cast("B").cast("I")  # msg_len of slot i at [i*16 + 14]
        self.smsg_u64 = memoryview(self.smsg).cast("B").cast("Q")  # msg_name of slot j at [j*8]
        self.smsg_u32 = memoryview(self.smsg).cast("B").cast("I")  # msg_namelen of slot j at [j*16 + 2]
        self.siov_u64 = memoryview(self.siov).cast("B").cast("Q")  # iov_len of slot j at [j*2 + 1]
        self.names_addr = names
        self.rmsg_u64 = memoryview(self.rmsg).cast("B").cast("Q")  # msg_controllen of slot i at [i*8 + 5]
        self.rctl_view = memoryview(self.rctl).cast("B")
        self.sctl_view = memoryview(self.sctl).cast("B")
        self.sctl_addr = ctypes.addressof(self.sctl)

    def answer_batch(self, entries: dict[bytes, tuple[Any, Any]], by_stat: dict[Any, int],
                     on_miss: Callable[[bytes, int], None]) -> tuple[int, int]:
        """recvmmsg one batch; answer cache hits (query bytes[2:] -> (reply bytes[2:], stat)) with
        one sendmmsg, hand every other packet to `on_miss(data, slot)`. Returns (received, hits).
        Inlined on purpose: this loop is the server's hot path."""
        n = self.recv()
        if n <= 0:
            return n, 0
        rview, sview, size = self.rview, self.sview, self.size
        u32, s64, s32, iov = self.rmsg_u32, self.smsg_u64, self.smsg_u32, self.siov_u64
        names, get = self.names_addr, entries.get
        queued = 0
        for i in range(n):
            r0 = i * size
            length = u32[i * 16 + 14]
            hit = get(bytes(rview[r0 + 2:r0 + length]))
            if hit is not None:
                body = hit[0]
                if body.__class__ is not bytes:
                    body = next(body)  # rotated variants (loadbalance)
            if hit is not None and len(body) + 2 <= size:
                t0 = queued * size
                sview[t0:t0 + 2] = rview[r0:r0 + 2]
                sview[t0 + 2:t0 + 2 + len(body)] = body
                iov[queued * 2 + 1] = len(body) + 2
                s64[queued * 8] = names + i * NAME
                s32[queued * 16 + 2] = u32[i * 16 + 2]
                if self.pktinfo:
                    self._reply_from(queued, i)
                queued += 1
                stat = hit[1]
                by_stat[stat] = by_stat.get(stat, 0) + 1
            else:
                on_miss(bytes(rview[r0:r0 + length]), i)
        if queued:
            self.flush(queued)
        return n, queued

    def local(self, i: int) -> bytes | None:
        """The address slot i was sent to (IP_PKTINFO ipi_addr), when asked for and present."""
        if not self.pktinfo or self.rmsg_u64[i * 8 + 5] < 28:
            return None
        head = struct.unpack_from("=Qii", self.rctl, i * CTL)
        if head[1] != socket.IPPROTO_IP or head[2] != IP_PKTINFO:
            return None
        return bytes(self.rctl_view[i * CTL + 24:i * CTL + 28])

    def _reply_from(self, j: int, i: int) -> None:
        """Send slot j from the address received slot i was sent to (no control message if unknown)."""
        local = self.local(i)
        if local is None:
            self.smsg_u64[j * 8 + 5] = 0
            return
        self.sctl_view[j * CTL:(j + 1) * CTL] = PKTINFO_HEAD + local + bytes(8)
        self.smsg_u64[j * 8 + 4] = self.sctl_addr + j * CTL
        self.smsg_u64[j * 8 + 5] = CTL

    def recv(self) -> int:
        """Read up to `slots` datagrams without blocking; 0 when none is waiting."""
        ctypes.memmove(self.rmsg, self.pristine, self.slots * MMSG)
        n = self._recv(self.fd, self.rmsg, self.slots, MSG_DONTWAIT, None)
        if n < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            return -1  # e.g. ECONNREFUSED from an ICMP error queued on the socket: try again
        return int(n)

    def packet(self, i: int) -> bytes:
        start = i * self.size
        return bytes(self.rview[start:start + self.rmsg_u32[i * 16 + 14]])

    def truncated(self, i: int) -> bool:
        return bool(self.rmsg_u32[i * 16 + 12] & MSG_TRUNC)

    def queue(self, j: int, i: int, data: bytes) -> bool:
        """Put reply `data` for received slot i into send slot j; False if it does not fit."""
        if len(data) > self.size:
            return False
        start = j * self.size
        self.sview[start:start + len(data)] = data
        self.siov_u64[j * 2 + 1] = len(data)
        self.smsg_u64[j * 8] = self.names_addr + i * NAME
        self.smsg_u32[j * 16 + 2] = self.rmsg_u32[i * 16 + 2]
        return True

    def flush(self, count: int) -> None:
        """Send the first `count` queued replies (what the kernel refuses is dropped, as UDP)."""
        sent = 0
        while sent < count:
            n = self._send(self.fd, ctypes.byref(self.smsg, sent * MMSG), count - sent, MSG_DONTWAIT)
            if n <= 0:
                return
            sent += n

    def address(self, i: int) -> Any:
        """The sender of slot i as the tuple socket.sendto wants."""
        base = i * NAME
        raw = self.names.raw[base:base + 28]
        family = struct.unpack_from("=H", raw)[0]
        port = struct.unpack_from("!H", raw, 2)[0]
        if family == socket.AF_INET6:
            flow, = struct.unpack_from("!I", raw, 4)
            scope, = struct.unpack_from("=I", raw, 24)
            return (socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, flow, scope)
        return (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
