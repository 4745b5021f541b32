# SPDX-License-Identifier: BSD-2-Clause
"""Several nodes at once: seL4 nodes in QEMU and a Linux node on the host, in one cluster.

`booted` boots seL4 nodes, each on a scratch copy of a disk (its own overlay), with its
own dist port, log and shell, registered with the host's epmd while it runs.
`linux_node` starts the baseline emulator (the image's ERTS and OTP under qemu-aarch64) as
an ordinary Linux node on the host, with the flags the README gives any `erl`.
"""

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pexpect

from chrysopolis import baseline, cache, config, dist, epmd, logs, qemu, targets
from chrysopolis.shell import Shell, with_modules

BOOT_TIMEOUT = 180.0
# The Linux node's console: ERTS's terminal mode needs its forker, which qemu-aarch64
# cannot run, so the node runs -noshell with this loop on stdin instead, printing as the
# Eshell does for chrysopolis.shell.Shell: the line read (stdin does not echo), the
# result, then `N> `.
REPL = (
    "L = fun L(N, B) -> io:format(\"~n~s~b> \", [P, N]), case io:get_line('') of eof -> halt(); "
    "Line -> io:put_chars(Line), B2 = try {ok, Ts, _} = erl_scan:string(Line), "
    "{ok, Es} = erl_parse:parse_exprs(Ts), {value, V, NB} = Eval(Es, B), "
    'io:format("~tp~n", [V]), NB catch C:E -> io:format("** exception ~p: ~tp~n", [C, E]), B end, '
    "L(N + 1, B2) end end, L(1, erl_eval:new_bindings())."
)


def repl(remote: str | None = None) -> str:
    """The line loop, evaluating here or, with `remote` (a node name), on that node over
    distribution (a remote shell: the bindings live here, each line runs there)."""
    if remote is None:
        return 'P = "", Eval = fun erl_eval:exprs/2, ' + REPL
    return (
        f"P = \"({remote})\", Eval = fun(Es, B) -> erpc:call('{remote}', erl_eval, exprs, "
        f"[Es, B]) end, true = net_kernel:connect_node('{remote}'), " + REPL
    )


@contextmanager
def host_epmd() -> Iterator[None]:
    """The host's epmd for as long as the body runs (one already running, or ours)."""
    ours = epmd.ensure()
    try:
        yield
    finally:
        if ours is not None:
            ours.close()


@contextmanager
def registered(nodes: Sequence[dist.Node]) -> Iterator[None]:
    """`nodes` registered with the host's epmd (kept running) while the body runs."""
    if not nodes:
        yield
        return
    with ExitStack() as stack:
        stack.enter_context(host_epmd())
        for n in nodes:
            stack.callback(epmd.register(n.alive, n.port).close)
        yield


@contextmanager
def booted(
    img: targets.Image,
    nodes: Sequence[dist.Node],
    cookie: str | Sequence[str],
    log_prefix: str,
    disk: Path | None = None,
) -> Iterator[list[Shell]]:
    """Boot `nodes` (in parallel) and hand over their shells, each distributed and
    registered; `cookie` is every node's, or one per node. Every QEMU ends and every
    registration is dropped on exit."""
    cookies = [cookie] * len(nodes) if isinstance(cookie, str) else list(cookie)
    ports = [n.port for n in nodes]
    with ExitStack() as stack:
        stack.enter_context(host_epmd())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=config.runs_dir())))
        regs = [epmd.register(n.alive, n.port) for n in nodes]  # a taken name fails first
        for r in regs:
            stack.callback(r.close)
        sessions = []
        for n, c in zip(nodes, cookies, strict=True):
            d = with_modules(
                disk or img.disk, [], tmp / f"{n.alive}.img", args=dist.init_args(n, c)
            )
            cmd = img.command(
                d,
                forwards=[f"tcp:{n.port}:{n.port}"],
                guest_forwards=dist.guest_forwards([p for p in ports if p != n.port]),
            )
            sessions.append(
                stack.enter_context(qemu.boot(cmd, logs.run_log(f"{log_prefix}-{n.alive}")))
            )
        shells = []
        for s in sessions:
            sh = Shell(s)
            sh.wait_ready(BOOT_TIMEOUT)
            shells.append(sh)
        yield shells


