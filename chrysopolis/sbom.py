# SPDX-License-Identifier: BSD-2-Clause
"""`chrysopolis sbom`: an SPDX 2.3 JSON document of a built image.

What it holds, each element with its SPDX id:
- `SPDXRef-Package-chrysopolis`, this checkout (version, git commit): what the document
  DESCRIBES; it GENERATES the image.
- `SPDXRef-Stage-NAME`, every stage the image was built from (its deps, transitively), with
  the first 20 hex digits of its cache key as version; the target's own stage is the image,
  and CONTAINS its files (sha1, sha256). A stage DEPENDS_ON the stages it uses and is
  GENERATED_FROM the sources it reads.
- `SPDXRef-Source-NAME`, every pinned source those stages read: version or commit, the
  lock's tree hash, licence, where this machine would download it (locations.py); a Debian
  source's files are packages of their own that the source is GENERATED_FROM.
- `SPDXRef-Patch-...`, our patches the stages apply: PATCH_APPLIED to their source.
- `SPDXRef-Host-...`, the Debian and PyPI package versions each stage ran (recorded in its
  output's .chrysopolis-inputs.json): BUILD_TOOL_OF that stage.

Deterministic for one build: `created` is $SOURCE_DATE_EPOCH, else the commit time of the
checkout's HEAD, else now; the namespace ends in the sha256 of the rest of the document.
"""

import hashlib
import json
import os
import re
import subprocess
import time
import tomllib
from pathlib import Path
from urllib.parse import quote

from chrysopolis import cache, config, locations
from chrysopolis.errors import UserError
from chrysopolis.lock import Source

NAMESPACE = "https://spdx.org/spdxdocs/chrysopolis"  # SPDX's convention for documents
NOASSERTION = "NOASSERTION"
OUR_LICENSE = "BSD-2-Clause"


def _id(*parts: str) -> str:
    return "SPDXRef-" + "-".join(re.sub(r"[^A-Za-z0-9.]+", "-", p).strip("-") for p in parts)


def _digests(path: Path) -> tuple[str, str]:
    """(sha1, sha256) in one pass: SPDX requires a file's sha1; disk.img is 2 GiB."""
    h1, h256 = hashlib.sha1(), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h1.update(chunk)
            h256.update(chunk)
    return h1.hexdigest(), h256.hexdigest()


def _checksums(sha1: str | None, sha256: str) -> list[dict]:
    sums = [{"algorithm": "SHA1", "checksumValue": sha1}] if sha1 else []
    return sums + [{"algorithm": "SHA256", "checksumValue": sha256}]


def _git(*args: str) -> str:
    try:
        r = subprocess.run(
            ["git", "-C", str(config.ROOT), *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
    except OSError:
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def created() -> tuple[str, str]:
    """The document's time (ISO 8601, UTC) and where it came from."""
    if os.environ.get("SOURCE_DATE_EPOCH", "").strip():
        t, how = int(os.environ["SOURCE_DATE_EPOCH"]), "SOURCE_DATE_EPOCH"
    elif stamp := _git("log", "-1", "--format=%ct"):
        t, how = int(stamp), "the commit time of the checkout's HEAD"
    else:
        t, how = int(time.time()), "the time the document was written"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)), how


def _closure(target: str) -> list[str]:
    """The target's stage and every stage it uses, transitively, sorted."""
    seen: set[str] = set()
    todo = [target]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += cache.get(n).deps
    return sorted(seen)


def _inputs(planner: cache.Planner, name: str) -> dict:
    """What stage `name` was built from, as its output records it (the key fixes the same)."""
    f = planner.out_path(name) / cache.INPUTS
    if f.is_file():
        return json.loads(f.read_text())
    return json.loads(json.dumps(planner.inputs(cache.get(name)), default=str))


def _purl_version(v: str) -> str:
    return quote(v, safe="~.-_")


