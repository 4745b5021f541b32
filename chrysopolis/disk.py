# SPDX-License-Identifier: BSD-2-Clause
"""Reproducible FAT disk images: an MBR with one FAT32 partition built from a directory tree.

The layout is what sDDF's block virtualiser and the LionsOS FAT server expect: a DOS MBR
whose first entry is a FAT32 (LBA, type 0x0c) partition starting at LBA 2048 and a whole
number of 4 KiB transfers long. The same inputs give a byte-identical image: mkfs.fat runs
with `--invariant` (fixed volume id and boot-sector data), mtools stamps every entry with
SOURCE_DATE_EPOCH in UTC instead of the source files' times, and directories and files are
created in sorted order, so short-name tails and directory slots never depend on readdir.
"""

import math
import os
import struct
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from chrysopolis import toolchain
from chrysopolis.errors import UserError

SECTOR = 512
PART_LBA = 2048  # 1 MiB: aligned for every block size sDDF transfers
PART_TYPE_FAT32_LBA = 0x0C
FAT32_MIN_CLUSTERS = 65525  # fewer and FAT drivers must treat the volume as FAT16
RESERVED_SECTORS = 32  # mkfs.fat's FAT32 default
LABEL = "CHRYSOPOLIS"
DISK_SIGNATURE = 0x43485259  # "CHRY": a fixed MBR disk id
EPOCH = 946684800  # 2000-01-01 00:00 UTC, the time of every directory entry
BAD_CHARS = set('"*:<>?\\|') | {chr(c) for c in range(32)}


@dataclass(frozen=True)
class DiskInfo:
    image: Path
    size_bytes: int  # apparent size of the image file
    partition_sectors: int
    cluster_bytes: int
    files: int
    dirs: int
    content_bytes: int


def _check_name(dest: PurePosixPath) -> None:
    for part in dest.parts[1:]:
        if BAD_CHARS & set(part) or part.endswith((".", " ")) or len(part) > 255:
            raise UserError(f"'{dest}' cannot be stored on a FAT volume (name '{part}'); rename it")


def _collect(
    tree: Path | None, extra: Mapping[str, Path]
) -> tuple[dict[PurePosixPath, Path], set[PurePosixPath]]:
    """Every destination file (absolute POSIX path on the volume) with its source, and every directory."""
    files: dict[PurePosixPath, Path] = {}
    dirs = {PurePosixPath("/")}

    def add_dir(src: Path, dest: PurePosixPath) -> None:
        for dirpath, _dirnames, filenames in os.walk(src, followlinks=True):
            rel = PurePosixPath(Path(dirpath).relative_to(src).as_posix())
            dirs.add(dest / rel)  # empty directories survive too
            for name in filenames:
                files[dest / rel / name] = Path(dirpath) / name

    if tree is not None:
        tree = Path(tree)
        if not tree.is_dir():
            raise UserError(
                f"disk tree {tree} is not a directory; build the stage that makes it first"
            )
        add_dir(tree, PurePosixPath("/"))
    for dest_s, src in extra.items():
        dest, src = PurePosixPath("/") / dest_s, Path(src)
        if src.is_dir():
            add_dir(src, dest)
        elif src.is_file():
            files[dest] = src
        else:
            raise UserError(f"extra file {src} (for {dest}) does not exist")
    for p in list(files) + list(dirs):
        _check_name(p)
        dirs.update(p.parents)
    folded: dict[str, PurePosixPath] = {}
    for p in sorted(dirs | set(files)):
        other = folded.setdefault(str(p).lower(), p)
        if other != p:
            raise UserError(f"'{other}' and '{p}' are the same name on a FAT volume; rename one")
        if p in dirs and p in files:
            raise UserError(f"'{p}' is both a file and a directory in the disk contents")
    return files, dirs


def _partition_sectors(
    files: Mapping[PurePosixPath, Path],
    dirs: set[PurePosixPath],
    cluster: int,
    size_mib: int | None,
) -> tuple[int, int]:
    """Partition size in sectors (whole MiB) and the bytes the contents need."""
    content = sum(src.stat().st_size for src in files.values())
    clusters = sum(max(1, math.ceil(src.stat().st_size / cluster)) for src in files.values())
    children: dict[PurePosixPath, int] = {d: 2 for d in dirs}  # "." and ".."
    for p in list(files) + [d for d in dirs if d != PurePosixPath("/")]:
        children[p.parent] += 1 + math.ceil(len(p.name) / 13)  # short entry + long-name entries
    clusters += sum(math.ceil(n * 32 / cluster) for n in children.values())
    # Headroom: 10% for the user's later files, and never fewer clusters than FAT32 demands.
    clusters = max(FAT32_MIN_CLUSTERS + 64, math.ceil(clusters * 1.1) + 64)
    fat_sectors = math.ceil((clusters + 2) * 4 / SECTOR)
    need = RESERVED_SECTORS + 2 * fat_sectors + clusters * cluster // SECTOR
    need_mib = math.ceil(need * SECTOR / (1 << 20))
    if size_mib is None:
        size_mib = need_mib
    elif size_mib < need_mib:
        raise UserError(
            f"a {size_mib} MiB disk is too small for these contents with {cluster}-byte "
            f"FAT32 clusters; use at least {need_mib} MiB (or leave the size unset)"
        )
    return size_mib * (1 << 20) // SECTOR, content


