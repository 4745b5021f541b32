# SPDX-License-Identifier: BSD-2-Clause
"""Nodes: one image, many machines. Per run, a node gets its MAC, a static address, a
hostname and, optionally, a virtual LAN shared with other nodes (docs/architecture.md,
"Nodes and LANs").

What changes without rebuilding:
- address, gateway, hostname: QEMU fw_cfg files the guest reads at boot (FWCFG_* in
  runtime/include/chrysopolis/fwcfg.h); DHCP when no address is given.
- the MAC: it sits in two sDDF config blobs (net_virt_rx's filter, beam_server's net
  client), so `node_image` re-renders the system with sdfgen and re-packs it
  (image.pack) into the cache, once per (image, MAC): seconds, no compiler.
- a LAN: QEMU's `-netdev dgram` to a hub (lanhub.py, 127.0.0.1 only) that relays Ethernet
  frames between the nodes; it replaces the user network (one NIC per node).
"""

import fcntl
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from chrysopolis import config, lanhub, targets
from chrysopolis.errors import UsageError, UserError

# Node N's MAC is DEFAULT_MAC's with last byte N + 1 (node 0 is the default image).
MAC_PREFIX = "52:54:00:c5:00:"
MAX_NODE = 244  # 10.0.3.(10 + N) stays a host address of the LAN's /24
LAN_PREFIX = "10.0.3."
LAN_BASE = 10
LAN_LEN = 24
LAN_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
HUB = Path(__file__).resolve().parent / "lanhub.py"
HUB_START = 10.0  # seconds for a new hub to say where it listens
KEEP_PACKS = 16  # node images kept in the cache, about 12 MB each (the oldest go first)


def node_mac(n: int) -> str:
    return f"{MAC_PREFIX}{check_node(n) + 1:02x}"


def check_node(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_NODE:
        raise UsageError(f"--node {n!r} is not a node number; use 0 to {MAX_NODE}")
    return n


def parse_ip(spec: str) -> tuple[str, str | None]:
    """`A.B.C.D/LEN[,GW]` as ("A.B.C.D/LEN", GW or None): a host address of its subnet, the
    gateway inside it. UsageError naming the fix otherwise."""
    fix = "give --ip A.B.C.D/LEN or A.B.C.D/LEN,GATEWAY, e.g. --ip 10.0.3.11/24,10.0.3.1"
    addr, _, gw = spec.strip().partition(",")
    if "/" not in addr:
        raise UsageError(f"--ip {spec!r} has no prefix length; {fix}")
    try:
        iface = ipaddress.IPv4Interface(addr)
    except ValueError as e:
        raise UsageError(f"--ip {spec!r}: {e}; {fix}") from None
    if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}/\d{1,2}", addr) or iface.network.prefixlen == 0:
        raise UsageError(f"--ip {spec!r}: the prefix length must be 1 to 32; {fix}")
    ip, net = iface.ip, iface.network
    if ip.is_multicast or ip.is_loopback or ip.is_unspecified or ip.is_reserved:
        raise UsageError(f"--ip {spec!r}: {ip} is not a unicast host address; {fix}")
    if net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
        raise UsageError(
            f"--ip {spec!r}: {ip} is the {'network' if ip == net.network_address else 'broadcast'} "
            f"address of {net}; pick a host address inside it"
        )
    if not gw:
        return str(iface), None
    try:
        gw_ip = ipaddress.IPv4Address(gw)
    except ValueError as e:
        raise UsageError(f"--ip {spec!r}: gateway: {e}; {fix}") from None
    if gw_ip not in net or gw_ip == ip:
        raise UsageError(
            f"--ip {spec!r}: the gateway {gw_ip} must be another address inside {net}; {fix}"
        )
    return str(iface), str(gw_ip)


def check_hostname(name: str) -> str:
    """A host name uname can carry: dot-separated labels of letters, digits and '-'."""
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= 64
        or not all(HOST_LABEL.fullmatch(label) for label in name.split("."))
    ):
        raise UsageError(
            f"--hostname {name!r} is not a host name; use letters, digits and '-' in "
            "dot-separated labels, at most 64 characters, e.g. --hostname node1"
        )
    return name


def check_lan(name: str) -> str:
    if not LAN_NAME.fullmatch(name or ""):
        raise UsageError(
            f"--lan {name!r} is not a LAN name; use 1-32 letters, digits, '-' or '_', e.g. --lan demo"
        )
    return name


