# SPDX-License-Identifier: BSD-2-Clause
"""Erlang distribution between two seL4 nodes against two Linux VMs, same QEMU, same
network, same scheme, interleaved.

    python3 bench/dist_bench.py [ROUNDS] [MIB]

Both pairs boot in qemu-system-aarch64 with the same machine flags and the same netdev
(virtio-net on the seL4 image's virtio-mmio bus, QEMU's user network with restrict=on), and
both join a cluster the same way (docs/distribution.md): named NAME@localhost, the host's epmd
(chrysopolis/epmd.py) holding each node's dist port, `-epmd_module chrysopolis_epmd` from the
chrysopolis app inside, dist ports hostfwd'ed on 127.0.0.1, the peer's port and the host's
epmd reached at 10.0.2.100 through guestfwd rules (QEMU runs chrysopolis/relay.py per
connection, on both systems alike: every figure here includes it). The seL4 nodes boot with
cluster.booted; the Linux VMs are stage linux-vm with dist.init_args appended to ERTS's
arguments (linux_vm.booted(init_args=...)). Node A compiles the module SOURCE below, loads it
on B by rpc, and measures, timing inside Erlang with erlang:monotonic_time:
  ping-pong       PINGS round trips of a small message between a process on A and one
                  on B, after WARMUP: median and 99th percentile per round trip
  rpc:call        RPCS calls of erlang:node/0 on B from A, after WARMUP: median and p99
  A -> B          MIB binaries of 1 MiB (random, made before timing) sent from A to a process
                  on B, which answers once it holds all MIB MiB: MiB/s, first send to answer;
                  then B's crc32 of what it got is checked against A's
Each round boots the seL4 pair, then the Linux VM pair, so host noise hits both alike; the
table holds the median over rounds and the ratio seL4 / Linux VM (latency: lower is better;
throughput: higher is better). Traffic goes to 127.0.0.1 and QEMU's user network only; every
receive and rpc in the guests has a timeout and every loop a fixed count.
"""

import dataclasses
import re
import statistics
from contextlib import ExitStack, contextmanager

import net_bench  # bench/: its interleaved main

from chrysopolis import cluster, dist, epmd, targets
from chrysopolis.errors import UserError
from chrysopolis.shell import Shell
from chrysopolis.stages import linux_vm

COOKIE = "chrysopolis_bench"
PINGS, RPCS, WARMUP = 1000, 200, 50
TIMEOUT = 300.0  # seconds for any one shell expression

# Both nodes' side, one module: no double quotes or backslashes (it travels in a string).
# Times in nanoseconds (erlang:monotonic_time's native unit is finer or equal on both).
SOURCE = """-module(dbench).
-export([pong/0, pings/2, rpcs/2, sink/3, send/2, stats/1]).
pong() -> receive {P, I} -> P ! {pong, I}, pong(); stop -> ok
 after 120000 -> timeout end.
pings(Pid, N) -> [ping(Pid, I) || I <- lists:seq(1, N)].
ping(Pid, I) -> T0 = erlang:monotonic_time(nanosecond), Pid ! {self(), I},
 receive {pong, I} -> erlang:monotonic_time(nanosecond) - T0
 after 10000 -> exit(pong_timeout) end.
rpcs(Node, N) -> [rpc1(Node) || _ <- lists:seq(1, N)].
rpc1(Node) -> T0 = erlang:monotonic_time(nanosecond),
 Node = rpc:call(Node, erlang, node, [], 10000),
 erlang:monotonic_time(nanosecond) - T0.
sink(P, Want, Acc) when Want =< 0 -> P ! {got, self()},
 P ! {crc, erlang:crc32(lists:reverse(Acc))};
sink(P, Want, Acc) -> receive {chunk, B} -> sink(P, Want - byte_size(B), [B | Acc])
 after 60000 -> P ! {sink_timeout, self()} end.
send(Node, Chunks) -> Want = iolist_size(Chunks),
 S = spawn(Node, dbench, sink, [self(), Want, []]),
 T0 = erlang:monotonic_time(nanosecond), [S ! {chunk, C} || C <- Chunks],
 receive {got, S} -> T = erlang:monotonic_time(nanosecond) - T0,
 receive {crc, Crc} -> {T, Crc =:= erlang:crc32(Chunks)} after 60000 -> {T, crc_timeout} end
 after 120000 -> timeout end.
stats(Ts) -> S = list_to_tuple(lists:sort(Ts)), N = tuple_size(S),
 {element((N + 1) div 2, S), element(max(1, (99 * N + 99) div 100), S)}.
"""
COMPILE = (
    "{ok, DbTs, _} = erl_scan:string(DbSrc), "
    "DbSp = fun DbSp([], _, Out) -> lists:reverse(Out); "
    "DbSp([{dot, _} = D | R], Acc, Out) -> DbSp(R, [], [lists:reverse([D | Acc]) | Out]); "
    "DbSp([T | R], Acc, Out) -> DbSp(R, [T | Acc], Out) end, "
    "{ok, DbM, DbBin} = compile:forms([element(2, erl_parse:parse_form(F)) "
    "|| F <- DbSp(DbTs, [], [])]), {module, DbM} = code:load_binary(DbM, "
    "\"dbench.erl\", DbBin), {module, DbM} = rpc:call('%s', code, load_binary, "
    '[DbM, "dbench.erl", DbBin], 30000), DbM.'
)


