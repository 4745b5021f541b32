# SPDX-License-Identifier: BSD-2-Clause
"""`chrysopolis sources bump NAME [VERSION]`: move one pin, verified, and rewrite the lock.

- Debian pins (`debian`, `deb`): the index of the pin's `suite` (dists/SUITE/main/source/
  Sources.xz, or binary-ARCH/Packages.xz) names the versions, pool paths and sha256s; the
  newest by dpkg's ordering, or VERSION.
- git pins: the newest commit of the pin's `ref` branch, or VERSION (tag, branch, commit),
  from the forge or `--from` (a checkout, bare mirror or git URL).

Each file is checked against the index, the tree unpacked as `sources fetch` does, hashed
and stored; only then is the entry of lock.toml rewritten (tomlkit: comments, order and the
other entries stay byte for byte). A failed step leaves the lock as it was.
"""

import dataclasses
import lzma
import re
import shutil
import subprocess
import tarfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import tomlkit

from chrysopolis import cache, locations, lock, sources, toolchain
from chrysopolis.errors import UserError
from chrysopolis.lock import Source, SourceFile
from chrysopolis.treehash import file_hash, tree_hash

SUITES = ("bookworm", "trixie", "forky")
PIN_FIELDS = ("url", "version", "ref", "commit", "sha256")  # what a bump may change, with files


@dataclass
class Bump:
    """What a bump changed: (field, old, new) rows, and the stages that will rebuild."""

    name: str
    changes: list[tuple[str, str, str]] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    path: Path | None = None  # the new tree in the store


def bump(name: str, version: str | None = None, origin: str | None = None) -> Bump:
    lk = lock.load()
    src = lk.source(name)
    if src.kind in ("debian", "deb"):
        if origin is not None:
            raise UserError(
                f"--from is for git sources; '{name}' comes from a Debian mirror: set "
                f"{locations.DEBIAN_MIRROR_ENV} to use another"
            )
        new, path = _bump_debian(src, version)
    elif src.kind == "git":
        new, path = _bump_git(src, version, origin)
    else:
        raise UserError(
            f"'{name}' is an {src.kind} pin; bump moves Debian and git pins only: edit "
            f"[source.{name}] in {lk.path} by hand"
        )
    result = Bump(name, path=path)
    if new is None:
        return result
    result.changes = [
        (k, getattr(src, k), getattr(new, k))
        for k in PIN_FIELDS
        if getattr(src, k) != getattr(new, k)
    ]
    if new.files != src.files:
        result.changes.append(
            ("files", " ".join(f.name for f in src.files), " ".join(f.name for f in new.files))
        )
    _rewrite(lk.path, src, new)
    result.stages = users(name)
    return result


def users(name: str) -> list[str]:
    """The stages built from source `name`, then every stage built on them."""
    stages = cache.load_all()
    hit = [s.name for s in stages.values() if name in s.sources]
    grew = True
    while grew:
        more = [s.name for s in stages.values() if s.name not in hit and set(s.deps) & set(hit)]
        hit += more
        grew = bool(more)
    return hit


# --- Debian ---------------------------------------------------------------------------


def _suite(src: Source) -> str:
    if src.suite not in SUITES:
        raise UserError(
            f"[source.{src.name}] in {lock.lock_path()} names no Debian suite; add "
            f'`suite = "{SUITES[0]}"` (or {", ".join(SUITES[1:])}): the one it was taken from'
        )
    return src.suite


def _index(suite: str, rel: str, stage: Path) -> list[str]:
    """The paragraphs of dists/SUITE/REL from the first Debian mirror that serves it."""
    dest = stage / rel.replace("/", "_")
    if not dest.exists():
        urls = [f"{base}/dists/{suite}/{rel}" for base in locations.debian_mirrors()]
        try:
            sources._download(urls, dest)
        except UserError as e:
            raise UserError(
                f"{e}; check `suite` in the lock entry or set {locations.DEBIAN_MIRROR_ENV}"
            ) from None
    try:
        text = lzma.decompress(dest.read_bytes()).decode("utf-8", "replace")
    except lzma.LZMAError as e:
        raise UserError(
            f"dists/{suite}/{rel} is not a readable .xz ({e}); try another mirror "
            f"({locations.DEBIAN_MIRROR_ENV})"
        ) from None
    return text.split("\n\n")


def _paragraphs(index: list[str], package: str) -> list[dict[str, str]]:
    """The deb822 paragraphs of `package` (continuation lines kept, leading space and all)."""
    found = []
    for para in index:
        if not para.startswith(f"Package: {package}\n"):
            continue
        fields: dict[str, str] = {}
        key = ""
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        found.append(fields)
    return found


