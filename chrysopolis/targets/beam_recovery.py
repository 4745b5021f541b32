# SPDX-License-Identifier: BSD-2-Clause
"""Checks of the supervisor (docs/plans/recovery.md): a fault injection image of `beam`
crashes a driver while the shell uses it, and the system comes back.

`beam-restart` ends the node itself three ways and past its budget (it restarts, then
powers off); `timer-recovery` crashes timer_driver in the middle of a run of timer:sleep(2000) calls,
`serial-recovery` the serial driver and both virtualisers while the shell prints lines,
`recovery-giveup` blk_driver past its budget of one restart (stopped: file calls fail),
`recovery-poweroff` serial_virt_rx past its budget, on_giveup poweroff; `blk-recovery` crashes blk_driver while
the shell reads a 4 MiB file in a loop, then blk_virt; `fat-recovery` the FAT server;
`net-recovery` the net driver, both virtualisers and the copier under a TCP stream from the
host. Each reads the supervisor's lines:
`SUP|fault pd=...` (PD, kind, address, restart n/m), `SUP|up pd=... after=Xms` (fault to
the restarted PD's init done) and `SUP|giveup pd=...`.
"""

import hashlib
import os
import re
import socket
import threading
import time

import pexpect

from chrysopolis import logs, qemu, targets
from chrysopolis.cache import Planner
from chrysopolis.checks import check
from chrysopolis.errors import UserError
from chrysopolis.shell import PROMPT, Shell
from chrysopolis.targets.beam import NEEDS, _eval, _free_port, _net_shell

# The injection is timed from the supervisor's start; the shell is up in ~10 s here, far
# less than CRASH_MS, and each case runs long past it.
CRASH_MS = 30000
FAULT_LINE = (
    r"SUP\|fault pd={pd} kind=(\w+) addr=(0x[0-9a-f]+) ip=(0x[0-9a-f]+) "
    r"restart=(\d+)/(\d+) window=(\d+)ms"
)
UP_LINE = r"SUP\|up pd={pd} gen=(\d+) after=(\d+\.\d)ms"
GIVEUP_LINE = r"SUP\|giveup pd={pd} action=(\w+)\r"  # whole: the line may come in parts


# Lines at the console's pace (one per 10 ms) until well past the crashes.
PRINT_LINES = (
    '[begin io:format("line ~b~n", [N]), timer:sleep(10) end || N <- lists:seq(1, %d)], done.\r'
)


def _planner(inject: str, policies: str = "") -> Planner:
    return Planner(options={"beam": {"fault_inject": inject, "supervision": policies}})


def _recovered(s: qemu.Session, pd: str, timeout: float) -> tuple[str, float]:
    """Wait for `pd`'s fault line and its up line: (the fault line, ms fault -> up)."""
    fault = s.expect(FAULT_LINE.format(pd=pd), timeout)
    if fault.group(1) != b"vmfault" or fault.group(4) != b"1":
        raise UserError(f"{pd}: unexpected fault line {fault.group(0)!r} (log: {s.log})")
    up = s.expect(UP_LINE.format(pd=pd), 30)
    return fault.group(0).decode(), float(up.group(2))


def _prompt(s: qemu.Session, shell: Shell, want: str, timeout: float) -> re.Match:
    """`want` printed, then the next prompt (the shell helper would take the fault line for
    an error, so the case's output is read here)."""
    m = s.expect(want, timeout)
    p = s.expect(PROMPT.decode(), 30)
    shell.prompt = int(p.group(1))
    return m


