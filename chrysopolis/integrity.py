# SPDX-License-Identifier: BSD-2-Clause
"""Stored trees (sources, stage outputs) checked before each use.

When a tree is stored, a manifest records each file's size, mtime and sha256 (a symlink:
its target). Each process checks a tree once, the first time it uses it, by sizes and
mtimes only: a file edited, deleted or added after the tree was stored is caught for the
price of a directory walk. `chrysopolis doctor --verify` rehashes every file.
"""

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from chrysopolis.treehash import file_hash

FORMAT = 1

_intact: set[Path] = set()  # trees this process found as stored: each is checked once


def checked_once(root: Path, check: Callable[[], str | None]) -> str | None:
    """`check()`'s finding (None: intact) the first time this process uses `root`; None
    after it was found intact or marked so."""
    if root in _intact:
        return None
    what = check()
    if what is None:
        _intact.add(root)
    return what


def mark_intact(root: Path) -> None:
    """`root` was just stored or built: no need to check it in this process."""
    _intact.add(root)


def forget(root: Path) -> None:
    _intact.discard(root)


def _walk(root: Path, skip: frozenset[str]) -> dict[str, os.stat_result]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in filenames + links:
            path = name if rel == "." else f"{rel}/{name}"
            if path not in skip:
                found[path] = os.lstat(os.path.join(dirpath, name))
    return found


def _entry(path: Path, st: os.stat_result, hashes: bool) -> dict:
    if stat.S_ISLNK(st.st_mode):
        return {"link": os.readlink(path)}
    e = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if hashes:
        e["sha256"] = file_hash(path)
    return e


def record(root: Path, manifest: Path, hashes: bool = True) -> None:
    """Write the manifest of `root` (the manifest may lie inside it: it is left out)."""
    skip = frozenset({_rel(root, manifest)})
    files = {p: _entry(root / p, st, hashes) for p, st in sorted(_walk(root, skip).items())}
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "files": files}, indent=0, sort_keys=True))
    tmp.rename(manifest)


def _rel(root: Path, manifest: Path) -> str:
    try:
        return manifest.relative_to(root).as_posix()
    except ValueError:
        return ""


def _load(manifest: Path) -> dict | None:
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    return data.get("files") if data.get("format") == FORMAT else None


def damage(root: Path, manifest: Path, full: bool = False) -> str | None:
    """What differs in `root` from its manifest (None: nothing), by sizes and mtimes, or
    with `full` by contents. A missing or unreadable manifest is damage too."""
    files = _load(manifest)
    if files is None:
        return f"its record {manifest.name} is missing or unreadable"
    have = _walk(root, frozenset({_rel(root, manifest)}))
    for path, want in files.items():
        st = have.pop(path, None)
        if st is None:
            return f"{path} is missing"
        link = stat.S_ISLNK(st.st_mode)
        if "link" in want:
            if not link or os.readlink(root / path) != want["link"]:
                return f"{path} is not the symlink it was"
            continue
        if link or st.st_size != want["size"]:
            return f"{path} changed (size {st.st_size}, was {want['size']})"
        if full:
            if file_hash(root / path) != want.get("sha256"):
                return f"{path} changed (its contents)"
        elif st.st_mtime_ns != want["mtime_ns"]:
            return f"{path} changed (modified after it was stored)"
    if have:
        return f"{sorted(have)[0]} was added"
    return None