def _newer(a: str, b: str) -> bool:
    """a > b in Debian version order (dpkg's own comparison)."""
    dpkg = toolchain.path("dpkg")
    return subprocess.run([dpkg, "--compare-versions", a, "gt", b]).returncode == 0


def _choose(paras: list[dict[str, str]], want: str | None, what: str, name: str, suite: str):
    """The paragraph of version `want`, or of the newest version."""
    versions = list(dict.fromkeys(p["Version"] for p in paras))
    if want is not None:
        hit = [p for p in paras if p["Version"] == want]
        if not hit:
            raise UserError(
                f"{suite}'s index has no {what} {want}; it carries {', '.join(versions)}: "
                f"give one of these, or run `chrysopolis sources bump {name}` for the newest"
            )
        return hit[0]
    best = paras[0]
    for p in paras[1:]:
        if _newer(p["Version"], best["Version"]):
            best = p
    return best


def _fetch_file(f: SourceFile, size: int, dest: Path) -> None:
    sources._download(locations.urls(f.url), dest)
    if dest.stat().st_size != size or file_hash(dest) != f.sha256:
        raise UserError(
            f"{f.name} from the mirror does not match the index (size or sha256); try "
            f"another mirror ({locations.DEBIAN_MIRROR_ENV})"
        )


def _deb_name(file_name: str) -> tuple[str, str]:
    """(package, architecture) of NAME_VERSION_ARCH.deb."""
    stem = file_name.removesuffix(".deb")
    parts = stem.split("_")
    if len(parts) != 3 or not file_name.endswith(".deb"):
        raise UserError(f"{file_name} is not named PACKAGE_VERSION_ARCH.deb; fix the lock entry")
    return parts[0], parts[2]


def _bump_debian(src: Source, version: str | None) -> tuple[Source | None, Path | None]:
    suite = _suite(src)
    stage = sources._staging()
    try:
        if src.kind == "debian":
            dsc = next((f.name for f in src.files if f.name.endswith(".dsc")), "")
            package = dsc.split("_")[0]
            if not package:
                raise UserError(f"'{src.name}' lists no .dsc file in the lock; add it")
            paras = _paragraphs(_index(suite, "main/source/Sources.xz", stage), package)
            if not paras:
                raise UserError(
                    f"{suite}'s index has no source package {package}; check `suite` of "
                    f"[source.{src.name}]"
                )
            p = _choose(paras, version, f"{package} version", src.name, suite)
            if p["Version"] == src.version:
                return None, None
            directory = p["Directory"].strip("/")
            rows = [line.split() for line in p["Checksums-Sha256"].splitlines() if line.strip()]
            files = [
                (SourceFile(n, f"debian:{directory}/{n}", sha), int(size)) for sha, size, n in rows
            ]
            new = dataclasses.replace(
                src,
                url=f"debian:{directory}/",
                version=p["Version"],
                files=tuple(f for f, _ in files),
            )
        else:
            files, picked = [], []
            for f in src.files:
                package, arch = _deb_name(urllib.parse.unquote(f.name))
                paras = _paragraphs(
                    _index(suite, f"main/binary-{arch}/Packages.xz", stage), package
                )
                if not paras:
                    raise UserError(
                        f"{suite}'s index has no {package} for {arch}; check `suite` of "
                        f"[source.{src.name}]"
                    )
                p = _choose(paras, version, f"{package} ({arch})", src.name, suite)
                filename = p["Filename"].strip("/")
                n = filename.rsplit("/", 1)[-1]
                files.append((SourceFile(n, f"debian:{filename}", p["SHA256"]), int(p["Size"])))
                picked.append(p["Version"])
            new_files = tuple(f for f, _ in files)
            if [(f.name, f.sha256) for f in new_files] == [(f.name, f.sha256) for f in src.files]:
                return None, None
            # A set of several packages is pinned by its suite; one package by its version.
            pin = src.version if src.version == suite else picked[0]
            dirs = {f.url.rsplit("/", 1)[0] for f in new_files}
            url = f"{dirs.pop()}/" if len(dirs) == 1 and src.url != "debian:pool/main/" else src.url
            new = dataclasses.replace(src, url=url, version=pin, files=new_files)
        got = stage / "files"
        got.mkdir()
        for f, size in files:
            _fetch_file(f, size, got / f.name)
        tree = stage / "tree"
        tree.mkdir()
        if new.kind == "debian":
            sources._unpack_debian(new, got, tree)
        else:
            sources._unpack_debs(new, got, tree)
        new = dataclasses.replace(new, sha256=tree_hash(tree))
        return new, sources._install(new, tree, "the Debian archive")
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# --- git ------------------------------------------------------------------------------


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    git = toolchain.path("git")
    return subprocess.run(
        [git, *(["-C", str(cwd)] if cwd else []), *args], capture_output=True, text=True
    )


