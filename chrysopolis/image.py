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
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from chrysopolis import boards, config, disk, memreport, system, targets, toolchain
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
# The reset stub (runtime/reset/sup_reset.c): it snapshots the PD at its first instruction
# and is where the supervisor restarts it.
RESET_DIR = "reset"
RESET_LINK_FLAGS = ("--wrap=init", "-e", "_sup_start")
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
# musl's pthread_create maps each thread a stack of the size asked, which its cothread never
# runs on: threads.c has it map the least (docs/threads.md).
WRAPPED_LIBC = ("pthread_attr_setstacksize",)
POSIX_LINK_FLAGS = tuple(f"--wrap={s}" for s in (*WRAPPED, *WRAPPED_LIBC))
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
    dirs = (*dirs, RESET_DIR)  # every beam_server is the supervisor's child
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


# The supervisor PD (runtime/supervisor): plain C on libmicrokit, no libc. With fault
# injection (tests only) it also gets its tick PD, and the injection code is compiled in.
SUPERVISOR_DIR = "supervisor"


def compile_supervisor(ctx: Context, board: str, inject: str = "") -> None:
    """Compile supervisor.elf (and with `inject`, a spec of system.parse_inject, sup_inject.elf)
    into the image's ELF directory."""
    lionsos, board_dir = _stack()
    llvm = lionsos.LLVM_BIN
    bdir = board_dir(ctx.dep("sdk"), board, lionsos.CONFIG)
    src_dir = ctx.ours(RUNTIME) / SUPERVISOR_DIR
    objdir = ctx.work / "obj-supervisor"
    objdir.mkdir(parents=True, exist_ok=True)
    (ctx.work / "elf").mkdir(parents=True, exist_ok=True)
    progs = [(system.SUPERVISOR_ELF, "supervisor.c", [])]
    if inject:
        progs[0][2].extend(["-DSUP_FAULT_INJECT=1", f'-DSUP_INJECT_SPEC="{inject}"'])
        progs.append((system.INJECT_ELF, "inject.c", []))
    cflags = [*CFLAGS, f"-mcpu={boards.board(board).cpu}", "-fno-builtin"]
    incs = [f"-I{config.ROOT / RUNTIME / 'include'}", f"-I{bdir / 'include'}"]
    for elf, src, defs in progs:
        obj = objdir / (Path(src).stem + ".o")
        ctx.run([llvm / "clang", *cflags, *defs, *incs, "-c", src_dir / src, "-o", obj], cwd=objdir)
        ctx.run(
            [llvm / "ld.lld", "-L", bdir / "lib", obj, "-lmicrokit", "-Tmicrokit.ld", "-o"]
            # no debug info: it would name the header's injection op even where there is none
            + [ctx.work / "elf" / elf, "--strip-debug"]
        )


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
    objs = []
    for src in sources:
        obj = objdir / (Path(src).stem + ".o")
        # The checkout's and cache's paths are mapped out by ctx.run (buildpaths.py).
        cmd = [llvm / "clang", *CFLAGS, f"-mcpu={b.cpu}", *defs, *incs]
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
            *RESET_LINK_FLAGS,
            *ldflags,
            "-o",
            elf,
        ]
    )
    return elf


# The stages whose ELFs a beam_server system packs besides the target's own.
SERVICE_STAGES = ("sddf", "fatfs")
# The target's own PD ELFs, in its stage output: beam_server's, the supervisor's, and an
# injection image's tick PD's.
OWN_ELFS = ("beam_server.elf", system.SUPERVISOR_ELF, system.INJECT_ELF)


def gather_elfs(planner, target_out: Path, elfdir: Path) -> None:
    """Copy every PD ELF of a packed target into `elfdir`, to pack it again (another MAC)
    without compiling anything."""
    for s in SERVICE_STAGES:
        for elf in (planner.ensure(s) / "elf").glob("*.elf"):
            shutil.copyfile(elf, elfdir / elf.name)
    for name in OWN_ELFS:
        if (target_out / name).is_file():
            shutil.copyfile(target_out / name, elfdir / name)


# heap_mib="rest": the heap takes all the RAM the other PDs leave. pack() packs a probe
# with a small heap, reads what 2 MiB pages could still take (report.txt's `normal
# memory:` line, Microkit patch 0006) and packs again with heap = probe + that - margin.
HEAP_REST = "rest"
PROBE_HEAP_MIB = 2
HEAP_MARGIN_MIB = 2  # each retry's step down: one 2 MiB page (see _rest_heap_mib)
HEAP_TRIES = 3
# The least heap a rest image gets: less RAM is refused (too_small) rather than packed
# with a heap ERTS cannot boot in. Measured: the 32 MiB of a 64M board boot to the shell
# with 8.7 MiB free (small-heap flags, targets/beam/main.c).
MIN_REST_HEAP_MIB = 32


class ToolFailed(Exception):
    """The Microkit tool refused the system; the message is its ERROR line(s), `tool` its
    command up to --config (for too_small)."""

    def __init__(self, message: str, tool: list, heap_mib: int):
        super().__init__(message)
        self.tool, self.heap_mib = tool, heap_mib


