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
import re
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


def _exclusive(lock, user: Path) -> None:
    """Take the disk's lock for writing it, or refuse while a run holds it."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(
            f"your disk {user} is in use by another, running `chrysopolis run`; quit it "
            f"(Ctrl-A X quits its QEMU) and try again"
        ) from None


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
            _exclusive(lock, user)
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


# --- files in and out: `chrysopolis disk ls|get|put` ---------------------------------------

OTP_ROOTS = ("lib", "releases", "bin")  # OTP's root layout; also erts-*


@contextmanager
def locked(target: str, exclusive: bool, release: str | None = None) -> Iterator[Path]:
    """The user's disk of TARGET (of its release RELEASE) under the lock `in_use` takes:
    shared to read it (beside a running QEMU), exclusive to write it (refused while any run
    holds it)."""
    user = path(f"{target}-{release}" if release else target)
    if not user.exists():
        how = (
            f"run `chrysopolis run {target} --app DIR` with release {release}'s application once"
            if release
            else f"run `chrysopolis run {target}` once (or `chrysopolis disk reset {target}`)"
        )
        raise UserError(
            f"no disk yet for {target}{' release ' + release if release else ''}: {how}"
        )
    with open(user.parent / LOCK, "a+") as lock:
        if not exclusive:
            fcntl.flock(lock, fcntl.LOCK_SH)  # waits only while a run updates it or a put writes
        else:
            _exclusive(lock, user)
        yield user


_MDIR_LINE = re.compile(r"^(.{8}) (.{3}) +(<DIR>|\d+) +\S+ +\d+:\d\d (?: (.+))?$")


def entries(image: Path) -> dict[str, int | None]:
    """Every path on the volume with its size in bytes (None for a directory)."""
    files, dirs = listing(image)
    out = _mtools(["mdir", "-/", "-a", "-i", _vol(image), "::/"], f"listing {image}", ok_empty=True)
    # mdir's long form gives sizes under the short name and, if it has one, the long name.
    sizes: dict[str, int] = {}
    where = "/"
    for line in out.splitlines():
        if line.startswith("Directory for ::"):
            where = line[len("Directory for ::") :].rstrip("/") + "/"
            continue
        m = _MDIR_LINE.match(line)
        if not m or m[3] == "<DIR>":
            continue
        short = m[1].strip() + ("." + m[2].strip() if m[2].strip() else "")
        for name in (short, m[4]):
            if name:
                sizes[(where + name).lower()] = int(m[3])
    return {**{d: None for d in dirs}, **{f: sizes.get(f.lower(), 0) for f in files}}


def _find(have: Mapping[str, int | None], guest: str, target: str) -> str:
    """`guest` as the volume spells it (FAT names ignore case)."""
    p = str(PurePosixPath("/") / guest)
    if p == "/":
        return p
    for q in have:
        if q.lower() == p.lower():
            return q
    raise UserError(f"no {p} on the disk of {target}; `chrysopolis disk ls /` shows what is there")


def ls(image: Path, guest: str, target: str, recursive: bool) -> list[tuple[str, int | None]]:
    """The entries under `guest` (itself, if a file): (path, size), directories with a
    trailing /; the whole subtree with `recursive`."""
    have = entries(image)
    p = _find(have, guest, target)
    if p != "/" and have[p] is not None:
        return [(p, have[p])]
    base = p.rstrip("/") + "/"
    under = [q for q in have if q.startswith(base)]
    if not recursive:
        under = [q for q in under if "/" not in q[len(base) :]]
    return sorted((q + "/" if have[q] is None else q, have[q]) for q in under)


def get(image: Path, guest: str, host: Path | None, target: str, force: bool) -> Path:
    """Copy the file or directory `guest` of the volume to the host, to `host` (default
    ./NAME; inside it if it is a directory). Host files are overwritten only with `force`."""
    have = entries(image)
    p = _find(have, guest, target)
    is_file = p != "/" and have[p] is not None
    if host is None:
        if p == "/":
            raise UserError(
                "give a host directory for the whole disk: `chrysopolis disk get / DIR`"
            )
        host = Path(PurePosixPath(p).name)
    elif host.is_dir() and p != "/":
        host = host / PurePosixPath(p).name
    if not host.parent.is_dir():
        raise UserError(f"host directory {host.parent} does not exist; make it first")
    if host.is_dir() if is_file else (host.exists() and not host.is_dir()):
        kind = "a directory" if is_file else "a file"
        raise UserError(f"{host} is {kind} on the host, {p} is not; give another destination")
    vol = _vol(image)
    # Copied beside the destination first, so a refusal or a failure leaves the host as it was.
    with tempfile.TemporaryDirectory(dir=host.parent, prefix=".disk-get-") as tmp:
        got = Path(tmp) / "got"
        if is_file:
            _mtools(["mcopy", "-n", "-m", "-i", vol, f"::{p}", str(got)], f"copying {p}")
            pairs = [(got, host)]
        else:
            got.mkdir()
            if any(q.startswith(p.rstrip("/") + "/") for q in have):
                src = "::*" if p == "/" else f"::{p}/*"
                _mtools(["mcopy", "-s", "-n", "-m", "-i", vol, src, f"{got}/"], f"copying {p}")
            pairs = [(got, host)] + [
                (Path(dp) / n, host / Path(dp).relative_to(got) / n)
                for dp, dns, fns in os.walk(got)
                for n in sorted([*dns, *fns])
            ]
        for src, dst in pairs[1:]:
            if src.is_dir() != dst.is_dir() and dst.exists():
                raise UserError(f"{dst} on the host is in the way of {p}; move it")
        clash = [d for s, d in pairs if not s.is_dir() and d.exists()]
        if clash and not force:
            more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
            raise UserError(f"{clash[0]} exists{more}; give --force to overwrite it")
        for src, dst in sorted(pairs, key=lambda sd: len(sd[1].parts)):  # parents first
            if src.is_dir():
                dst.mkdir(exist_ok=True)
            else:
                os.replace(src, dst)
    return host


def _pristine(d: Path) -> set[str]:
    return {p.lower() for p in (_read_state(d) or {}).get("files", [])}


def put(image: Path, host: Path, guest: str, target: str, force: bool) -> str:
    """Copy the host file or directory `host` onto the volume at `guest` (inside it if it
    ends with / or is a directory there). Refuses OTP's tree (an update replaces it) and,
    without `force`, files already there."""
    if not host.exists():
        raise UserError(f"no {host} on the host; give an existing file or directory")
    have = entries(image)
    lower = {q.lower(): q for q in have}
    g = str(PurePosixPath("/") / guest)
    dest = PurePosixPath(g)
    if guest.endswith("/") or g == "/" or (g.lower() in lower and have[lower[g.lower()]] is None):
        dest = dest / Path(os.path.abspath(host)).name
    files, dirs = disk._collect(None, {str(dest): host})
    pristine = _pristine(image.parent)
    for q in [*sorted(files), *sorted(dirs)]:  # name a file if one is refused
        top = q.parts[1].lower() if len(q.parts) > 1 else ""
        if top in OTP_ROOTS or top.startswith("erts-") or str(q).lower() in pristine:
            raise UserError(
                f"{q} belongs to the image (OTP's tree), which an update of the image "
                f"replaces; put your files elsewhere, e.g. /data"
            )
        there = lower.get(str(q).lower())
        if there is None:
            continue
        if q in dirs and have[there] is not None:
            raise UserError(f"{there} is a file on the disk, not a directory; give another path")
        if q in files and have[there] is None:
            raise UserError(f"{there} is a directory on the disk, not a file; give another name")
    clash = [lower[str(q).lower()] for q in sorted(files) if str(q).lower() in lower]
    if clash and not force:
        more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
        raise UserError(f"{clash[0]} is already on the disk{more}; give --force to overwrite it")
    add_files(image, {str(dest): host})
    return str(dest)
