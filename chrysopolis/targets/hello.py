# SPDX-License-Identifier: BSD-2-Clause
"""Target `hello`: one protection domain of ours on seL4 + Microkit, the smallest bootable one.

Its C: targets/hello/hello.c. Its topology: `system.single_pd`, one PD and nothing else.

It proves the SDK end to end: our C file compiled against libmicrokit, a system
description generated with sdfgen, the `microkit` tool packing the loader image, and
QEMU printing the PD's marker line.
"""

from chrysopolis import boards, logs, qemu, system, targets, toolchain
from chrysopolis.cache import Context, Planner, stage
from chrysopolis.checks import check
from chrysopolis.stages.sdk import board_dir

BOARD = boards.DEFAULT_BOARD
CONFIG = "debug"  # release kernels and loaders print nothing
MARKER = r"hello from Chrysopolis on seL4 \(protection domain 'hello'\)"

MAIN = "targets/hello/hello.c"

CROSS = "aarch64-linux-gnu-"
# As Microkit's example Makefiles, plus no PIE/stack protector (Debian's defaults for Linux).
CFLAGS = [
    "-mcpu={cpu}",
    "-mstrict-align",
    "-ffreestanding",
    "-nostdlib",
    "-fno-pie",
    "-fno-stack-protector",
    "-O2",
    "-g",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wno-unused-function",
]  # microkit.h has static helpers a PD may not call


@stage(
    "hello",
    deps=("sdk",),
    files=(MAIN,),
    host=("gcc-aarch64-linux-gnu", "binutils-aarch64-linux-gnu"),
    pypi=("sdfgen",),
    options={
        "board": BOARD,
        "ram": boards.board(BOARD).ram,
        "config": CONFIG,
        "marker": MARKER,
    },
    target=True,
)
def hello(ctx: Context) -> None:
    """Our hello PD on seL4 + Microkit (the smallest bootable image)."""
    toolchain.need(CROSS + "gcc", CROSS + "ld")
    board = boards.board(ctx.options["board"])
    sdk = ctx.dep("sdk")
    bdir = board_dir(sdk, board.name, ctx.options["config"])
    cflags = [f.format(cpu=board.cpu) for f in CFLAGS]
    obj, elf = ctx.work / "hello.o", ctx.out / "hello.elf"
    ctx.run([CROSS + "gcc", *cflags, "-I", bdir / "include", "-c", ctx.ours(MAIN), "-o", obj])
    ctx.run([CROSS + "ld", "-L", bdir / "lib", obj, "-lmicrokit", "-Tmicrokit.ld", "-o", elf])
    (ctx.out / "hello.system").write_text(system.single_pd(board, "hello", elf.name))
    ctx.run(
        [
            sdk / "bin" / "microkit",
            "hello.system",
            "--search-path",
            ctx.out,
            "--board",
            board.name,
            "--config",
            ctx.options["config"],
            "-o",
            "loader.img",
            "-r",
            "report.txt",
        ],
        cwd=ctx.out,
    )
    targets.write_manifest(
        ctx.out,
        "loader.img",
        board.name,
        markers={"hello": ctx.options["marker"]},
        ram=ctx.options["ram"],
    )


def boot_time(planner: Planner, timeout: float = 30.0) -> float:
    """Seconds from QEMU's start to the hello marker on the serial console."""
    img = targets.image(planner, "hello")
    log = logs.run_log("check-hello")
    with qemu.boot(img.command(), log) as session:
        session.expect(img.markers["hello"], timeout)
        return session.elapsed()


@check("hello", needs=("sel4", "microkit"))
def check_hello(planner: Planner) -> str:
    """Boot the hello image headless; its PD prints the marker line."""
    return f"marker after {boot_time(planner):.2f} s"
