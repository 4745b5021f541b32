"""The Erlang image: beam_server = runtime adapter + ERTS, with OTP on the FAT disk.

`chrysopolis build` (this target, `beam`) writes `sel4-beam.img` and `disk.img`. The
checks boot it: `boot-smoke` (the markers in order, no error line), `shell-smoke` (the
README's session) and `shell-deep` (processes, ETS, binaries, re, zlib, floats, files,
timers, the compiler, entropy across boots).
"""

import json
import re
from pathlib import Path

from chrysopolis import boards, image
from chrysopolis.build import runtime
from chrysopolis.build.erts import LIBGCC_DIR
from chrysopolis.stages import Context, stage

MARKERS = {
    "banner": r"Chrysopolis: beam_server up on the LionsOS reference stack\.",
    "clock": r"monotonic clock via sDDF timer: (\d+\.\d+) s",
    "handoff": r"Handing off to ERTS core loop\.\.\.",
    "erlang": r"Erlang/OTP 27[^\r\n]*",
    "eshell": r"Eshell V(\d+\.\d+(?:\.\d+)*)",
}
BAD = re.compile(rb"MON\|ERROR|[Ff]ault|POSIX\|ERROR|Unimplemented syscall|Crash dump|"
                 rb"beam_server: ERROR|Kernel pid terminated|assert")


def erts_archives(erts: Path) -> list[Path]:
    link = json.loads((erts / "link.json").read_text())
    return [erts / a for a in link["archives"]]


@stage("beam", sources=image.SOURCES, deps=(*image.DEPS, "erts", "otp"),
       files=(image.RUNTIME, "beam", "chrysopolis/image.py", "chrysopolis/system.py",
              "chrysopolis/disk.py", "chrysopolis/build/runtime.py"),
       host=(*image.HOST, "gcc-aarch64-linux-gnu"),
       options={"board": boards.DEFAULT_BOARD, "heap_mib": 256, "stack_kib": 256,
                "cothread_stack": 0x100000},
       target=True)
def build(ctx: Context) -> None:
    """The Erlang image: ERTS 27 in beam_server on seL4, OTP on a FAT disk (sel4-beam.img)."""
    board = ctx.options["board"]
    rt = ctx.ours(image.RUNTIME)
    srcs = [rt / f for f in (*runtime.PD_FILES, *runtime.ADAPTER_FILES)]
    srcs.append(ctx.ours("beam/main.c"))
    # ERTS's archives depend on each other and on libgcc (128-bit division): one group.
    libs = [*erts_archives(ctx.dep("erts")), LIBGCC_DIR / "libgcc.a"]
    image.compile_client(ctx, srcs, board, extra_libs=libs,
                         defines={"COTHREAD_STACK_SIZE": hex(ctx.options["cothread_stack"])},
                         ldflags=[*runtime.LINK_FLAGS, "-u", "erl_start"])
    image.assemble(ctx, "sel4-beam", board, heap_mib=ctx.options["heap_mib"],
                   stack_kib=ctx.options["stack_kib"], disk_tree=ctx.dep("otp") / "root",
                   markers=MARKERS)
