# SPDX-License-Identifier: BSD-2-Clause
"""Checks of the beam image in a cluster: two seL4 nodes and a Linux node (the baseline
emulator on the host) in one Erlang cluster (docs/distribution.md)."""

import re
import time

from chrysopolis import cluster, dist, logs, targets
from chrysopolis.cache import Planner
from chrysopolis.checks import check
from chrysopolis.errors import UserError
from chrysopolis.shell import Shell
from chrysopolis.targets.beam import NEEDS, _eval, _halt, _no_fatal_lines

A, B, L = "beam1@localhost", "beam2@localhost", "linux@localhost"
COOKIE = "chrysopolis_check"
NODEDOWN_WITHIN = 60.0  # seconds: OTP's default net_ticktime


def _expect(shell: Shell, who: str, expr: str, want: str, timeout: float = 60.0) -> re.Match:
    got = _eval(shell, expr, timeout)
    m = re.fullmatch(want, got)
    if not m:
        raise UserError(
            f"{who}: {expr!r} printed {got!r}, expected /{want}/ (log: {shell.session.log})"
        )
    return m


def _nodes() -> list[dist.Node]:
    return [
        dist.Node("beam1", False, dist.free_port()),
        dist.Node("beam2", False, dist.free_port()),
    ]


@check("dist-smoke", needs=NEEDS)
def dist_smoke(planner: Planner) -> str:
    """Two seL4 nodes and a Linux node: each pings the others (seL4 nodes dial each other
    and the Linux node through the host), rpc and erpc go each way, a process spawned on a
    remote node answers, a message goes round all three, a global name and a pg group are
    seen from every node; a remote shell from the host (the baseline, `baseline --remsh`)
    evaluates lines on a seL4 node, bindings kept."""
    img = targets.image(planner, "beam")
    t0 = time.monotonic()
    with cluster.booted(img, _nodes(), COOKIE, "dist-smoke") as (a, b):
        with cluster.linux_node("linux", False, COOKIE, logs.run_log("dist-smoke-linux")) as lx:
            boot = time.monotonic() - t0
            shells = {A: a, B: b, L: lx}
            # seL4 -> seL4 and seL4 -> Linux first: connections the guests open themselves
            for src, dst in ((A, B), (B, L), (A, L), (B, A), (L, A), (L, B)):
                _expect(shells[src], src, f"net_adm:ping('{dst}').", "pong")
            for sh in shells.values():
                _expect(sh, "nodes", "lists:sort([node() | nodes()]).", re.escape(f"[{A},{B},{L}]"))
            _expect(a, A, f"rpc:call('{L}', erlang, node, []).", re.escape(L))
            _expect(lx, L, f"rpc:call('{B}', os, type, []).", r"\{unix,sel4\}")
            _expect(b, B, f"erpc:call('{A}', erlang, system_info, [otp_release]).", '"29"')
            _expect(
                lx,
                L,
                f"S = self(), spawn('{A}', fun() -> S ! {{from, node()}} end), "
                "receive {from, N} -> N after 10000 -> timeout end.",
                re.escape(A),
            )
            ring = (
                f"S = self(), R = make_ref(), spawn('{B}', fun() -> N1 = node(), "
                f"spawn('{L}', fun() -> S ! {{R, [N1, node()]}} end) end), "
                "receive {R, Path} -> Path after 10000 -> timeout end."
            )
            _expect(a, A, ring, re.escape(f"[{B},{L}]"))
            _expect(a, A, "global:register_name(chrysopolis_a, self()).", "yes")
            for who in (B, L):
                _expect(
                    shells[who],
                    who,
                    "global:sync(), node(global:whereis_name(chrysopolis_a)).",
                    re.escape(A),
                )
            for sh in shells.values():
                _expect(sh, "pg", "element(1, pg:start(pg)).", "ok|error")
            for who in (A, B):
                _expect(shells[who], who, "pg:join(chrysopolis, self()).", "ok")
            _expect(
                lx,
                L,
                "lists:sort([node(P) || P <- pg:get_members(chrysopolis)]).",
                re.escape(f"[{A},{B}]"),
                timeout=30,
            )
            remsh_log = logs.run_log("dist-smoke-remsh")
            with cluster.linux_node("me", False, COOKIE, remsh_log, remsh=A) as rs:
                _expect(rs, "remsh", "X = 21, node().", re.escape(A))
                _expect(rs, "remsh", "{X * 2, os:type()}.", r"\{42,\{unix,sel4\}\}")
            elapsed = time.monotonic() - t0
        _halt(a, 0)
        _halt(b, 0)
    for sh in (a, b):
        _no_fatal_lines(sh.session.log)
    return (
        f"pings both ways among {A}, {B}, {L}; rpc/erpc, remote spawn, a ring through all "
        f"three, global and pg, a remote shell; cluster up in {boot:.1f} s, all in {elapsed:.1f} s"
    )


