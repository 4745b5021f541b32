# SPDX-License-Identifier: BSD-2-Clause
"""ERTS 17.1 (OTP 29.1.1, Debian forky's source with Debian's patches), the emulator only, cross-compiled for aarch64 musl.

Output layout:

    lib/libbeam.a            the emulator with the preloaded modules: `erl_start` (in
                             erl_init.o), no `main`
    lib/libz.a libepcre.a libryu.a libzstd.a libethread.a liberts_internal_r.a
                             its helper archives
    lib/libtinfo.a           the termcap API for prim_tty's line editor (stage ncurses)
    lib/erl_main.o           ERTS's own `main` (calls erl_start), for Linux executables
    link.json                the link order: `archives` (paths relative to this stage's
                             output, to be linked as one group) and the musl `system_libs`

Compiler: clang-19 `--target=aarch64-linux-musl` over a sysroot made of our `musl`
stage (its `include/` and `linux/lib/`), not `zig cc`. zig bundles its own copy of musl
1.2.5's headers, so ERTS would be compiled against files other than the ones
beam_server links; with clang-19 every object of the image (musl, LionsOS libc, sDDF,
ERTS, beam_server) comes from one compiler and one set of musl headers. The headers are
shared by both musl variants, so these objects link against either.

`-mno-outline-atomics`: ERTS's atomics are inlined (LSE-free LL/SC), so no `__aarch64_*`
helpers. A compiler runtime is still needed for 128-bit division (`__udivti3`,
`__umodti3`): libgcc.a of Debian's gcc-aarch64-linux-gnu, which the sysroot provides
(see `sysroot`).
"""

import json
import shutil
from pathlib import Path

from chrysopolis import toolchain
from chrysopolis.cache import Context, stage
from chrysopolis.errors import UserError

TARGET = "aarch64-unknown-linux-musl"  # what OTP's config.sub makes of --host
LIBGCC_DIR = Path("/usr/lib/gcc-cross/aarch64-linux-gnu/12")  # Debian gcc-aarch64-linux-gnu
CFLAGS = "-g -O2 -mno-outline-atomics"
PATCHES = "patches/otp"  # our changes to ERTS (patches/README.md)

CONFIGURE_FLAGS = (
    "--host=aarch64-linux-musl",
    "--build=x86_64-linux-gnu",
    "--without-ssl",
    "--with-termcap",  # prim_tty's line editor: libtinfo of the ncurses stage
    "--without-wx",
    "--without-javac",
    "--without-odbc",
    # applications with C parts we don't ship: skip their configure runs
    "--without-common_test",
    "--without-crypto",
    "--without-megaco",
    "--without-snmp",
    "--disable-dynamic-loading",
    "--disable-jit",
    "--enable-builtin-zlib",
    "--enable-deterministic-build",
    # OTP 28+ adds OpenSSF hardening flags by default (-fstack-protector-strong,
    # -fstack-clash-protection, -mbranch-protection, -fexceptions, ...)
    "--disable-security-hardening-flags",
)

# What configure cannot probe when cross-compiling (xcomp/erl-xcomp-vars.sh), for Linux
# on aarch64; beam_server's runtime adapter provides the same behaviour on seL4.
XCOMP = {
    "erl_xcomp_bigendian": "no",
    "erl_xcomp_double_middle_endian": "no",
    "erl_xcomp_linux_clock_gettime_correction": "yes",
    "erl_xcomp_linux_nptl": "yes",
    "erl_xcomp_linux_usable_sigusrx": "yes",
    "erl_xcomp_linux_usable_sigaltstack": "yes",
    "erl_xcomp_poll": "yes",
    "erl_xcomp_kqueue": "no",
    "erl_xcomp_putenv_copy": "no",
    "erl_xcomp_reliable_fpe": "no",
    "erl_xcomp_getaddrinfo": "yes",
    "erl_xcomp_gethrvtime_procfs_ioctl": "no",
    "erl_xcomp_clock_gettime_cpu_time": "yes",
    "erl_xcomp_after_morecore_hook": "no",
    "erl_xcomp_dlsym_brk_wrappers": "no",
    "erl_xcomp_posix_memalign": "yes",
}

# Helper archives, in the emulator Makefile's link order, and where the build leaves them.
HELPERS = {
    "libz.a": f"erts/emulator/zlib/obj/{TARGET}/opt/libz.a",
    "libepcre.a": f"erts/emulator/pcre/obj/{TARGET}/opt/libepcre.a",
    "libryu.a": f"erts/emulator/ryu/obj/{TARGET}/opt/libryu.a",
    "libzstd.a": f"erts/emulator/zstd/obj/{TARGET}/opt/libzstd.a",
    "libethread.a": f"erts/lib/internal/{TARGET}/libethread.a",
    "liberts_internal_r.a": f"erts/lib/internal/{TARGET}/liberts_internal_r.a",
}
SYSTEM_LIBS = ("pthread", "rt", "util", "dl", "m")  # musl's (empty but for libc.a itself)


