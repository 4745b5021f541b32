# SPDX-License-Identifier: BSD-2-Clause
"""Target `selftest`: the runtime adapter's on-target self-test.

Its C: the runtime (PD base + POSIX adapter) and targets/selftest/selftest.c, which checks
musl's pthreads over our cothreads and futex, condvars with timeouts, epoll/timerfd/pipes,
clocks, mmap, entropy and the FAT volume, one `selftest: ok|FAIL` line each. Its topology:
the LionsOS stack of chrysopolis/system.py. `runtime-selftest` boots it.
"""

import re
from pathlib import Path

from chrysopolis import boards, image, logs, qemu, targets
from chrysopolis.cache import Context, Planner, stage
from chrysopolis.checks import check, fatal_line
from chrysopolis.errors import UserError

MAIN = "targets/selftest/selftest.c"

MARKERS = {
    "start": r"selftest: start",
    "done": r"selftest: done, (\d+) failures",
    "random": r"selftest: random ([0-9a-f]{32})",
}
FAIL = re.compile(rb"selftest: FAIL [^\r\n]*")
COTHREAD_STACK = 0x10000
# runtime/pd/costack.c's report of a spoilt canary, and the status it powers off with.
OVERFLOW_LINE = (
    rb"beam_server: ERROR: cothread (\d+) \(thread (\d+)\) overflowed its (\d+) KiB stack"
)
OVERFLOW_STATUS = 139


@stage(
    "selftest",
    sources=image.SOURCES,
    deps=image.DEPS,
    files=(*image.FILES, MAIN),
    host=image.HOST,
    options={
        "board": boards.DEFAULT_BOARD,
        "ram": boards.board(boards.DEFAULT_BOARD).ram,
        "heap_mib": 32,
        "stack_kib": 64,
    },
    target=True,
)
def selftest(ctx: Context) -> None:
    """Runtime adapter self-test image: pthreads, futex, epoll, timerfd, clocks, mmap, FAT."""
    board = ctx.options["board"]
    srcs = [*image.runtime_sources(ctx, posix=True), ctx.ours(MAIN)]
    # 64 KiB cothread stacks: 31 of them from the top of the heap region.
    image.compile_client(
        ctx,
        srcs,
        board,
        defines={"COTHREAD_STACK_SIZE": hex(COTHREAD_STACK)},
        ldflags=image.POSIX_LINK_FLAGS,
    )
    tree = ctx.work / "disk"
    (tree / "data").mkdir(parents=True)
    (tree / "hello.txt").write_text("hello from the self-test volume\n")
    (tree / "data" / "keep.txt").write_text("a file, so the directory is kept\n")
    image.assemble(
        ctx,
        "sel4-selftest",
        board,
        ram=ctx.options["ram"],
        heap_mib=ctx.options["heap_mib"],
        stack_kib=ctx.options["stack_kib"],
        disk_tree=None,
        disk_extra={"/selftest": tree},
        markers=MARKERS,
    )


def _boot(planner: Planner, name: str) -> tuple[str, str, Path]:
    """Boot the self-test once: (summary, random hex, log); UserError on any failure."""
    img = targets.image(planner, "selftest")
    log = logs.run_log(name)
    with qemu.boot(img.command(), log) as s:
        s.expect(MARKERS["start"], 60)
        rnd = s.expect(MARKERS["random"], 120).group(1).decode()
        failures = int(s.expect(MARKERS["done"], 120).group(1))
        at = s.elapsed()
        status = s.wait_exit(30)  # the self-test exits: 0 when every check passed
    text = log.read_bytes()
    fails = FAIL.findall(text)
    if failures or fails:
        shown = "; ".join(f.decode(errors="replace") for f in fails[:3])
        raise UserError(f"runtime self-test: {failures} failures: {shown} (log: {log})")
    bad = fatal_line(text)
    if bad:
        raise UserError(f"runtime self-test: error line {bad!r} (log: {log})")
    if status != 0:
        raise UserError(f"runtime self-test: passed, but exited with status {status} (log: {log})")
    passed = len(re.findall(rb"selftest: ok ", text))
    return f"{passed} checks passed in {at:.2f} s", rnd, log


@check("runtime-selftest", needs=image.NEEDS)
def runtime_selftest(planner: Planner) -> str:
    """Boot the runtime adapter self-test twice: every check passes, getrandom differs per boot."""
    first, r1, _ = _boot(planner, "runtime-selftest-1")
    _, r2, log = _boot(planner, "runtime-selftest-2")
    if r1 == r2:
        raise UserError(
            f"getrandom gave {r1} on two boots: the DRBG seed does not vary (log: {log})"
        )
    return f"{first}; getrandom differs across boots"


@check("stack-overflow", needs=image.NEEDS)
def stack_overflow(planner: Planner) -> str:
    """A thread overruns its cothread stack on purpose: the canary check reports it by name
    and the machine powers off with status 139, as Linux's SIGSEGV."""
    img = targets.image(planner, "selftest")
    log = logs.run_log("stack-overflow")
    cmd = img.command(fw_cfg=[("opt/chrysopolis/selftest", "stack-overflow")])
    with qemu.boot(cmd, log) as s:
        s.expect(r"selftest: overflowing a cothread stack", 60)
        m = s.expect(OVERFLOW_LINE.decode(), 60)
        status = s.wait_exit(30)
    text = log.read_bytes()
    if FAIL.search(text):
        raise UserError(f"stack-overflow: {FAIL.search(text).group(0).decode()} (log: {log})")
    kib = int(m.group(3))
    if kib != COTHREAD_STACK // 1024 or status != OVERFLOW_STATUS:
        raise UserError(
            f"stack-overflow: reported a {kib} KiB stack, exit status {status}; expected "
            f"{COTHREAD_STACK // 1024} KiB and {OVERFLOW_STATUS} (log: {log})"
        )
    return (
        f"cothread {m.group(1).decode()} (thread {m.group(2).decode()}) reported, status {status}"
    )