@check("timer-recovery", needs=NEEDS)
def timer_recovery(planner: Planner) -> str:
    """timer_driver crashes while the shell sleeps: one fault line, the driver is up again,
    the sleeps return on time and the shell keeps answering."""
    img = targets.image(_planner(f"timer_driver:{CRASH_MS}"), "beam")
    log = logs.run_log("timer-recovery")
    with qemu.boot(img.command(), log) as s:
        shell = Shell(s)
        shell.wait_ready()
        if _eval(shell, "chrysopolis:subscribe().") != "ok":
            raise UserError(f"chrysopolis:subscribe() failed (log: {log})")
        n = CRASH_MS // 2000 + 10  # 2 s sleeps well past the crash
        s.send(
            "T0 = erlang:monotonic_time(millisecond), "
            f"[timer:sleep(2000) || _ <- lists:seq(1, {n})], "
            "erlang:monotonic_time(millisecond) - T0.\r"
        )
        line, ms = _recovered(s, "timer_driver", CRASH_MS / 1000 + 60)
        took = int(_prompt(s, shell, r"\n(\d+)\r*(?=\n)", n * 2 + 60).group(1))
        if not n * 2000 <= took < n * 2000 + 5000:
            raise UserError(
                f"{n} sleeps of 2 s across the timer's restart took {took} ms (log: {log})"
            )
        after = _eval(
            shell,
            "T1 = erlang:monotonic_time(millisecond), timer:sleep(2000), "
            "erlang:monotonic_time(millisecond) - T1.",
        )
        if not 2000 <= int(after) < 3000:
            raise UserError(f"timer:sleep(2000) after the restart took {after} ms (log: {log})")
        if _eval(shell, "1 + 1.") != "2":
            raise UserError(f"the shell does not answer after the restart (log: {log})")
        # Erlang saw it: the table, and the events in order (fault, up) as messages.
        seen = _eval(shell, PDS_TIMER)
        if seen != "[{running,1,vmfault}]":
            raise UserError(f"chrysopolis:pds() shows {seen} for timer_driver (log: {log})")
        s.send(EVENTS + "\r")
        want = r"\[\{timer_driver,fault,vmfault\},\{timer_driver,up,none\}\]"
        events = _prompt(s, shell, want, 30).group(0).decode()
    return (
        f"{line}; up after {ms} ms; {n} sleeps took {took} ms, one after: {after} ms; "
        f"Erlang saw {events}"
    )


PDS_TIMER = (
    "[{S, R, K} || #{name := timer_driver, state := S, restarts := R, "
    "last_fault := #{kind := K}} <- chrysopolis:pds()]."
)
# What a subscriber was sent, in order (the restart event comes only for a requested one);
# read with _prompt: its lines hold the word `fault`, which the shell helper would take for
# a fault of the system (checks.FATAL_LINE).
EVENTS = (
    "F = fun F(Acc) -> receive {chrysopolis, #{pd := P, event := E, fault := Fa}} -> "
    "K = case Fa of none -> none; #{kind := Kd} -> Kd end, "
    "F([{P, E, K} | Acc]) after 500 -> lists:reverse(Acc) end end, F([])."
)


@check("serial-recovery", needs=NEEDS)
def serial_recovery(planner: Planner) -> str:
    """serial_driver, serial_virt_tx, then serial_virt_rx crash while the shell prints lines:
    each is up again, the output goes on to the last line and the shell keeps answering."""
    crashes = [("serial_driver", CRASH_MS), ("serial_virt_tx", CRASH_MS + 4000)]
    crashes.append(("serial_virt_rx", CRASH_MS + 8000))
    img = targets.image(_planner(",".join(f"{pd}:{ms}" for pd, ms in crashes)), "beam")
    log = logs.run_log("serial-recovery")
    with qemu.boot(img.command(), log) as s:
        shell = Shell(s)
        shell.wait_ready()
        # Lines until well past both crashes (a line per 10 ms: the console's pace).
        n = 6000
        s.send(PRINT_LINES % n)
        t0 = time.monotonic()
        ups = [_recovered(s, pd, CRASH_MS / 1000 + 60)[1] for pd, _ in crashes]
        _prompt(s, shell, rf"line {n}\r*(?=\n)", 300)
        printed = time.monotonic() - t0
        if _eval(shell, 'io:format("after~n"), 1 + 1.') != "after\n2":
            raise UserError(f"the shell does not answer after the restarts (log: {log})")
    text = log.read_bytes().decode(errors="replace")
    seen = {int(x) for x in re.findall(r"line (\d+)\r*\n", text)}
    up = ", ".join(f"{pd} up after {ms} ms" for (pd, _), ms in zip(crashes, ups, strict=True))
    return f"{up}; {len(seen)}/{n} lines arrived whole, the last after {printed:.0f} s"


