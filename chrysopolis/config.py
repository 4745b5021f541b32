# SPDX-License-Identifier: BSD-2-Clause
"""Where things live: the project checkout and the cache (sources, stages, logs)."""

import os
from pathlib import Path

# Our C files, patches and the lock file: beside the package in a checkout (or an editable
# install), in the package's _project folder in a wheel (setup.py puts them there).
PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent if (PACKAGE.parent / "lock.toml").is_file() else PACKAGE / "_project"
LOCK_FILE = ROOT / "lock.toml"
PATCHES = ROOT / "patches"


def cache_dir() -> Path:
    """$CHRYSOPOLIS_CACHE, else $XDG_CACHE_HOME/chrysopolis, else ~/.cache/chrysopolis."""
    env = os.environ.get("CHRYSOPOLIS_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser().resolve() / "chrysopolis"


def runs_dir() -> Path:
    """Where boots keep their serial logs (and scratch disks): <cache>/runs."""
    d = cache_dir() / "runs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def out_dir() -> Path:
    """Where `build` puts the images a user runs, and the user's disks: $CHRYSOPOLIS_OUT or
    ./out (output only: no source lives there)."""
    return Path(os.environ.get("CHRYSOPOLIS_OUT", ROOT / "out")).resolve()


def legacy_out_dir() -> Path | None:
    """./build, the output folder before ./out, when the default is in use (userdisk takes
    the user's disks over from it)."""
    return None if os.environ.get("CHRYSOPOLIS_OUT") else (ROOT / "build").resolve()
