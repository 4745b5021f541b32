# SPDX-License-Identifier: BSD-2-Clause
"""The source store: pinned upstream trees, fetched or imported, verified, then kept.

Layout: <cache>/sources/<name>/<sha256>/ holds the unpacked tree. A tree is moved into
place only after its hash matched the lock, so a present directory is a verified one.

`fetch` looks in local mirror directories ($CHRYSOPOLIS_MIRROR, `--mirror`) before the
network: a git pin as `<name>-<commit>.tar.*` (a `git archive` of the commit), a Debian
pin as its files by name, an archive pin by its file name.
"""

import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from chrysopolis import config, integrity, progress, toolchain
from chrysopolis.errors import UserError
from chrysopolis.lock import Source
from chrysopolis.treehash import file_hash, tree_hash

MIRROR_ENV = "CHRYSOPOLIS_MIRROR"


class StalePin(UserError):
    """A pinned file the archive no longer has: only a new pin helps."""


def store_dir() -> Path:
    return config.cache_dir() / "sources"


def path_of(src: Source) -> Path:
    return store_dir() / src.name / src.sha256


def present(src: Source) -> bool:
    return path_of(src).is_dir()


def manifest_of(src: Source) -> Path:
    """The record of the stored tree's files (integrity.py), beside the tree."""
    return path_of(src).with_name(f"{src.sha256}.files.json")


def damage(src: Source, full: bool = False) -> str | None:
    """What changed in the stored tree of `src` since it was stored (None: nothing).
    Cheap (sizes and mtimes) unless `full`: then the tree is hashed again."""
    tree, manifest = path_of(src), manifest_of(src)
    if full or not manifest.is_file():  # a store from before the records: hash it once
        got = tree_hash(tree)
        if got != src.sha256:
            return f"its tree hashes to {got[:16]}…, not the pinned {src.sha256[:16]}…"
        integrity.record(tree, manifest, hashes=False)
        return None
    return integrity.damage(tree, manifest)


def require(src: Source) -> Path:
    """The stored tree of `src`, checked, or an error naming the command that restores it."""
    p = path_of(src)
    if not p.is_dir():
        raise UserError(f"source '{src.name}' ({src.pin}) is not in the store; {bring_hint(src)}")
    what = integrity.checked_once(p, lambda: damage(src))
    if what is not None:
        raise UserError(
            f"source '{src.name}' ({src.pin}) in the store was changed after it was "
            f"stored ({what}); restore it: {bring_hint(src)}"
        )
    return p


def bring_hint(src: Source) -> str:
    if src.kind == "git":
        return (
            f"run `chrysopolis sources import {src.name} PATH` with a checkout or mirror holding "
            f"{src.commit[:12]}, or `chrysopolis sources fetch {src.name}` with a directory of "
            f"{src.name}-{src.commit}.tar.xz in {MIRROR_ENV} or with internet access"
        )
    return f"run `chrysopolis sources fetch {src.name}`"


def _staging() -> Path:
    store_dir().mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".incoming-", dir=store_dir()))


