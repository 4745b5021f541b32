# SPDX-License-Identifier: BSD-2-Clause
"""Where the checkout and the cache live, mapped out of everything a compiler writes.

`__FILE__` in assertions and DWARF paths would otherwise carry `$CHRYSOPOLIS_CACHE` and
the checkout's path into the image, and two machines (or two cache paths) would build
different bytes. Every compiler a stage runs gets `-ffile-prefix-map` for both:
- clang (any name, any build system): through `CCC_OVERRIDE_OPTIONS`, the driver's own
  hook for extra arguments ('#' first: silently);
- GCC (the SDK's `aarch64-linux-gnu-gcc`): a wrapper of that name first on PATH; likewise
  GNU as (`-as`, libmicrokit's crt0.s), whose wrapper drops `-g`: binutils 2.40 writes the
  working directory into DWARF whatever `--debug-prefix-map` says;
- tools that record flags as text (ERTS's compile_info, patches/otp/0002): the
  reproducible-builds.org variable BUILD_PATH_PREFIX_MAP.
clang takes the first map that matches and GCC the last, so the longer prefix (a cache
inside the checkout, say) is put where each looks first.
"""

import os
from pathlib import Path

from chrysopolis import config

CACHE_AS = "/cache"
CHECKOUT_AS = "/chrysopolis"
GCC_WRAPPED = ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-g++")  # host tools' paths stay theirs
AS_WRAPPED = ("aarch64-linux-gnu-as",)


def maps() -> list[tuple[str, str]]:
    """(path, what it becomes), longest path first."""
    pairs = {str(config.cache_dir()): CACHE_AS, str(config.ROOT.resolve()): CHECKOUT_AS}
    return sorted(pairs.items(), key=lambda p: len(p[0]), reverse=True)


def clang_flags() -> list[str]:
    return [f"-ffile-prefix-map={a}={b}" for a, b in maps()]


def gcc_flags() -> list[str]:
    return list(reversed(clang_flags()))


NO_DEBUG = """#!/bin/sh
for a in "$@"; do
  shift
  case "$a" in -g | --gdwarf* | --gen-debug) ;; *) set -- "$@" "$a" ;; esac
done
"""


def map_text(path: Path) -> None:
    """Map the build paths out of a text file a tool wrote them into (seL4's generated
    headers name the file they came from)."""
    text = path.read_text()
    new = text
    for a, b in maps():
        new = new.replace(a, b)
    if new != text:
        path.write_text(new)


def _encode(path: str) -> str:
    return path.replace("%", "%#").replace("=", "%+").replace(":", "%.")


def prefix_map_variable() -> str:
    """BUILD_PATH_PREFIX_MAP: `to=from` pairs, the rightmost taking precedence."""
    return ":".join(f"{_encode(b)}={_encode(a)}" for a, b in reversed(maps()))


def _real(name: str, path: str) -> str | None:
    for d in path.split(os.pathsep):
        exe = Path(d) / name
        if d and exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    return None


def env(base: dict[str, str], wrappers: Path) -> dict[str, str]:
    """`base` (a build step's environment) with every compiler mapping the paths out.

    `wrappers` is a directory of the stage's work tree for the GCC wrappers."""
    out = dict(base)
    out["CCC_OVERRIDE_OPTIONS"] = " ".join(
        ["#", *(f"+{f}" for f in clang_flags()), "+-Wno-unused-command-line-argument"]
    )
    out["BUILD_PATH_PREFIX_MAP"] = prefix_map_variable()
    wrappers.mkdir(parents=True, exist_ok=True)
    path = base.get("PATH", "")
    flags = " ".join(f"'{f}'" for f in gcc_flags())
    for name in (*GCC_WRAPPED, *AS_WRAPPED):
        real = _real(name, path)
        if real is None:
            continue
        w = wrappers / name
        if name in AS_WRAPPED:
            text = f'{NO_DEBUG}exec {real} "$@"\n'
        else:
            text = f'#!/bin/sh\nexec {real} "$@" {flags}\n'
        if not w.is_file() or w.read_text() != text:
            w.write_text(text)
            w.chmod(0o755)
    out["PATH"] = f"{wrappers}{os.pathsep}{path}"
    return out
