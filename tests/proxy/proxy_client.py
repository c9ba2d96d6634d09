"""Client for proxy netns tests; prints JSON.

  tcp HOST PORT N [--sport P]   -> {"answers": [...], "errors": [...]}   (N connections, one line each)
  udp HOST PORT N [--sport P]   -> same for datagrams from one socket (fixed source port if --sport)
  hold HOST PORT SECONDS FILE   -> keep one connection, ping it every 0.05 s until FILE exists; report answers
"""

import json
import os
import socket
import sys
import time


def tcp(host, port, n, sport=0):
    answers, errors = [], []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(2)
        if sport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", sport))
        try:
            s.connect((host, port))
            answers.append(s.makefile().readline().strip())
        except OSError as e:
            errors.append(f"{type(e).__name__}: {e.errno}")
        finally:
            s.close()
    return {"answers": answers, "errors": errors}


def udp(host, port, n, sport=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    if sport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", sport))
    answers, errors = [], []
    for _ in range(n):
        try:
            s.sendto(b"q", (host, port))
            answers.append(s.recv(2048).decode().strip())
        except OSError as e:
            errors.append(f"{type(e).__name__}: {e.errno}")
    return {"answers": answers, "errors": errors}


def hold(host, port, seconds, flag):
    s = socket.create_connection((host, port), timeout=2)
    f = s.makefile()
    answers = [f.readline().strip()]
    errors = []
    print(json.dumps({"connected": answers[0]}), flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not os.path.exists(flag):
        try:
            s.sendall(b"ping\n")
            answers.append(f.readline().strip())
        except OSError as e:
            errors.append(str(e))
            break
        time.sleep(0.05)
    return {"answers": answers, "errors": errors}


def main(argv):
    cmd, host, port = argv[0], argv[1], int(argv[2])
    sport = int(argv[argv.index("--sport") + 1]) if "--sport" in argv else 0
    if cmd == "tcp":
        out = tcp(host, port, int(argv[3]), sport)
    elif cmd == "udp":
        out = udp(host, port, int(argv[3]), sport)
    else:
        out = hold(host, port, float(argv[3]), argv[4])
    print(json.dumps(out))


main(sys.argv[1:])
