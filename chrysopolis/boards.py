"""Boards as data: what the SDK build, the system generator and QEMU need to know."""

from dataclasses import dataclass

from chrysopolis.errors import UserError


@dataclass(frozen=True)
class Board:
    name: str  # Microkit's board name
    cpu: str
    qemu_machine: str
    qemu_cpu: str
    ram: str  # what QEMU gets by default
    loader_addr: int  # where QEMU's generic loader puts the Microkit image
    sddf_dts: str  # the device tree in sDDF's tree that sdfgen reads


BOARDS = {
    b.name: b
    for b in [
        Board(
            "qemu_virt_aarch64",
            "cortex-a53",
            "virt,virtualization=on",
            "cortex-a53",
            "2G",
            0x70000000,
            "dts/qemu_virt_aarch64.dts",
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
