# SPDX-License-Identifier: BSD-2-Clause
"""Assembling a bootable system around a beam_server PD of ours.

`compile_client` builds beam_server.elf from our C against the LionsOS stack; `assemble`
packs (`pack`: renders the system with system.py, writes every config blob into its ELF,
runs the SDK's Microkit tool) and writes the FAT disk. `pack` alone, with another MAC, is
how a node of a LAN gets its image (chrysopolis/nodes.py). The `bringup` image and the
Erlang image differ only in the C they compile, the libraries they add and the disk tree.
"""

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from chrysopolis import boards, config, disk, system, targets
from chrysopolis.cache import Context
from chrysopolis.errors import UsageError, UserError


def _stack():
    """The LionsOS stage module and the SDK's board_dir, imported when used (they are
    stage recipes; this module is shared by the targets)."""
    from chrysopolis.stages import lionsos
    from chrysopolis.stages.sdk import board_dir

    return lionsos, board_dir


# The stages a beam_server image stands on, and the sources whose headers it includes.
DEPS = ("sdk", "lionsos-libc", "sddf", "fatfs", "libmicrokitco-beam", "lwip")
SOURCES = ("sddf", "lionsos", "libmicrokitco")
RUNTIME = "runtime"
# The runtime's C (docs/architecture.md), every .c file of each folder: the PD base every
# beam_server links (runtime/pd), the POSIX adapter ERTS needs on top (runtime/posix), and
# the network stack over it (runtime/net: lwIP in beam_server, linked with lib_sddf_lwip).
PD_DIR, POSIX_DIR, NET_DIR = "pd", "posix", "net"
# The POSIX adapter's cothreads: --wrap every libmicrokitco call that can switch cothreads,
# so the __wrap_ functions keep tpidr_el0 (musl's thread pointer) with its cothread and
# give channel waits wake-all semantics (docs/threads.md).
WRAPPED = (
    "microkit_cothread_yield",
    "microkit_cothread_semaphore_wait",
    "microkit_cothread_semaphore_signal",
    "microkit_cothread_wait_on_channel",
    "microkit_cothread_recv_ntfn",
)
POSIX_LINK_FLAGS = tuple(f"--wrap={s}" for s in WRAPPED)
# What a beam_server prints first (targets/*/: its banner and one sDDF timer reading).
BANNER_MARKERS = {
    "banner": r"Chrysopolis: beam_server up on the LionsOS reference stack\.",
    "clock": r"monotonic clock via sDDF timer: (\d+\.\d+) s",
}
# Our files every such image reads (each target adds the directory of its own C); our
# Python modules are keyed by import (cache.module_closure).
FILES = (RUNTIME,)
# The GitHub-hosted sources behind such an image (the SDK's and the stack's): its checks need them.
NEEDS = ("sel4", "microkit", *SOURCES)
HOST = ("clang-19", "lld-19", "llvm-19", "mtools", "dosfstools", "device-tree-compiler")

# sDDF's flags for PDs (tools/make/toolchain/clang.mk); no outline atomics: nothing in a PD
# may call getauxval before musl is up (docs/boot.md).
CFLAGS = [
    "-target",
    "aarch64-none-elf",
    "-ffreestanding",
    "-mstrict-align",
    "-mno-outline-atomics",
    "-O2",
    "-g",
    "-Wall",
    "-Wno-unused-function",
]


def runtime_sources(ctx: Context, posix: bool, net: bool = False) -> list[Path]:
    """The runtime's C for a beam_server: the PD base, with `posix` the POSIX adapter, with
    `net` (which needs `posix`) the network stack; link `lwip_lib(ctx)` with it."""
    rt = ctx.ours(RUNTIME)
    dirs = (PD_DIR, POSIX_DIR, NET_DIR) if net else (PD_DIR, POSIX_DIR) if posix else (PD_DIR,)
    return [f for d in dirs for f in sorted((rt / d).glob("*.c"))]


def lwip_lib(ctx: Context) -> Path:
    """lib_sddf_lwip.a: lwIP and sDDF's glue, for images that compile runtime/net."""
    lionsos, _ = _stack()
    return ctx.dep("lwip") / "lib" / lionsos.LWIP_LIB


