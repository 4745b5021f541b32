# SPDX-License-Identifier: BSD-2-Clause
"""Bit-identical across paths: a cold build from a copy of the checkout at another path,
with another cache, gives the same image and disk as the suite's own build."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from chrysopolis import config, targets
from chrysopolis.treehash import file_hash

COMPARED = ("sel4-beam.img", "disk.img", "beam_server.elf", "supervisor.elf", "chrysopolis.system")


def _copy_checkout(dest):
    """The checkout's files as git sees them (tracked and new, not ignored), at `dest`."""
    r = subprocess.run(
        ["git", "-C", config.ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    )
    for rel in filter(None, r.stdout.decode().split("\0")):
        src = config.ROOT / rel
        if src.is_file() or src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel, follow_symlinks=False)


def _link_sources(planner, cache):
    """Every stored source, hard-linked into `cache` (builds only read them)."""
    from chrysopolis import sources

    for src in planner.lock.sources.values():
        if not sources.present(src):
            continue
        tree = sources.require(src)
        dest = cache / "sources" / src.name / src.sha256
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-al", tree, dest], check=True)
        shutil.copy2(sources.manifest_of(src), dest.parent)


@pytest.mark.slow
def test_a_cold_build_elsewhere_gives_the_same_image(stack_planner, tmp_path):
    img = targets.image(stack_planner, "beam")
    ours = {f: file_hash(img.loader.parent / f) for f in COMPARED}
    checkout, cache = tmp_path / "elsewhere" / "checkout", tmp_path / "other-cache"
    _copy_checkout(checkout)
    _link_sources(stack_planner, cache)
    env = {
        **os.environ,
        "CHRYSOPOLIS_CACHE": str(cache),
        "CHRYSOPOLIS_OUT": str(checkout / "out"),
        "PYTHONPATH": str(checkout),
    }
    env.pop("CHRYSOPOLIS_MIRROR", None)  # every source is in the other store already
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "chrysopolis", "build", "beam"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    took = time.monotonic() - t0
    out = checkout / "out" / "beam"
    theirs = {f: file_hash(out / f) for f in COMPARED}
    print(f"cold build at {checkout} with cache {cache}: {took:.0f} s; sha256 {theirs}")
    assert theirs == ours