def _twice_past_budget(pd: str, gap_ms: int, on_giveup: str) -> targets.Image:
    """An image whose `pd`, allowed one restart a minute, crashes twice, `gap_ms` apart, and
    is then given up with `on_giveup`."""
    return targets.image(
        _planner(
            f"{pd}:{CRASH_MS},{pd}:{CRASH_MS + gap_ms}", f"{pd}:permanent:1:60000:{on_giveup}"
        ),
        "beam",
    )


GIVEN_UP = "[{S, R} || #{name := blk_driver, state := S, restarts := R} <- chrysopolis:pds()]."


@check("recovery-giveup", needs=NEEDS)
def recovery_giveup(planner: Planner) -> str:
    """blk_driver, allowed one restart a minute, crashes twice: restarted once, then given up
    (stopped, said on the console). The shell keeps answering, a file read (which needs the
    dead driver) fails with an error instead of hanging, and Erlang saw it all."""
    img = _twice_past_budget("blk_driver", 3000, "stop")
    log = logs.run_log("recovery-giveup")
    with qemu.boot(img.command(), log) as s:
        shell = Shell(s)
        shell.wait_ready()
        if _eval(shell, "chrysopolis:subscribe().") != "ok":
            raise UserError(f"chrysopolis:subscribe() failed (log: {log})")
        line, ms = _recovered(s, "blk_driver", CRASH_MS / 1000 + 60)
        second = s.expect(FAULT_LINE.format(pd="blk_driver"), 30)
        if second.group(4) != b"0":
            raise UserError(f"the second fault was restarted: {second.group(0)!r} (log: {log})")
        action = s.expect(GIVEUP_LINE.format(pd="blk_driver"), 10).group(1).decode()
        # the subscriber's logger lines (they name the fault) come before the next prompt
        s.expect(r"chrysopolis: blk_driver giveup[^\n]*\n", 10)
        t0 = time.monotonic()
        # lists.beam: many sectors, so the FAT server needs the block device (it answers
        # what its one-sector window holds without it)
        read = _eval(shell, "file:read_file(code:which(lists)).", timeout=30)
        failed_in = time.monotonic() - t0
        if read != "{error,eio}" or _eval(shell, "1 + 1.") != "2":
            raise UserError(f"with blk_driver stopped a file read gave {read} (log: {log})")
        if (state := _eval(shell, GIVEN_UP)) != "[{stopped,1}]":
            raise UserError(f"chrysopolis:pds() shows {state} for blk_driver (log: {log})")
        s.send(EVENTS + "\r")
        seen = ["{blk_driver,fault,vmfault}", "{blk_driver,up,none}"] * 2
        seen[-1] = "{blk_driver,giveup,none}"
        want = r"\[" + r",\s*".join(map(re.escape, seen)) + r"\]"  # the shell wraps it
        events = re.sub(r"\s+", "", _prompt(s, shell, want, 30).group(0).decode())
    if action != "stop":
        raise UserError(f"blk_driver was given up with action {action!r} (log: {log})")
    return (
        f"{line}: up after {ms} ms; then {second.group(0).decode()}: given up ({action}); "
        f"a file read then gave {read} in {failed_in:.1f} s, the shell answers; Erlang saw {events}"
    )


@check("recovery-poweroff", needs=NEEDS)
def recovery_poweroff(planner: Planner) -> str:
    """A child whose policy powers off past its budget: serial_virt_rx crashes twice, is
    given up with action=poweroff, and the machine powers off (QEMU exits)."""
    img = _twice_past_budget("serial_virt_rx", 1000, "poweroff")
    log = logs.run_log("recovery-poweroff")
    with qemu.boot(img.command(), log) as s:
        Shell(s).wait_ready()
        action = s.expect(GIVEUP_LINE.format(pd="serial_virt_rx"), CRASH_MS / 1000 + 60)
        t0 = time.monotonic()
        try:
            s.child.expect(pexpect.EOF, timeout=30)
        except pexpect.TIMEOUT:
            raise UserError(f"the machine still runs 30 s after the giveup (log: {log})") from None
    if action.group(1) != b"poweroff":
        raise UserError(f"giveup with {action.group(0)!r}, not poweroff (log: {log})")
    return f"{action.group(0).decode()}; QEMU exited {time.monotonic() - t0:.1f} s later"


