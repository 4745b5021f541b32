# SPDX-License-Identifier: BSD-2-Clause
"""LionsOS and sDDF: the POSIX libc, the sDDF drivers and virtualisers, the FAT server.

All four stages run one makefile of ours, mk/lionsos.mk, which includes sDDF's and
LionsOS's own snippets the way LionsOS's examples/posix_test does; each stage asks it for
its own targets. Whatever an earlier stage built is copied into the build directory and
named with `make -o` (assume old), so the snippets' rules never redo it: the musl stage's
`sel4` libc.a and headers (LionsOS would configure its own musl), the LionsOS libc, the
sDDF util library and libmicrokitco.

    lionsos-libc   include/        musl's headers, as LionsOS installs them for its libc
                   lib/libc.a      musl (`sel4` variant) + LionsOS posix/, compiler_rt/
                                   and lib/fs/helpers: what beam_server links with -lc
    sddf           elf/            timer_driver, serial_driver, serial_virt_tx/rx,
                                   blk_driver (virtio-mmio), blk_virt, eth_driver
                                   (virtio-net, virtio-mmio), network_virt_rx/tx,
                                   network_copy
                   lib/            libsddf_util_debug.a
    lwip           lib/            lib_sddf_lwip.a: sDDF's lwIP glue + lwIP 2.2 core, IPv4,
                                   ethernet, built with our runtime/lwip/lwipopts.h
                   include/        that lwipopts.h and arch/cc.h, as compiled
    fatfs          elf/fat.elf     the LionsOS FAT server (FatFs R0.15)

Compilers: the sDDF clang toolchain snippet calls `clang`, `ld.lld`, `llvm-ar`...; Debian
installs those unversioned names for LLVM 19 in /usr/lib/llvm-19/bin, put first on PATH.
"""

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from chrysopolis import boards, system, toolchain
from chrysopolis.cache import Context, stage
from chrysopolis.errors import UserError
from chrysopolis.stages.sdk import board_dir

MK = "mk/lionsos.mk"
PATCHES = "patches/lionsos"
SDDF_PATCHES = "patches/sddf"  # what a restart by the supervisor needs of sDDF's components
GOT_LD = "mk/got.ld"  # keeps musl's GOT out of the IPC buffer page (every PD link uses it)
SUP_RESET = "runtime/reset"  # the reset stub the restartable sDDF PDs link (mk/lionsos.mk)
SUP_HEADER = "runtime/include/chrysopolis/supervisor.h"  # sup_reset.c reads its page
KEEP_LD = "mk/keep.ld"  # what blk_virt keeps across a restart
CONFIG = "debug"  # sDDF and LionsOS print through the debug kernel; release prints nothing
HOST = ("clang-19", "lld-19", "llvm-19", "make")
LLVM_BIN = Path("/usr/lib/llvm-19/bin")

SDDF_ELFS = (
    "timer_driver.elf",
    "serial_driver.elf",
    "serial_virt_tx.elf",
    "serial_virt_rx.elf",
    "blk_driver.elf",
    "blk_virt.elf",
    "eth_driver.elf",
    "network_virt_rx.elf",
    "network_virt_tx.elf",
    "network_copy.elf",
)
UTIL_LIB = "libsddf_util_debug.a"
LWIP_OPTS = "runtime/lwip"  # our lwipopts.h and arch/cc.h
LWIP_LIB = "lib_sddf_lwip.a"
OPTIONS = {"board": boards.DEFAULT_BOARD, "config": CONFIG}


def llvm_env() -> dict[str, str]:
    """PATH with LLVM 19's unversioned tools first, as sDDF's clang.mk expects."""
    if not (LLVM_BIN / "clang").exists() or not (LLVM_BIN / "ld.lld").exists():
        raise UserError(
            f"{LLVM_BIN} lacks clang or ld.lld (Debian clang-19, lld-19); "
            "run `chrysopolis setup`"
        )
    return {"PATH": f"{LLVM_BIN}:{toolchain.env()['PATH']}"}


