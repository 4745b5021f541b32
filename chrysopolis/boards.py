# SPDX-License-Identifier: BSD-2-Clause
"""Boards as data: every fact the SDK build, the system description and QEMU need, one row
a board (as Microkit's build_sdk.py keeps its boards)."""

import re
from dataclasses import dataclass

from chrysopolis.errors import UsageError, UserError

MIB = 1024 * 1024


@dataclass(frozen=True)
class Board:
    name: str  # Microkit's board name
    cpu: str
    qemu_machine: str
    qemu_cpu: str
    ram: str  # the RAM an image has unless `--ram` says otherwise
    ram_base: int  # where QEMU puts the RAM
    # The sizes the board can have (MiB): an SDK (seL4's memory map) is built per size.
    ram_step: int
    ram_min: int
    ram_max: int
    # Where the Microkit loader is linked and QEMU's generic loader puts the image: Microkit's
    # own address, or lower inside a smaller RAM (`loader_addr`).
    loader_top: int
    # Kept out of seL4's memory at the start of RAM (the SDK's device tree overlay): sdfgen's
    # fixed-address DMA regions go there (`paddr_top`).
    dma_reserve: int
    sddf_dts: str  # the device tree in sDDF's tree that sdfgen reads
    serial_node: str  # device tree node paths of the devices the system drives
    timer_node: str
    blk_node: str  # a virtio_mmio@ node: QEMU puts the disk on the matching bus
    net_node: str  # a virtio_mmio@ node: QEMU puts the network device on the matching bus
    partition: int  # the MBR partition the FAT server mounts
    virtio_mmio_base: int  # QEMU virt: virtio-mmio-bus.N sits at base + N * stride
    virtio_mmio_stride: int
    # QEMU's fw_cfg registers (MMIO): how a run hands the guest its TERM and window size.
    fw_cfg_paddr: int | None = None
    # The SDK's device tree overlay for `dma_reserve` (its size is written there too).
    kernel_dts_overlay: str | None = None
    # The machine's RAM reads as zero when it starts (QEMU's does), but for the loader's image.
    ram_zeroed: bool = False

    @property
    def paddr_top(self) -> int:
        """sdfgen allocates its physical regions below this (sDDF's tools/meta/board.py)."""
        return self.ram_base + self.dma_reserve


BOARDS = {
    b.name: b
    for b in [
        Board(
            name="qemu_virt_aarch64",
            cpu="cortex-a53",
            qemu_machine="virt,virtualization=on",
            qemu_cpu="cortex-a53",
            ram="2G",
            ram_base=0x4000_0000,
            # QEMU virt takes any size in MiB; 64 MiB steps keep the SDKs few. Up to 8 GiB: a
            # LAN of nodes must still fit in the host's RAM (the CPU's 40-bit physical
            # addresses and seL4's kernel window reach far beyond).
            ram_step=64,
            ram_min=64,
            ram_max=8192,
            loader_top=0x7000_0000,
            dma_reserve=8 * MIB,
            kernel_dts_overlay="patches/sel4-overlays/qemu-virt-dma-reserve.dts",
            sddf_dts="dts/qemu_virt_aarch64.dts",
            serial_node="pl011@9000000",
            timer_node="timer",
            blk_node="virtio_mmio@a000200",
            # sDDF's own choice (tools/meta/board.py, QEMU_NET_ARGS: bus 0). It shares one
            # 4 KiB register page with the disk's slot: sdfgen maps the one region to both
            # drivers (tests/test_system.py holds it to that).
            net_node="virtio_mmio@a000000",
            partition=0,
            virtio_mmio_base=0xA00_0000,
            virtio_mmio_stride=0x200,
            fw_cfg_paddr=0x902_0000,  # QEMU virt's fw-cfg@9020000
            ram_zeroed=True,
        ),
    ]
}
CONFIGS = ("debug", "release")
DEFAULT_BOARD = "qemu_virt_aarch64"


def board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise UserError(f"unknown board '{name}'; supported boards: {', '.join(BOARDS)}") from None