# A file written and synced before the fault, then read back in a loop across it.
BIG = "/big.bin"
BIG_BYTES = 4 * 1024 * 1024
FILE_CRASH_MS = 45000  # past the boot and the write of BIG
WRITE_BIG = (
    f"B = rand:bytes({BIG_BYTES}), M = erlang:md5(B), "
    f'{{ok, F}} = file:open("{BIG}", [write, raw, binary]), ok = file:write(F, B), '
    "ok = file:sync(F), ok = file:close(F), ok."
)


# Reads for `ms` ms from now: {reads, byte-identical ones, the errors, the longest and the
# median read in ms}. A read across the fault ends or fails; it never hangs (the timeout).
def read_loop(ms: int) -> str:
    return (
        "Rd = fun Rd(D, Acc) -> case erlang:monotonic_time(millisecond) > D of "
        "true -> lists:reverse(Acc); false -> T = erlang:monotonic_time(millisecond), "
        f'R = case file:read_file("{BIG}") of {{ok, X}} -> erlang:md5(X) =:= M; E -> E end, '
        "Rd(D, [{R, erlang:monotonic_time(millisecond) - T} | Acc]) end end, "
        f"Rs = Rd(erlang:monotonic_time(millisecond) + {ms}, []), "
        "Ms = lists:sort([Tm || {_, Tm} <- Rs]), "
        "{reads, length(Rs), [Er || {Er, _} <- Rs, Er =/= true], lists:max(Ms), "
        "lists:nth(length(Ms) div 2 + 1, Ms)}."
    )


READ_PAST_MS = 15000
READ_RESULT = r"\{reads,(\d+),\[(.*?)\],(\d+),(\d+)\}"


def _file_under_fault(name: str, pds: list[str], held: bool = False) -> str:
    """Crash each of `pds` (8 s apart) while the shell reads BIG (written and synced
    before) in a loop: the loop ends, each read is byte-identical or an error, the file
    reads back whole after. `held`: a file opened before the fault, read after it, fails
    with EIO (its server fd died with the FAT server)."""
    crashes = ",".join(f"{pd}:{FILE_CRASH_MS + 8000 * i}" for i, pd in enumerate(pds))
    img = targets.image(_planner(crashes), "beam")
    log = logs.run_log(name)
    with qemu.boot(img.command(), log) as s:
        shell = Shell(s)
        shell.wait_ready()
        t0 = time.monotonic()
        if _eval(shell, WRITE_BIG) != "ok":
            raise UserError(f"writing {BIG} failed (log: {log})")
        wrote = time.monotonic() - t0
        if (
            held
            and _eval(shell, f'{{ok, H}} = file:open("{BIG}", [read, raw, binary]), ok.') != "ok"
        ):
            raise UserError(f"opening {BIG} failed (log: {log})")
        # The loop ends READ_PAST_MS after the last crash: its time is counted from the
        # boot, and the boot and the write of BIG take a varying part of it.
        last_ms = FILE_CRASH_MS + 8000 * (len(pds) - 1)
        loop_ms = READ_PAST_MS + max(0, int(last_ms - s.elapsed() * 1000))
        s.send(read_loop(loop_ms) + "\r")
        ups = [_recovered(s, pd, FILE_CRASH_MS / 1000 + 60) for pd in pds]
        m = _prompt(s, shell, READ_RESULT, 180)
        reads, errors, longest, median = m.groups()
        after = _eval(shell, f'{{ok, Y}} = file:read_file("{BIG}"), erlang:md5(Y) =:= M.')
        if after != "true":
            raise UserError(f"{BIG} read back after the restart is {after} (log: {log})")
        if _eval(shell, "1 + 1.") != "2":
            raise UserError(f"the shell does not answer after the restart (log: {log})")
        stale = _eval(shell, "file:read(H, 16).") if held else ""
        if held and stale != "{error,eio}":
            raise UserError(f"a file opened before the restart read {stale} after it (log: {log})")
    errors = errors.decode()
    if errors and not all(e.startswith("{error,") for e in re.split(r",(?=\{)", errors)):
        raise UserError(f"reads across the fault returned {errors} (log: {log})")
    up = "; ".join(f"{line}: up after {ms} ms" for line, ms in ups)
    return (
        f"{up}; {BIG} ({BIG_BYTES >> 20} MiB, written in {wrote:.1f} s) "
        f"read {reads.decode()} times: errors [{errors}], longest read {longest.decode()} ms "
        f"(median {median.decode()} ms); byte-identical after"
        + (f"; a file opened before reads {stale}" if held else "")
    )