@dataclass(frozen=True)
class Settings:
    """A run's node settings; the defaults are the plain image (DHCP, node 0's MAC)."""

    node: int | None = None
    mac: str | None = None  # None: the image's own
    ip: str | None = None  # "A.B.C.D/LEN": static
    gw: str | None = None
    hostname: str | None = None
    lan: str | None = None

    def fw_cfg(self) -> list[tuple[str, str]]:
        """(fw_cfg file, value) pairs for qemu.command; values hold no commas."""
        out = []
        if self.ip:
            out.append(("opt/chrysopolis/ip", self.ip))
        if self.gw:
            out.append(("opt/chrysopolis/gw", self.gw))
        if self.hostname:
            out.append(("opt/chrysopolis/hostname", self.hostname))
        return out

    @property
    def address(self) -> str | None:
        return self.ip.split("/")[0] if self.ip else None


def settings(
    node: int | None = None,
    mac: str | None = None,
    ip: str | None = None,
    hostname: str | None = None,
    lan: str | None = None,
) -> Settings:
    """The settings of `run`'s --node/--mac/--ip/--hostname/--lan, checked (UsageError).

    --node N: MAC …:0(N+1), hostname nodeN. --lan NAME needs --node and gives the node
    10.0.3.(10+N)/24 unless --ip says otherwise."""
    from chrysopolis import system

    if node is not None and mac is not None:
        raise UsageError("--node picks the MAC itself; give --node or --mac, not both")
    if lan is not None:
        check_lan(lan)
        if node is None:
            raise UsageError(f"--lan {lan} needs --node N (0 to {MAX_NODE}): nodes differ by it")
    if node is not None:
        mac = node_mac(node)
    elif mac is not None:
        try:
            mac = system.check_mac(mac)
        except UserError as e:
            raise UsageError(f"--mac: {e}") from None
    gw = None
    if ip is not None:
        ip, gw = parse_ip(ip)
    elif lan is not None:
        ip = f"{LAN_PREFIX}{LAN_BASE + node}/{LAN_LEN}"
    if hostname is not None:
        check_hostname(hostname)
    elif node is not None:
        hostname = f"node{node}"
    return Settings(node, mac, ip, gw, hostname, lan)


# --- a node's image: the same build, packed with its MAC -------------------------------------


def pack_dir(key: str, mac: str) -> Path:
    """Where the pack of the image with stage key `key` for `mac` lives. The key covers
    image.pack (the image's modules); this module's own hash covers `_pack`."""
    from chrysopolis.treehash import file_hash

    me = file_hash(Path(__file__))[:8]
    return config.cache_dir() / "nodes" / f"{key[:20]}-{me}-{mac.replace(':', '')}"


def node_image(planner, target: str, mac: str | None) -> targets.Image:
    """TARGET's image with `mac` in its net blobs: the built image itself for its own MAC,
    else a pack of the same ELFs (image.pack) cached per (image, MAC)."""
    img = targets.image(planner, target)
    if mac is None or mac == img.mac:
        return img
    if img.net_bus is None:
        raise UsageError(f"target '{target}' has no network device, so it has no MAC to change")
    d = pack_dir(planner.key(target), mac)
    loader = d / img.loader.name
    if not loader.is_file():
        d.parent.mkdir(parents=True, exist_ok=True)
        with open(d.parent / ".lock", "w") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            if not loader.is_file():
                _pack(planner, target, img, mac, d)
    os.utime(d)  # the newest used stay
    return replace(img, loader=loader, mac=mac)


