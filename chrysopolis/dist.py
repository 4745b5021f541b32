# SPDX-License-Identifier: BSD-2-Clause
"""Erlang distribution for seL4 nodes: names, cookies, ports and forwards
(docs/distribution.md).

Every node of a cluster is NAME@localhost (short names) or NAME@127.0.0.1 (long names),
reached through the host's 127.0.0.1. A seL4 node listens on one dist port P, forwarded
from the host's 127.0.0.1:P; the tool registers NAME at P with the host's epmd
(chrysopolis/epmd.py) while the node runs. Inside, erlang/chrysopolis_epmd.erl finds
every other node through 10.0.2.100, where `guestfwd` rules reach the host's epmd, the
other seL4 nodes' ports and LINUX_PORTS.
"""

import os
import re
import secrets
import socket
import string
from dataclasses import dataclass
from pathlib import Path

from chrysopolis import epmd
from chrysopolis.errors import UsageError
from chrysopolis.stages import erlang_app

# A Linux node that listens in this range can be dialled by the seL4 nodes (each port is
# a guestfwd rule, fixed when QEMU starts); one outside it must dial them first.
LINUX_PORTS = range(9100, 9110)
HOSTS = {False: "localhost", True: "127.0.0.1"}  # the host part: short names, long names
ALIVE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
COOKIE = re.compile(r"[A-Za-z0-9_.@+-]{1,255}")
COOKIE_FILE = Path("~/.erlang.cookie")


@dataclass(frozen=True)
class Node:
    """One seL4 node's distribution: its name, whether long, its dist port."""

    alive: str
    long: bool
    port: int

    @property
    def name(self) -> str:
        return f"{self.alive}@{HOSTS[self.long]}"


def parse_name(sname: str | None, name: str | None) -> tuple[str, bool]:
    """(alive part, long names) of `--sname NAME` or `--name NAME@HOST`; UsageError otherwise."""
    if sname and name:
        raise UsageError("--sname and --name: give one (short names or long names)")
    spec, long = (name, True) if name else (sname or "", False)
    alive, sep, host = spec.partition("@")
    flag = "--name" if long else "--sname"
    if not ALIVE.fullmatch(alive):
        raise UsageError(
            f"{flag} {spec!r}: a node name is a letter, then letters, digits, _ or -, e.g. {flag} beam1"
        )
    if sep and host != HOSTS[long]:
        raise UsageError(
            f"{flag} {spec!r}: the host part must be {HOSTS[long]} (every node is reached "
            f"through this host's 127.0.0.1); give {flag} {alive}"
            + ("" if long else f" or {alive}@localhost")
        )
    return alive, long


def cookie(value: str | None, file: Path | None) -> str:
    """The cluster's cookie: `--cookie`, the first line of `--cookie-file`, else the user's
    ~/.erlang.cookie (made as `erl` makes it when missing: 20 random capitals, mode 0400)."""
    if value is not None and file is not None:
        raise UsageError("--cookie and --cookie-file: give one")
    if value is not None:
        if not COOKIE.fullmatch(value):
            raise UsageError(
                "--cookie: use letters, digits and _.@+- only (it becomes an atom on each node)"
            )
        return value
    path = Path(file) if file is not None else COOKIE_FILE.expanduser()
    if file is None and not path.exists():
        text = "".join(secrets.choice(string.ascii_uppercase) for _ in range(20))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    try:
        text = path.read_text().splitlines()[0].strip() if path.stat().st_size else ""
    except OSError as e:
        raise UsageError(f"--cookie-file {path}: {e.strerror}") from None
    if not COOKIE.fullmatch(text):
        raise UsageError(
            f"cookie file {path}: its first line must be letters, digits and _.@+- only"
        )
    return text


def free_port() -> int:
    """A TCP port free on the host's 127.0.0.1, outside LINUX_PORTS."""
    for _ in range(20):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in LINUX_PORTS:
            return port
    raise OSError("no free port on 127.0.0.1")


def guest_forwards(peers: list[int], epmd_port: int = epmd.PORT) -> list[tuple[int, int]]:
    """A seL4 node's guestfwd rules: the host's epmd, LINUX_PORTS, its peers' dist ports."""
    return [(epmd.PORT, epmd_port), *((p, p) for p in LINUX_PORTS), *((p, p) for p in peers)]


def init_args(node: Node, cookie_value: str) -> list[str]:
    """init's arguments for a seL4 node: our epmd module in the code path and loaded, the
    cookie, the dist port, then distribution started by -eval (a release boots embedded, which
    loads nothing on demand, so `-sname` at boot could not reach chrysopolis_epmd)."""
    domain = "longnames" if node.long else "shortnames"
    return [
        "-pa",
        f"/lib/{erlang_app.LIB}/ebin",
        "-epmd_module",
        "chrysopolis_epmd",
        "-setcookie",
        cookie_value,
        "-kernel",
        "inet_dist_listen_min",
        str(node.port),
        "inet_dist_listen_max",
        str(node.port),
        "-eval",
        "ok = code:ensure_modules_loaded([chrysopolis_epmd]), "
        f"{{ok, _}} = net_kernel:start('{node.name}', #{{name_domain => {domain}}}).",
    ]


def linux_flags(alive: str, long: bool, cookie_value: str) -> list[str]:
    """The flags an ordinary `erl` on this host joins with (README): the name, the cookie,
    and a dist port the seL4 nodes can dial."""
    return [
        "-name" if long else "-sname",
        f"{alive}@{HOSTS[long]}",
        "-setcookie",
        cookie_value,
        "-kernel",
        "inet_dist_listen_min",
        str(LINUX_PORTS.start),
        "inet_dist_listen_max",
        str(LINUX_PORTS.stop - 1),
    ]