@check("blk-recovery", needs=NEEDS)
def blk_recovery(planner: Planner) -> str:
    """blk_driver, then blk_virt crash while the shell reads a 4 MiB file in a loop: blk_virt
    sends the requests the driver held again (patches/sddf/0002), keeps its records of
    requests in flight across its own restart (0004); the reads go on byte-identical."""
    return _file_under_fault("blk-recovery", ["blk_driver", "blk_virt"])


@check("fat-recovery", needs=NEEDS)
def fat_recovery(planner: Planner) -> str:
    """The FAT server crashes while the shell reads a 4 MiB file in a loop: the command in
    flight fails with an error (patches/lionsos/0004), the next reads go on byte-identical:
    the file was synced before the fault. A file held open across it fails with EIO."""
    return _file_under_fault("fat-recovery", ["fatfs"], held=True)


# The node's own end: beam_server restarts on a fatal error and on the status this image
# names (75), three times a minute, then powers off with the status.
NAMED_STATUS = 75
BEAM_POLICY = f"beam_server:transient:3:60000:poweroff:{NAMED_STATUS}"
EXIT_LINE = (
    r"SUP\|exit pd=beam_server status=(\d+) cause=(\w+) restart=(\d+)/(\d+) window=(\d+)ms\r"
)
# State a fresh node must not have, and a file that must survive it.
KEEP_FILE = "/restart.bin"
SET_STATE = (
    "put(k, 42), register(keeper, spawn(fun() -> receive _ -> ok end end)), "
    "ets:new(t, [named_table, public]), ok."
)
WRITE_FILE = (
    f'B = rand:bytes(262144), ok = file:write_file("{KEEP_FILE}", B), '
    "binary:encode_hex(erlang:md5(B))."
)
STATE = "{get(k), whereis(keeper), ets:info(t)}."
FILE_MD5 = f'{{ok, B}} = file:read_file("{KEEP_FILE}"), binary:encode_hex(erlang:md5(B)).'
# The fresh node's network: a listener the host reaches through a hostfwd on 127.0.0.1
# (its RX buffers went back to the copier at the restart: runtime/net/netstack.c).
ECHO_PORT = 7777
ECHO_ONCE = (
    f"{{ok, L}} = gen_tcp:listen({ECHO_PORT}, [binary, {{active, false}}, {{reuseaddr, true}}]), "
    "spawn(fun() -> {ok, S} = gen_tcp:accept(L), {ok, D} = gen_tcp:recv(S, 4096, 20000), "
    "gen_tcp:send(S, D), gen_tcp:close(S) end), ok."
)