def _pack(planner, target: str, img: targets.Image, mac: str, d: Path) -> None:
    from chrysopolis import cache, image, sources

    opts = planner.options(cache.get(target))
    if "heap_mib" not in opts or "stack_kib" not in opts:
        raise UsageError(f"target '{target}' is not packed by image.assemble; it has one MAC")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=d.parent))
    try:
        elfdir = tmp / "elf"
        elfdir.mkdir()
        image.gather_elfs(planner, img.dir, elfdir)

        # The heap the image was packed with: a MAC changes no size, so no probe again.
        manifest = json.loads((img.dir / targets.MANIFEST).read_text())
        try:
            image.pack(
                lambda text: None,
                elfdir,
                tmp / "system",
                tmp / img.loader.name,
                tmp / "report.txt",
                img.board.name,
                sddf=sources.require(planner.lock.source("sddf")),
                microkit=planner.ensure("sdk") / "bin" / "microkit",
                heap_mib=manifest.get("heap_mib", opts["heap_mib"]),
                stack_kib=opts["stack_kib"],
                mac=mac,
                policies=opts.get("supervision", ""),
                ram_mib=planner.ram_mib,
            )
        except UserError as e:
            raise UserError(f"packing the image for MAC {mac} failed: {e}") from None
        shutil.rmtree(elfdir)  # the loader holds them; the cache keeps only what boots
        tmp.rename(d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    packs = sorted((p for p in d.parent.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in packs[:-KEEP_PACKS]:
        shutil.rmtree(old, ignore_errors=True)


# --- LANs: nodes linked through a hub on 127.0.0.1 --------------------------------------------


def lan_dir(name: str) -> Path:
    """The LAN's rendezvous folder in the out directory: hub.json (where the hub listens),
    node-N.json per running node, hub.log (the MACs the hub has seen, per node port)."""
    return config.out_dir() / "lan" / check_lan(name)


def _read_json(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _hub_port(d: Path) -> int:
    """The port of the LAN's hub, started when none runs (callers hold d/.lock)."""
    hub = _read_json(d / "hub.json")
    if hub and lanhub.alive(hub.get("pid", 0)) and _ping(hub["port"]):
        return hub["port"]
    (d / "hub.json").unlink(missing_ok=True)
    with open(d / "hub.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, str(HUB), str(d / "hub.json")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # it outlives a Ctrl-C in one node's terminal
        )
    deadline = time.monotonic() + HUB_START
    while time.monotonic() < deadline:
        hub = _read_json(d / "hub.json")
        if hub and _ping(hub["port"]):
            return hub["port"]
        time.sleep(0.05)
    raise UserError(f"the LAN hub did not start within {HUB_START:.0f} s (log: {d / 'hub.log'})")


def _control(port: int, msg: str, timeout: float = 1.0) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.bind(("127.0.0.1", 0))
        try:
            s.sendto(f"CHRYSOPOLIS-LAN {msg}".encode(), ("127.0.0.1", port))
            return s.recv(256).decode(errors="replace")
        except OSError:
            return None


def _ping(port: int) -> bool:
    return _control(port, "PING") == "OK"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def joined(lan: str, node: int) -> Iterator[str]:
    """Node `node` on LAN `lan` for the body: QEMU's `-netdev` value (dgram to the hub).
    Refuses a node number already up on that LAN (its MAC and address would clash)."""
    d = lan_dir(lan)
    d.mkdir(parents=True, exist_ok=True)
    me = d / f"node-{node}.json"
    with open(d / ".lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        other = _read_json(me)
        if other and other.get("pid") != os.getpid() and lanhub.alive(other.get("pid", 0)):
            raise UsageError(
                f"node {node} is already up on LAN {lan} (pid {other['pid']}); pick another --node"
            )
        hub = _hub_port(d)
        port = _free_udp_port()
        if _control(hub, f"JOIN {port} {os.getpid()}") != "OK":
            raise UserError(f"the LAN hub on 127.0.0.1:{hub} did not take node {node}")
        me.write_text(json.dumps({"node": node, "pid": os.getpid(), "port": port}))
    try:
        yield (
            f"dgram,id=net0,local.type=inet,local.host=127.0.0.1,local.port={port},"
            f"remote.type=inet,remote.host=127.0.0.1,remote.port={hub}"
        )
    finally:
        _control(hub, f"LEAVE {port}", 0.5)
        if (_read_json(me) or {}).get("port") == port:
            me.unlink(missing_ok=True)


@contextmanager
def attached(planner, target: str, s: Settings) -> Iterator[tuple[targets.Image, dict]]:
    """TARGET's image for these settings and the qemu.command keywords that give the run
    its node: fw_cfg files, and on a LAN the netdev (held for the body)."""
    img = node_image(planner, target, s.mac)
    kw: dict = {"fw_cfg": s.fw_cfg()}
    if s.lan is None:
        yield img, kw
        return
    with joined(s.lan, s.node) as netdev:
        yield img, {**kw, "netdev": netdev}