def _resolve(src: Source, origin: str, want: str, local: Path | None) -> tuple[str, str]:
    """(commit, kind) of `want` at `origin`; kind is branch, tag or commit."""
    r = _git("ls-remote", origin)
    if r.returncode != 0:
        raise UserError(
            f"cannot list {origin} ({r.stderr.strip().splitlines()[-1:]}); give --from a "
            "checkout, a bare mirror or a reachable git URL"
        )
    refs = dict(reversed(line.split("\t", 1)) for line in r.stdout.splitlines() if "\t" in line)
    if f"refs/heads/{want}" in refs:
        return refs[f"refs/heads/{want}"], "branch"
    tag = refs.get(f"refs/tags/{want}^{{}}") or refs.get(f"refs/tags/{want}")
    if tag:
        return tag, "tag"
    if re.fullmatch(r"[0-9a-f]{40}", want):
        return want, "commit"
    if local is not None and re.fullmatch(r"[0-9a-f]{4,39}", want):
        r = _git("rev-parse", "--verify", "-q", f"{want}^{{commit}}", cwd=local)
        if r.returncode == 0:
            return r.stdout.strip(), "commit"
    raise UserError(
        f"{origin} has no branch, tag or commit '{want}' for '{src.name}'; give one it has "
        "(`git ls-remote` lists them; a commit from a URL needs all 40 hex digits)"
    )


def _bump_git(
    src: Source, version: str | None, origin: str | None
) -> tuple[Source | None, Path | None]:
    origin = origin or locations.urls(src.url)[0]
    local = None
    if "://" not in origin and not re.match(r"[\w.-]+@[\w.-]+:", origin):
        local = Path(origin).expanduser().resolve()
        if not local.is_dir() or sources._git_root(local) is None:
            raise UserError(
                f"{origin} is not a git repository; give --from a checkout, a bare mirror or "
                "a git URL"
            )
        origin = str(local)
    want = version or src.ref
    if not want:
        raise UserError(
            f"'{src.name}' pins no branch (`ref`); give the tag, branch or commit to move to: "
            f"`chrysopolis sources bump {src.name} REF`"
        )
    commit, kind = _resolve(src, origin, want, local)
    ref = want if version and kind in ("branch", "tag") else src.ref
    if commit == src.commit and ref == src.ref:
        return None, None
    stage = sources._staging()
    try:
        repo = local
        if repo is None or _git("cat-file", "-e", f"{commit}^{{commit}}", cwd=repo).returncode:
            repo = stage / "repo.git"
            _git("init", "-q", "--bare", str(repo))
            r = _git("fetch", "-q", "--depth", "1", origin, commit, cwd=repo)
            if r.returncode != 0:
                raise UserError(
                    f"cannot fetch {commit[:12]} from {origin} "
                    f"({r.stderr.strip().splitlines()[-1:]}); check --from"
                )
        tree = stage / "tree"
        tree.mkdir()
        git = toolchain.path("git")
        archive = subprocess.Popen(
            [git, "-C", str(repo), "archive", commit], stdout=subprocess.PIPE
        )
        with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
            sources._extract(tar, tree)
        if archive.wait() != 0:
            raise UserError(f"git archive of {commit[:12]} failed in {origin}")
        new = dataclasses.replace(src, commit=commit, ref=ref, sha256=tree_hash(tree))
        return new, sources._install(new, tree, origin)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# --- the lock file --------------------------------------------------------------------


def _files_array(files: tuple[SourceFile, ...]):
    """A `files` array laid out as the lock writes it: one inline table per line."""

    def row(f: SourceFile) -> str:
        kv = ", ".join(
            f"{k} = {tomlkit.string(v).as_string()}"
            for k, v in (("name", f.name), ("url", f.url), ("sha256", f.sha256))
        )
        return f"  {{ {kv} }},\n"

    return tomlkit.parse("files = [\n" + "".join(map(row, files)) + "]\n")["files"]


def _rewrite(path: Path, old: Source, new: Source) -> None:
    """Change only `new`'s differing values in its entry; check the result reads back."""
    doc = tomlkit.parse(path.read_text())
    entry = doc["source"][new.name]
    for k in PIN_FIELDS:
        if getattr(new, k) != getattr(old, k):
            entry[k] = getattr(new, k)
    if new.files != old.files:
        entry["files"] = _files_array(new.files)
    tmp = path.with_name(f".{path.name}.bump")
    tmp.write_text(tomlkit.dumps(doc))
    try:
        if lock.load(tmp).sources[new.name] != new:
            raise UserError(f"rewriting {path} went wrong; it is unchanged (report this)")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
