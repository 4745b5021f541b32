"""Where things live: the project checkout and the cache (sources, stages, logs)."""

import os
from pathlib import Path

# The tool runs from a checkout: our C files, patches and the lock file sit beside the package.
ROOT = Path(__file__).resolve().parent.parent
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
    """Where `build` puts the images a user runs: $CHRYSOPOLIS_OUT or ./build."""
    return Path(os.environ.get("CHRYSOPOLIS_OUT", ROOT / "build")).resolve()