# Room left above the loader's address for the image it is the start of (today's are ~10 MiB).
LOADER_ROOM = 16 * MIB
SIZE = re.compile(r"([0-9]+)([MG])")


def ram_text(mib: int) -> str:
    """A size as `--ram` takes it: 2G, 512M."""
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


def ram_sizes(b: Board) -> str:
    """The sizes `b` can have, in words (for refusals)."""
    return (
        f"a multiple of {ram_text(b.ram_step)} from {ram_text(b.ram_min)} to {ram_text(b.ram_max)}"
    )


def ram_mib(b: Board, size: str) -> int:
    """`--ram SIZE` (e.g. 512M, 2G) in MiB, if `b` can have it; else a one-line UsageError."""
    m = SIZE.fullmatch(size.strip().upper())
    if not m:
        raise UsageError(f"--ram {size!r} is not a size; give MiB or GiB, e.g. 512M or 2G")
    mib = int(m.group(1)) * (1024 if m.group(2) == "G" else 1)
    if mib % b.ram_step or not b.ram_min <= mib <= b.ram_max:
        raise UsageError(f"--ram {size} is not a size {b.name} can have; use {ram_sizes(b)}")
    return mib


def loader_addr(b: Board, mib: int) -> int:
    """Where the loader is linked for `mib` of RAM: Microkit's own address when the RAM
    reaches past it with room for the image, else that room below the top (2 MiB aligned)."""
    top = b.ram_base + mib * MIB - LOADER_ROOM
    return min(b.loader_top, top & ~(2 * MIB - 1))


# From this RAM up, the heap lies in RAM the SDK's device tree keeps from seL4 (device
# untyped): seL4 clears every frame it makes of its own RAM at boot, a first touch of each
# page of a heap of GiBs before ERTS starts; from device untyped it clears nothing, and
# memory.c zeroes each page as it first hands it out (docs/boot.md, the lazy heap).
LAZY_HEAP_MIN_MIB = 256
# seL4's own RAM below the heap: the kernel, every ELF and the other PDs' regions (about 23
# MiB at 2G) with room to spare.
KERNEL_RAM_MIB = 40


def heap_reserve(b: Board, mib: int) -> tuple[int, int] | None:
    """(physical base, size) of the heap's reserved RAM for `mib` of RAM, or None below
    LAZY_HEAP_MIN_MIB (the heap is then made of seL4's own RAM, as every other region)."""
    if mib < LAZY_HEAP_MIN_MIB:
        return None
    base = b.paddr_top + KERNEL_RAM_MIB * MIB
    return base, b.ram_base + mib * MIB - base


def heap_written(b: Board, mib: int) -> tuple[int, int] | None:
    """(offset, bytes) of the heap's reserved RAM that may hold data when beam_server first
    starts: the loader's image on a board whose RAM starts zeroed, else all of it (None).
    memory.c zeroes only those pages as it first hands them out, besides the ones it gave."""
    reserve = heap_reserve(b, mib)
    if reserve is None or not b.ram_zeroed:
        return None
    base, size = reserve
    lo = max(loader_addr(b, mib), base)
    hi = min(loader_addr(b, mib) + LOADER_ROOM, base + size)
    return (lo - base, max(0, hi - lo))


def check_config(config: str) -> str:
    if config not in CONFIGS:
        raise UserError(f"unknown config '{config}'; use one of: {', '.join(CONFIGS)}")
    return config


def virtio_mmio_bus(b: Board, node: str, role: str = "block") -> int:
    """QEMU's virtio-mmio bus number for a device tree node such as virtio_mmio@a000200
    (`role` names the device in the refusal: block, net)."""
    m = re.fullmatch(r"virtio_mmio@([0-9a-f]+)", node)
    offset = int(m.group(1), 16) - b.virtio_mmio_base if m else -1
    if offset < 0 or offset % b.virtio_mmio_stride:
        raise UserError(
            f"{role} node '{node}' is not a virtio-mmio slot of {b.name}; "
            f"use virtio_mmio@<address>, e.g. virtio_mmio@{b.virtio_mmio_base + b.virtio_mmio_stride:x}"
        )
    return offset // b.virtio_mmio_stride