def linux_command(
    alive: str, long: bool, cookie: str, home: str, remsh: str | None = None
) -> tuple[list[str], dict]:
    """(argv, environment) of the baseline emulator as a Linux node named `alive`; with
    `remsh`, its lines are evaluated on that node."""
    planner = cache.Planner()
    beam = planner.ensure("baseline") / "bin" / "beam.smp"
    root = planner.ensure("otp") / "root"
    env = {**os.environ, **baseline.environment(root, home), "TERM": qemu.HEADLESS.term}
    cmd = [
        *baseline.emulator(beam, root, home),
        # No port programs under qemu-aarch64: resolve through the tree's inetrc.
        "-kernel",
        "inetrc",
        f"'{root}/etc/inetrc'",
        *dist.linux_flags(alive, long, cookie),
        "-noshell",
        "-eval",
        repl(remsh),
    ]
    return cmd, env


@contextmanager
def linux_node(
    alive: str, long: bool, cookie: str, log: Path, remsh: str | None = None
) -> Iterator[Shell]:
    """The baseline emulator as a Linux node on the host, its line loop on a pty (with
    `remsh`, a remote shell on that node)."""
    with tempfile.TemporaryDirectory(prefix="chrysopolis-linux-node-") as home:
        cmd, env = linux_command(alive, long, cookie, home, remsh)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as logf:
            child = pexpect.spawn(
                cmd[0],
                cmd[1:],
                env=env,
                timeout=None,
                echo=False,
                dimensions=(qemu.HEADLESS.rows, qemu.HEADLESS.cols),
                preexec_fn=baseline.dotted_hostname,
            )
            child.logfile_read = logf
            try:
                sh = Shell(qemu.Session(child, log, time.monotonic()))
                sh.wait_ready(120)
                yield sh
            finally:
                child.terminate(force=True)


def linux_interactive(alive: str, long: bool, cookie: str, remsh: str | None = None) -> int:
    """`chrysopolis baseline --sname`: the Linux node's line loop on this terminal; with the
    host's epmd kept (ours, if none runs) until it ends."""
    with host_epmd(), tempfile.TemporaryDirectory(prefix="chrysopolis-linux-node-") as home:
        cmd, env = linux_command(alive, long, cookie, home, remsh)
        return subprocess.call(cmd, env=env, preexec_fn=baseline.dotted_hostname)


def _drain(s: qemu.Session) -> None:
    """Keep reading a background node's console (into its log) so QEMU never blocks on it."""
    try:
        while True:
            s.child.read_nonblocking(1 << 16, timeout=None)
    except (pexpect.EOF, OSError, ValueError):
        pass


def interactive(img: targets.Image, nodes: Sequence[dist.Node], cookie: str) -> int:
    """`chrysopolis cluster`: the nodes booted together, the first on this terminal, the
    others headless with their consoles in their logs; returns the first one's status."""
    first, rest = nodes[0], list(nodes[1:])
    ports = [n.port for n in nodes]
    with ExitStack() as stack:
        stack.enter_context(host_epmd())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=config.runs_dir())))
        for n in nodes:
            stack.callback(epmd.register(n.alive, n.port).close)
        cmds = {}
        for n in nodes:
            d = with_modules(img.disk, [], tmp / f"{n.alive}.img", args=dist.init_args(n, cookie))
            cmds[n] = dict(
                disk=d,
                forwards=[f"tcp:{n.port}:{n.port}"],
                guest_forwards=dist.guest_forwards([p for p in ports if p != n.port]),
            )
        for n in rest:
            log = logs.run_log(f"cluster-{n.alive}")
            s = stack.enter_context(qemu.boot(img.command(**cmds[n]), log))
            threading.Thread(target=_drain, args=(s,), daemon=True).start()
            print(f"{n.name}: headless, console in {log}", file=sys.stderr)
        log = logs.run_log(f"cluster-{first.alive}")
        print(f"{first.name}: on this terminal (Ctrl-A X quits QEMU)", file=sys.stderr)
        return qemu.interactive(img.command(**cmds[first], interactive=True, console_log=log), log)