def check_heap_option(heap_mib: int | str) -> int | str:
    """A stage's `heap_mib`: a whole number of MiB or "rest", else a one-line refusal."""
    if heap_mib == HEAP_REST:
        return heap_mib
    if isinstance(heap_mib, str) or isinstance(heap_mib, bool):
        raise UserError(
            f"heap size {heap_mib!r} is neither a whole number of MiB nor {HEAP_REST!r}; "
            f"use e.g. 256, or {HEAP_REST!r} for all the RAM the other PDs leave"
        )
    system.check_heap(heap_mib)
    return heap_mib


def free_memory(report: Path) -> dict[str, int]:
    """report.txt's `normal memory:` figures (bytes): total, allocated, free, free_2mib."""
    return free_memory_text(Path(report).read_text())


def free_memory_text(report: str) -> dict[str, int]:
    m = next(filter(None, map(memreport.NORMAL_RE.match, report.splitlines())), None)
    if not m:
        raise RuntimeError("report.txt has no `normal memory:` line (is Microkit patch 0006 in?)")
    keys = ("total", "allocated", "free", "free_2mib")
    return dict(zip(keys, (int(g, 16) for g in m.groups()), strict=True))


def _tool_error(out: str) -> str:
    errors = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("ERROR")]
    lines = errors or (out.strip().splitlines() or ["?"])[-1:]
    return "; ".join(ln.removeprefix("ERROR: ") for ln in lines)


def _pack_once(
    log: Callable[[str], None],
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
    mac: str,
    fs_share: int,
    policies: str,
    heap_paddr: int | None = None,
) -> system.SystemOutputs:
    lionsos, _ = _stack()
    outputs = system.generate(
        system_dir,
        board,
        sddf=sddf,
        heap_mib=heap_mib,
        heap_paddr=heap_paddr,
        stack_kib=stack_kib,
        mac=mac,
        fs_share=fs_share,
        elf_dir=elfdir,
        policies=system.parse_policies(policies),
        # an injection image's ELFs carry their tick PD (compile_supervisor)
        inject=(Path(elfdir) / system.INJECT_ELF).is_file(),
    )
    system.write_sections(outputs, elfdir, objcopy=str(lionsos.LLVM_BIN / "llvm-objcopy"))
    cmd = [
        microkit,
        outputs.system_file,
        "--search-path",
        elfdir,
        "--board",
        board,
        "--config",
        lionsos.CONFIG,
        "-o",
        loader,
        "-r",
        report,
    ]
    log(f"$ {shlex.join(str(c) for c in cmd)}   (heap {heap_mib} MiB)")
    r = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        env=toolchain.env({}),
        stdin=subprocess.DEVNULL,
    )
    log(r.stdout + r.stderr)
    if r.returncode != 0:
        raise ToolFailed(_tool_error(r.stderr + r.stdout), cmd[:6], heap_mib)
    return outputs


def _rest_heap_mib(free_2mib: int) -> int:
    """The heap the final pack tries first, from the probe's free 2 MiB pages.

    A bigger heap costs little besides its pages: the tool encodes the maps of a
    region's pages as one repeated invocation (the reserved region does not grow) and
    it adds one page table a GiB. The probe's 4 KiB pages and kernel objects, allocated
    after the 2 MiB pages, move to the sub-2 MiB fragments. Measured at 2G: 2 + 1452
    (free_2mib) + 2 MiB packs, 2 more do not (no room for a CNode). So the first try is
    the whole of it; where the fragments lack room, each retry is one page less."""
    mib = PROBE_HEAP_MIB + free_2mib // system.MIB
    return mib // (system.LARGE_PAGE // system.MIB) * (system.LARGE_PAGE // system.MIB)