def mbr(partition_sectors: int) -> bytes:
    """A DOS MBR with one FAT32 (LBA) partition at PART_LBA; CHS fields say 'use LBA'."""
    entry = struct.pack(
        "<B3sB3sII",
        0x00,
        b"\xfe\xff\xff",
        PART_TYPE_FAT32_LBA,
        b"\xfe\xff\xff",
        PART_LBA,
        partition_sectors,
    )
    sector = bytearray(SECTOR)
    struct.pack_into("<IH", sector, 440, DISK_SIGNATURE, 0)
    sector[446:462] = entry
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def _mtools_env() -> dict[str, str]:
    # TZ: mtools converts the epoch to local time; MTOOLS_SKIP_CHECK: the volume is ours.
    return {
        **toolchain.env(),
        "TZ": "UTC",
        "SOURCE_DATE_EPOCH": str(EPOCH),
        "MTOOLS_SKIP_CHECK": "1",
    }


def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(
        cmd, capture_output=True, text=True, env=_mtools_env(), stdin=subprocess.DEVNULL
    )
    if r.returncode != 0:
        detail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"{what} failed ({cmd[0]} exited {r.returncode}: {detail[0]})")


def build_disk(
    tree: Path | None,
    image: Path,
    size_mib: int | None = None,
    extra: Mapping[str, Path] | None = None,
    cluster_bytes: int = 4096,
) -> DiskInfo:
    """Write `image`: `tree` (and each `extra` source at its destination path) on a FAT32 partition.

    `extra` maps a path on the volume (e.g. "/hello.txt", "/user/ebin") to a file or a
    directory. The default size fits the contents plus 10%. 4 KiB clusters match sDDF's
    transfer size (one request per cluster), so FAT32 needs at least about 260 MiB then (the
    image is sparse); 512-byte clusters allow 33 MiB.
    """
    toolchain.need("mkfs.fat", "mcopy")
    if cluster_bytes not in (512, 1024, 2048, 4096, 8192, 16384, 32768):
        raise UserError(
            f"cluster size {cluster_bytes} is not a power of two from 512 to 32768 bytes"
        )
    cluster = cluster_bytes
    files, dirs = _collect(tree, extra or {})
    sectors, content = _partition_sectors(files, dirs, cluster, size_mib)

    image = Path(image)
    image.parent.mkdir(parents=True, exist_ok=True)
    tmp = image.with_name(image.name + ".partial")
    tmp.unlink(missing_ok=True)
    try:
        with open(tmp, "wb") as f:
            f.write(mbr(sectors))
            f.truncate(
                (PART_LBA + sectors) * SECTOR
            )  # sparse: only what mkfs and mcopy write takes space
        _run(
            [
                "mkfs.fat",
                "-F",
                "32",
                "-S",
                str(SECTOR),
                "-s",
                str(cluster // SECTOR),
                "-R",
                str(RESERVED_SECTORS),
                "-n",
                LABEL,
                "--invariant",
                "--offset",
                str(PART_LBA),
                "-h",
                str(PART_LBA),
                str(tmp),
                str(sectors * SECTOR // 1024),
            ],
            "formatting the FAT32 partition",
        )
        vol = f"{tmp}@@{PART_LBA * SECTOR}"
        subdirs = sorted(d for d in dirs if d != PurePosixPath("/"))
        if subdirs:
            _run(
                ["mmd", "-i", vol, *[f"::{d}" for d in subdirs]],
                "creating directories on the volume",
            )
        by_dir: dict[PurePosixPath, list[PurePosixPath]] = {}
        for dest in sorted(files):
            by_dir.setdefault(dest.parent, []).append(dest)
        for d, dests in sorted(by_dir.items()):
            same = [p for p in dests if files[p].name == p.name]
            if same:  # one mcopy per directory, in sorted order
                _run(
                    ["mcopy", "-i", vol, *[str(files[p]) for p in same], f"::{d}/"],
                    f"copying files into {d}",
                )
            for p in dests:
                if files[p].name != p.name:
                    _run(
                        ["mcopy", "-i", vol, str(files[p]), f"::{p}"], f"copying {files[p]} to {p}"
                    )
        tmp.rename(image)
    finally:
        tmp.unlink(missing_ok=True)
    return DiskInfo(image, image.stat().st_size, sectors, cluster, len(files), len(dirs), content)


def partition_offset(image: Path) -> int:
    """Byte offset of the first partition, read from the image's MBR (for `mtools -i IMAGE@@OFFSET`)."""
    with open(image, "rb") as f:
        sector = f.read(SECTOR)
    if len(sector) < SECTOR or sector[510:512] != b"\x55\xaa":
        raise UserError(f"{image} has no MBR; build it with chrysopolis.disk.build_disk")
    return struct.unpack_from("<I", sector, 446 + 8)[0] * SECTOR
