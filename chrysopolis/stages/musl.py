# SPDX-License-Identifier: BSD-2-Clause
"""musl 1.2.5 (Debian trixie) for aarch64: one set of headers, two static libcs.

Output layout (what later stages use):

    include/            musl's installed headers, shared by both variants: everything
                        compiled for ERTS, LionsOS libc and beam_server uses these
    linux/lib/          libc.a, crt1.o, crti.o, crtn.o, rcrt1.o, Scrt1.o and musl's
                        empty libm.a/libpthread.a/...: ordinary `svc` system calls, for
                        the static Linux beam.smp baseline
    sel4/lib/           the same files for seL4 protection domains: every system call
                        goes through musl's hidden `__sysinfo` word, which LionsOS's
                        `libc_init()` points at its dispatcher; `libc.a` contains no
                        `svc` and no `__assert_fail` (libmicrokit 2.0.1 defines one)

A sysroot for `clang-19 --target=aarch64-linux-musl --sysroot=...` is `include/` as
`usr/include` plus a variant's `lib/` as `usr/lib` (see `chrysopolis.stages.erts`).

Compiler: clang-19 (`--target=aarch64-linux-musl`), the compiler of LionsOS, sDDF and
beam_server, so one toolchain builds every C object of the image. `-mno-outline-atomics`
keeps libgcc's `__aarch64_*` helpers (and their `.init_array` constructor, which faults
in a PD before musl's auxv exists) out of everything.
"""

import shutil
from pathlib import Path

from chrysopolis.cache import Context, stage

OVERRIDES = "runtime/musl-sel4"  # our replacements for musl's aarch64 system call entry

# aarch64 files that issue `svc` (musl's generic C versions take over: clone and vfork
# answer -ENOSYS, the signal restorer is unused), and assert.c, whose `__assert_fail`
# would clash with libmicrokit's strong one.
SEL4_DROP = (
    "src/signal/aarch64/restore.s",
    "src/process/aarch64/vfork.s",
    "src/thread/aarch64/clone.s",
    "src/thread/aarch64/__unmapself.s",
    "src/exit/assert.c",
)

TARGET = "aarch64-linux-musl"
CFLAGS = "-O2 -mno-outline-atomics"


def _configure_env() -> dict[str, str]:
    return {
        "CC": f"clang-19 --target={TARGET}",
        "AR": "llvm-ar-19",
        "RANLIB": "llvm-ranlib-19",
        "CFLAGS": CFLAGS,
        "LDFLAGS": "-fuse-ld=lld",
    }


def _build(ctx: Context, srcdir: Path, variant: str) -> Path:
    """Configure out of tree and build the static libc; returns the build directory."""
    bld = ctx.work / f"build-{variant}"
    bld.mkdir()
    ctx.run(
        [str(srcdir / "configure"), f"--target={TARGET}", "--prefix=/", "--disable-shared"],
        cwd=bld,
        env=_configure_env(),
    )
    ctx.run(["make", f"-j{ctx.jobs}"], cwd=bld)
    lib = ctx.out / variant / "lib"
    shutil.copytree(bld / "lib", lib)
    return bld


@stage(
    "musl",
    sources=("musl",),
    files=(OVERRIDES,),
    host=("clang-19", "lld-19", "llvm-19", "make"),
    doc="musl 1.2.5 for aarch64: shared headers, a Linux libc.a and a __sysinfo (seL4) libc.a",
)
def musl(ctx: Context) -> None:
    src = ctx.src("musl")
    linux = _build(ctx, src, "linux")
    ctx.run(["make", "install-headers", f"DESTDIR={ctx.out}", "includedir=/include"], cwd=linux)

    sel4_src = ctx.copy_source("musl", ctx.work / "musl-sel4")
    overrides = ctx.ours(OVERRIDES)
    for f in sorted(p for p in overrides.rglob("*") if p.is_file()):
        rel = f.relative_to(overrides)
        dest = sel4_src / rel
        if not dest.exists():  # an override must replace a file: catch a musl layout change
            raise RuntimeError(f"{OVERRIDES}/{rel} replaces nothing in musl's tree")
        dest.unlink()
        shutil.copyfile(f, dest)
        ctx.note(f"sel4: replaced {rel}")
    for rel in SEL4_DROP:
        (sel4_src / rel).unlink()
        ctx.note(f"sel4: dropped {rel}")
    _build(ctx, sel4_src, "sel4")