@check("dist-nodedown", needs=NEEDS)
def dist_nodedown(planner: Planner) -> str:
    """Power a seL4 node off: the other seL4 node and the Linux node, which monitor it,
    get `nodedown` within the net tick time, and the two go on talking."""
    img = targets.image(planner, "beam")
    with cluster.booted(img, _nodes(), COOKIE, "dist-nodedown") as (a, b):
        with cluster.linux_node("linux", False, COOKIE, logs.run_log("dist-nodedown-linux")) as lx:
            for sh, who in ((a, A), (lx, L)):
                _expect(sh, who, f"net_adm:ping('{B}').", "pong")
                _expect(sh, who, f"monitor_node('{B}', true).", "true")
            _expect(a, A, f"net_adm:ping('{L}').", "pong")
            t0 = time.monotonic()
            _halt(b, 0)
            waits = {}
            for sh, who in ((a, A), (lx, L)):
                _expect(
                    sh,
                    who,
                    f"receive {{nodedown, N}} -> N after {int(NODEDOWN_WITHIN * 1000)} -> timeout end.",
                    re.escape(B),
                    timeout=NODEDOWN_WITHIN + 30,
                )
                waits[who] = time.monotonic() - t0
            _expect(a, A, "nodes().", re.escape(f"[{L}]"))
            _expect(lx, L, "nodes().", re.escape(f"[{A}]"))
            _expect(lx, L, f"rpc:call('{A}', erlang, node, []).", re.escape(A))
            _expect(a, A, f"net_adm:ping('{B}').", "pang")
        _halt(a, 0)
    for sh in (a, b):
        _no_fatal_lines(sh.session.log)
    return (
        f"{B} powered off: nodedown at {A} after {waits[A]:.1f} s, at {L} after "
        f"{waits[L]:.1f} s; {A} and {L} still talk"
    )


@check("dist-badcookie", needs=NEEDS)
def dist_badcookie(planner: Planner) -> str:
    """A node with the wrong cookie is refused, both ways, and the refusal is logged as OTP
    logs it; nodes with the right cookie still connect."""
    img = targets.image(planner, "beam")
    with cluster.booted(img, _nodes(), [COOKIE, "not_the_cookie"], "dist-badcookie") as (a, b):
        with cluster.linux_node("linux", False, COOKIE, logs.run_log("dist-badcookie-linux")) as lx:
            ev = _expect
            ev(b, B, f"net_adm:ping('{A}').", "pang")
            ev(lx, L, f"net_adm:ping('{B}').", "pang")
            ev(lx, L, f"net_adm:ping('{A}').", "pong")
            ev(b, B, "nodes().", r"\[\]")
        _halt(a, 0)
        _halt(b, 0)
    refused = re.compile(rb"Connection attempt (?:from|to) node \S+ rejected")
    for sh in (a, b):
        if not refused.search(sh.session.log.read_bytes()):
            raise UserError(f"no refusal logged on {sh.session.log}")
        _no_fatal_lines(sh.session.log)
    return f"{B} (wrong cookie) refused by {A} and {L}, refusals logged; {L} and {A} connect"
