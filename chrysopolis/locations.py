# SPDX-License-Identifier: BSD-2-Clause
"""Where pinned sources are fetched from: configuration, never the lock.

The lock names what a source is: `debian:pool/main/m/musl/musl_1.2.5.orig.tar.gz` (a file
of Debian's archive, by its pool path) or `github:seL4/microkit` (a repository, by owner
and name). This module turns such a name into the URLs to try, in order; whatever is
fetched is verified against the lock's hash, so any mirror is as good as another.

- Debian: `$CHRYSOPOLIS_DEBIAN_MIRROR` (base URLs separated by spaces), else every archive
  URI of this machine's apt sources (the mirror apt already uses).
- The forge: `$CHRYSOPOLIS_FORGE` (base URLs separated by spaces), else GitHub's.
The commands' `--debian-mirror` and `--forge` options set these variables (use_locations).
"""

import os
import re
from pathlib import Path

from chrysopolis.errors import UserError

DEBIAN = "debian:"
GITHUB = "github:"
DEBIAN_MIRROR_ENV = "CHRYSOPOLIS_DEBIAN_MIRROR"
FORGE_ENV = "CHRYSOPOLIS_FORGE"
DEFAULT_FORGE = "https://github.com"
APT_SOURCES = Path("/etc/apt")


def apt_uris(root: Path | None = None) -> list[str]:
    """The archive URIs of apt's sources (deb822 `.sources` files and one-line `.list` files)."""
    root = root or APT_SOURCES
    uris: list[str] = []
    for f in [root / "sources.list", *sorted((root / "sources.list.d").glob("*"))]:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":
            for m in re.finditer(r"^URIs:\s*(.+)$", text, re.M):
                uris += m.group(1).split()
        elif f.suffix == ".list" or f.name == "sources.list":
            for line in text.splitlines():
                m = re.match(r"\s*deb(?:-src)?\s+(?:\[[^]]*\]\s+)?(\S+)", line)
                if m:
                    uris.append(m.group(1))
    return list(dict.fromkeys(u.rstrip("/") for u in uris if "://" in u))


def debian_mirrors() -> list[str]:
    given = os.environ.get(DEBIAN_MIRROR_ENV, "").split()
    mirrors = [u.rstrip("/") for u in given] or apt_uris()
    if not mirrors:
        raise UserError(
            f"no Debian mirror is known: apt has no sources here; set {DEBIAN_MIRROR_ENV} to "
            "the base URL of a Debian archive mirror"
        )
    return mirrors


def forges() -> list[str]:
    return [u.rstrip("/") for u in os.environ.get(FORGE_ENV, "").split()] or [DEFAULT_FORGE]


def forge() -> str:
    return forges()[0]


def use_locations(debian: tuple[str, ...] = (), forge: tuple[str, ...] = ()) -> None:
    """Locations given on the command line, tried before the environment's."""
    for var, given in ((DEBIAN_MIRROR_ENV, debian), (FORGE_ENV, forge)):
        for u in given:
            if "://" not in u:
                raise UserError(f"{u!r} is not a URL; give a base URL such as https://HOST/debian")
        if given:
            os.environ[var] = " ".join([*given, *os.environ.get(var, "").split()])


def urls(name: str) -> list[str]:
    """The URLs to try for a lock location, in order (a plain URL stands for itself)."""
    if name.startswith(DEBIAN):
        path = name[len(DEBIAN) :].lstrip("/")
        return [f"{base}/{path}" for base in debian_mirrors()]
    if name.startswith(GITHUB):
        return [f"{base}/{name[len(GITHUB) :].strip('/')}" for base in forges()]
    return [name]