def include_dirs(ctx: Context, board: str) -> list[Path]:
    lionsos, board_dir = _stack()
    return [
        config.ROOT / RUNTIME / "include",
        board_dir(ctx.dep("sdk"), board, lionsos.CONFIG) / "include",
        ctx.dep("lionsos-libc") / "include",
        ctx.src("lionsos") / "include",
        ctx.src("sddf") / "include",
        ctx.src("sddf") / "include" / "microkit",
        ctx.src("libmicrokitco"),
        ctx.dep("libmicrokitco-beam") / "include",
        # lwipopts.h and arch/cc.h as the lwip stage compiled them, then lwIP's headers:
        # our C must see the very layouts the library was built with.
        ctx.dep("lwip") / "include",
        ctx.src("sddf") / "network" / "ipstacks" / "lwip" / "src" / "include",
    ]


def compile_client(
    ctx: Context,
    sources: Sequence[Path],
    board: str,
    extra_libs: Sequence[Path] = (),
    defines: Mapping[str, str] | None = None,
    extra_includes: Sequence[Path] = (),
    ldflags: Sequence[str] = (),
) -> Path:
    """Compile `sources` and link beam_server.elf (no PIE, no gc-sections, not stripped)."""
    lionsos, board_dir = _stack()
    llvm = lionsos.LLVM_BIN
    b = boards.board(board)
    objdir = ctx.work / "obj"
    objdir.mkdir(parents=True, exist_ok=True)
    incs = [f"-I{d}" for d in [*include_dirs(ctx, board), *extra_includes]]
    defs = [f"-D{k}={v}" for k, v in (defines or {}).items()]
    # Where the checkout and the cache live must not reach the image (debug info, __FILE__).
    prefix_maps = [
        f"-ffile-prefix-map={config.ROOT}=/chrysopolis",
        f"-ffile-prefix-map={config.cache_dir()}=/cache",
    ]
    objs = []
    for src in sources:
        obj = objdir / (Path(src).stem + ".o")
        cmd = [llvm / "clang", *CFLAGS, f"-mcpu={b.cpu}", *prefix_maps, *defs, *incs]
        ctx.run([*cmd, "-c", src, "-o", obj], cwd=objdir)  # cwd: the DWARF compile dir
        objs.append(obj)
    elf = ctx.work / "elf" / "beam_server.elf"
    elf.parent.mkdir(parents=True, exist_ok=True)
    bdir = board_dir(ctx.dep("sdk"), board, lionsos.CONFIG)
    ctx.run(
        [
            llvm / "ld.lld",
            "-L",
            bdir / "lib",
            "-L",
            ctx.dep("lionsos-libc") / "lib",
            *objs,
            "--start-group",
            *extra_libs,
            ctx.dep("libmicrokitco-beam") / "lib" / "libmicrokitco.a",
            ctx.dep("sddf") / "lib" / lionsos.UTIL_LIB,
            "-lmicrokit",
            "-lc",
            "--end-group",
            "-Tmicrokit.ld",
            "-T",
            config.ROOT / "mk" / "got.ld",
            *ldflags,
            "-o",
            elf,
        ]
    )
    return elf


# The stages whose ELFs a beam_server system packs besides beam_server.elf.
SERVICE_STAGES = ("sddf", "fatfs")


def pack(
    run,
    elfdir: Path,
    system_dir: Path,
    loader: Path,
    report: Path,
    board: str,
    *,
    sddf: Path,
    microkit: Path,
    heap_mib: int,
    stack_kib: int,
    mac: str = system.DEFAULT_MAC,
    ram_mib: int | None = None,
) -> system.SystemOutputs:
    """Render the system with `mac`, write every config blob into the ELFs in `elfdir` (in
    place) and pack `loader` with the Microkit tool. `run(cmd)` runs a command or fails.

    The cheap half of an image (seconds): the build calls it once for node 0, and
    nodes.node_image again per MAC on copies of the ELFs, with no recompilation."""
    lionsos, _ = _stack()
    outputs = system.generate(
        system_dir, board, sddf=sddf, heap_mib=heap_mib, stack_kib=stack_kib, mac=mac
    )
    system.write_sections(outputs, elfdir, objcopy=str(lionsos.LLVM_BIN / "llvm-objcopy"))
    tool = [microkit, outputs.system_file, "--search-path", elfdir, "--board", board]
    try:
        run([*tool, "--config", lionsos.CONFIG, "-o", loader, "-r", report])
    except UserError:
        if ram_mib is not None:
            too_small(tool, lionsos.CONFIG, ram_mib, heap_mib)
        raise
    return outputs


