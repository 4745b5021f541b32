"""Host tools: what the build runs, which package brings it, and how to check for it."""

import functools
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata

from chrysopolis.errors import UserError


@dataclass(frozen=True)
class Tool:
    command: str
    package: str  # the Debian package that provides it
    purpose: str


# Each row: a command the build or a check runs. Versions are pinned in lock.toml [host.debian].
TOOLS = [
    Tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu", "seL4 kernel, Microkit loader/monitor"),
    Tool("aarch64-linux-gnu-ar", "binutils-aarch64-linux-gnu", "archives for aarch64"),
    Tool("clang-19", "clang-19", "LionsOS, sDDF, beam_server"),
    Tool("ld.lld-19", "lld-19", "linking protection domains"),
    Tool("llvm-objcopy-19", "llvm-19", "config blobs into ELF sections"),
    Tool("cmake", "cmake", "seL4 kernel build"),
    Tool("ninja", "ninja-build", "seL4 kernel build"),
    Tool("dtc", "device-tree-compiler", "seL4 and sdfgen device trees"),
    # bookworm-security's cargo-web/rustc-web (1.96): bookworm's cargo 0.66/rustc 1.63 is too old.
    Tool("cargo", "cargo-web", "the microkit tool (offline, Debian crates)"),
    Tool("rustc", "rustc-web", "the microkit tool"),
    Tool("qemu-system-aarch64", "qemu-system-arm", "booting images"),
    Tool("qemu-aarch64-static", "qemu-user-static", "the Linux ERTS baseline"),
    Tool("mcopy", "mtools", "FAT disk images"),
    Tool("mkfs.fat", "dosfstools", "FAT disk images"),
    Tool("dpkg-source", "dpkg-dev", "unpacking Debian source packages"),
    Tool("patch", "patch", "our patches to upstream trees"),
    Tool("make", "make", "upstream makefiles"),
    Tool("cc", "gcc", "build-host tools of upstream builds (ERTS's YCF)"),
    Tool("perl", "perl", "ERTS's code generators"),
    Tool("git", "git", "importing from mirrors"),
    Tool("clang-format-19", "clang-format-19", "`chrysopolis fmt` for our C"),
]

# Packages with no command of their own that the build still needs.
EXTRA_PACKAGES = [
    "ipxe-qemu",  # QEMU's ROMs: the seL4 build dumps QEMU's DTB
    "librust-serde-dev",
    "librust-serde-derive-dev",
    "librust-serde-json-dev",
    "librust-roxmltree-dev",
    "g++-aarch64-linux-gnu",
    "xz-utils",
]


def packages() -> list[str]:
    return sorted({t.package for t in TOOLS} | set(EXTRA_PACKAGES))


@functools.cache
def _dpkg_versions() -> dict[str, str]:
    try:
        r = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Status}\n"],
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        return {}
    out = {}
    for line in r.stdout.splitlines():
        name, version, status = (line.split("\t") + ["", ""])[:3]
        if status == "installed":
            out[name] = version
    return out


def debian_versions(pkgs: tuple[str, ...] | list[str]) -> dict[str, str]:
    have = _dpkg_versions()
    return {p: have.get(p, "") for p in pkgs}


def pypi_versions(pkgs: tuple[str, ...] | list[str]) -> dict[str, str]:
    out = {}
    for p in pkgs:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = ""
    return out


def need(*commands: str) -> None:
    """Fail with the fix if any of `commands` is missing."""
    for c in commands:
        if shutil.which(c) is None:
            row = next((t for t in TOOLS if t.command == c), None)
            pkg = f" (Debian package {row.package})" if row else ""
            raise UserError(f"{c} is missing{pkg}; run `chrysopolis setup`")


def setup_commands(lock) -> list[list[str]]:
    """The commands `setup` runs: apt for host tools, pip for Python packages. Idempotent."""
    cmds: list[list[str]] = []
    have = debian_versions(packages())
    missing = sorted(
        {t.package for t in TOOLS if shutil.which(t.command) is None}
        | {p for p in EXTRA_PACKAGES if not have[p]}
    )
    if missing:
        cmds.append(["apt-get", "update"])
        cmds.append(["apt-get", "install", "-y", "--no-install-recommends", *missing])
    want_py = [f"{n}=={v}" for n, v in lock.host_pypi.items() if pypi_versions([n])[n] != v]
    if want_py:
        cmds.append([sys.executable, "-m", "pip", "install", *want_py])
    return cmds