def pack(
    log: Callable[[str], None],
    elfdir: Path,
    system_dir: Path,
    loader: Path,
    report: Path,
    board: str,
    *,
    sddf: Path,
    microkit: Path,
    heap_mib: int | str,
    stack_kib: int,
    mac: str = system.DEFAULT_MAC,
    ram_mib: int | None = None,
    policies: str = "",
) -> system.SystemOutputs:
    """Render the system with `mac`, write every config blob into the ELFs in `elfdir` (in
    place) and pack `loader` with the Microkit tool; `log(text)` records what ran.
    `heap_mib` "rest" sizes the heap to the RAM left (two packs or more, see HEAP_REST);
    outputs.heap_size is the heap packed. A refusal of the tool is a one-line UserError;
    with `ram_mib` (the image's RAM), one that names the smallest RAM that fits.

    The cheap half of an image (seconds): the build calls it once for node 0, and
    nodes.node_image again per MAC on copies of the ELFs, with no recompilation."""
    heap_mib = check_heap_option(heap_mib)
    fs_share = system.fs_share_size(ram_mib)
    args = dict(
        sddf=sddf,
        microkit=microkit,
        stack_kib=stack_kib,
        mac=mac,
        fs_share=fs_share,
        policies=policies,
    )
    where = (log, elfdir, system_dir, loader, report, board)
    b = boards.board(board)
    mib = ram_mib if ram_mib is not None else boards.ram_mib(b, b.ram)
    reserve = boards.heap_reserve(b, mib)
    if reserve is not None:
        return _pack_lazy(where, heap_mib, b, mib, reserve, args)
    try:
        if heap_mib != HEAP_REST:
            return _pack_once(*where, heap_mib=heap_mib, **args)
        _pack_once(*where, heap_mib=PROBE_HEAP_MIB, **args)
        probe = free_memory(report)
        log(f"# probe ({PROBE_HEAP_MIB} MiB heap): {probe}")
        heap = _rest_heap_mib(probe["free_2mib"])
        if heap < MIN_REST_HEAP_MIB:
            return _pack_once(*where, heap_mib=MIN_REST_HEAP_MIB, **args)
    except ToolFailed as e:
        if ram_mib is not None:
            too_small(e.tool, _stack()[0].CONFIG, ram_mib, e.heap_mib)
        raise UserError(f"the Microkit tool cannot pack the system: {e}") from None
    failure = f"the RAM left is {probe['free_2mib'] // system.MIB} MiB in 2 MiB pages"
    for _ in range(HEAP_TRIES):
        if heap < PROBE_HEAP_MIB:
            break
        try:
            return _pack_once(*where, heap_mib=heap, **args)
        except ToolFailed as e:
            failure = f"{heap} MiB, the last try: {e}"
            log(f"# a heap of {heap} MiB does not fit: {e}")
            heap -= HEAP_MARGIN_MIB
    raise UserError(f"the Microkit tool cannot pack a heap of the rest of the RAM ({failure})")


def _pack_lazy(
    where: tuple,
    heap_mib: int | str,
    b: boards.Board,
    mib: int,
    reserve: tuple[int, int],
    args: dict,
) -> system.SystemOutputs:
    """pack() where the heap lies in RAM the SDK kept from seL4 (boards.heap_reserve): "rest"
    is all of that RAM, a size is placed at its start. One pack: the rest of the RAM is seL4's
    for the other PDs."""
    base, size = reserve
    room = size // system.MIB
    if heap_mib == HEAP_REST:
        heap_mib = room
    elif heap_mib > room:
        sizes = range(mib + b.ram_step, b.ram_max + 1, b.ram_step)
        fits = next(
            (m for m in sizes if boards.heap_reserve(b, m)[1] >= heap_mib * system.MIB), None
        )
        if fits is None:
            raise UserError(
                f"a heap of {heap_mib} MiB fits in no RAM of {b.name}; give at most "
                f"{boards.heap_reserve(b, b.ram_max)[1] // system.MIB} MiB"
            )
        raise UsageError(
            f"--ram {boards.ram_text(mib)} is too small for the protection domains "
            f"(beam_server's heap {heap_mib} MiB); the smallest RAM that fits is "
            f"{boards.ram_text(fits)}: give --ram {boards.ram_text(fits)} or more"
        )
    try:
        return _pack_once(*where, heap_mib=heap_mib, heap_paddr=base, **args)
    except ToolFailed as e:
        raise UserError(f"the Microkit tool cannot pack the system: {e}") from None


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


# The OTP disk's FAT clusters: FatFs reads a file at most a cluster per block request, so
# 32 KiB ones make a module load about 8 times fewer requests than 4 KiB (docs/disk.md).
OTP_CLUSTER = 32768


def assemble(
    ctx: Context,
    name: str,
    board: str,
    *,
    ram: str,
    heap_mib: int | str,
    stack_kib: int,
    disk_tree: Path | None,
    disk_extra: Mapping[str, Path] | None = None,
    markers: Mapping[str, str] | None = None,
    fault_inject: str = "",
    policies: str = "",
) -> None:
    """Render the system, configure the ELFs, pack `<name>.img`, write disk.img and run.json.
    `fault_inject` and `policies`: the supervisor's (system.parse_inject, parse_policies)."""
    elfdir = ctx.work / "elf"
    compile_supervisor(ctx, board, system.parse_inject(fault_inject))
    for stage_name in SERVICE_STAGES:
        for elf in (ctx.dep(stage_name) / "elf").glob("*.elf"):
            shutil.copyfile(elf, elfdir / elf.name)
    image = f"{name}.img"
    outputs = pack(
        ctx.note,
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
        policies=policies,
    )
    shutil.copyfile(outputs.system_file, ctx.out / outputs.system_file.name)
    heap = outputs.heap_size // system.MIB
    free = free_memory(ctx.out / "report.txt")
    ctx.note(f"# heap: {heap} MiB ({heap_mib!r}); normal memory after it: {free}")
    mem = memreport.write(ctx.out / "report.txt", outputs.system_file, ctx.out / "memory.txt")
    ctx.note(mem)
    for own in OWN_ELFS:
        if (elfdir / own).is_file():
            shutil.copyfile(elfdir / own, ctx.out / own)
    info = disk.build_disk(
        disk_tree, ctx.out / "disk.img", extra=disk_extra, cluster_bytes=OTP_CLUSTER
    )
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
        heap_mib=heap,
    )
