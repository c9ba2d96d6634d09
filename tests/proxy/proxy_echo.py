"""Backend for proxy netns tests: TCP and UDP on PORT; answers "<name> <peer-ip>:<peer-port> <local-ip>:<local-port>".

TCP: one line per connection, then keeps echoing lines ("ping" -> same answer) until the peer closes.
"""

import selectors
import socket
import sys

name, port = sys.argv[1], int(sys.argv[2])
sel = selectors.DefaultSelector()
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", port))
tcp.listen(1024)
tcp.setblocking(False)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", port))
sel.register(tcp, selectors.EVENT_READ, "accept")
sel.register(udp, selectors.EVENT_READ, "udp")
print("ready", flush=True)


def answer(peer, local):
    return f"{name} {peer[0]}:{peer[1]} {local[0]}:{local[1]}\n".encode()


while True:
    for key, _ in sel.select():
        sock = key.fileobj
        if key.data == "accept":
            try:
                conn, peer = sock.accept()
            except BlockingIOError:
                continue
            try:
                conn.sendall(answer(peer, conn.getsockname()))
            except OSError:
                conn.close()
                continue
            conn.setblocking(False)
            sel.register(conn, selectors.EVENT_READ, ("conn", peer))
        elif key.data == "udp":
            data, peer = sock.recvfrom(2048)
            sock.sendto(answer(peer, ("0.0.0.0", port)), peer)
        else:
            try:
                data = sock.recv(2048)
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()
            else:
                try:
                    sock.sendall(answer(key.data[1], sock.getsockname()))
                except OSError:
                    pass