@dataclasses.dataclass
class Figures:
    ping_med: float  # microseconds per round trip
    ping_p99: float
    rpc_med: float  # microseconds per call
    rpc_p99: float
    mibs: float  # MiB/s A -> B
    nodelay: str  # A's dist socket's nodelay option, as A reports it (informational)


def _eval(shell: Shell, expr: str, want: str, what: str, timeout: float = 60.0) -> re.Match:
    got = re.sub(r",\n\s+", ",", shell.eval(expr, timeout)).strip()
    m = re.fullmatch(want, got)
    if m is None:
        raise UserError(f"{what}: the node printed {got!r} (log: {shell.session.log})")
    return m


def _distributed(shell: Shell, name: str) -> None:
    """Wait (bounded) for init's -eval to have started distribution: node() is `name`."""
    for _ in range(60):
        if shell.eval("node().", 30).strip() == name:
            return
        shell.eval("timer:sleep(500).", 30)
    raise UserError(f"{name}: distribution did not start (log: {shell.session.log})")


def suite(a: Shell, b: Shell, na: dist.Node, nb: dist.Node, mib: int) -> Figures:
    """Both nodes at a prompt and distributed: compile dbench on A, load it on B, measure."""
    _distributed(a, na.name)
    _distributed(b, nb.name)
    _eval(a, f"net_adm:ping('{nb.name}').", "pong", "A pings B", 60)
    src = " ".join(SOURCE.split())  # one line: a newline typed would end the expression
    pieces = [src[i : i + 600] for i in range(0, len(src), 600)]
    _eval(a, f'DbSrc0 = "{pieces[0]}", ok.', "ok", "source")
    for i, p in enumerate(pieces[1:], start=1):
        _eval(a, f'DbSrc{i} = DbSrc{i - 1} ++ "{p}", ok.', "ok", "source")
    _eval(a, f"DbSrc = DbSrc{len(pieces) - 1}, ok.", "ok", "source")
    _eval(a, COMPILE % nb.name, "dbench", "compiling dbench", 180)

    _eval(a, f"Pong = spawn('{nb.name}', dbench, pong, []), is_pid(Pong).", "true", "pong")
    _eval(a, f"length(dbench:pings(Pong, {WARMUP})).", str(WARMUP), "ping warm-up", TIMEOUT)
    m = _eval(
        a,
        f"dbench:stats(dbench:pings(Pong, {PINGS})).",
        r"\{(\d+),(\d+)\}",
        "ping-pong",
        TIMEOUT,
    )
    ping = [int(x) / 1e3 for x in m.groups()]
    _eval(a, "Pong ! stop, ok.", "ok", "pong stop")

    _eval(a, f"length(dbench:rpcs('{nb.name}', {WARMUP})).", str(WARMUP), "rpc warm-up", TIMEOUT)
    m = _eval(
        a,
        f"dbench:stats(dbench:rpcs('{nb.name}', {RPCS})).",
        r"\{(\d+),(\d+)\}",
        "rpc:call",
        TIMEOUT,
    )
    rpc = [int(x) / 1e3 for x in m.groups()]

    _eval(
        a,
        f"Chunks = [rand:bytes(1048576) || _ <- lists:seq(1, {mib})], length(Chunks).",
        str(mib),
        "the data",
        TIMEOUT,
    )
    m = _eval(a, f"dbench:send('{nb.name}', Chunks).", r"\{(\d+),true\}", "A -> B", TIMEOUT)
    secs = int(m.group(1)) / 1e9
    nodelay = shell_words(
        a,
        "[inet:getopts(P, [nodelay]) || {_, P} <- erlang:system_info(dist_ctrl), is_port(P)].",
    )
    return Figures(*ping, *rpc, mib / secs, nodelay)


