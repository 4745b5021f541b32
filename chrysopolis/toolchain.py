# SPDX-License-Identifier: BSD-2-Clause
"""Host tools: what the build runs, which Debian package brings it, at which pinned version.

Set-up decides by package and version (lock.toml [host.debian]), never by whether a command
of that name is somewhere on PATH. The build runs each tool from the system's own
directories: a rustup, pyenv or Homebrew toolchain earlier on the user's PATH changes
nothing that is built.
"""

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from chrysopolis.errors import UserError

# Where Debian's packages put commands. Stages and checks search only these (after the
# Python environment the tool runs in, whose packages seL4's CMake scripts import).
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


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
    Tool("xmllint", "libxml2-utils", "seL4's tools/xmllint.sh checks its generated XML"),
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
    Tool("xz", "xz-utils", "unpacking .tar.xz sources"),
    Tool("tic", "ncurses-bin", "ncurses' built-in terminal entries (stage ncurses)"),
    Tool("infocmp", "ncurses-bin", "ncurses' built-in terminal entries (stage ncurses)"),
    Tool("clang-format-19", "clang-format-19", "`chrysopolis fmt` for our C"),
    Tool("dot", "graphviz", "`chrysopolis show` draws the system"),
]

# Packages with no command of their own that the build still needs.
EXTRA_PACKAGES = [
    "ipxe-qemu",  # QEMU's ROMs: the seL4 build dumps QEMU's DTB
    "librust-serde-dev",
    "librust-serde-derive-dev",
    "librust-serde-json-dev",
    "librust-roxmltree-dev",
    "g++-aarch64-linux-gnu",
    "ncurses-base",  # terminfo entries infocmp may consult for ncurses' fallbacks
    "ncurses-term",
]


def packages() -> list[str]:
    return sorted({t.package for t in TOOLS} | set(EXTRA_PACKAGES))


def find(command: str) -> str | None:
    """Where the build finds `command`: the system's directories only."""
    return shutil.which(command, path=SYSTEM_PATH)


def path(command: str) -> str:
    """The absolute path the build runs `command` from, or an error naming its package."""
    found = find(command)
    if found is None:
        row = next((t for t in TOOLS if t.command == command), None)
        pkg = f" (Debian package {row.package})" if row else ""
        raise UserError(f"{command} is missing{pkg}; run `chrysopolis setup`")
    return found


def need(*commands: str) -> None:
    """Fail with the fix if any of `commands` is missing."""
    for c in commands:
        path(c)


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every build step and boot runs in: PATH is this Python's
    environment, then the system's directories; nothing else of the user's PATH."""
    pybin = str(Path(sys.executable).parent)
    # Python scripts run from stored sources (seL4's) must not write __pycache__ into the
    # store: a stored tree is checked against its record before each use.
    return {
        **os.environ,
        "PATH": f"{pybin}:{SYSTEM_PATH}",
        "PYTHONDONTWRITEBYTECODE": "1",
        **(extra or {}),
    }


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


def debian_gaps(lock) -> dict[str, tuple[str, str]]:
    """Each needed package not installed at its pinned version: {package: (installed, pin)}."""
    pkgs = packages()
    unpinned = [p for p in pkgs if p not in lock.host_debian]
    if unpinned:
        raise UserError(
            f"{lock.path}: no [host.debian] pin for {', '.join(unpinned)}; add their versions"
        )
    have = debian_versions(pkgs)
    return {p: (have[p], lock.host_debian[p]) for p in pkgs if have[p] != lock.host_debian[p]}


def pypi_gaps(lock) -> dict[str, tuple[str, str]]:
    have = pypi_versions(list(lock.host_pypi))
    return {n: (have[n], v) for n, v in lock.host_pypi.items() if have[n] != v}


def in_venv() -> bool:
    return sys.prefix != sys.base_prefix


def _as_root() -> list[str]:
    """How apt is run: directly as root, else through sudo; never prompting for a dialog."""
    quiet = ["env", "DEBIAN_FRONTEND=noninteractive"]
    if os.geteuid() == 0:
        return quiet
    if find("sudo"):
        return ["sudo", *quiet]
    raise UserError("installing Debian packages needs root: run as root, or install sudo")


def setup_commands(lock) -> list[tuple[str, list[str]]]:
    """What `setup` runs, each with a label: apt for host packages, pip for Python ones.
    Empty when everything is at its pin (idempotent)."""
    cmds: list[tuple[str, list[str]]] = []
    gaps = debian_gaps(lock)
    if gaps:
        root = _as_root()
        cmds.append(("apt-get update", [*root, "apt-get", "update", "-q"]))
        install = [
            *root,
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "--allow-downgrades",
            *[f"{p}={pin}" for p, (_, pin) in sorted(gaps.items())],
        ]
        cmds.append((f"apt-get install {len(gaps)} pinned packages", install))
    want_py = [f"{n}=={v}" for n, (_, v) in pypi_gaps(lock).items()]
    if want_py:
        if not in_venv():
            raise UserError(
                f"Python packages {', '.join(want_py)} are missing and this Python is the "
                "system's; run `./quickstart`, which installs them into .venv"
            )
        pip = [sys.executable, "-m", "pip", "install", "-q", *want_py]
        cmds.append((f"pip install {len(want_py)} pinned packages", pip))
    return cmds
