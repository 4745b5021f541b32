# SPDX-License-Identifier: BSD-2-Clause
"""The user's disk: the FAT disk the guest writes to, kept apart from the image's pristine disk.

A target with a disk has two of them:
- the pristine disk, `disk.img` in the target's cache entry (copied into out/TARGET/ by
  every publish): what the image stage built, OTP and nothing else;
- the user's disk, out/TARGET-disk/disk.img: what `chrysopolis run` boots and the guest
  writes to. No build and no publish touches it.

Beside the user's disk, state.json records which pristine disk (sha256) it was made or last
updated from, and the files and directories that pristine disk held. When the image's
pristine disk changes, the next run updates the user's disk: it extracts every file of the
user's disk (mtools), drops the paths that belonged to the old pristine disk (and any the new
one holds), and builds a new disk from the new pristine tree plus what is left, i.e. the
guest's own files. The disk before an update or a reset is kept as previous-disk.img.
A rebuilt disk stamps every entry with disk.EPOCH, like the pristine one: the guest's files
keep their contents and names, not their times or attributes.

Which disk a run boots:
- interactive `chrysopolis run`: the user's disk; writes persist;
- headless `run --eval` / `run --path`: a throw-away overlay of the user's disk (QEMU
  snapshot=on): the guest sees the user's files and changes nothing, unless `--keep-writes`;
- checks: the cache's pristine disk with an overlay (they test the image, not the user's data).
"""

import errno
import fcntl
import json
import os
import struct
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from chrysopolis import config, disk, targets
from chrysopolis.errors import UserError, no_space
from chrysopolis.treehash import file_hash

DISK = "disk.img"
PREVIOUS = "previous-disk.img"
STATE = "state.json"
LOCK = ".lock"


def disk_dir(target: str) -> Path:
    """out/TARGET-disk: the user's disk of TARGET and its state file."""
    return config.out_dir() / f"{target}-disk"


def path(target: str) -> Path:
    return disk_dir(target) / DISK


def owner(img: targets.Image, target: str) -> str:
    """Whose user disk `img` boots: TARGET's, or with a release on its disk TARGET-RELEASE's
    (an application's data stays apart from the plain image's)."""
    return f"{target}-{img.release}" if img.release else target


# --- mtools on an MBR disk image ---------------------------------------------------------


def _mtools(cmd: list[str], what: str, ok_empty: bool = False) -> str:
    r = subprocess.run(
        cmd, capture_output=True, text=True, env=disk._mtools_env(), stdin=subprocess.DEVNULL
    )
    if r.returncode != 0:
        if ok_empty and not r.stdout.strip():  # mdir/mcopy on an empty volume: "not found"
            return ""
        detail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"{what} failed ({cmd[0]} exited {r.returncode}: {detail[0]})")
    return r.stdout


def _vol(image: Path) -> str:
    return f"{image}@@{disk.partition_offset(image)}"


def listing(image: Path) -> tuple[list[str], list[str]]:
    """The files and the directories on the volume, as absolute POSIX paths (hidden ones too)."""
    out = _mtools(
        ["mdir", "-/", "-b", "-a", "-i", _vol(image), "::/"], f"listing {image}", ok_empty=True
    )
    files, dirs = [], []
    for line in out.splitlines():
        if not line.startswith("::/"):
            continue
        p = line[2:]
        if p.endswith("/"):
            dirs.append(p.rstrip("/"))
        else:
            files.append(p)
    return sorted(files), sorted(dirs)