def too_small(tool: list, cfg: str, ram_mib: int, heap_mib: int) -> None:
    """After the Microkit tool (`tool`: its command up to --config) failed to pack for
    `ram_mib`: when a bigger RAM of the board packs, refuse with the smallest that does.
    The tool is asked again against a view of the SDK whose platform_gen.json only has more
    memory (the kernel, its load address and the loader do not change with the size: our
    overlay keeps the start of RAM fixed). Returns when no size packs: another failure."""
    sdk, board = Path(tool[0]).parent.parent, boards.board(str(tool[-1]))
    real = sdk / "board" / board.name / cfg
    sizes = list(range(ram_mib + board.ram_step, board.ram_max + 1, board.ram_step))
    with tempfile.TemporaryDirectory(prefix="ram-probe-") as tmp:
        view = Path(tmp) / "board" / board.name / cfg
        view.mkdir(parents=True)
        for p in real.iterdir():
            if p.name != "platform_gen.json":
                (view / p.name).symlink_to(p)
        platform = json.loads((real / "platform_gen.json").read_text())

        def packs(mib: int) -> bool:
            top = board.ram_base + mib * boards.MIB
            platform["memory"] = [{"start": board.paddr_top, "end": top}]
            (view / "platform_gen.json").write_text(json.dumps(platform))
            cmd = [*map(str, tool), "--config", cfg, "-o", f"{tmp}/l.img", "-r", f"{tmp}/r.txt"]
            env = {**os.environ, "MICROKIT_SDK": tmp}
            return subprocess.run(cmd, capture_output=True, env=env).returncode == 0

        if not sizes or not packs(sizes[-1]):
            return
        lo, hi = 0, len(sizes) - 1  # sizes[hi] packs; bisect for the first that does
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if packs(sizes[mid]) else (mid + 1, hi)
    fits = boards.ram_text(sizes[hi])
    raise UsageError(
        f"--ram {boards.ram_text(ram_mib)} is too small for the protection domains "
        f"(beam_server's heap {heap_mib} MiB); the smallest RAM that fits is {fits}: "
        f"give --ram {fits} or more"
    )


def assemble(
    ctx: Context,
    name: str,
    board: str,
    *,
    ram: str,
    heap_mib: int,
    stack_kib: int,
    disk_tree: Path | None,
    disk_extra: Mapping[str, Path] | None = None,
    markers: Mapping[str, str] | None = None,
) -> None:
    """Render the system, configure the ELFs, pack `<name>.img`, write disk.img and run.json."""
    elfdir = ctx.work / "elf"
    for stage_name in SERVICE_STAGES:
        for elf in (ctx.dep(stage_name) / "elf").glob("*.elf"):
            shutil.copyfile(elf, elfdir / elf.name)
    image = f"{name}.img"
    outputs = pack(
        ctx.run,
        elfdir,
        ctx.work / "system",
        ctx.out / image,
        ctx.out / "report.txt",
        board,
        sddf=ctx.src("sddf"),
        microkit=ctx.dep("sdk") / "bin" / "microkit",
        heap_mib=heap_mib,
        stack_kib=stack_kib,
        ram_mib=boards.ram_mib(boards.board(board), ram),
    )
    shutil.copyfile(outputs.system_file, ctx.out / outputs.system_file.name)
    shutil.copyfile(elfdir / "beam_server.elf", ctx.out / "beam_server.elf")
    info = disk.build_disk(disk_tree, ctx.out / "disk.img", extra=disk_extra)
    ctx.note(f"disk: {info}")
    targets.write_manifest(
        ctx.out,
        image,
        board,
        disk="disk.img",
        disk_bus=outputs.blk_bus,
        net_bus=outputs.net_bus,
        mac=outputs.mac,
        markers=dict(markers or {}),
        ram=ram,
    )
