# SPDX-License-Identifier: BSD-2-Clause
"""Bootable targets: a stage whose output holds a bootable image, one module a target.

Each module here (hello, bringup, selftest, beam) is the one place of its target: the C it
compiles, the topology it boots (chrysopolis/system.py) and its checks. Its stage writes
`run.json` beside the images: the loader image, the disk, the virtio-mmio bus the system
description put the disk on, and the board. `run`, `check` and the tests read only that.
"""

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from chrysopolis import boards, config, qemu
from chrysopolis.cache import Planner, get
from chrysopolis.errors import UserError

MANIFEST = "run.json"


@dataclass(frozen=True)
class Image:
    dir: Path
    loader: Path
    disk: Path | None
    board: boards.Board
    markers: dict  # named regexes the image prints, for run/check
    disk_bus: int | None = None  # QEMU's virtio-mmio bus for the disk, from the system

    def command(self, disk: Path | None = None, **kw) -> list[str]:
        """QEMU booting this image with `disk` (default: its own) on the system's disk bus."""
        d = disk if disk is not None else self.disk
        return qemu.command(self.board, self.loader, d, disk_bus=self.disk_bus, **kw)


def write_manifest(
    out: Path,
    loader: str,
    board: str,
    disk: str | None = None,
    disk_bus: int | None = None,
    markers: dict | None = None,
) -> None:
    m = {"loader": loader, "disk": disk, "disk_bus": disk_bus, "board": board}
    (out / MANIFEST).write_text(json.dumps({**m, "markers": markers or {}}, indent=1))


def image(planner: Planner, name: str) -> Image:
    st = get(name)
    if not st.target:
        raise UserError(
            f"'{name}' is a build stage, not a bootable target; see `chrysopolis build --list`"
        )
    out = planner.ensure(name)
    m = json.loads((out / MANIFEST).read_text())
    return Image(
        out,
        out / m["loader"],
        out / m["disk"] if m.get("disk") else None,
        boards.board(m["board"]),
        m.get("markers", {}),
        m.get("disk_bus"),
    )


def _sparse_copy(src: str, dst: str) -> None:
    # Disk images are mostly holes (258 MiB apparent, 16 MiB used): keep them so.
    subprocess.run(["cp", "--sparse=always", src, dst], check=True)


def publish(img: Image, name: str) -> Path:
    """Copy a target's files into the out directory (the cache entry stays read-only)."""
    dest = config.out_dir() / name
    tmp = dest.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(
        img.dir,
        tmp,
        ignore=shutil.ignore_patterns(".chrysopolis-inputs.json"),
        copy_function=_sparse_copy,
    )
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest
