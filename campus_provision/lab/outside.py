"""Lab listeners: the internet stand-in, and stand-ins for campus services no role runs.

Every TCP connection gets one line ``<name>:<port>`` and is closed, so a check from a PC
can tell a real connection from a refused or dropped one; UDP datagrams are echoed back.
Run in a lab namespace as
``python -m campus_provision.lab.outside --lab DIR [--name NAME] [--udp PORT]... PORT...``
(``--lab`` lets ``lab down`` find the process again). The outside host answers as
``outside``; a campus service host (a licence server, a DNS resolver) by its host name.
"""

from __future__ import annotations

import argparse
import selectors
import socket


def serve(
    ports: list[int],
    udp_ports: list[int],
    name: str = "outside",
    udp_address: str = "0.0.0.0",  # noqa: S104
) -> None:
    """Listen on TCP ``ports`` and UDP ``udp_ports`` until killed.

    UDP binds ``udp_address``: an echo must come from the address the datagram went to
    (a PC's connected socket drops any other), and a socket bound to every address answers
    from the outgoing interface's."""
    sel = selectors.DefaultSelector()
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))  # noqa: S104 - inside the lab's own namespace
        sock.listen(64)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, ("tcp", port))
    for port in udp_ports:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((udp_address, port))
        sel.register(udp, selectors.EVENT_READ, ("udp", port))
    print("listening", name, *ports, *(f"{p}/udp" for p in udp_ports), flush=True)
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
                    conn.sendall(f"{name}:{port}\n".encode())
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
    parser.add_argument("--name", default="outside", help="how the listener answers")
    parser.add_argument("--udp", type=int, action="append", default=[], help="a UDP port")
    parser.add_argument("--udp-address", default="0.0.0.0",  # noqa: S104 - a lab namespace
                        help="the address the UDP ports listen on (and answer from)")  # fmt: skip
    parser.add_argument("ports", nargs="*", type=int)
    args = parser.parse_args()
    serve(args.ports, args.udp, args.name, args.udp_address)


if __name__ == "__main__":
    main()
