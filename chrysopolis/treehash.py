# SPDX-License-Identifier: BSD-2-Clause
"""The canonical content hash of a source tree.

sha256 of a deterministic POSIX (ustar/pax) tar stream of the tree:
- regular files and symlinks only (git tracks no empty directories), `.git` excluded;
- entries sorted by their relative path as UTF-8 bytes, '/' separated, no leading './';
- uid/gid 0, empty owner names, mtime 0;
- mode 0755 if any execute bit is set, else 0644; symlinks 0777 with their target kept.
A plain checkout, a `git archive` of the same commit and an unpacked release tarball all
hash the same, whatever the umask or the clock.
"""

import hashlib
import os
import tarfile
from pathlib import Path

EXCLUDE = {".git"}


def _entries(root: Path) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in EXCLUDE]
        rel = os.path.relpath(dirpath, root)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            found.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    return sorted(found, key=lambda p: p.encode())


class _HashWriter:
    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.h.update(data)
        return len(data)


def tree_hash(root: Path) -> str:
    root = Path(root)
    sink = _HashWriter()
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in _entries(root):
            path = root / rel
            info = tarfile.TarInfo(rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            st = path.lstat()
            if path.is_symlink():
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                info.mode = 0o777
                tar.addfile(info)
            else:
                info.size = st.st_size
                info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                with open(path, "rb") as f:
                    tar.addfile(info, f)
    return sink.h.hexdigest()


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
