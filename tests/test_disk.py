# SPDX-License-Identifier: BSD-2-Clause
"""The FAT disk builder: MBR layout, FAT32 contents read back with mtools, reproducibility."""

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from chrysopolis import disk
from chrysopolis.errors import UserError

CONTENT = {
    "lib/kernel-11.0.4/ebin/application_controller.beam": b"\x00BEAM" + bytes(range(256)) * 40,
    "lib/kernel-11.0.4/ebin/kernel.app": b"{application, kernel, []}.\n",
    "lib/stdlib-8.1/ebin/lists.beam": b"lists" * 3000,
    "releases/29/start.boot": b"\x83h\x03w\x06script",
    "README": b"top-level file\n",
}


def write_tree(root: Path, order: list[str], mtime: int) -> Path:
    for rel in order:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(CONTENT[rel])
        os.utime(p, (mtime, mtime))
    (root / "bin").mkdir(exist_ok=True)  # an empty directory
    return root


def mtools(cmd: str, image: Path, *args: str) -> subprocess.CompletedProcess:
    off = disk.partition_offset(image)
    return subprocess.run(
        [cmd, "-i", f"{image}@@{off}", *args],
        capture_output=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
        check=True,
    )


def test_same_tree_gives_identical_bytes(tmp_path):
    names = sorted(CONTENT)
    a = write_tree(tmp_path / "a", names, mtime=1_000_000_000)
    b = write_tree(
        tmp_path / "b", names[::-1], mtime=1_700_000_000
    )  # other creation order and times
    hello = tmp_path / "hello.txt"
    hello.write_text("hello from the disk\n")
    img_a = disk.build_disk(a, tmp_path / "a.img", extra={"/hello.txt": hello}).image
    os.utime(hello, (1_234_567_890, 1_234_567_890))
    img_b = disk.build_disk(b, tmp_path / "b.img", extra={"/hello.txt": hello}).image
    assert img_a.read_bytes() == img_b.read_bytes()
    # ...and a different tree does not.
    (b / "README").write_bytes(b"changed\n")
    img_c = disk.build_disk(b, tmp_path / "c.img", extra={"/hello.txt": hello}).image
    assert img_c.read_bytes() != img_a.read_bytes()


def test_mbr_has_one_fat32_lba_partition_at_2048(tmp_path):
    tree = write_tree(tmp_path / "t", sorted(CONTENT), 0)
    info = disk.build_disk(tree, tmp_path / "d.img", size_mib=300)
    raw = info.image.read_bytes()
    assert raw[510:512] == b"\x55\xaa"
    entries = [struct.unpack_from("<B3sB3sII", raw, 446 + 16 * i) for i in range(4)]
    status, _, ptype, _, lba, sectors = entries[0]
    assert (ptype, lba) == (0x0C, 2048)
    assert sectors == 300 * 2048 and (lba + sectors) * 512 == len(raw) == info.size_bytes
    assert sectors % 8 == 0  # whole 4 KiB sDDF transfers
    assert all(e[2] == 0 and e[4] == 0 and e[5] == 0 for e in entries[1:])
    # The partition holds a FAT32 boot sector whose hidden-sector count is the partition start.
    boot = raw[2048 * 512 : 2049 * 512]
    assert boot[82:90] == b"FAT32   " and struct.unpack_from("<I", boot, 28)[0] == 2048
    assert boot[510:512] == b"\x55\xaa"


def test_contents_read_back_and_fsck_clean(tmp_path):
    tree = write_tree(tmp_path / "t", sorted(CONTENT), 0)
    hello = tmp_path / "greeting.txt"
    hello.write_text("hello from the disk\n")
    user = tmp_path / "user_ebin"
    user.mkdir()
    (user / "my_mod.beam").write_bytes(b"BEAMmine")
    info = disk.build_disk(
        tree, tmp_path / "d.img", extra={"/hello.txt": hello, "/user/ebin": user}
    )
    assert info.files == len(CONTENT) + 2
    img = info.image
    for rel, data in CONTENT.items():
        assert mtools("mtype", img, f"::/{rel}").stdout == data
    assert mtools("mtype", img, "::/hello.txt").stdout == b"hello from the disk\n"
    assert mtools("mtype", img, "::/user/ebin/my_mod.beam").stdout == b"BEAMmine"
    listing = mtools("mdir", img, "::/lib/kernel-11.0.4/ebin").stdout.decode()
    assert "application_controller.beam" in listing  # the long name survives
    assert "2000-01-01" in mtools("mdir", img, "::/").stdout.decode()  # the fixed timestamp
    mtools("mdir", img, "::/bin")  # the empty directory exists
    part = tmp_path / "part.img"
    with open(img, "rb") as src, open(part, "wb") as dst:
        src.seek(disk.partition_offset(img))
        shutil.copyfileobj(src, dst)
    r = subprocess.run(["fsck.fat", "-n", str(part)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_missing_tree_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="is not a directory"):
        disk.build_disk(tmp_path / "nowhere", tmp_path / "d.img")
    assert not (tmp_path / "d.img").exists()


def test_missing_extra_is_a_user_error(tmp_path):
    tree = write_tree(tmp_path / "t", sorted(CONTENT), 0)
    with pytest.raises(UserError, match="does not exist"):
        disk.build_disk(tree, tmp_path / "d.img", extra={"/hello.txt": tmp_path / "absent.txt"})


def test_too_small_size_names_the_minimum(tmp_path):
    tree = write_tree(tmp_path / "t", sorted(CONTENT), 0)
    with pytest.raises(UserError, match=r"use at least \d+ MiB"):
        disk.build_disk(tree, tmp_path / "d.img", size_mib=40)
    info = disk.build_disk(
        tree, tmp_path / "d.img", size_mib=40, cluster_bytes=512
    )  # small clusters fit
    assert info.partition_sectors == 40 * 2048


def test_names_fat_cannot_hold_are_refused(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "Same.txt").write_text("a")
    (tree / "same.TXT").write_text("b")
    with pytest.raises(UserError, match="same name on a FAT volume"):
        disk.build_disk(tree, tmp_path / "d.img")
    (tree / "same.TXT").unlink()
    (tree / "what?.txt").write_text("c")
    with pytest.raises(UserError, match="cannot be stored on a FAT volume"):
        disk.build_disk(tree, tmp_path / "d.img")
