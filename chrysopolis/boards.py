# SPDX-License-Identifier: BSD-2-Clause
"""Boards as data: every fact the SDK build, the system description and QEMU need, one row
a board (as Microkit's build_sdk.py keeps its boards)."""

import re
from dataclasses import dataclass

from chrysopolis.errors import UserError

MIB = 1024 * 1024


@dataclass(frozen=True)
class Board:
    name: str  # Microkit's board name
    cpu: str
    qemu_machine: str
    qemu_cpu: str
    ram: str  # what QEMU gets by default (the SDK's kernel is built for it)
    loader_addr: int  # where QEMU's generic loader puts the Microkit image
    sddf_dts: str  # the device tree in sDDF's tree that sdfgen reads
    paddr_top: int  # sdfgen allocates physical regions below this (sDDF's tools/meta/board.py)
    serial_node: str  # device tree node paths of the devices the system drives
    timer_node: str
    blk_node: str  # a virtio_mmio@ node: QEMU puts the disk on the matching bus
    net_node: str  # a virtio_mmio@ node: QEMU puts the network device on the matching bus
    partition: int  # the MBR partition the FAT server mounts
    virtio_mmio_base: int  # QEMU virt: virtio-mmio-bus.N sits at base + N * stride
    virtio_mmio_stride: int
    # QEMU's fw_cfg registers (MMIO): how a run hands the guest its TERM and window size.
    fw_cfg_paddr: int | None = None


BOARDS = {
    b.name: b
    for b in [
        Board(
            name="qemu_virt_aarch64",
            cpu="cortex-a53",
            qemu_machine="virt,virtualization=on",
            qemu_cpu="cortex-a53",
            ram="2G",
            loader_addr=0x7000_0000,
            sddf_dts="dts/qemu_virt_aarch64.dts",
            paddr_top=0x6000_0000,
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