def extract(image: Path, dest: Path) -> None:
    """Copy the whole volume into the directory `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    files, dirs = listing(image)
    if files or dirs:
        _mtools(
            ["mcopy", "-s", "-n", "-m", "-i", _vol(image), "::*", f"{dest}/"],
            f"extracting the files of {image}",
        )


def add_files(image: Path, extra: Mapping[str, Path]) -> None:
    """Add each `extra` source (a file or a directory) at its path on the volume, in place;
    missing directories are made, existing files are overwritten."""
    files, dirs = disk._collect(None, extra)
    vol = _vol(image)
    have = {d.lower() for d in listing(image)[1]} | {"/"}
    missing = sorted(d for d in dirs if str(d).lower() not in have)
    if missing:
        _mtools(
            ["mmd", "-i", vol, *[f"::{d}" for d in missing]], f"creating directories on {image}"
        )
    by_dir: dict[PurePosixPath, list[PurePosixPath]] = {}
    for dest in sorted(files):
        by_dir.setdefault(dest.parent, []).append(dest)
    for d, dests in sorted(by_dir.items()):
        same = [str(files[p]) for p in dests if files[p].name == p.name]
        if same:
            _mtools(["mcopy", "-o", "-i", vol, *same, f"::{d}/"], f"copying files into {d}")
        for p in dests:
            if files[p].name != p.name:
                _mtools(["mcopy", "-o", "-i", vol, str(files[p]), f"::{p}"], f"copying to {p}")


def read_file(image: Path, path: str) -> bytes | None:
    """The contents of the file `path` on the volume (None if it holds no such file)."""
    if path not in listing(image)[0]:
        return None
    r = subprocess.run(
        ["mcopy", "-n", "-i", _vol(image), f"::{path}", "-"],
        capture_output=True,
        env=disk._mtools_env(),
        stdin=subprocess.DEVNULL,
    )
    if r.returncode != 0:
        raise UserError(f"reading {path} from {image} failed (mcopy exited {r.returncode})")
    return r.stdout


def remove_files(image: Path, paths: list[str]) -> None:
    """Delete the files `paths` from the volume, in place (absent ones are skipped)."""
    have = set(listing(image)[0])
    gone = [p for p in paths if p in have]
    if gone:
        _mtools(["mdel", "-i", _vol(image), *[f"::{p}" for p in gone]], f"deleting from {image}")


def _geometry(image: Path) -> tuple[int, int]:
    """(cluster bytes, partition MiB) from the MBR and the FAT boot sector."""
    off = disk.partition_offset(image)
    with open(image, "rb") as f:
        f.seek(446 + 12)
        (sectors,) = struct.unpack("<I", f.read(4))
        f.seek(off)
        boot = f.read(disk.SECTOR)
    bytes_per_sector, per_cluster = struct.unpack_from("<HB", boot, 11)
    return bytes_per_sector * per_cluster, sectors * disk.SECTOR >> 20


def copy(src: Path, dst: Path) -> None:
    """Copy a disk image, keeping it sparse; `dst` appears whole or not at all."""
    tmp = dst.with_name(dst.name + ".partial")
    try:
        targets._sparse_copy(str(src), str(tmp))
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise no_space(dst.parent, targets.allocated(src)) from None
        raise
    os.replace(tmp, dst)


# --- the state file and the update -------------------------------------------------------


def _read_state(d: Path) -> dict | None:
    try:
        return json.loads((d / STATE).read_text())
    except (OSError, ValueError):
        return None


def _write_state(d: Path, state: dict) -> None:
    tmp = d / (STATE + ".partial")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, d / STATE)


def _pristine_state(pristine: Path, old: dict | None) -> dict:
    """What state.json says about `pristine`: its hash (reused while the cache file is the
    same one: cache entries never change) and its file list."""
    st = pristine.stat()
    stamp = [str(pristine), st.st_size, st.st_mtime_ns]
    if old and old.get("pristine_stamp") == stamp and old.get("pristine_sha256"):
        return {k: old[k] for k in ("pristine_sha256", "pristine_stamp", "files", "dirs")}
    files, dirs = listing(pristine)
    return {
        "pristine_sha256": file_hash(pristine),
        "pristine_stamp": stamp,
        "files": files,
        "dirs": dirs,
    }


def _fresh(pristine: Path, d: Path, new: dict) -> None:
    copy(pristine, d / DISK)
    _write_state(d, new)


def _keep_previous(d: Path) -> None:
    if (d / DISK).exists():
        copy(d / DISK, d / PREVIOUS)


def _update(target: str, pristine: Path, d: Path, old: dict | None, new: dict) -> None:
    """Rebuild the user's disk from the new pristine tree plus the guest's own files."""
    user = d / DISK
    if old is None and file_hash(user) == new["pristine_sha256"]:
        _write_state(d, new)  # an adopted disk that is the pristine one
        return
    # Unknown origin (an adopted disk): what the new pristine disk holds is OTP's.
    old_files = (old or new)["files"]
    old_dirs = (old or new)["dirs"]
    ours = {p.lower() for p in [*old_files, *new["files"]]}
    ours_dirs = {p.lower() for p in [*old_dirs, *new["dirs"]]}
    with tempfile.TemporaryDirectory(dir=d, prefix=".update-") as tmp:
        mine, tree = Path(tmp) / "user", Path(tmp) / "pristine"
        extract(user, mine)
        extract(pristine, tree)
        for dirpath, _dirnames, filenames in os.walk(mine, topdown=False):
            rel = "/" + Path(dirpath).relative_to(mine).as_posix()
            rel = "/" if rel == "/." else rel
            for name in filenames:
                if (rel.rstrip("/") + "/" + name).lower() in ours:
                    os.unlink(os.path.join(dirpath, name))
            if rel != "/" and rel.lower() in ours_dirs and not os.listdir(dirpath):
                os.rmdir(dirpath)  # an OTP directory the guest left as it was
        extra = {"/": mine} if any(mine.iterdir()) else {}
        cluster, mib = _geometry(user)
        out = Path(tmp) / DISK
        try:
            try:  # keep the user's disk size (the guest may have filled it)
                disk.build_disk(tree, out, size_mib=mib, extra=extra, cluster_bytes=cluster)
            except UserError:  # it no longer fits: the smallest size that does
                disk.build_disk(tree, out, extra=extra, cluster_bytes=cluster)
        except UserError as e:
            raise UserError(
                f"cannot update your disk {user} to the new image's OTP tree ({e}); move or "
                f"delete that file in the guest with the old image, or start clean with "
                f"`chrysopolis disk reset {target}`"
            ) from None
        _keep_previous(d)
        os.replace(out, user)
    _write_state(d, new)


# --- what the CLI uses ---------------------------------------------------------------------


def adopt_legacy(img: targets.Image, target: str) -> None:
    """Take over a user's disk from where earlier versions kept it, once, so what the guest
    wrote there stays: ./build/TARGET-disk (the output folder before ./out) is moved here;
    before user disks, `run` booted the published ./build/TARGET/disk.img itself."""
    if img.disk is None or img.release or disk_dir(target).exists():
        return
    legacy = config.legacy_out_dir()
    if legacy is not None and (legacy / f"{target}-disk" / DISK).is_file():
        disk_dir(target).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(legacy / f"{target}-disk", disk_dir(target))
        except FileExistsError:  # another run got there first
            pass
        return
    # Only ./build can hold such a disk: ./out came after user disks, and the disk published
    # there is the pristine one (a second build must not take it for the user's).
    old = legacy / target / img.disk.name if legacy is not None else None
    if old is not None and old.is_file():
        d = disk_dir(target)
        try:
            d.mkdir(parents=True)
        except FileExistsError:  # another run got there first
            return
        copy(old, d / DISK)  # no state file: the next run compares it with the pristine disk


@contextmanager
def in_use(img: targets.Image, target: str, fresh: bool = False) -> Iterator[Path | None]:
    """The user's disk of TARGET, made, updated (or with `fresh`, reset) as needed, held
    for the body (a boot): no other run can update or reset it meanwhile. None: no disk."""
    if img.disk is None:
        if fresh:
            raise UserError(f"target '{target}' has no disk; drop --fresh-disk")
        yield None
        return
    adopt_legacy(img, target)
    target = owner(img, target)
    d = disk_dir(target)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / LOCK, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)  # waits only while another run updates it (seconds)
        old = _read_state(d)
        new = _pristine_state(img.disk, old)
        user = d / DISK
        stale = not user.exists() or (old or {}).get("pristine_sha256") != new["pristine_sha256"]
        if fresh or stale:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(
                    f"your disk {user} is in use by another `chrysopolis run`; "
                    f"quit that QEMU (Ctrl-A X) and run again"
                ) from None
            old = _read_state(d)  # another run may have updated it while we waited
            if fresh:
                _keep_previous(d)
                _fresh(img.disk, d, new)
            elif not user.exists():
                _fresh(img.disk, d, new)
            elif (old or {}).get("pristine_sha256") != new["pristine_sha256"]:
                _update(target, img.disk, d, old, new)
            fcntl.flock(lock, fcntl.LOCK_SH)
        yield user


def reset(img: targets.Image, target: str) -> Path:
    """Replace the user's disk with a fresh copy of the pristine one (the old one is kept
    as previous-disk.img)."""
    if img.disk is None:
        raise UserError(f"target '{target}' has no disk; nothing to reset")
    with in_use(img, target, fresh=True) as user:
        return user
