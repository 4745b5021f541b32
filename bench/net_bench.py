# SPDX-License-Identifier: BSD-2-Clause
"""gen_tcp on seL4 against the same ERTS on the Linux VM, same QEMU, same network, interleaved.

    python3 bench/net_bench.py [ROUNDS] [MIB]

Both systems boot in qemu-system-aarch64 with the same machine flags and the same netdev:
virtio-net on the seL4 image's virtio-mmio bus (run.json net_bus), QEMU's user network with
restrict=on; the Linux VM is stage linux-vm (Debian's kernel, virtio_net, 10.0.2.15/24).
In each guest the same Erlang module (compiled in the guest from SOURCE below) runs gen_tcp
servers; the host talks to them with Python sockets through hostfwd on 127.0.0.1. The guest's
sockets are passive with a 256 KiB user-level `buffer` (gen_tcp's default, 1460 bytes on both
systems, caps each recv at one segment and the figure at ERTS's per-call cost); the kernel's and
lwIP's own buffers and windows are left at their defaults.
  host -> guest    the host sends MIB MiB and half-closes; the guest keeps what it reads and
                   answers "SIZE" at EOF, then its md5 (hashing 16 MiB in the guest takes
                   seconds, more than the transfer); timed on the host to the "SIZE" line
  guest -> host    the guest sends MIB MiB and half-closes; the host md5s it to EOF and
                   compares with the guest's md5 of the data; timed on the host, connect to EOF
  guest -> host    the same data from a guest-initiated connection to 10.0.2.100 (guestfwd):
  (relay)          QEMU runs chrysopolis/relay.py per connection, a Python process copying
                   between QEMU and the host's md5 server, so this row includes the relay's
                   cost; timed in the guest, connect to the host's "MD5 SIZE" line
  RTT              1-byte request/response on one connection (TCP_NODELAY on the host,
                   {nodelay, true} in the guest), RTTS round trips after WARMUP, timed on
                   the host: median and 99th percentile
Each round boots seL4 then the Linux VM, so host noise hits both alike; the table holds the
median over rounds, and the ratio seL4 / Linux VM (throughput: higher is better; latency:
lower is better). Traffic goes to 127.0.0.1 and QEMU's user network only; every socket
and guest receive has a timeout, and each guest server accepts a fixed number of connections.
"""

import dataclasses
import hashlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from chrysopolis import cache, config, logs, qemu, targets
from chrysopolis.errors import UserError
from chrysopolis.shell import Shell
from chrysopolis.stages import linux_vm
from chrysopolis.targets.beam import MARKERS, NET_BOUND, NET_LINE

SINK_PORT, SOURCE_PORT, ECHO_PORT = 8080, 8081, 8082  # the guest's listeners
ALIAS_PORT = 9000  # the guest connects to 10.0.2.100:9000 (guestfwd to the host's server)
RTTS, WARMUP = 1000, 50
TIMEOUT = 120.0  # seconds for any one socket operation or transfer

