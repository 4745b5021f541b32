# SPDX-License-Identifier: BSD-2-Clause
"""The lock file: every upstream input pinned by version or commit and content hash."""

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from chrysopolis import config, locations
from chrysopolis.errors import UserError

KINDS = ("git", "debian", "archive", "deb")


@dataclass(frozen=True)
class SourceFile:
    """One file of a multi-file source (a Debian source package: .dsc, orig, debian tar; or a .deb)."""

    name: str
    url: str  # where it is, as a location name (locations.py): debian:pool/...
    sha256: str

    def urls(self) -> list[str]:
        return locations.urls(self.url)


@dataclass(frozen=True)
class Source:
    name: str
    kind: str  # git: a commit of a repository; debian: a source package; archive: one tarball;
    # deb: binary packages (.deb files) unpacked into one tree
    url: str  # a location name (locations.py): github:OWNER/REPO, debian:pool/main/...
    sha256: str  # canonical tree hash of the unpacked source (see treehash.py)
    commit: str = ""
    ref: str = ""  # the tag or branch the commit was taken from: documentation only
    version: str = ""
    suite: str = ""  # Debian pins: the suite whose index `sources bump` reads
    archive: str = (
        ""  # location of the tree's tarball; git default: the forge's archive of the commit
    )
    files: tuple[SourceFile, ...] = field(default_factory=tuple)
    note: str = ""
    license: str = "NOASSERTION"  # an SPDX licence expression (chrysopolis sbom)

    @property
    def pin(self) -> str:
        return self.commit[:12] if self.commit else self.version

    def archive_urls(self) -> list[str]:
        """Where the tree's tarball may be downloaded from, in the order to try."""
        if self.archive:
            return locations.urls(self.archive)
        if self.kind == "git":
            return [f"{u}/archive/{self.commit}.tar.gz" for u in locations.urls(self.url)]
        return locations.urls(self.url)

    def archive_name(self) -> str:
        """The tarball's file name (as a local mirror holds it)."""
        return self.archive_urls()[0].rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Lock:
    sources: dict[str, Source]
    host_debian: dict[str, str]
    host_pypi: dict[str, str]
    path: Path

    def source(self, name: str) -> Source:
        try:
            return self.sources[name]
        except KeyError:
            known = ", ".join(sorted(self.sources))
            raise UserError(f"unknown source '{name}'; known sources: {known}") from None


def lock_path() -> Path:
    return Path(os.environ.get("CHRYSOPOLIS_LOCK", config.LOCK_FILE))


def _source(name: str, raw: dict, path: Path) -> Source:
    def need(key: str) -> str:
        if not raw.get(key):
            raise UserError(f"{path}: source '{name}' has no '{key}'; add it to the lock file")
        return str(raw[key])

    kind = need("kind")
    if kind not in KINDS:
        raise UserError(f"{path}: source '{name}' has kind '{kind}'; use one of {', '.join(KINDS)}")
    if kind == "git":
        need("commit")
    if kind == "debian":
        need("version")
        if not raw.get("files"):
            raise UserError(f"{path}: Debian source '{name}' lists no files; add its .dsc files")
    if kind == "deb":
        need("version")
        if not raw.get("files"):
            raise UserError(f"{path}: source '{name}' lists no .deb files; add them as `files`")
    files = tuple(SourceFile(f["name"], f["url"], f["sha256"]) for f in raw.get("files", []))
    return Source(
        name=name,
        kind=kind,
        url=need("url"),
        sha256=need("sha256"),
        commit=raw.get("commit", ""),
        ref=raw.get("ref", ""),
        version=raw.get("version", ""),
        suite=raw.get("suite", ""),
        archive=raw.get("archive", ""),
        files=files,
        note=raw.get("note", ""),
        license=raw.get("license", "NOASSERTION"),
    )


def load(path: Path | None = None) -> Lock:
    path = path or lock_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"lock file {path} not found; run from a Chrysopolis checkout") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"lock file {path} is not valid TOML: {e}") from None
    sources = {name: _source(name, raw, path) for name, raw in data.get("source", {}).items()}
    host = data.get("host", {})
    return Lock(sources, dict(host.get("debian", {})), dict(host.get("pypi", {})), path)