def make_vars(
    ctx: Context, *, sdk_only: bool = False, lionsos: Path | None = None, sddf: Path | None = None
) -> list[str]:
    """The variables every upstream snippet wants: SDK, board, config (and the trees)."""
    board = boards.board(ctx.options["board"]).name
    out = [
        f"MICROKIT_SDK={ctx.dep('sdk')}",
        f"MICROKIT_BOARD={board}",
        f"MICROKIT_CONFIG={boards.check_config(ctx.options['config'])}",
    ]
    if not sdk_only:
        out += [
            f"LIONSOS={lionsos or ctx.src('lionsos')}",
            f"SDDF={sddf or ctx.src('sddf')}",
            f"LIBMICROKITCO_PATH={ctx.src('libmicrokitco')}",
        ]
    return out


def _make(
    ctx: Context,
    bld: Path,
    targets: Sequence[str],
    given: Sequence[str] = (),
    lionsos: Path | None = None,
    extra_vars: Sequence[str] = (),
    sddf: Path | None = None,
) -> None:
    """Run mk/lionsos.mk in `bld` for `targets`, taking the files in `given` as built."""
    board_dir(ctx.dep("sdk"), ctx.options["board"], ctx.options["config"])  # fails early
    assume_old = [a for g in given for a in ("-o", g)]
    ctx.run(
        [
            "make",
            "-f",
            ctx.ours(MK),
            f"-j{ctx.jobs}",
            *make_vars(ctx, lionsos=lionsos, sddf=sddf),
            *extra_vars,
            *assume_old,
            *targets,
        ],
        cwd=bld,
        env=llvm_env(),
    )


def _given_libc(ctx: Context, bld: Path) -> list[str]:
    """Place the lionsos-libc output where libc.mk puts it ($(BUILD)/libc); name it for -o."""
    libc = bld / "libc"
    shutil.copytree(ctx.dep("lionsos-libc"), libc, ignore=shutil.ignore_patterns(".chrysopolis-*"))
    return [str(libc / "lib" / "libc.a"), str(libc / "include")]


def _check_sections(elf: Path) -> None:
    """Each PD ELF declares the config sections `system.write_sections` fills, and keeps
    any GOT out of the IPC buffer page (see mk/got.ld)."""
    r = subprocess.run(
        [LLVM_BIN / "llvm-readelf", "-S", "--wide", elf], capture_output=True, text=True, check=True
    )
    addr = {}
    for line in r.stdout.splitlines():
        if line.lstrip().startswith("[") and "]" in line:
            fields = line.split("]", 1)[1].split()
            if len(fields) >= 3 and fields[0].startswith("."):
                addr[fields[0]] = int(fields[2], 16)
    missing = {s for e, s, _ in system.SERVICE_BLOBS if e == elf.name} - set(addr)
    if missing:
        raise RuntimeError(f"{elf.name} lacks sections {sorted(missing)}")
    if ".got" in addr and addr[".got"] >= addr.get(".ipc_buffer", 1 << 64):
        raise RuntimeError(f"{elf.name}: .got lies in the IPC buffer page; link with {GOT_LD}")


def _install_elfs(ctx: Context, bld: Path, names: Sequence[str]) -> None:
    (ctx.out / "elf").mkdir(parents=True)
    for n in names:
        _check_sections(bld / n)
        shutil.copyfile(bld / n, ctx.out / "elf" / n)


@stage(
    "lionsos-libc",
    sources=("lionsos", "sddf", "libmicrokitco"),
    deps=("sdk", "musl"),
    files=(MK, GOT_LD, PATCHES),
    host=(*HOST, "patch"),
    options=OPTIONS,
    doc="LionsOS libc: musl (sel4 variant) + LionsOS posix, compiler_rt and fs helpers",
)
def build_libc(ctx: Context) -> None:
    bld = ctx.work / "build"
    # Our patches (fsync reaching the FAT server) apply to the libc as to the server.
    lionsos = ctx.copy_source("lionsos")
    ctx.apply_patches(PATCHES, lionsos)
    musl = ctx.dep("musl")
    # libc.mk builds its musl into $(BUILD)/musllibc and installs headers into libc/include:
    # the musl stage did both (headers first, so nothing races ahead of them).
    (bld / "musllibc" / "lib").mkdir(parents=True)
    shutil.copyfile(musl / "sel4" / "lib" / "libc.a", bld / "musllibc" / "lib" / "libc.a")
    shutil.copytree(musl / "include", bld / "libc" / "include")
    libc_a = bld / "libc" / "lib" / "libc.a"
    _make(
        ctx,
        bld,
        [str(libc_a)],
        given=["musllibc/lib/libc.a", str(bld / "libc" / "include")],
        lionsos=lionsos,
    )
    shutil.copytree(bld / "libc" / "include", ctx.out / "include")
    (ctx.out / "lib").mkdir()
    shutil.copyfile(libc_a, ctx.out / "lib" / "libc.a")


