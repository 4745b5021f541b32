"""Build targets as users see them: a stage whose output holds a bootable image.

A target stage writes `run.json` beside its images: which file is the loader image,
which is the disk, and the board. `run`, `check` and the tests read only that.
"""

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from chrysopolis import boards, config
from chrysopolis.errors import UserError
from chrysopolis.stages import Planner, get

MANIFEST = "run.json"


@dataclass(frozen=True)
class Image:
    dir: Path
    loader: Path
    disk: Path | None
    board: boards.Board
    markers: dict  # named regexes the image prints, for run/check


def write_manifest(
    out: Path, loader: str, board: str, disk: str | None = None, markers: dict | None = None
) -> None:
    (out / MANIFEST).write_text(
        json.dumps(
            {"loader": loader, "disk": disk, "board": board, "markers": markers or {}}, indent=1
        )
    )


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