# The guest's side, one module: no double quotes or backslashes (it travels in a string).
SOURCE = """-module(nbench).
-export([serve/3, sink/1, source/2, echo/1, put/3]).
serve(Port, N, F) -> Sh = self(), spawn(fun() -> {ok, L} = gen_tcp:listen(Port, [binary,
 {active, false}, {reuseaddr, true}, {nodelay, true}, {backlog, 16},
 {exit_on_close, false}, {buffer, 262144}]), Sh ! {up, Port},
 [begin {ok, S} = gen_tcp:accept(L, 600000), F(S), gen_tcp:close(S) end
  || _ <- lists:seq(1, N)] end), receive {up, Port} -> ok after 10000 -> timeout end.
sink(S) -> {Bs, N} = rd(S, [], 0), gen_tcp:send(S, [integer_to_binary(N), 10]),
 gen_tcp:send(S, [binary:encode_hex(erlang:md5(lists:reverse(Bs)), lowercase), 10]).
rd(S, Bs, N) -> case gen_tcp:recv(S, 0, 60000) of
 {ok, B} -> rd(S, [B | Bs], N + byte_size(B)); _ -> {Bs, N} end.
source(S, Big) -> ok = gen_tcp:send(S, Big), ok = gen_tcp:shutdown(S, write),
 gen_tcp:recv(S, 0, 60000).
echo(S) -> case gen_tcp:recv(S, 0, 60000) of
 {ok, B} -> ok = gen_tcp:send(S, B), echo(S); _ -> done end.
put(Ip, Port, Data) -> T0 = erlang:monotonic_time(microsecond),
 {ok, S} = gen_tcp:connect(Ip, Port, [binary, {active, false}, {packet, line},
 {buffer, 262144}], 10000),
 ok = gen_tcp:send(S, Data), ok = gen_tcp:shutdown(S, write),
 {ok, R} = gen_tcp:recv(S, 0, 120000), gen_tcp:close(S),
 {string:trim(R), erlang:monotonic_time(microsecond) - T0}.
"""
# The shell compiles the module from the string NbSrc (sent in pieces: each line typed
# stays short of the console's width).
COMPILE = (
    "{ok, NbTs, _} = erl_scan:string(NbSrc), "
    "NbSp = fun NbSp([], _, Out) -> lists:reverse(Out); "
    "NbSp([{dot, _} = D | R], Acc, Out) -> NbSp(R, [], [lists:reverse([D | Acc]) | Out]); "
    "NbSp([T | R], Acc, Out) -> NbSp(R, [T | Acc], Out) end, "
    "{ok, NbM, NbBin} = compile:forms([element(2, erl_parse:parse_form(F)) "
    "|| F <- NbSp(NbTs, [], [])]), {module, NbM} = code:load_binary(NbM, "
    '"nbench.erl", NbBin), NbM.'
)
BIG = (
    "Big = << <<(rand:bytes(1048576))/binary>> || _ <- lists:seq(1, %d) >>, "
    "binary:encode_hex(erlang:md5(Big), lowercase)."
)
SERVERS = (
    "{nbench:serve(%d, 1, fun nbench:sink/1), nbench:serve(%d, 1, fun(S) -> "
    "nbench:source(S, Big) end), nbench:serve(%d, 1, fun nbench:echo/1)}."
)
PUT = "nbench:put({10,0,2,100}, %d, Big)."


@dataclasses.dataclass
class Figures:
    up: float  # MiB/s host -> guest
    down: float  # MiB/s guest -> host, host-initiated
    relay: float  # MiB/s guest -> host, guest-initiated through relay.py
    rtt_med: float  # microseconds
    rtt_p99: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _eval(shell: Shell, expr: str, want: str, what: str, timeout: float = 60.0) -> re.Match:
    got = re.sub(r",\n\s+", ",", shell.eval(expr, timeout)).strip()
    m = re.fullmatch(want, got)
    if m is None:
        raise UserError(f"{what}: the guest printed {got!r} (log: {shell.session.log})")
    return m


def _md5_server(sock: socket.socket, got: list) -> None:
    """The host's end of the relay row: one connection, read to EOF, answer "MD5 SIZE"."""
    sock.settimeout(TIMEOUT)
    try:
        c, _ = sock.accept()
        with c:
            c.settimeout(TIMEOUT)
            h, n = hashlib.md5(), 0
            while data := c.recv(1 << 16):
                h.update(data)
                n += len(data)
            c.sendall(f"{h.hexdigest()} {n}\n".encode())
            got.append((h.hexdigest(), n))
    except OSError as e:
        got.append(e)