def sysroot(dest: Path, musl: Path, variant: str = "linux") -> Path:
    """A clang sysroot over the musl stage's output, plus libgcc as the compiler runtime.

    clang's musl driver links crt1.o crti.o crtbeginT.o ... -lgcc -lgcc_eh -lc crtend.o
    crtn.o from <sysroot>/usr/lib when it finds no GCC installation there.
    """
    toolchain.need("clang-19", "ld.lld-19", "llvm-ar-19")
    if not (LIBGCC_DIR / "libgcc.a").is_file():
        raise UserError(
            f"{LIBGCC_DIR}/libgcc.a is missing; run `chrysopolis setup` (gcc-aarch64-linux-gnu)"
        )
    lib = dest / "usr" / "lib"
    lib.mkdir(parents=True)
    (dest / "usr" / "include").symlink_to(musl / "include")
    for f in sorted((musl / variant / "lib").iterdir()):
        (lib / f.name).symlink_to(f)
    for name in ("libgcc.a", "libgcc_eh.a", "crtbeginT.o", "crtend.o"):
        (lib / name).symlink_to(LIBGCC_DIR / name)
    return dest


def cc(root: Path) -> str:
    return f"clang-19 --target=aarch64-linux-musl --sysroot={root}"


def build_ycf(ctx: Context, otp: Path) -> Path:
    """YCF (yielding C fun) runs at build time: compile it for the build host."""
    toolchain.need("cc", "perl", "make")
    src = otp / "erts" / "lib_src" / "yielding_c_fun"
    exe = ctx.work / "yielding_c_fun"
    ctx.run(
        [
            "cc",
            "-O2",
            f"-I{src}",
            *sorted(map(str, src.glob("*.c"))),  # as main_target.mk: YCF_SOURCES
            "-o",
            str(exe),
        ]
    )
    return exe


@stage(
    "erts",
    sources=("otp",),
    deps=("musl", "ncurses"),
    files=(PATCHES,),
    host=("clang-19", "lld-19", "llvm-19", "gcc-aarch64-linux-gnu", "gcc", "make", "perl"),
    doc="ERTS 17.1 (OTP 29.1.1) emulator archives for aarch64 musl (libbeam.a with erl_start, no main)",
)
def erts(ctx: Context) -> None:
    root = sysroot(ctx.work / "sysroot", ctx.dep("musl"))
    tinfo = ctx.dep("ncurses")
    otp = ctx.copy_source("otp")
    ctx.apply_patches(PATCHES, otp)
    ycf = build_ycf(ctx, otp)
    env = {
        "ERL_TOP": str(otp),
        "CC": cc(root),
        # configure finds tgetent in -ltinfo and termcap.h; prim_tty_nif.c then has HAVE_TERMCAP
        "CFLAGS": f"{CFLAGS} -I{tinfo / 'include'}",
        "CPPFLAGS": f"-I{tinfo / 'include'}",
        "LDFLAGS": f"-fuse-ld=lld -static -L{tinfo / 'lib'}",
        "AR": "llvm-ar-19",
        "RANLIB": "llvm-ranlib-19",
        # No C++ (the JIT is off): OTP's own "none". Else configure takes whatever g++ the
        # host has, and its flags reach config.h, which the emulator embeds.
        "CXX": "false",
        "CXXFLAGS": "",
        **XCOMP,
    }
    ctx.run(["./configure", *CONFIGURE_FLAGS], cwd=otp, env=env)
    ctx.run(
        [
            "make",
            "-C",
            "erts/emulator",
            f"-j{ctx.jobs}",
            f"TARGET={TARGET}",
            f"YCF_EXECUTABLE_PATH={ycf}",
        ],
        cwd=otp,
        env={"ERL_TOP": str(otp)},
    )

    lib = ctx.out / "lib"
    lib.mkdir()
    shutil.copy2(otp / "bin" / TARGET / "libbeam.a", lib)
    shutil.copy2(otp / "erts" / "emulator" / "obj" / TARGET / "opt" / "emu" / "erl_main.o", lib)
    for name, rel in HELPERS.items():
        shutil.copy2(otp / rel, lib / name)
    shutil.copy2(tinfo / "lib" / "libtinfo.a", lib)
    config_h = (otp / "erts" / TARGET / "config.h").read_text()
    if "#define HAVE_TERMCAP 1" not in config_h:
        raise RuntimeError("erts: configure found no termcap (libtinfo) for prim_tty")
    (ctx.out / "link.json").write_text(
        json.dumps(
            {
                "main": "lib/erl_main.o",
                "archives": ["lib/libbeam.a", *(f"lib/{n}" for n in HELPERS), "lib/libtinfo.a"],
                "system_libs": list(SYSTEM_LIBS),
            },
            indent=1,
        )
    )


@stage(
    "baseline",
    deps=("erts", "musl"),
    host=("clang-19", "lld-19", "gcc-aarch64-linux-gnu"),
    doc="the ERTS archives linked as a static aarch64 Linux beam.smp (the qemu-aarch64 baseline)",
)
def baseline(ctx: Context) -> None:
    """Link bin/beam.smp from the erts stage's objects: the same code the image runs."""
    root = sysroot(ctx.work / "sysroot", ctx.dep("musl"))
    erts = ctx.dep("erts")
    link = json.loads((erts / "link.json").read_text())
    exe = ctx.out / "bin" / "beam.smp"
    exe.parent.mkdir()
    ctx.run(
        [
            *cc(root).split(),
            "-fuse-ld=lld",
            "-static",
            "-o",
            str(exe),
            str(erts / link["main"]),
            "-Wl,--start-group",
            *(str(erts / a) for a in link["archives"]),
            "-Wl,--end-group",
            *(f"-l{lib}" for lib in link["system_libs"]),
        ]
    )
