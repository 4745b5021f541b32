# SPDX-License-Identifier: BSD-2-Clause
"""The Microkit 2.0.1 SDK from source: seL4, loader, monitor, libmicrokit and the `microkit` tool.

The C parts are built by Microkit's own `build_sdk.py` (with the Debian cross compiler),
once per RAM size (stage option `ram_mib`): seL4's memory map and the loader's link
address are fixed then (docs/plans/memory.md, section 4). The Rust tool has no RAM in it:
stage `microkit-tool` builds it once, by cargo, offline, against Debian's crates (a
source replacement to /usr/share/cargo/registry), after our patches bridge the API gaps
to those crate versions. The output is the SDK directory exactly as Microkit lays it out:
bin/microkit, board/<board>/<config>/{elf,include,lib,platform_gen.json}, ...
"""

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from chrysopolis import boards, buildpaths, toolchain
from chrysopolis.cache import Context, stage
from chrysopolis.errors import UserError

# What the SDK is built for; `hello` and later images pick one board/config out of these.
# Only debug: every image uses it (lionsos.CONFIG, hello.CONFIG: release prints nothing).
BOARDS = (boards.DEFAULT_BOARD,)
CONFIGS = ("debug",)
DEFAULT_RAM_MIB = 2048  # the default board's RAM (boards.Board.ram)


def build_sdk_args(
    board_names: Sequence[str],
    configs: Sequence[str],
    ram_mib: int = DEFAULT_RAM_MIB,
    overlay: Path | None = None,
) -> list[str]:
    """build_sdk.py's arguments for the C parts; unknown boards or configs, or a RAM size
    a board cannot have, are refused. `overlay`: the kernel device tree overlay (our
    patch 0005 passes it, the RAM size and the loader's address to qemu_virt_aarch64)."""
    bs = [boards.board(b) for b in board_names]
    for c in configs:
        boards.check_config(c)
    args = [
        "--boards",
        ",".join(board_names),
        "--configs",
        ",".join(configs),
        "--skip-tool",
        "--skip-docs",
        "--skip-tar",
        # Debian's cross compiler instead of the aarch64-none-elf build_sdk.py expects.
        "--toolchain-prefix-aarch64",
        "aarch64-linux-gnu",
    ]
    for b in bs:
        boards.ram_mib(b, boards.ram_text(ram_mib))
        args += ["--qemu-memory", str(ram_mib)]
        args += ["--loader-link-address", hex(boards.loader_addr(b, ram_mib))]
        if overlay is not None:
            args += ["--kernel-dts-overlay", str(overlay)]
    return args


# The C parts' host tools (the tool's: stages/microkit_tool.py).
C_HOST = (
    "gcc-aarch64-linux-gnu",
    "binutils-aarch64-linux-gnu",
    "cmake",
    "ninja-build",
    "device-tree-compiler",
    # seL4's qemu-arm-virt build dumps the device tree of the system's QEMU (with its ROMs).
    "qemu-system-arm",
    "ipxe-qemu",
)
OVERLAYS = tuple(b.kernel_dts_overlay for b in boards.BOARDS.values() if b.kernel_dts_overlay)


@stage(
    "sdk",
    sources=("sel4", "microkit"),
    deps=("microkit-tool",),
    files=("patches/microkit", *OVERLAYS),
    host=C_HOST,
    pypi=("ply", "Jinja2", "PyYAML", "pyfdt", "lxml"),
    options={
        "boards": list(BOARDS),
        "configs": list(CONFIGS),
        "ram_mib": DEFAULT_RAM_MIB,
        # What boards.heap_reserve keeps from seL4, in the key: the overlay follows it.
        "lazy_heap": [boards.LAZY_HEAP_MIN_MIB, boards.KERNEL_RAM_MIB],
    },
)
def sdk(ctx: Context) -> None:
    """Microkit 2.0.1 SDK for one RAM size (seL4 kernel, loader, monitor, libmicrokit, tool)."""
    toolchain.need("aarch64-linux-gnu-gcc", "cmake", "ninja", "dtc", "patch")
    names = ctx.options["boards"]
    overlays = {boards.board(b).kernel_dts_overlay for b in names} - {None}
    if len(overlays) > 1:
        raise UserError(f"boards {', '.join(names)} need different kernel overlays; build one")
    overlay = None
    if overlays:  # a copy: no checkout path reaches the build
        overlay = ctx.work / "kernel-overlay.dts"
        shutil.copyfile(ctx.ours(overlays.pop()), overlay)
        for b in names:
            reserve = boards.heap_reserve(boards.board(b), ctx.options["ram_mib"])
            if reserve is not None:
                with open(overlay, "a") as f:
                    f.write(heap_overlay(*reserve))
    args = build_sdk_args(names, ctx.options["configs"], ctx.options["ram_mib"], overlay)
    tree = ctx.copy_source("microkit")  # build_sdk.py writes build/ and release/ into its cwd
    ctx.apply_patches("patches/microkit", tree)

    # C parts: the seL4 tree is only read (CMake builds out of tree).
    ctx.run([sys.executable, "build_sdk.py", "--sel4", ctx.src("sel4"), *args], cwd=tree)
    sdk = tree / "release" / f"microkit-sdk-{(tree / 'VERSION').read_text().strip()}"
    shutil.copytree(sdk, ctx.out, dirs_exist_ok=True)
    for h in sorted(ctx.out.glob("board/*/*/include/**/*_gen.h")):  # "generated from PATH"
        buildpaths.map_text(h)
    (ctx.out / "bin").mkdir(exist_ok=True)
    tool = ctx.out / "bin" / "microkit"
    shutil.copy2(ctx.dep("microkit-tool") / "bin" / "microkit", tool)
    tool.chmod(0o755)


def heap_overlay(base: int, size: int) -> str:
    """The device tree overlay that keeps the heap's RAM from seL4 (boards.heap_reserve)."""
    cells = f"{base >> 32:#x} {base & 0xFFFFFFFF:#x} {size >> 32:#x} {size & 0xFFFFFFFF:#x}"
    return (
        "\n/ {\n\treserved-memory {\n"
        f"\t\theap-memory@{base:x} {{\n\t\t\treg = <{cells}>;\n\t\t\tno-map;\n\t\t}};\n"
        "\t};\n};\n"
    )


def board_dir(sdk: Path, board: str, config: str) -> Path:
    """An SDK's directory for one board and config (elf/, include/, lib/)."""
    d = sdk / "board" / boards.board(board).name / boards.check_config(config)
    if not d.is_dir():
        raise FileNotFoundError(f"{d} is missing: the SDK was built without {board}/{config}")
    return d
