# SPDX-License-Identifier: BSD-2-Clause
"""Bootable targets: a stage whose output holds a bootable image, one module a target.

Each module here (hello, bringup, selftest, beam) is the one place of its target: the C it
compiles, the topology it boots (chrysopolis/system.py) and its checks. Its stage writes
`run.json` beside the images: the loader image, the disk, the virtio-mmio buses the system
description put the disk and the network device on, the node's MAC, the board and the RAM
the image is built for (its option `ram`). `run`, `check` and the tests read only that.
"""

import ctypes
import errno
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from chrysopolis import boards, config, qemu
from chrysopolis.cache import Planner, get
from chrysopolis.errors import UserError, no_space

MANIFEST = "run.json"


@dataclass(frozen=True)
class Image:
    dir: Path
    loader: Path
    disk: Path | None
    board: boards.Board
    markers: dict  # named regexes the image prints, for run/check
    disk_bus: int | None = None  # QEMU's virtio-mmio bus for the disk, from the system
    net_bus: int | None = None  # QEMU's virtio-mmio bus for virtio-net (None: no network)
    mac: str | None = None  # the MAC the system description gave the node
    ram: str | None = None  # the RAM its kernel is built for (None: the board's)
    release: str | None = None  # the release of --app its disk holds (chrysopolis/apps.py)

    def command(self, disk: Path | None = None, **kw) -> list[str]:
        """QEMU booting this image with `disk` (default: its own) on the system's disk bus,
        its network device on the system's net bus, and the RAM it is built for."""
        d = disk if disk is not None else self.disk
        return qemu.command(
            self.board,
            self.loader,
            d,
            ram=self.ram,
            disk_bus=self.disk_bus,
            net_bus=self.net_bus,
            mac=self.mac,
            **kw,
        )


def write_manifest(
    out: Path,
    loader: str,
    board: str,
    disk: str | None = None,
    disk_bus: int | None = None,
    markers: dict | None = None,
    net_bus: int | None = None,
    mac: str | None = None,
    ram: str | None = None,
    heap_mib: int | None = None,
) -> None:
    m = {"loader": loader, "disk": disk, "disk_bus": disk_bus, "board": board}
    m["ram"] = ram or boards.board(board).ram
    if net_bus is not None:
        m |= {"net_bus": net_bus, "mac": mac}
    if heap_mib is not None:
        m |= {"heap_mib": heap_mib}  # beam_server's heap as packed (MiB)
    (out / MANIFEST).write_text(json.dumps({**m, "markers": markers or {}}, indent=1))


# Set by apps.use (`--app DIR`): the image of a shell target with its release on the disk.
RELEASE = None


def image(planner: Planner, name: str) -> Image:
    img = _image(planner, name)
    if RELEASE is not None and get(name).shell and img.disk is not None:
        return RELEASE(planner, img)
    return img


def _image(planner: Planner, name: str) -> Image:
    st = get(name)
    if not st.target:
        raise UserError(
            f"'{name}' is a build stage, not a bootable target; see `chrysopolis build --list`"
        )
    return from_dir(planner.ensure(name))


def from_dir(out: Path) -> Image:
    """The image a build wrote into `out` (its run.json)."""
    m = json.loads((out / MANIFEST).read_text())
    return Image(
        out,
        out / m["loader"],
        out / m["disk"] if m.get("disk") else None,
        boards.board(m["board"]),
        m.get("markers", {}),
        m.get("disk_bus"),
        m.get("net_bus"),
        m.get("mac"),
        m.get("ram"),
    )


def _sparse_copy(src: str, dst: str) -> None:
    # Disk images are mostly holes (258 MiB apparent, 16 MiB used): keep them so.
    r = subprocess.run(
        ["cp", "--sparse=always", src, dst],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if r.returncode != 0:
        if "No space left" in r.stderr:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)
        raise OSError(f"cp {src} {dst}: {r.stderr.strip()}")


def allocated(path: Path) -> int:
    """The bytes a file or a tree takes on disk (holes excluded)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_blocks * 512 for p in files)


def _exchange(a: Path, b: Path) -> None:
    """Swap two directories in one step (renameat2 RENAME_EXCHANGE); where the file system
    cannot, `b` is renamed away first (a moment without `b`)."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, bytes(a), at_fdcwd, bytes(b), rename_exchange) == 0:
        return
    old = Path(tempfile.mkdtemp(prefix=f".{b.name}.old-", dir=b.parent))
    os.rename(b, old / b.name)
    os.rename(a, b)
    os.rename(old / b.name, a)
    old.rmdir()


def publish(img: Image, name: str) -> Path:
    """Copy a target's files into the out directory (the cache entry stays read-only).

    Atomic and locked: the copy is made beside it and swapped in whole; two publishes of
    the same target take turns. A full disk is one line and leaves nothing behind."""
    out = config.out_dir()
    out.mkdir(parents=True, exist_ok=True)
    dest = out / name
    files = [p for p in sorted(img.dir.rglob("*")) if not p.name.startswith(".chrysopolis-")]
    own_disk = img.disk is not None and img.disk.parent != img.dir  # a release's (apps.py)
    if own_disk:
        files = [p for p in files if p.name != img.disk.name]
    need = sum(p.stat().st_blocks * 512 for p in files if p.is_file())
    with open(out / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if shutil.disk_usage(out).free < need:
            raise no_space(out, need)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.new-", dir=out))
        try:
            for p in files:
                to = tmp / p.relative_to(img.dir)
                if p.is_dir():
                    to.mkdir(parents=True, exist_ok=True)
                else:
                    to.parent.mkdir(parents=True, exist_ok=True)
                    _sparse_copy(str(p), str(to))
            if own_disk:
                _sparse_copy(str(img.disk), str(tmp / img.disk.name))
            tmp.chmod(0o755)
            if dest.exists():
                _exchange(tmp, dest)  # tmp now holds the old copy, removed below
            else:
                tmp.rename(dest)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise no_space(out, need) from None
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