def _echoed(port: int, data: bytes) -> bytes:
    """What the guest's ECHO_ONCE sends back for `data` (bounded in time)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as c:
        c.settimeout(20)
        c.sendall(data)
        got = b""
        while len(got) < len(data) and (chunk := c.recv(65536)):
            got += chunk
        return got


BEAM_PDS = (
    "[{R, K, A} || #{name := beam_server, restarts := R, "
    "last_fault := #{kind := K, addr := A}} <- chrysopolis:pds()]."
)
# Each ends the node: ERTS's abort, a halt with the named status, an allocation it cannot
# serve (a crash dump, then exit 1: "Cannot allocate" makes it a fatal error).
ENDINGS = [
    ("erlang:halt(abort).", 134, "signal"),
    (f"erlang:halt({NAMED_STATUS}).", NAMED_STATUS, "status"),
    ("binary:copy(<<1>>, 1 bsl 34).", 1, "out_of_memory"),
]


def _fresh_node(s: qemu.Session, log, status: int, cause: str, n: int) -> tuple[Shell, float]:
    """After the node ended with `status`: the supervisor's exit line (restart n of 3), the
    FAT server and beam_server up, and a fresh shell at `1>`: (that shell, s to its prompt)."""
    t0 = time.monotonic()
    m = s.expect(EXIT_LINE, 120)
    got = (int(m.group(1)), m.group(2).decode(), int(m.group(3)))
    if got != (status, cause, n):
        raise UserError(
            f"the node's end read {m.group(0).decode().strip()!r}, not status={status} "
            f"cause={cause} restart={n}/3 (log: {log})"
        )
    s.expect(UP_LINE.format(pd="fatfs"), 30)
    s.expect(UP_LINE.format(pd="beam_server"), 30)
    s.expect(r"\n1> ", 120)
    shell = Shell(s)
    shell.prompt = 1
    return shell, time.monotonic() - t0


@check("beam-restart", needs=NEEDS)
def beam_restart(planner: Planner) -> str:
    """The node ends three ways (ERTS's abort, halt with the image's named status, out of
    memory): each time the supervisor restarts the FAT server and a fresh node, which has
    none of the last one's state, a file written before reads back byte-identical, and
    Erlang sees the restart. A fourth end is past the budget: the machine powers off with
    the node's status."""
    img = targets.image(_planner("", BEAM_POLICY), "beam")
    log = logs.run_log("beam-restart")
    took = []
    port = _free_port()
    with qemu.boot(img.command(forwards=[f"tcp:{port}:{ECHO_PORT}"]), log) as s:
        shell = Shell(s)
        shell.wait_ready()
        md5 = _eval(shell, WRITE_FILE)
        for n, (expr, status, cause) in enumerate(ENDINGS, start=1):
            if _eval(shell, SET_STATE) != "ok":
                raise UserError(f"setting the node's state failed (log: {log})")
            s.send(expr + "\r")
            shell, secs = _fresh_node(s, log, status, cause, n)
            took.append(secs)
            if (state := _eval(shell, STATE)) != "{undefined,undefined,undefined}":
                raise UserError(f"the restarted node has state from before: {state} (log: {log})")
            if (again := _eval(shell, FILE_MD5)) != md5:
                raise UserError(
                    f"{KEEP_FILE} reads {again} after the restart, not {md5} (log: {log})"
                )
            if (seen := _eval(shell, BEAM_PDS)) != f"[{{{n},exit,{status}}}]":
                raise UserError(f"chrysopolis:pds() shows {seen} for beam_server (log: {log})")
            if _eval(shell, ECHO_ONCE) != "ok":
                raise UserError(f"the restarted node cannot listen on TCP (log: {log})")
            data = os.urandom(4096)  # what ECHO_ONCE reads
            if _echoed(port, data) != data:
                raise UserError(f"the restarted node's TCP echo differs (log: {log})")
        s.send("erlang:halt(abort).\r")
        giveup = s.expect(GIVEUP_LINE.format(pd="beam_server"), 60).group(1).decode()
        status = int(s.expect(r"beam_server: exit status (\d+)", 30).group(1))
        try:
            s.child.expect(pexpect.EOF, timeout=30)
        except pexpect.TIMEOUT:
            raise UserError(f"the machine still runs 30 s after the giveup (log: {log})") from None
    if giveup != "poweroff" or status != 134:
        raise UserError(f"past the budget: action {giveup}, exit status {status} (log: {log})")
    ends = ", ".join(f"{c} {t:.1f} s" for (_, _, c), t in zip(ENDINGS, took, strict=True))
    return (
        f"3 ends, each to a fresh 1> with no state, {KEEP_FILE} intact and a TCP echo "
        f"through a hostfwd ({ends}); "
        f"the 4th: giveup action={giveup}, exit status {status}"
    )