def _host_up(port: int, data: bytes, md5: str) -> float:
    """Seconds from connect to the guest's "SIZE" line; its "MD5" line (the guest hashes
    after it answered: md5 in the guest is slower than the network) is checked after."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as c:
        t0 = time.perf_counter()
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        reply = b""
        while reply.count(b"\n") < 1 and len(reply) < 200:
            if not (chunk := c.recv(200)):
                break
            reply += chunk
        took = time.perf_counter() - t0
        while reply.count(b"\n") < 2 and len(reply) < 200:
            if not (chunk := c.recv(200)):
                break
            reply += chunk
    if reply.decode(errors="replace").split() != [str(len(data)), md5]:
        raise UserError(f"host -> guest: the guest answered {reply!r}, sent {len(data)} {md5}")
    return took


def _host_down(port: int, size: int, md5: str) -> float:
    h, n = hashlib.md5(), 0
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as c:
        t0 = time.perf_counter()
        while data := c.recv(1 << 16):
            h.update(data)
            n += len(data)
    took = time.perf_counter() - t0
    if (h.hexdigest(), n) != (md5, size):
        raise UserError(f"guest -> host: got {h.hexdigest()} {n}, the guest sent {md5} {size}")
    return took


def _host_rtt(port: int) -> list[float]:
    """Seconds of each of RTTS 1-byte round trips, after WARMUP untimed ones."""
    times = []
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(WARMUP + RTTS):
            t0 = time.perf_counter()
            c.sendall(b"x")
            if c.recv(16) != b"x":
                raise UserError(f"round trip {i}: the guest's echo is not the byte sent")
            if i >= WARMUP:
                times.append(time.perf_counter() - t0)
    return times


def _p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[98]


def suite(shell: Shell, fwd: dict[int, int], alias: socket.socket, mib: int) -> Figures:
    """Compile nbench in the guest, make the data, and measure (the guest is at a prompt)."""
    src = " ".join(SOURCE.split())  # one line: a newline typed would end the expression
    pieces = [src[i : i + 600] for i in range(0, len(src), 600)]
    _eval(shell, f'NbSrc0 = "{pieces[0]}", ok.', "ok", "source")
    for i, p in enumerate(pieces[1:], start=1):
        _eval(shell, f'NbSrc{i} = NbSrc{i - 1} ++ "{p}", ok.', "ok", "source")
    _eval(shell, f"NbSrc = NbSrc{len(pieces) - 1}, ok.", "ok", "source")
    _eval(shell, COMPILE, "nbench", "compiling nbench", 180)
    md5 = _eval(shell, BIG % mib, r'<<"([0-9a-f]{32})">>', "the data", 300).group(1)
    size = mib << 20
    _eval(shell, SERVERS % (SINK_PORT, SOURCE_PORT, ECHO_PORT), r"\{ok,ok,ok\}", "servers")

    data = os.urandom(size)
    up = _host_up(fwd[SINK_PORT], data, hashlib.md5(data).hexdigest())
    down = _host_down(fwd[SOURCE_PORT], size, md5)
    rtts = _host_rtt(fwd[ECHO_PORT])

    got: list = []
    server = threading.Thread(target=_md5_server, args=(alias, got), daemon=True)
    server.start()
    m = _eval(shell, PUT % ALIAS_PORT, r'\{<<"([0-9a-f]{32}) (\d+)">>,(\d+)\}', "relay", TIMEOUT)
    server.join(TIMEOUT)
    if (m.group(1), int(m.group(2))) != (md5, size) or got != [(md5, size)]:
        raise UserError(f"guest -> host (relay): host saw {got!r}, guest sent {md5} {size}")
    relay_s = int(m.group(3)) / 1e6
    mb = size / 2**20
    return Figures(
        mb / up, mb / down, mb / relay_s, statistics.median(rtts) * 1e6, _p99(rtts) * 1e6
    )


def _forwards() -> tuple[dict[int, int], list[str]]:
    fwd = {p: _free_port() for p in (SINK_PORT, SOURCE_PORT, ECHO_PORT)}
    return fwd, [f"tcp:{h}:{g}" for g, h in fwd.items()]


def _alias() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


def sel4_round(img: targets.Image, mib: int) -> Figures:
    fwd, forwards = _forwards()
    with _alias() as alias:
        cmd = img.command(forwards=forwards, guest_forwards=[(ALIAS_PORT, alias.getsockname()[1])])
        with qemu.boot(cmd, logs.run_log("net-bench")) as s:
            s.expect(MARKERS["banner"], 180)
            s.expect(NET_LINE, NET_BOUND)
            shell = Shell(s)
            shell.wait_ready(120)
            return suite(shell, fwd, alias, mib)


def linux_vm_round(net_bus: int, mib: int) -> Figures:
    fwd, forwards = _forwards()
    with _alias() as alias:
        with linux_vm.booted(
            log_name="net-bench-linux-vm",
            net_bus=net_bus,
            forwards=forwards,
            guest_forwards=[(ALIAS_PORT, alias.getsockname()[1])],
        ) as shell:
            return suite(shell, fwd, alias, mib)


def main() -> None:
    interleaved("net_bench.py", run)


def interleaved(script: str, run_rounds) -> None:
    """`script [ROUNDS] [MIB]`: run_rounds(rounds, mib, img) with the beam image on a
    private copy of its disk (shared by bench/dist_bench.py)."""
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    mib = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    if not (1 <= rounds <= 20 and 1 <= mib <= 64):
        raise SystemExit(f"usage: {script} [ROUNDS 1-20] [MIB 1-64]")
    planner = cache.Planner()
    planner.ensure("linux-vm")
    img = targets.image(planner, "beam")
    if img.net_bus is None:
        raise SystemExit("the beam image has no network device (run.json has no net_bus)")
    # A private disk: QEMU locks its disk, and others may boot the cached image meanwhile.
    tmp = Path(tempfile.mkdtemp(prefix="net-bench-", dir=config.cache_dir() / "runs"))
    subprocess.run(["cp", "--sparse=always", str(img.disk), str(tmp / "disk.img")], check=True)
    try:
        run_rounds(rounds, mib, dataclasses.replace(img, disk=tmp / "disk.img"))
    finally:
        shutil.rmtree(tmp)


def run(rounds: int, mib: int, img: targets.Image) -> None:
    s_figs, l_figs = [], []
    for i in range(rounds):
        for name, figs, go in (
            ("seL4", s_figs, lambda: sel4_round(img, mib)),
            ("Linux VM", l_figs, lambda: linux_vm_round(img.net_bus, mib)),
        ):
            f = go()
            figs.append(f)
            print(
                f"round {i + 1} {name:8}: host->guest {f.up:6.1f} MiB/s, guest->host "
                f"{f.down:6.1f} MiB/s, guest->host via relay {f.relay:6.1f} MiB/s, "
                f"RTT median {f.rtt_med:7.0f} us, p99 {f.rtt_p99:7.0f} us",
                flush=True,
            )
    med = statistics.median
    print(f"\nmedian of {rounds} rounds, {mib} MiB transfers, {RTTS} round trips:")
    print(f"  {'':34} {'seL4':>10} {'Linux VM':>10} {'seL4/Linux':>11}")
    rows = (
        ("host -> guest (MiB/s)", "up"),
        ("guest -> host (MiB/s)", "down"),
        ("guest -> host via relay (MiB/s)", "relay"),
        ("1-byte RTT median (us)", "rtt_med"),
        ("1-byte RTT p99 (us)", "rtt_p99"),
    )
    for label, field in rows:
        s = med(getattr(f, field) for f in s_figs)
        linux = med(getattr(f, field) for f in l_figs)
        print(f"  {label:34} {s:10.1f} {linux:10.1f} {s / linux:11.2f}")
    print(
        "  throughput: higher is better; RTT: lower is better. The relay row includes "
        "relay.py, a Python process per connection between QEMU and the host."
    )


if __name__ == "__main__":
    main()