def _install(src: Source, tree: Path, origin: str) -> Path:
    """Verify `tree` against the lock and move it into the store (atomic rename)."""
    got = tree_hash(tree)
    if got != src.sha256:
        raise UserError(
            f"hash mismatch for '{src.name}' from {origin}: got {got[:16]}…, lock has "
            f"{src.sha256[:16]}…; check the source or update the pin in the lock file"
        )
    dest = path_of(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if damage(src) is None:  # another run got there first; theirs is verified too
            return dest
        tree.rename(tree.with_name("new"))  # a damaged tree: the verified one replaces it
        dest.rename(tree)  # the staging directory's cleanup removes it
        tree = tree.with_name("new")
    tree.rename(dest)
    integrity.record(dest, manifest_of(src), hashes=False)
    integrity.mark_intact(dest)
    return dest


def _check_member(m: tarfile.TarInfo, dest: Path) -> None:
    """Refuse what tarfile's "tar" filter refuses; Debian 12's Python 3.11.2 has no filters."""
    target = (dest / m.name).resolve()
    if Path(m.name).is_absolute() or not target.is_relative_to(dest.resolve()):
        raise tarfile.TarError(f"member {m.name!r} would land outside the tree")
    if m.islnk() and not (dest / m.linkname).resolve().is_relative_to(dest.resolve()):
        raise tarfile.TarError(f"hard link {m.name!r} points outside the tree")
    if m.isdev():
        raise tarfile.TarError(f"member {m.name!r} is a device file")


def _extract(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract every member (works on streams too), checked as the "tar" filter would."""
    for m in tar:
        _check_member(m, dest)
        if m.isreg() or m.isdir():
            m.mode &= 0o755  # no setuid, no group/other write
        if hasattr(tarfile, "tar_filter"):
            tar.extract(m, dest, filter="tar")
        else:
            tar.extract(m, dest)


def _unpack_tarball(archive: Path, dest: Path, origin: str, fix: str) -> None:
    """Unpack, stripping the single top-level directory release tarballs carry."""
    try:
        with tarfile.open(archive) as tar:
            _extract(tar, dest)
    except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error) as e:  # truncated, corrupt
        raise UserError(f"{origin} is not a readable tarball ({e}); {fix}") from None
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        top = entries[0]
        for child in top.iterdir():
            child.rename(dest / child.name)
        top.rmdir()


def _download(urls: list[str], dest: Path, src: Source | None = None) -> None:
    """Download the first of `urls` that answers (each is a mirror of the same file)."""
    errors, gone = [], 0
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=120) as r, open(dest, "wb") as f:
                total = int(r.headers.get("Content-Length") or 0)
                with progress.bytes_task(f"download {url.rsplit('/', 1)[-1]}", total) as advance:
                    while chunk := r.read(1 << 20):
                        f.write(chunk)
                        advance(len(chunk))
            return
        except urllib.error.HTTPError as e:
            gone += e.code in (404, 410)
            errors.append(f"{url}: {e}")
        except (urllib.error.URLError, OSError) as e:
            errors.append(f"{url}: {e}")
    if src is not None and src.url.startswith("debian:") and urls and gone == len(urls):
        # Debian testing and unstable drop superseded versions within weeks.
        raise StalePin(
            f"source '{src.name}' {src.pin}: the Debian archive no longer serves {dest.name} "
            f"(404 at every mirror); run `chrysopolis sources bump {src.name}` to move the pin "
            "to the version the archive carries now"
        )
    raise UserError(f"cannot download {dest.name} from any location ({'; '.join(errors)})")


def _verify_files(src: Source, files_dir: Path) -> None:
    """Each file a multi-file source lists must be in `files_dir` with its pinned hash."""
    for f in src.files:
        p = files_dir / f.name
        if not p.is_file():
            raise UserError(f"'{src.name}': {f.name} is missing from {files_dir}")
        if file_hash(p) != f.sha256:
            raise UserError(
                f"hash mismatch for {f.name} of '{src.name}'; "
                "the file is corrupt or not the pinned one"
            )


def _unpack_debian(src: Source, files_dir: Path, tree: Path) -> None:
    """Verify each file of the Debian source package, then let dpkg-source apply its patches."""
    _verify_files(src, files_dir)
    dsc = next((f.name for f in src.files if f.name.endswith(".dsc")), None)
    if dsc is None:
        raise UserError(f"'{src.name}' lists no .dsc file in the lock")
    dpkg_source = toolchain.path("dpkg-source")
    tree.rmdir()
    r = subprocess.run(
        [dpkg_source, "--no-check", "-x", str(files_dir / dsc), str(tree)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise UserError(
            f"dpkg-source could not unpack '{src.name}': {r.stderr.strip().splitlines()[-1:]}"
        )


def _unpack_debs(src: Source, files_dir: Path, tree: Path) -> None:
    """Verify each .deb of a `deb` source, then unpack them in lock order into one tree."""
    _verify_files(src, files_dir)
    if not shutil.which("dpkg-deb"):
        raise UserError("dpkg-deb is missing; install the Debian package dpkg")
    for f in src.files:
        r = subprocess.run(
            ["dpkg-deb", "-x", str(files_dir / f.name), str(tree)], capture_output=True, text=True
        )
        if r.returncode != 0:
            raise UserError(
                f"dpkg-deb could not unpack {f.name} of '{src.name}': {r.stderr.strip()}"
            )


def mirror_dirs() -> list[Path]:
    """The local mirror directories of $CHRYSOPOLIS_MIRROR (separated by ':'), in order."""
    dirs = [Path(d).expanduser() for d in os.environ.get(MIRROR_ENV, "").split(os.pathsep) if d]
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"{MIRROR_ENV} names {d}, which is not a directory; fix or unset it")
    return dirs


def in_mirror(src: Source) -> Path | None:
    """What a mirror holds of `src`: a tarball of the pinned commit or the pinned files."""
    for d in mirror_dirs():
        if src.kind == "git":
            hits = sorted(d.glob(f"{src.name}-{src.commit}.tar*"))
            if hits:
                return hits[0]
        elif src.kind in ("debian", "deb"):
            if all((d / f.name).is_file() for f in src.files):
                return d
        elif (d / src.archive_name()).is_file():
            return d / src.archive_name()
    return None


def fetch(src: Source) -> Path:
    """The stored tree of `src`: from the store, else a mirror, else its pinned URL
    (a stored tree that was changed is fetched again)."""
    if present(src) and damage(src) is None:
        return path_of(src)
    hit = in_mirror(src)
    if hit is not None:
        return import_path(src, hit)
    stage = _staging()
    try:
        tree = stage / "tree"
        tree.mkdir()
        if src.kind == "debian":
            files = stage / "files"
            files.mkdir()
            for f in src.files:
                _download(f.urls(), files / f.name, src)
            _unpack_debian(src, files, tree)
        elif src.kind == "deb":
            files = stage / "files"
            files.mkdir()
            for f in src.files:
                _download(f.urls(), files / f.name, src)
            _unpack_debs(src, files, tree)
        else:
            archive = stage / "archive"
            try:
                _download(src.archive_urls(), archive, src)
            except StalePin:
                raise
            except UserError as e:
                raise UserError(f"{e}; offline, {bring_hint(src)}") from None
            _unpack_tarball(archive, tree, src.archive_name(), "check the location in the lock")
        return _install(
            src,
            tree,
            src.archive_name() if src.kind not in ("debian", "deb") else "the Debian archive",
        )
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _git(path: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [toolchain.path("git"), "-C", str(path), *args], capture_output=True, **kw
    )


def _git_root(path: Path) -> Path | None:
    """`path` if it is a repository itself (bare or checkout), None for a plain directory."""
    r = _git(path, "rev-parse", "--is-bare-repository", "--absolute-git-dir", text=True)
    if r.returncode != 0:
        return None
    bare, git_dir = r.stdout.split()[:2]
    if bare == "true":
        return path if Path(git_dir).resolve() == path.resolve() else None
    top = _git(path, "rev-parse", "--show-toplevel", text=True).stdout.strip()
    return path if top and Path(top).resolve() == path.resolve() else None


def import_path(src: Source, path: Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(
            f"{path} does not exist; give a directory, a git checkout or a bare repository"
        )
    stage = _staging()  # even when the store has it: PATH is always read and verified
    try:
        tree = stage / "tree"
        tree.mkdir()
        if src.kind == "debian":
            _unpack_debian(src, path if path.is_dir() else path.parent, tree)
        elif src.kind == "deb":
            _unpack_debs(src, path if path.is_dir() else path.parent, tree)
        elif path.is_file():
            _unpack_tarball(path, tree, str(path), f"give a tarball of {src.name} {src.pin}")
        elif src.kind == "git" and _git_root(path) is not None:
            want = f"{src.commit}^{{commit}}"
            if _git(path, "cat-file", "-e", want).returncode != 0:
                raise UserError(
                    f"{path} does not contain commit {src.commit[:12]} of '{src.name}'; "
                    f"run `git -C {path} fetch origin {src.commit}` or use another mirror"
                )
            archive = subprocess.Popen(
                [toolchain.path("git"), "-C", str(path), "archive", src.commit],
                stdout=subprocess.PIPE,
            )
            with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
                _extract(tar, tree)
            if archive.wait() != 0:
                raise UserError(f"git archive of {src.commit[:12]} failed in {path}")
        else:
            shutil.copytree(
                path, tree, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git")
            )
        return _install(src, tree, str(path))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
