# SPDX-License-Identifier: BSD-2-Clause
"""ncurses 6.4 (Debian bookworm): a static libtinfo for aarch64 musl, for ERTS's line editor.

Output layout:

    lib/libtinfo.a     terminfo and the termcap API (tgetent, tgetstr, tgoto, tputs, ...)
                       with the terminal descriptions of FALLBACKS compiled in
    include/           curses.h, term.h, termcap.h, ... (what prim_tty_nif.c includes)

Why: prim_tty, OTP's line editor, asks the terminal's capabilities through the termcap
API (prim_tty_nif.c); ERTS configured `--without-termcap` compiles those NIFs to
`enotsup` and the shell falls back to the dumb "oldshell". The guest has no terminfo
database (`--disable-database`): each entry of FALLBACKS is compiled into the library, so
`tgetent` answers for those names only. Any other TERM fails `tgetent`, and prim_tty
falls back to the dumb shell, as OTP does on any host.

The fallback entries are made at build time by MKfallback.sh: the host's `tic` compiles
ncurses' own `misc/terminfo.src` (so the entries come from the pinned source) into a
scratch directory and the host's `infocmp -E/-e` prints them as C. The host's tools are
Debian bookworm's ncurses-bin, the same version (6.4-4) as this source.

Compiler: clang-19 over the musl sysroot, as ERTS (`chrysopolis.stages.erts.sysroot`).
Reproducible: no debug info (no build paths), llvm-ar writes deterministic archives, and
the source's build date is not compiled in.
"""

import shutil

from chrysopolis import toolchain
from chrysopolis.cache import Context, stage
from chrysopolis.stages.erts import cc, sysroot

CFLAGS = "-O2 -mno-outline-atomics"

# Built-in terminal descriptions: what common terminal emulators and multiplexers set TERM to.
FALLBACKS = (
    "xterm-256color",
    "xterm",
    "vt100",
    "vt220",
    "linux",
    "screen",
    "screen-256color",
    "tmux",
    "tmux-256color",
    "dumb",
)

CONFIGURE_FLAGS = (
    "--host=aarch64-linux-musl",
    "--build=x86_64-linux-gnu",
    "--prefix=/",
    "--includedir=/include",
    "--libdir=/lib",
    "--with-build-cc=cc",
    f"--with-fallbacks={','.join(FALLBACKS)}",
    "--disable-database",
    "--disable-home-terminfo",
    "--disable-db-install",
    "--enable-termcap",  # the termcap API's names over terminfo (tgetent & co.)
    "--disable-getcap",
    "--without-progs",
    "--without-cxx",
    "--without-cxx-binding",
    "--without-ada",
    "--without-tests",
    "--without-manpages",
    "--without-shared",
    "--without-debug",
    "--without-profile",
    "--without-gpm",
    "--without-dlsym",
    "--without-pkg-config",
    "--with-termlib",
    "--disable-stripping",
)


@stage(
    "ncurses",
    sources=("ncurses",),
    deps=("musl",),
    host=(
        "clang-19",
        "lld-19",
        "llvm-19",
        "gcc",
        "make",
        "ncurses-bin",
        "ncurses-base",
        "ncurses-term",
    ),
    doc="ncurses 6.4 libtinfo.a for aarch64 musl with built-in terminal entries (ERTS's termcap)",
)
def ncurses(ctx: Context) -> None:
    toolchain.need("tic", "infocmp", "cc", "make")
    root = sysroot(ctx.work / "sysroot", ctx.dep("musl"))
    src = ctx.copy_source("ncurses")
    env = {
        "CC": cc(root),
        "CFLAGS": CFLAGS,
        "CPPFLAGS": "-DNDEBUG",
        "LDFLAGS": "-fuse-ld=lld -static",
        "AR": "llvm-ar-19",
        "RANLIB": "llvm-ranlib-19",
        "BUILD_CC": "cc",
        "TIC_PATH": toolchain.path("tic"),
        "INFOCMP_PATH": toolchain.path("infocmp"),
        "SOURCE_DATE_EPOCH": "0",
    }
    ctx.run(
        [
            "./configure",
            *CONFIGURE_FLAGS,
            f"--with-tic-path={toolchain.path('tic')}",
            f"--with-infocmp-path={toolchain.path('infocmp')}",
        ],
        cwd=src,
        env=env,
    )
    ctx.run(["make", f"-j{ctx.jobs}", "libs"], cwd=src, env=env)
    ctx.run(["make", "install.libs", f"DESTDIR={ctx.out}"], cwd=src, env=env)
    # what the build left besides the library and its headers (pkg-config, the *-config script)
    for extra in ("bin", "share"):
        shutil.rmtree(ctx.out / extra, ignore_errors=True)
    lib = ctx.out / "lib"
    for f in sorted(lib.iterdir()):
        if f.name != "libtinfo.a":
            if f.is_dir():
                shutil.rmtree(f)
            else:
                f.unlink()
    if not (lib / "libtinfo.a").is_file():
        raise RuntimeError("ncurses: the build made no libtinfo.a")