# net-recovery: the network PDs crash in turn while the host streams data through a
# hostfwd (127.0.0.1, restrict=on) to a guest echo server.
ETH_LINE = r"ETH\|restarted: (\d+) RX frames passed on, (\d+) RX buffers re-posted, (\d+) TX"
# The driver twice: what it kept across its first restart serves its second.
NET_PDS = ("ethernet_driver", "net_virt_tx", "net_virt_rx", "beam_net_copier", "ethernet_driver")
NET_GAP_MS = 4000  # between the crashes
NET_PORT = 8080  # the guest's listener
NET_CHUNK = 8 * 1024  # the host sends a chunk per NET_PACE s: ~0.4 MB/s, some 15 MB in all
NET_PACE = 0.02
NET_AFTER_UP = 3.0  # s the stream goes on after the driver is up again
NET_STREAM_MAX = 120.0  # s: the stream's bound, whatever happens
NET_TIMEOUT = 20.0  # s: any one socket operation
# New connections tried from the fault on, one after the other, until one echoes: long
# enough for TCP to resend a SYN lost in the restart (3 s in QEMU's slirp and in lwIP).
NET_PROBES = 4
NET_PROBE_TIMEOUT = 10.0
NET_AFTER = 2 * 1024 * 1024  # bytes echoed by a new connection after the recovery
# The guest: echo each connection (up to 40) in a process of its own; the shell is sent
# {echoed, How, Bytes} when one ends (How: closed, or the error of its recv or send).
NET_ECHO = (
    "Self = self(), spawn(fun() -> {ok, L} = gen_tcp:listen(%d, [binary, {active, false}, "
    "{reuseaddr, true}, {exit_on_close, false}, {send_timeout, 20000}]), Self ! listening, "
    "Echo = fun Echo(S, N) -> case gen_tcp:recv(S, 0, 20000) of {ok, B} -> "
    "case gen_tcp:send(S, B) of ok -> Echo(S, N + byte_size(B)); E -> {E, N} end; "
    "{error, closed} -> {closed, N}; E -> {E, N} end end, "
    "Acc = fun Acc(0) -> ok; Acc(K) -> case gen_tcp:accept(L, 300000) of {ok, S} -> "
    "P = spawn(fun() -> receive go -> ok end, {How, N} = Echo(S, 0), gen_tcp:close(S), "
    "Self ! {echoed, How, N} end), ok = gen_tcp:controlling_process(S, P), P ! go, "
    "Acc(K - 1); _ -> ok end end, Acc(40) end), "
    "receive listening -> listening after 10000 -> timeout end."
)
# What the guest reported: the stream's end first (the one long connection: it may take
# the guest's recv timeout to come), then the probes'.
NET_ECHOED = (
    "W = receive {echoed, H0, N0} when N0 > 100000 -> [{H0, N0}] after 30000 -> [] end, "
    "G = fun G(Acc) -> receive {echoed, H, N} -> G([{H, N} | Acc]) after 2000 -> "
    "lists:reverse(Acc) end end, W ++ G([])."
)


class _Stream:
    """The host's side of one echoed connection: a thread sends paced random chunks until
    told to stop (or NET_STREAM_MAX), half-closes; another reads the echo to EOF. md5s of
    both directions; `error` is the first socket error, if any."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=NET_TIMEOUT)
        self.stop = threading.Event()
        self.sent, self.got = hashlib.md5(), hashlib.md5()
        self.n_sent = self.n_got = 0
        self.error: Exception | None = None
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._send, self._recv)]
        for t in self.threads:
            t.start()

    def _send(self) -> None:
        t_end = time.monotonic() + NET_STREAM_MAX
        try:
            while not self.stop.is_set() and time.monotonic() < t_end:
                chunk = os.urandom(NET_CHUNK)
                self.sock.sendall(chunk)
                self.sent.update(chunk)
                self.n_sent += len(chunk)
                time.sleep(NET_PACE)
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.error = self.error or e

    def _recv(self) -> None:
        try:
            while data := self.sock.recv(65536):
                self.got.update(data)
                self.n_got += len(data)
        except OSError as e:
            self.error = self.error or e

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(NET_STREAM_MAX + 2 * NET_TIMEOUT)
        self.sock.close()
        if any(t.is_alive() for t in self.threads):
            raise UserError("the host's side of the stream did not end within its bounds")

    def whole(self) -> bool:
        return (
            self.error is None
            and self.n_got == self.n_sent
            and (self.sent.digest() == self.got.digest())
        )


def _echo_once(port: int, data: bytes, timeout: float) -> bool:
    """A new connection echoes `data` whole (sent, half-closed, read to EOF)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        put = threading.Thread(target=_put, args=(c, data), daemon=True)
        put.start()
        got = b""
        while len(got) <= len(data) and (chunk := c.recv(65536)):
            got += chunk
        put.join(timeout)
    return got == data


def _put(c: socket.socket, data: bytes) -> None:
    try:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the reader sees the connection fail


