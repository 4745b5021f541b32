# SPDX-License-Identifier: BSD-2-Clause
"""The host end of a `guestfwd` (qemu.guest_forward): QEMU's user network runs this for
each TCP connection the guest opens to 10.0.2.100:GUESTPORT, with that connection as its
stdin/stdout (a socket), and it relays it to 127.0.0.1:PORT (never any other address).

Run by path (`python relay.py PORT`), no imports of ours. Nothing may go to stderr: it is
the guest's connection too. Bounded: it ends when either side closes, or after IDLE s
without traffic.
"""

import os
import selectors
import socket
import sys

IDLE = 120.0
CHUNK = 65536


def main() -> int:
    port = int(sys.argv[1])
    if not 1 <= port <= 65535:
        return 2
    guest = socket.socket(fileno=os.dup(0))
    try:
        host = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        return 1
    host.setblocking(True)
    # Small messages both ways (Erlang distribution, request/response): Nagle on this hop
    # waits for the peer's delayed ACK, ~40 ms a message.
    for s in (host, guest):
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # QEMU's end may be a Unix socket
    sel = selectors.DefaultSelector()
    sel.register(guest, selectors.EVENT_READ, host)
    sel.register(host, selectors.EVENT_READ, guest)
    open_ends = 2
    while open_ends:
        events = sel.select(IDLE)
        if not events:
            return 1
        for key, _ in events:
            src, dst = key.fileobj, key.data
            data = src.recv(CHUNK)
            if data:
                dst.sendall(data)
                continue
            sel.unregister(src)
            open_ends -= 1
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - fd 2 is the guest's connection
    sys.exit(main())
