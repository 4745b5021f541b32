# SPDX-License-Identifier: BSD-2-Clause
"""Target `bringup`: beam_server without ERTS, proving the LionsOS stack end to end.

Its C: the runtime's PD base and targets/bringup/bringup.c. Its topology: the LionsOS
stack of chrysopolis/system.py.

It prints a banner, two sDDF timer readings, mounts the FAT volume, reads /hello.txt
through POSIX open/read and then echoes console lines. Its checks boot it with a good
disk and with a disk that holds no FAT volume. (With no disk at all, sDDF's virtio-blk
driver fails an assertion and its virtualiser waits for it forever: `run` refuses that.)
"""

import tempfile
from pathlib import Path

from chrysopolis import boards, image, logs, qemu, targets
from chrysopolis.cache import Context, Planner, stage
from chrysopolis.checks import check, clean_log
from chrysopolis.errors import UserError

MAIN = "targets/bringup/bringup.c"
HELLO_TEXT = "Hello from the FAT volume, read through LionsOS POSIX open/read.\n"

MARKERS = {
    **image.BANNER_MARKERS,
    "mounted": r"FAT volume mounted",
    "file": r"/hello\.txt: ([^\r\n]*)\r*\n",
    "echo_ready": r"echo: type a line",
    "mount_error": r"beam_server: ERROR: cannot mount the FAT volume[^\r\n]*\r*\n",
}


@stage(
    "bringup",
    sources=image.SOURCES,
    deps=image.DEPS,
    files=(*image.FILES, MAIN),
    host=image.HOST,
    options={
        "board": boards.DEFAULT_BOARD,
        "ram": boards.board(boards.DEFAULT_BOARD).ram,
        "heap_mib": 16,
        "stack_kib": 64,
    },
    target=True,
)
def bringup(ctx: Context) -> None:
    """Bring-up image: LionsOS stack + a beam_server without ERTS (serial, timer, FAT, echo)."""
    board = ctx.options["board"]
    srcs = [*image.runtime_sources(ctx, posix=False), ctx.ours(MAIN)]
    # 64 KiB cothread stacks: the bring-up runs one cothread, with little on it.
    image.compile_client(ctx, srcs, board, defines={"COTHREAD_STACK_SIZE": "0x10000"})
    hello = ctx.work / "hello.txt"
    hello.write_text(HELLO_TEXT)
    image.assemble(
        ctx,
        "sel4-bringup",
        board,
        ram=ctx.options["ram"],
        heap_mib=ctx.options["heap_mib"],
        stack_kib=ctx.options["stack_kib"],
        disk_tree=None,
        disk_extra={"/hello.txt": hello},
        markers=MARKERS,
    )


def _boot_log(name: str) -> Path:
    return logs.run_log(name)


@check("bringup-smoke", needs=image.NEEDS)
def bringup_smoke(planner: Planner) -> str:
    """Boot the bring-up image: banner, timer, FAT mount, file read, console echo, no errors."""
    img = targets.image(planner, "bringup")
    log = _boot_log("bringup-smoke")
    with qemu.boot(img.command(), log) as s:
        s.expect(MARKERS["banner"], 30)
        t1 = float(s.expect(MARKERS["clock"], 10).group(1))
        s.expect(MARKERS["mounted"], 30)
        mounted_at = s.elapsed()
        content = s.expect(MARKERS["file"], 10).group(1).decode()
        if content != HELLO_TEXT.strip():
            raise UserError(f"/hello.txt read back as {content!r} (log: {log})")
        t2 = float(s.expect(MARKERS["clock"], 10).group(1))
        if not t2 > t1:
            raise UserError(f"the monotonic clock did not advance: {t1} then {t2} s (log: {log})")
        s.expect(MARKERS["echo_ready"], 10)
        s.send("ping seL4 42\r")
        s.expect(r"echo> ping seL4 42", 20)
    clean_log(log)
    return f"mounted after {mounted_at:.2f} s, clock {t1:.3f} -> {t2:.3f} s, echo ok"


def _expect_mount_error(planner: Planner, name: str, disk: Path | None) -> str:
    img = targets.image(planner, "bringup")
    log = _boot_log(name)
    with qemu.boot(img.command(disk), log) as s:
        s.expect(MARKERS["banner"], 30)
        line = s.expect(MARKERS["mount_error"], 30).group(0).decode()
        at = s.elapsed()
    return f"{line.strip()!r} after {at:.2f} s"


@check("bringup-baddisk", needs=image.NEEDS)
def bringup_baddisk(planner: Planner) -> str:
    """Boot the bring-up image with a disk that holds no FAT volume: a clear mount error."""
    with tempfile.TemporaryDirectory() as d:
        blank = Path(d) / "blank.img"
        with open(blank, "wb") as f:
            f.truncate(64 * 1024 * 1024)
        return _expect_mount_error(planner, "bringup-baddisk", blank)
