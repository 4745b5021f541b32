# SPDX-License-Identifier: BSD-2-Clause
"""The host's epmd for a cluster: where every node's distribution port is found.

No epmd runs in a protection domain. Each seL4 node's dist port is forwarded to the same
port on the host's 127.0.0.1, and the tool registers the node's name with the host's
epmd at that port; nodes inside QEMU ask the host's epmd through the user network
(erlang/chrysopolis_epmd.erl). A Linux node on the host registers itself as usual.

If an epmd already listens on 127.0.0.1:4369 (one an OTP on this host started), it is
used; else `ensure` serves the EPMD protocol here, on 127.0.0.1 only, for as long as the
tool runs. Requests (OTP's erts/doc "EPMD Protocol"), each `len:16 request`:
  ALIVE2_REQ  'x' port:16 type:8 proto:8 high:16 low:16 nlen:16 name elen:16 extra
              -> 'v' result:8 creation:32; the registration lives while the connection does
  PORT_PLEASE2_REQ 'z' name -> 'w' 0 port:16 type:8 proto:8 high:16 low:16 nlen name elen extra
                             | 'w' 1; then close
  NAMES_REQ   'n' -> epmd_port:32 "name N at port P\\n"...; then close
"""

import random
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass

from chrysopolis.errors import UserError

PORT = 4369
ALIVE2_REQ, ALIVE2_X_RESP = ord("x"), ord("v")
PORT_PLEASE2_REQ, PORT2_RESP = ord("z"), ord("w")
NAMES_REQ = ord("n")
NORMAL_NODE, TCP_IPV4 = 77, 0
TIMEOUT = 5.0  # seconds for any one request


@dataclass
class Entry:
    port: int
    node_type: int
    proto: int
    high: int
    low: int
    extra: bytes
    creation: int


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("epmd: connection closed mid-message")
        buf += chunk
    return buf


def _request(sock: socket.socket) -> bytes:
    (n,) = struct.unpack(">H", _recv_exact(sock, 2))
    return _recv_exact(sock, n)


def alive2(name: str, port: int, high: int = 6, low: int = 5) -> bytes:
    n = name.encode()
    body = struct.pack(">BHBBHHH", ALIVE2_REQ, port, NORMAL_NODE, TCP_IPV4, high, low, len(n))
    body += n + struct.pack(">H", 0)
    return struct.pack(">H", len(body)) + body


class _Handler(socketserver.BaseRequestHandler):
    server: "Epmd"

    def handle(self) -> None:
        sock = self.request
        sock.settimeout(TIMEOUT)
        try:
            req = _request(sock)
        except (OSError, ConnectionError, struct.error):
            return
        if not req:
            return
        if req[0] == ALIVE2_REQ:
            self._alive(sock, req)
        elif req[0] == PORT_PLEASE2_REQ:
            e = self.server.lookup(req[1:].decode(errors="replace"))
            if e is None:
                sock.sendall(bytes([PORT2_RESP, 1]))
            else:
                n = req[1:]
                sock.sendall(
                    struct.pack(
                        ">BBHBBHHH",
                        PORT2_RESP,
                        0,
                        e.port,
                        e.node_type,
                        e.proto,
                        e.high,
                        e.low,
                        len(n),
                    )
                    + n
                    + struct.pack(">H", len(e.extra))
                    + e.extra
                )
        elif req[0] == NAMES_REQ:
            lines = "".join(f"name {k} at port {v.port}\n" for k, v in self.server.names().items())
            sock.sendall(struct.pack(">I", self.server.server_address[1]) + lines.encode())

    def _alive(self, sock: socket.socket, req: bytes) -> None:
        try:
            port, ntype, proto, high, low, nlen = struct.unpack(">HBBHHH", req[1:11])
            name = req[11 : 11 + nlen].decode()
            (elen,) = struct.unpack(">H", req[11 + nlen : 13 + nlen])
            extra = req[13 + nlen : 13 + nlen + elen]
        except (struct.error, UnicodeDecodeError):
            return
        entry = Entry(port, ntype, proto, high, low, extra, random.randrange(4, 1 << 32))
        if not self.server.add(name, entry):
            sock.sendall(struct.pack(">BBI", ALIVE2_X_RESP, 1, 0))
            return
        try:
            sock.sendall(struct.pack(">BBI", ALIVE2_X_RESP, 0, entry.creation))
            sock.settimeout(None)
            while sock.recv(256):  # the registration lives while the node keeps this open
                pass
        except OSError:
            pass
        finally:
            self.server.remove(name, entry)


class Epmd(socketserver.ThreadingTCPServer):
    """An epmd on 127.0.0.1:`port` (0: any free port), serving from a thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = PORT) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, Entry] = {}
        try:
            super().__init__(("127.0.0.1", port), _Handler)
        except OSError as e:
            raise UserError(f"cannot serve epmd on 127.0.0.1:{port}: {e.strerror}") from None
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def add(self, name: str, e: Entry) -> bool:
        with self._lock:
            if name in self._nodes:
                return False
            self._nodes[name] = e
            return True

    def remove(self, name: str, e: Entry) -> None:
        with self._lock:
            if self._nodes.get(name) is e:
                del self._nodes[name]

    def lookup(self, name: str) -> Entry | None:
        with self._lock:
            return self._nodes.get(name)

    def names(self) -> dict[str, Entry]:
        with self._lock:
            return dict(self._nodes)

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def answers(port: int = PORT) -> bool:
    """Whether an epmd answers NAMES on 127.0.0.1:`port`."""
    try:
        names(port)
        return True
    except OSError:
        return False


def ensure(port: int = PORT) -> Epmd | None:
    """The host's epmd: None if one already answers on 127.0.0.1:`port`, else ours."""
    return None if answers(port) else Epmd(port)


def register(name: str, port: int, epmd_port: int = PORT) -> socket.socket:
    """Register `name` at dist `port` with the epmd on 127.0.0.1:`epmd_port`; the
    registration lives until the returned socket is closed."""
    sock = socket.create_connection(("127.0.0.1", epmd_port), timeout=TIMEOUT)
    try:
        sock.sendall(alive2(name, port))
        resp = _recv_exact(sock, 2)
        if resp[0] != ALIVE2_X_RESP or resp[1] != 0:
            raise UserError(
                f"epmd on 127.0.0.1:{epmd_port} refused the name {name!r}: a node of that "
                f"name runs already; give another name"
            )
        _recv_exact(sock, 4)
    except BaseException:
        sock.close()
        raise
    return sock


def port_please(name: str, epmd_port: int = PORT) -> int | None:
    """The dist port epmd on 127.0.0.1:`epmd_port` has for `name`, or None."""
    with socket.create_connection(("127.0.0.1", epmd_port), timeout=TIMEOUT) as sock:
        n = name.encode()
        sock.sendall(struct.pack(">HB", 1 + len(n), PORT_PLEASE2_REQ) + n)
        head = _recv_exact(sock, 2)
        if head[1] != 0:
            return None
        return struct.unpack(">H", _recv_exact(sock, 2))[0]


def names(epmd_port: int = PORT) -> dict[str, int]:
    """{name: port} of the epmd on 127.0.0.1:`epmd_port` (OSError when none answers)."""
    with socket.create_connection(("127.0.0.1", epmd_port), timeout=TIMEOUT) as sock:
        sock.sendall(struct.pack(">HB", 1, NAMES_REQ))
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    out = {}
    for line in data[4:].decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "name" and parts[3] == "port":
            out[parts[1]] = int(parts[4])
    return out
