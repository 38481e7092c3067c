"""The internet stand-in: TCP listeners (and a UDP echo on 53) in the ``outside`` namespace.

Every TCP connection gets one line ``outside:<port>`` and is closed, so a check from a PC
can tell a real connection from a refused or dropped one. Run as
``python -m campus_provision.lab.outside --lab DIR PORT...`` (``--lab`` lets ``lab down``
find the process again).
"""

from __future__ import annotations

import argparse
import selectors
import socket


def serve(ports: list[int]) -> None:
    """Listen on ``ports`` until killed."""
    sel = selectors.DefaultSelector()
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))  # noqa: S104 - inside the lab's own namespace
        sock.listen(64)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, ("tcp", port))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 53))  # noqa: S104
    sel.register(udp, selectors.EVENT_READ, ("udp", 53))
    print("listening", *ports, flush=True)
    while True:
        for key, _ in sel.select():
            kind, port = key.data
            ready = key.fileobj
            if not isinstance(ready, socket.socket):
                continue
            if kind == "tcp":
                try:
                    conn, addr = ready.accept()
                    conn.settimeout(1)
                    conn.sendall(b"outside:%d\n" % port)
                    conn.close()
                    print("tcp", port, addr[0], flush=True)
                except OSError as exc:
                    print("error", exc, flush=True)
            else:
                data, addr = ready.recvfrom(2048)
                ready.sendto(data, addr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lab", required=True, help="the lab directory (marks the process)")
    parser.add_argument("ports", nargs="+", type=int)
    args = parser.parse_args()
    serve(args.ports)


if __name__ == "__main__":
    main()
