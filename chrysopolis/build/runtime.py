"""The runtime adapter for ERTS (runtime/*.c beyond the PD files) and its on-target self-test.

What an image linking ERTS takes from here:

    ADAPTER_FILES   the adapter's C files (compile them with the PD files; call
                    runtime_adapter_init() first thing in chrysopolis_main)
    LINK_FLAGS      --wrap for every libmicrokitco call that can switch cothreads: the
                    __wrap_ functions in threads.c keep tpidr_el0 (musl's thread pointer)
                    with its cothread and give channel waits wake-all semantics

The `selftest` target is beam_server with selftest/selftest.c as its main: musl's pthreads
over our cothreads and futex, condvars with timeouts, epoll/timerfd/pipes, clocks, mmap,
entropy and the FAT volume, one `selftest: ok|FAIL` line each. `runtime-selftest` boots it.
"""

import re
from pathlib import Path

from chrysopolis import boards, config, image, qemu, targets
from chrysopolis.checks import check
from chrysopolis.errors import UserError
from chrysopolis.stages import Context, Planner, stage

# Relative to runtime/: every .c file of runtime/pd (the PD base every LionsOS image links)
# and of runtime/posix (the POSIX adapter ERTS needs).
PD_FILES = tuple(sorted(f"pd/{p.name}" for p in (config.ROOT / "runtime" / "pd").glob("*.c")))
ADAPTER_FILES = tuple(
    sorted(f"posix/{p.name}" for p in (config.ROOT / "runtime" / "posix").glob("*.c"))
)
WRAPPED = (
    "microkit_cothread_yield",
    "microkit_cothread_semaphore_wait",
    "microkit_cothread_semaphore_signal",
    "microkit_cothread_wait_on_channel",
    "microkit_cothread_recv_ntfn",
)
LINK_FLAGS = tuple(f"--wrap={s}" for s in WRAPPED)

MARKERS = {
    "start": r"selftest: start",
    "done": r"selftest: done, (\d+) failures",
    "random": r"selftest: random ([0-9a-f]{32})",
}
FAIL = re.compile(rb"selftest: FAIL [^\r\n]*")
BAD = re.compile(rb"MON\|ERROR|[Ff]ault|POSIX\|ERROR|assert")


@stage(
    "selftest",
    sources=image.SOURCES,
    deps=image.DEPS,
    files=(*image.FILES, "selftest"),
    host=image.HOST,
    options={"board": boards.DEFAULT_BOARD, "heap_mib": 32, "stack_kib": 64},
    target=True,
)
def build(ctx: Context) -> None:
    """Runtime adapter self-test image: pthreads, futex, epoll, timerfd, clocks, mmap, FAT."""
    board = ctx.options["board"]
    rt = ctx.ours(image.RUNTIME)
    srcs = [rt / f for f in (*PD_FILES, *ADAPTER_FILES)] + [ctx.ours("selftest/selftest.c")]
    # 64 KiB cothread stacks: 31 of them from the top of the heap region.
    image.compile_client(
        ctx, srcs, board, defines={"COTHREAD_STACK_SIZE": "0x10000"}, ldflags=LINK_FLAGS
    )
    tree = ctx.work / "disk"
    (tree / "data").mkdir(parents=True)
    (tree / "hello.txt").write_text("hello from the self-test volume\n")
    (tree / "data" / "keep.txt").write_text("a file, so the directory is kept\n")
    image.assemble(
        ctx,
        "sel4-selftest",
        board,
        heap_mib=ctx.options["heap_mib"],
        stack_kib=ctx.options["stack_kib"],
        disk_tree=None,
        disk_extra={"/selftest": tree},
        markers=MARKERS,
    )


def _boot(planner: Planner, name: str) -> tuple[str, str, Path]:
    """Boot the self-test once: (summary, random hex, log); UserError on any failure."""
    img = targets.image(planner, "selftest")
    log = config.runs_dir() / f"{name}.log"
    with qemu.boot(qemu.command(img.board, img.loader, img.disk), log) as s:
        s.expect(MARKERS["start"], 60)
        rnd = s.expect(MARKERS["random"], 120).group(1).decode()
        failures = int(s.expect(MARKERS["done"], 120).group(1))
        at = s.elapsed()
    text = log.read_bytes()
    fails = FAIL.findall(text)
    if failures or fails:
        shown = "; ".join(f.decode(errors="replace") for f in fails[:3])
        raise UserError(f"runtime self-test: {failures} failures: {shown} (log: {log})")
    bad = BAD.search(text)
    if bad:
        raise UserError(f"runtime self-test: error line {bad.group(0)!r} (log: {log})")
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