def shell_words(shell: Shell, expr: str) -> str:
    return " ".join(shell.eval(expr, 60).split())


def _nodes() -> list[dist.Node]:
    return [dist.Node("dbA", False, dist.free_port()), dist.Node("dbB", False, dist.free_port())]


def sel4_round(img: targets.Image, mib: int) -> Figures:
    nodes = _nodes()
    with cluster.booted(img, nodes, COOKIE, "dist-bench") as (a, b):
        return suite(a, b, *nodes, mib)


@contextmanager
def vm_pair(net_bus: int, nodes: list[dist.Node]):
    """Two Linux VMs distributed as cluster.booted makes seL4 nodes: registered with the
    host's epmd, dist port forwarded, the other's port and epmd through guestfwd."""
    ports = [n.port for n in nodes]
    with ExitStack() as stack:
        stack.enter_context(cluster.host_epmd())
        for n in nodes:
            stack.callback(epmd.register(n.alive, n.port).close)
        shells = [
            stack.enter_context(
                linux_vm.booted(
                    log_name=f"dist-bench-linux-vm-{n.alive}",
                    init_args=dist.init_args(n, COOKIE),
                    net_bus=net_bus,
                    forwards=[f"tcp:{n.port}:{n.port}"],
                    guest_forwards=dist.guest_forwards([p for p in ports if p != n.port]),
                )
            )
            for n in nodes
        ]
        yield shells


def linux_vm_round(net_bus: int, mib: int) -> Figures:
    nodes = _nodes()
    with vm_pair(net_bus, nodes) as (a, b):
        return suite(a, b, *nodes, mib)


def main() -> None:
    net_bench.interleaved("dist_bench.py", run)


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
                f"round {i + 1} {name:8}: ping-pong median {f.ping_med:7.0f} us, p99 "
                f"{f.ping_p99:7.0f} us; rpc:call median {f.rpc_med:7.0f} us, p99 "
                f"{f.rpc_p99:7.0f} us; {mib} MiB A -> B {f.mibs:6.1f} MiB/s; A's dist socket "
                f"{f.nodelay}",
                flush=True,
            )
    med = statistics.median
    print(
        f"\nmedian of {rounds} rounds: two seL4 nodes vs two Linux VMs, {PINGS} ping-pongs, "
        f"{RPCS} rpc:calls, {mib} x 1 MiB messages:"
    )
    print(f"  {'':32} {'seL4':>10} {'Linux VM':>10} {'seL4/Linux':>11}")
    rows = (
        ("ping-pong round trip median (us)", "ping_med"),
        ("ping-pong round trip p99 (us)", "ping_p99"),
        ("rpc:call median (us)", "rpc_med"),
        ("rpc:call p99 (us)", "rpc_p99"),
        ("A -> B binaries (MiB/s)", "mibs"),
    )
    for label, field in rows:
        s = med(getattr(f, field) for f in s_figs)
        linux = med(getattr(f, field) for f in l_figs)
        print(f"  {label:32} {s:10.1f} {linux:10.1f} {s / linux:11.2f}")
    print(
        "  latency: lower is better; throughput: higher is better. Every connection between "
        "the nodes runs through relay.py (guestfwd) on both systems."
    )


if __name__ == "__main__":
    main()
