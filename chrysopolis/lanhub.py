# SPDX-License-Identifier: BSD-2-Clause
"""The hub of a virtual LAN (chrysopolis/nodes.py): one UDP socket on 127.0.0.1 that
relays Ethernet frames between the QEMUs of the LAN's nodes (`-netdev dgram`, one frame
per datagram).

Run by path (`python lanhub.py HUB_JSON`), no imports of ours. It writes where it listens
into HUB_JSON. Control datagrams start with MAGIC: `JOIN PORT PID` adds the node whose
QEMU sends from 127.0.0.1:PORT (for as long as PID lives), `LEAVE PORT`, `PING`; each is
answered `OK`. A frame goes to the port its destination MAC was last seen from, else
(broadcast, unknown) to every other node. Bounded: at most MAX_NODES nodes; it exits IDLE
s after its last node left (or if none came), removing HUB_JSON.
"""

import json
import os
import select
import socket
import sys
import time

MAGIC = b"CHRYSOPOLIS-LAN "
MAX_NODES = 64
IDLE = 15.0
BUFFER = 4 << 20  # the kernel caps it at net.core.rmem_max/wmem_max


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def main() -> int:
    where = sys.argv[1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):  # bursts of a TCP window, while descheduled
        s.setsockopt(socket.SOL_SOCKET, opt, BUFFER)
    s.bind(("127.0.0.1", 0))
    tmp = f"{where}.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"port": s.getsockname()[1], "pid": os.getpid()}, f)
    os.replace(tmp, where)
    print(f"hub {os.getpid()} on 127.0.0.1:{s.getsockname()[1]}", flush=True)
    nodes: dict[tuple, int] = {}  # QEMU's address -> the pid it lives for
    macs: dict[bytes, tuple] = {}  # source MAC -> the node address it came from
    empty_since = checked = time.monotonic()
    while True:
        if select.select([s], [], [], 1.0)[0]:
            data, src = s.recvfrom(65536)
            if data.startswith(MAGIC):
                words = data[len(MAGIC) :].decode(errors="replace").split()
                if words[:1] == ["JOIN"] and len(words) == 3 and len(nodes) < MAX_NODES:
                    nodes[("127.0.0.1", int(words[1]))] = int(words[2])
                    print(f"join 127.0.0.1:{words[1]} pid {words[2]}", flush=True)
                elif words[:1] == ["LEAVE"] and len(words) == 2:
                    nodes.pop(("127.0.0.1", int(words[1])), None)
                    print(f"leave 127.0.0.1:{words[1]}", flush=True)
                elif words != ["PING"]:
                    continue
                s.sendto(b"OK", src)
            elif src in nodes and len(data) >= 14:
                if macs.get(data[6:12]) != src:
                    macs[data[6:12]] = src
                    print(f"mac {mac(data[6:12])} at {src[0]}:{src[1]}", flush=True)
                to = macs.get(data[0:6])
                for dst in [to] if to in nodes and to != src else [n for n in nodes if n != src]:
                    try:
                        s.sendto(data, dst)
                    except OSError:
                        pass  # a node whose QEMU is gone: dropped below
        if time.monotonic() - checked < 1.0:  # once a second, not per frame
            continue
        checked = time.monotonic()
        for n, pid in list(nodes.items()):
            if not alive(pid):
                del nodes[n]
                print(f"gone 127.0.0.1:{n[1]}", flush=True)
        macs = {m: a for m, a in macs.items() if a in nodes}
        if nodes:
            empty_since = time.monotonic()
        elif time.monotonic() - empty_since > IDLE:
            try:
                with open(where) as f:
                    ours = json.load(f).get("pid") == os.getpid()
                if ours:
                    os.unlink(where)
            except (OSError, ValueError):
                pass
            print("idle: exiting", flush=True)
            return 0


if __name__ == "__main__":
    sys.exit(main())