def _probe(port: int, t_fault: float, out: list) -> None:
    """New connections from the fault on, until one echoes: (echoed, s from the fault) of
    each."""
    for i in range(NET_PROBES):
        try:
            ok = _echo_once(port, b"probe %d\n" % i, NET_PROBE_TIMEOUT)
        except OSError:
            ok = False
        out.append((ok, time.monotonic() - t_fault))
        if ok:
            return
        time.sleep(0.1)


@check("net-recovery", needs=NEEDS)
def net_recovery(planner: Planner) -> str:
    """ethernet_driver, net_virt_tx, net_virt_rx, the copier, then the driver again crash
    while the host streams data through a hostfwd to a guest echo server: each is up again
    (the driver passes on, posts again or returns the buffers the device held, patches/sddf/
    0005), the connection survives whole or fails with an error on both sides, new
    connections are served (the first one timed from the driver's first fault) and a new
    one echoes 2 MiB byte-identical."""
    crashes = ",".join(f"{pd}:{CRASH_MS + NET_GAP_MS * i}" for i, pd in enumerate(NET_PDS))
    img = targets.image(_planner(crashes), "beam")
    log = logs.run_log("net-recovery")
    port = _free_port()
    with _net_shell(img.command(forwards=[f"tcp:{port}:{NET_PORT}"]), log) as shell:
        s = shell.session
        if _eval(shell, NET_ECHO % NET_PORT) != "listening":
            raise UserError(f"the guest's echo server did not start (log: {log})")
        stream, ups = _Stream(port), []
        try:
            fault = s.expect(FAULT_LINE.format(pd=NET_PDS[0]), CRASH_MS / 1000 + 60)
            t_fault, before = time.monotonic(), stream.n_got
            probed: list = []
            probe = threading.Thread(target=_probe, args=(port, t_fault, probed), daemon=True)
            probe.start()
            eth = s.expect(ETH_LINE, 30)
            ups.append(float(s.expect(UP_LINE.format(pd=NET_PDS[0]), 30).group(2)))
            ups += [_recovered(s, pd, NET_GAP_MS / 1000 + 30)[1] for pd in NET_PDS[1:]]
            time.sleep(NET_AFTER_UP)
        finally:
            stream.join()
        probe.join(NET_PROBES * (NET_PROBE_TIMEOUT + 1))
        if fault.group(1) != b"vmfault" or before == 0:
            raise UserError(f"{fault.group(0)!r} with {before} bytes echoed before (log: {log})")
        echoed = _eval(shell, NET_ECHOED, 60)
        m = re.fullmatch(r"\[\{(closed|\{error,\w+\}),(\d+)\}(.*)\]", echoed)
        if m is None:
            raise UserError(f"the guest's echo server reported {echoed} (log: {log})")
        survived = stream.whole() and m.group(1) == "closed" and int(m.group(2)) == stream.n_sent
        if not survived and (stream.error is None or m.group(1) == "closed"):
            raise UserError(
                f"the stream neither survived nor failed on both sides: host sent "
                f"{stream.n_sent} got {stream.n_got} ({stream.error}), guest {echoed} (log: {log})"
            )
        if not probed or not probed[-1][0]:
            raise UserError(f"no new connection echoed after the restart (log: {log})")
        big = os.urandom(NET_AFTER)
        if not _echo_once(port, big, NET_TIMEOUT):
            raise UserError(f"a new connection after the restarts did not echo 2 MiB (log: {log})")
        if _eval(shell, "1 + 1.") != "2":
            raise UserError(f"the shell does not answer after the restarts (log: {log})")
    how = (
        f"survived whole: {stream.n_sent} bytes echoed byte-identical"
        if survived
        else f"failed on both sides: host {stream.error!r}, guest {m.group(1)}"
    )
    up = ", ".join(f"{pd} up after {ms} ms" for pd, ms in zip(NET_PDS, ups, strict=True))
    return (
        f"{fault.group(0).decode()}; {up}; the driver passed on {eth.group(1).decode()} RX "
        f"frames, re-posted {eth.group(2).decode()} RX buffers and returned "
        f"{eth.group(3).decode()} TX; the stream ({before} bytes echoed "
        f"before the first fault) {how}; first new connection served "
        f"{probed[-1][1] * 1000:.0f} ms after the driver's fault line ({len(probed)} tried); "
        "2 MiB echoed on a new one"
    )