def _source_packages(s: Source) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """The source's package, its files' packages and their relationships."""
    sid = _id("Source", s.name)
    pkg = {
        "SPDXID": sid,
        "name": s.name,
        "versionInfo": s.commit or s.version,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "checksums": _checksums(None, s.sha256),
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": s.license,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "SOURCE",
        "comment": "checksum: the lock's canonical tree hash of the unpacked source "
        "(chrysopolis/treehash.py)" + (f"; {s.note}" if s.note else ""),
    }
    refs = []
    if s.kind == "git":
        url = s.archive_urls()[0] if s.archive else f"git+{locations.urls(s.url)[0]}@{s.commit}"
        pkg["downloadLocation"] = url
        if s.url.startswith(locations.GITHUB):
            owner_repo = s.url[len(locations.GITHUB) :].strip("/")
            refs.append(("PACKAGE-MANAGER", "purl", f"pkg:github/{owner_repo}@{s.commit}"))
        if s.ref:
            pkg["sourceInfo"] = f"commit {s.commit} of {s.ref}"
    else:  # a Debian source package by its .dsc (dget's argument), else the pool folder
        dsc = [f for f in s.files if f.name.endswith(".dsc")]
        pkg["downloadLocation"] = dsc[0].urls()[0] if dsc else s.archive_urls()[0]
    if s.kind == "debian":
        refs.append(
            (
                "PACKAGE-MANAGER",
                "purl",
                f"pkg:deb/debian/{s.url.rstrip('/').rsplit('/', 1)[-1]}@"
                f"{_purl_version(s.version)}?arch=source",
            )
        )
    if refs:
        pkg["externalRefs"] = [
            {"referenceCategory": c, "referenceType": t, "referenceLocator": loc}
            for c, t, loc in refs
        ]
    packages, rels = [pkg], []
    for f in s.files:
        fid = _id("Source", s.name, f.name)
        fp = {
            "SPDXID": fid,
            "name": f.name,
            "versionInfo": s.version,
            "packageFileName": f.name,
            "downloadLocation": f.urls()[0],
            "filesAnalyzed": False,
            "checksums": _checksums(None, f.sha256),
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": s.license,
            "copyrightText": NOASSERTION,
            "primaryPackagePurpose": "INSTALL" if f.name.endswith(".deb") else "SOURCE",
        }
        m = re.fullmatch(r"([^_]+)_([^_]+)_([^_]+)\.deb", f.name)
        if m:  # a binary package: its own name, version and architecture
            fp["name"], fp["versionInfo"] = m.group(1), m.group(2)
            fp["externalRefs"] = [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": f"pkg:deb/debian/{m.group(1)}@"
                    f"{_purl_version(m.group(2))}?arch={m.group(3)}",
                }
            ]
        packages.append(fp)
        rels.append((sid, "GENERATED_FROM", fid))
    return packages, rels


def _patch_license(p: Path) -> str:
    first = p.read_text(errors="replace").split("\n", 1)[0]
    m = re.match(r"SPDX-License-Identifier:\s*(.+)", first)
    return m.group(1).strip() if m else NOASSERTION


def _patches(stage_files: dict[str, tuple[str, ...]]) -> dict[Path, str]:
    """{patch file: folder} for every patches/FOLDER(/x.patch) a stage names."""
    found: dict[Path, str] = {}
    for files in stage_files.values():
        for rel in files:
            parts = Path(rel).parts
            if len(parts) < 2 or parts[0] != "patches":
                continue
            p = config.ROOT / rel
            for f in sorted(p.glob("*.patch")) if p.is_dir() else [p]:
                if f.suffix == ".patch":
                    found[f] = parts[1]
    return dict(sorted(found.items()))


def _file_type(p: Path) -> str:
    with p.open("rb") as f:
        head = f.read(4096)
    if head.startswith(b"\x7fELF") or b"\0" in head:
        return "BINARY"
    return "TEXT"


def _file(p: Path, rel: str, spdx_id: str, license: str = NOASSERTION) -> tuple[dict, str]:
    sha1, sha256 = _digests(p)
    entry = {
        "SPDXID": spdx_id,
        "fileName": f"./{rel}",
        "checksums": _checksums(sha1, sha256),
        "fileTypes": ["SOURCE"] if p.suffix == ".patch" else [_file_type(p)],
        "licenseConcluded": license,
        "licenseInfoInFiles": [license],
        "copyrightText": NOASSERTION,
    }
    return entry, sha1


def _ours() -> dict:
    version = tomllib.loads((config.ROOT / "pyproject.toml").read_text())["project"]["version"]
    pkg = {
        "SPDXID": _id("Package", "chrysopolis"),
        "name": "chrysopolis",
        "versionInfo": version,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": OUR_LICENSE,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "APPLICATION",
        "comment": "the build tool and our own code (runtime, targets, erlang, patches)",
    }
    commit = _git("rev-parse", "HEAD")
    if commit:
        dirty = (
            " with uncommitted changes"
            if _git("status", "--porcelain", "--untracked-files=no")
            else ""
        )
        pkg["sourceInfo"] = f"git commit {commit}{dirty}"
    return pkg