@stage(
    "sddf",
    sources=("lionsos", "sddf", "libmicrokitco"),
    deps=("sdk", "lionsos-libc"),
    files=(MK, GOT_LD, KEEP_LD, SUP_RESET, SUP_HEADER, SDDF_PATCHES),
    host=(*HOST, "patch"),
    options=OPTIONS,
    doc="sDDF: util library, PL011 serial + virtualisers, ARM timer, virtio-blk + blk virtualiser, "
    "virtio-net + net virtualisers and copier",
)
def build_sddf(ctx: Context) -> None:
    bld = ctx.work / "build"
    bld.mkdir()
    sddf = ctx.copy_source("sddf")
    ctx.apply_patches(SDDF_PATCHES, sddf)
    _make(ctx, bld, [UTIL_LIB, *SDDF_ELFS], given=_given_libc(ctx, bld), sddf=sddf)
    _install_elfs(ctx, bld, SDDF_ELFS)
    (ctx.out / "lib").mkdir()
    shutil.copyfile(bld / UTIL_LIB, ctx.out / "lib" / UTIL_LIB)


@stage(
    "fatfs",
    sources=("lionsos", "sddf", "libmicrokitco"),
    deps=("sdk", "lionsos-libc", "libmicrokitco-fat", "sddf"),
    files=(MK, GOT_LD, KEEP_LD, SUP_RESET, SUP_HEADER, PATCHES),
    host=(*HOST, "patch"),
    options=OPTIONS,
    doc="The LionsOS FAT file server PD (FatFs R0.15 over the sDDF block protocol)",
)
def build_fatfs(ctx: Context) -> None:
    bld = ctx.work / "build"
    bld.mkdir()
    # Our patches: a disk that never becomes ready must not starve the PDs below it.
    lionsos = ctx.copy_source("lionsos")
    ctx.apply_patches(PATCHES, lionsos)
    given = _given_libc(ctx, bld)
    # fat.mk links libmicrokitco_fat.a; every PD links the sDDF util library.
    shutil.copyfile(
        ctx.dep("libmicrokitco-fat") / "lib" / "libmicrokitco.a", bld / "libmicrokitco_fat.a"
    )
    shutil.copyfile(ctx.dep("sddf") / "lib" / UTIL_LIB, bld / UTIL_LIB)
    _make(ctx, bld, ["fat.elf"], given=[*given, "libmicrokitco_fat.a", UTIL_LIB], lionsos=lionsos)
    _install_elfs(ctx, bld, ["fat.elf"])


@stage(
    "lwip",
    sources=("lionsos", "sddf", "libmicrokitco"),
    deps=("sdk", "lionsos-libc"),
    files=(MK, LWIP_OPTS),
    host=HOST,
    options=OPTIONS,
    doc="lwIP 2.2 (core, IPv4, ethernet) + sDDF's lib_sddf_lwip, with our lwipopts.h",
)
def build_lwip(ctx: Context) -> None:
    """A stage of its own, not part of `sddf`: tuning lwipopts.h rebuilds only this and
    beam_server, never the drivers."""
    bld = ctx.work / "build"
    bld.mkdir()
    given = _given_libc(ctx, bld)
    # The options from inside the build directory: no checkout path reaches the library.
    opts = bld / "lwip_opts"
    shutil.copytree(ctx.ours(LWIP_OPTS), opts)
    _make(ctx, bld, [LWIP_LIB], given=given, extra_vars=[f"LWIP_OPTS={opts}"])
    (ctx.out / "lib").mkdir()
    shutil.copyfile(bld / LWIP_LIB, ctx.out / "lib" / LWIP_LIB)
    shutil.copytree(opts, ctx.out / "include")
