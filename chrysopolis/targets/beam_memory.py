# SPDX-License-Identifier: BSD-2-Clause
"""Checks of the beam image's memory: big data in one node (`mem-big`), and a request for
more than the machine has ending as it ends on Linux (`mem-oom`)."""

import re
import time

from chrysopolis import boards, logs, qemu, targets
from chrysopolis.cache import Planner
from chrysopolis.checks import check
from chrysopolis.errors import UserError
from chrysopolis.shell import NO_RESTART, Shell
from chrysopolis.targets.beam import NEEDS, _eval, _halt, _no_fatal_lines

MIB = 1 << 20
# What the image's RAM must leave to Erlang: erlang:memory(total) reaches this share of it.
ERLANG_SHARE = 0.85
BIG_TIMEOUT = 600.0  # seconds a case may take under TCG on a loaded machine

# Each case runs in a process of its own (`R`), so what it built is freed when it ends.
RUNNER = (
    "R = fun(F) -> {_, M} = spawn_monitor(fun() -> exit({ok, F()}) end), "
    "receive {'DOWN', M, _, _, X} -> X end end."
)


def _cases(ram: int) -> list[tuple[str, str, str, int]]:
    """(what, fun body, result regex, least value of its first group)."""
    n64 = -(-int(ERLANG_SHARE * ram) // (64 * MIB))  # 64 MiB binaries to pass the share
    return [
        # First, on a fresh node: freed segments of the cases after it may sit in ERTS's
        # segment cache for a while (mseg_alloc's mcs).
        (
            f"erlang:memory(total) at {ERLANG_SHARE:.0%} of the RAM",
            f"Bs = [binary:copy(<<I>>, 64 bsl 20) || I <- lists:seq(1, {n64})], "
            "{erlang:memory(total), length(Bs)}",
            rf"\{{(\d+),{n64}\}}",
            int(ERLANG_SHARE * ram),
        ),
        ("a 1 GiB binary", "byte_size(binary:copy(<<1>>, 1 bsl 30))", r"(\d+)", 1 << 30),
        ("a 10-million-element list", "length(lists:seq(1, 10000000))", r"(\d+)", 10_000_000),
        (
            "500 MB of data in ETS",
            "T = ets:new(t, []), [ets:insert(T, {I, lists:duplicate(65536, I)}) || "
            "I <- lists:seq(1, 500)], ets:info(T, memory) * erlang:system_info(wordsize)",
            r"(\d+)",
            500_000_000,
        ),
        (
            "a 300 MB heap collected 5 times",
            "L = lists:seq(1, 20000000), [erlang:garbage_collect() || _ <- lists:seq(1, 5)], "
            "{total_heap_size, W} = process_info(self(), total_heap_size), "
            "{W * erlang:system_info(wordsize), length(L)}",
            r"\{(\d+),20000000\}",
            300_000_000,
        ),
    ]


def _alive(shell: Shell, what: str) -> None:
    got = _eval(shell, "1 + 1.")
    if got != "2":
        raise UserError(f"after {what}, `1 + 1.` printed {got!r} (log: {shell.session.log})")


@check("mem-big", needs=NEEDS)
def mem_big(planner: Planner) -> str:
    """A 1 GiB binary, a 10-million-element list, 500 MB in ETS, a 300 MB heap collected
    5 times, and erlang:memory(total) at 85% of the RAM; the shell answers after each."""
    img = targets.image(planner, "beam")
    ram = boards.ram_mib(img.board, img.ram or img.board.ram) * MIB
    log = logs.run_log("mem-big")
    done = []
    with qemu.boot(img.command(), log) as s:
        shell = Shell(s)
        shell.wait_ready()
        _eval(shell, RUNNER)
        for what, body, want, least in _cases(ram):
            t0 = time.monotonic()
            got = _eval(shell, f"R(fun() -> {body} end).", BIG_TIMEOUT)
            m = re.fullmatch(rf"\{{ok,{want}\}}", got)
            if not m or int(m.group(1)) < least:
                raise UserError(
                    f"mem-big: {what}: the guest printed {got!r}, expected at least {least} "
                    f"(log: {log})"
                )
            _alive(shell, what)
            done.append(f"{what} {time.monotonic() - t0:.0f} s")
        _halt(shell, 0)
    _no_fatal_lines(log)
    return "; ".join(done)


# ERTS's own words when an allocation fails, as on Linux (erts_alloc_enomem).
ENOMEM_LINE = r'Cannot allocate (\d+) bytes of memory \(of type "binary"\)'


@check("mem-oom", needs=NEEDS)
def mem_oom(planner: Planner) -> str:
    """A binary twice the RAM: ERTS's own out-of-memory message, its crash dump and exit
    status 1, as `erl` ends on Linux. The boot has restarts off, as `run --eval` (else the
    supervisor would restart the node: beam-restart)."""
    img = targets.image(planner, "beam")
    want = 2 * boards.ram_mib(img.board, img.ram or img.board.ram) * MIB
    log = logs.run_log("mem-oom")
    with qemu.boot(img.command(fw_cfg=[NO_RESTART]), log) as s:
        shell = Shell(s)
        shell.wait_ready()
        shell.session.send(f"binary:copy(<<1>>, {want}).\r")
        m = s.expect(ENOMEM_LINE, 120)
        s.expect(r"Crash dump is being written", 60)
        status = s.wait_exit(300)
    if int(m.group(1)) < want or status != 1:
        raise UserError(
            f"mem-oom: asked {want} bytes, ERTS refused {m.group(1).decode()}, exit status "
            f"{status}; expected the whole request and status 1 (log: {log})"
        )
    return f"ERTS refused {want >> 30} GiB and exited with status {status}"