def _host_package(kind: str, name: str, version: str) -> dict:
    purl = (
        f"pkg:deb/debian/{name}@{_purl_version(version)}"
        if kind == "deb"
        else f"pkg:pypi/{re.sub(r'[-_.]+', '-', name).lower()}@{_purl_version(version)}"
    )
    return {
        "SPDXID": _id("Host", kind, name, version),
        "name": name,
        "versionInfo": version,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "APPLICATION",
        "comment": "a host tool the build ran"
        + (" (Debian package)" if kind == "deb" else " (PyPI package)"),
        "externalRefs": [
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl,
            }
        ],
    }


def document(planner: cache.Planner, target: str, build: str = "") -> dict:
    """The SPDX 2.3 document (a JSON-ready dict) of target's built image; `build` is the
    command that builds it (for the error when it is not built)."""
    st = cache.get(target)
    if not st.target:
        raise UserError(
            f"'{target}' is a build stage, not a bootable target; see `chrysopolis build --list`"
        )
    out = planner.out_path(target)
    if not out.is_dir():
        build = build or f"chrysopolis build {target}"
        raise UserError(f"target '{target}' is not built; run `{build}` first")

    stages = _closure(target)
    inputs = {n: _inputs(planner, n) for n in stages}
    root = _ours()
    image_id = _id("Stage", target)
    packages: list[dict] = [root]
    files: list[dict] = []
    rels: list[tuple[str, str, str]] = [
        ("SPDXRef-DOCUMENT", "DESCRIBES", root["SPDXID"]),
        (root["SPDXID"], "GENERATES", image_id),
    ]

    # The image's files: what `build` publishes (the inputs record stays in the cache).
    image_files = sorted(
        p
        for p in out.rglob("*")
        if p.is_file() and p.name not in (cache.INPUTS, cache.MANIFEST) and not p.is_symlink()
    )
    sha1s = []
    for p in image_files:
        rel = p.relative_to(out).as_posix()
        entry, sha1 = _file(p, rel, _id("File", target, rel))
        files.append(entry)
        sha1s.append(sha1)
        rels.append((image_id, "CONTAINS", entry["SPDXID"]))

    for n in stages:
        rec = inputs[n]
        sid = _id("Stage", n)
        pkg = {
            "SPDXID": sid,
            "name": f"{n} image" if n == target else f"stage {n}",
            "versionInfo": planner.key(n)[:20],
            "downloadLocation": "NONE",
            "filesAnalyzed": n == target,
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION,
            "copyrightText": NOASSERTION,
            "primaryPackagePurpose": "OPERATING-SYSTEM" if n == target else "LIBRARY",
            "comment": (cache.get(n).doc or "a Chrysopolis build stage")
            + "; version: the stage's cache key",
        }
        if n == target:
            pkg["hasFiles"] = [f["SPDXID"] for f in files]
            pkg["packageVerificationCode"] = {
                "packageVerificationCodeValue": hashlib.sha1(
                    "".join(sorted(sha1s)).encode()
                ).hexdigest()
            }
        packages.append(pkg)
        rels += [(sid, "DEPENDS_ON", _id("Stage", d)) for d in cache.get(n).deps]
        rels += [(sid, "GENERATED_FROM", _id("Source", s)) for s in sorted(rec["sources"])]

    used = sorted({s for n in stages for s in inputs[n]["sources"]})
    for name in used:
        pkgs, r = _source_packages(planner.lock.source(name))
        packages += pkgs
        rels += r

    for p, folder in _patches({n: cache.get(n).files for n in stages}).items():
        rel = p.relative_to(config.ROOT).as_posix()
        entry, _ = _file(p, rel, _id("Patch", rel.removeprefix("patches/")), _patch_license(p))
        files.append(entry)
        to = _id("Source", folder) if folder in used else image_id
        rels.append((entry["SPDXID"], "PATCH_APPLIED", to))

    hosts: dict[str, dict] = {}
    for n in stages:
        for kind, table in (("deb", "host"), ("pypi", "pypi")):
            for name, version in sorted(inputs[n].get(table, {}).items()):
                h = _host_package(kind, name, str(version))
                hosts.setdefault(h["SPDXID"], h)
                rels.append((h["SPDXID"], "BUILD_TOOL_OF", _id("Stage", n)))
    packages += [hosts[k] for k in sorted(hosts)]

    when, how = created()
    doc = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"chrysopolis-{target}",
        "documentNamespace": "",
        "creationInfo": {
            "created": when,
            "creators": [f"Tool: chrysopolis-{root['versionInfo']}"],
            "comment": f"created: {how}",
        },
        "packages": packages,
        "files": files,
        "relationships": [
            {"spdxElementId": a, "relationshipType": t, "relatedSpdxElement": b}
            for a, t, b in dict.fromkeys(rels)
        ],
    }
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    doc["documentNamespace"] = f"{NAMESPACE}-{target}-{digest}"
    return doc


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"
