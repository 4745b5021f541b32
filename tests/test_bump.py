# SPDX-License-Identifier: BSD-2-Clause
"""`sources bump`: a real (tiny) Debian archive served on 127.0.0.1, and local git repositories.

The archive is what Debian's is, small: source packages built with dpkg-source, .debs with
dpkg-deb, and dists/SUITE/main/{source/Sources,binary-ARCH/Packages}.xz in deb822 with the
files' real sizes and sha256s. No other network.
"""

import functools
import http.server
import lzma
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from chrysopolis.treehash import file_hash, tree_hash
from tests.conftest import cli

PKG = "hello-chr"
OLD, NEW = "1.9-1", "1.10-1"  # 1.10 > 1.9 in Debian's order, not in a string's
POOL = f"pool/main/h/{PKG}"
SUITE = "trixie"


def source_package(work: Path, version: str) -> list[Path]:
    """A 3.0 (quilt) source package with one Debian patch, built by dpkg-source -b."""
    upstream = version.split("-")[0]
    top = work / f"{PKG}-{upstream}"
    top.mkdir(parents=True)
    (top / "main.c").write_text(f'const char *v = "{upstream}";\n')
    (top / "Makefile").write_text("all:\n\ttrue\n")
    subprocess.run(["tar", "czf", f"{PKG}_{upstream}.orig.tar.gz", top.name], cwd=work, check=True)
    deb = top / "debian"
    (deb / "source").mkdir(parents=True)
    (deb / "patches").mkdir()
    (deb / "source" / "format").write_text("3.0 (quilt)\n")
    (deb / "control").write_text(
        f"Source: {PKG}\nMaintainer: T <t@t>\nSection: misc\nPriority: optional\n\n"
        f"Package: {PKG}\nArchitecture: all\nDescription: test\n test\n"
    )
    (deb / "changelog").write_text(
        f"{PKG} ({version}) unstable; urgency=medium\n\n  * Test.\n\n"
        " -- T <t@t>  Thu, 01 Jan 2026 00:00:00 +0000\n"
    )
    (deb / "patches" / "fix.patch").write_text(
        f'--- a/main.c\n+++ b/main.c\n@@ -1 +1 @@\n-const char *v = "{upstream}";\n'
        f'+const char *v = "{upstream} patched";\n'
    )
    (deb / "patches" / "series").write_text("fix.patch\n")
    subprocess.run(["dpkg-source", "-b", top.name], cwd=work, check=True, capture_output=True)
    shutil.rmtree(top)
    names = [f"{PKG}_{version}.dsc", f"{PKG}_{upstream}.orig.tar.gz"]
    names.append(f"{PKG}_{version}.debian.tar.xz")
    return [work / n for n in names]


def sources_paragraph(files: list[Path], version: str) -> str:
    """The entry of Sources for one version, as Debian's archive writes it."""
    rows = "".join(f" {file_hash(f)} {f.stat().st_size} {f.name}\n" for f in files)
    return (
        f"Package: {PKG}\nBinary: {PKG}\nVersion: {version}\nMaintainer: T <t@t>\n"
        f"Architecture: all\nFormat: 3.0 (quilt)\nChecksums-Sha256:\n{rows}"
        f"Directory: {POOL}\nPriority: optional\nSection: misc\n"
    )


def make_deb(work: Path, name: str, version: str, text: str) -> Path:
    root = work / f"root-{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: t <t@t>\n"
        "Description: test\n"
    )
    (root / "usr/share" / name).mkdir(parents=True)
    (root / "usr/share" / name / "VERSION").write_text(text)
    deb = work / f"{name}_{version.split(':')[-1]}_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True)
    shutil.rmtree(root)
    return deb


def entry(name: str, version: str, sha: str, files: list[Path], pool: str, kind: str) -> str:
    """A lock entry; a file's location is POOL/NAME, or its own pool path if POOL is ''."""

    def where(f: Path) -> str:
        return f"{pool}/{f.name}" if pool else str(f)[str(f).index("/pool/") + 1 :]

    rows = "".join(
        f'  {{ name = "{f.name}", url = "debian:{where(f)}", sha256 = "{file_hash(f)}" }},\n'
        for f in files
    )
    return (
        f'[source.{name}]\nkind = "{kind}"\nurl = "debian:{pool or "pool/main"}/"\n'
        f'version = "{version}"\nsuite = "{SUITE}"\nsha256 = "{sha}"\n'
        f'note = "a test pin"  # a comment inside the entry\nfiles = [\n{rows}]\n'
    )


def unpacked_dsc(dsc: Path, dest: Path) -> str:
    subprocess.run(["dpkg-source", "--no-check", "-x", str(dsc), str(dest)], check=True)
    return tree_hash(dest)


@pytest.fixture
def archive(tmp_path, monkeypatch):
    """The served archive, a lock file pinning its old versions, and an isolated cache."""
    www = tmp_path / "www" / "debian"
    pool = www / POOL
    pool.mkdir(parents=True)
    old = source_package(tmp_path / "old", OLD)
    new = source_package(tmp_path / "new", NEW)
    for f in old + new:
        shutil.copy(f, pool)
    # Newest first: the pick is by version order, not by position.
    text = "\n".join([sources_paragraph(new, NEW), sources_paragraph(old, OLD)])
    other = f"Package: {PKG}-doc\nVersion: 9.9-1\nDirectory: {POOL}\nChecksums-Sha256:\n"
    index = www / "dists" / SUITE / "main" / "source"
    index.mkdir(parents=True)
    (index / "Sources.xz").write_bytes(lzma.compress((other + "\n" + text).encode()))

    debpool = www / "pool/main/t/tiny"
    debpool.mkdir(parents=True)
    debs = {v: make_deb(debpool, "tiny", v, f"tiny {v}\n") for v in ("1.0-1", "1.0-2")}
    (www / "pool/main/o/other").mkdir(parents=True)
    other_deb = make_deb(www / "pool/main/o/other", "other", "3:2.0-1", "other\n")
    packages = ""
    for pkg, v, d in [*(("tiny", v, d) for v, d in debs.items()), ("other", "3:2.0-1", other_deb)]:
        packages += (
            f"Package: {pkg}\nVersion: {v}\nArchitecture: amd64\nMaintainer: t <t@t>\n"
            f"Filename: {str(d)[str(d).index('/pool/') + 1 :]}\nSize: {d.stat().st_size}\n"
            f"SHA256: {file_hash(d)}\nDescription: test\n\n"
        )
    binary = www / "dists" / SUITE / "main" / "binary-amd64"
    binary.mkdir(parents=True)
    (binary / "Packages.xz").write_bytes(lzma.compress(packages.encode()))
    old_deb_tree = tmp_path / "tiny-old"
    subprocess.run(["dpkg-deb", "-x", str(debs["1.0-1"]), str(old_deb_tree)], check=True)
    old_set_tree = tmp_path / "set-old"
    for d in (debs["1.0-1"], other_deb):
        subprocess.run(["dpkg-deb", "-x", str(d), str(old_set_tree)], check=True)

    handler = functools.partial(Quiet, directory=str(tmp_path / "www"))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    repo = git_repo(tmp_path / "repo")
    lock_text = (
        "# SPDX-License-Identifier: BSD-2-Clause\n# A small lock: its comments must survive.\n\n"
        "[source.demo]\nkind = \"git\"\nurl = \"github:example/demo\"\nref = \"main\"  # a branch\n"
        f'commit = "{repo["commits"][0]}"\nsha256 = "{repo["hashes"][0]}"\n\n'
        "# Debian's, from trixie.\n"
        + entry("hello", OLD, unpacked_dsc(old[0], tmp_path / "x-old"), old, POOL, "debian")
        + "\n"
        + entry(
            "tiny", "1.0-1", tree_hash(old_deb_tree), [debs["1.0-1"]], "pool/main/t/tiny", "deb"
        )
        + "\n# Several packages of one suite, pinned by the suite's name.\n"
        + entry("runtime", SUITE, tree_hash(old_set_tree), [debs["1.0-1"], other_deb], "", "deb")
        + '\n# Host packages.\n[host.pypi]\nclick = "8.1.7"  # the CLI\n'
    )
    lock = tmp_path / "lock.toml"
    lock.write_text(lock_text)
    env = {
        **os.environ,
        "CHRYSOPOLIS_DEBIAN_MIRROR": f"http://127.0.0.1:{srv.server_address[1]}/debian",
        "CHRYSOPOLIS_LOCK": str(lock),
        "CHRYSOPOLIS_CACHE": str(tmp_path / "cache"),
        "CHRYSOPOLIS_FORGE": "http://127.0.0.1:9/nowhere",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    env.pop("CHRYSOPOLIS_MIRROR", None)
    for k in ("CHRYSOPOLIS_LOCK", "CHRYSOPOLIS_CACHE", "CHRYSOPOLIS_DEBIAN_MIRROR"):
        monkeypatch.setenv(k, env[k])
    yield {
        "lock": lock,
        "text": lock_text,
        "env": env,
        "pool": pool,
        "old": old,
        "new": new,
        "debs": debs,
        "other": other_deb,
        "repo": repo,
        "tmp": tmp_path,
    }
    srv.shutdown()


def git_repo(path: Path) -> dict:
    """A repository with two commits on main, and the tree hash of each."""
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    commits, hashes = [], []
    for i, text in enumerate(["one\n", "two\n"]):
        (path / "README").write_text(text)
        (path / "src").mkdir(exist_ok=True)
        (path / "src" / f"f{i}.c").write_text(f"int f{i};\n")
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", f"c{i}"], check=True)
        commits.append(
            subprocess.run(
                [*git, "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip()
        )
        hashes.append(tree_hash(path))
    subprocess.run([*git, "tag", "v1", commits[0]], check=True)
    return {"path": path, "commits": commits, "hashes": hashes}


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def error_line(r) -> str:
    """The one `error:` line of a failed command (the progress lines above it aside)."""
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def sections(text: str) -> dict[str, str]:
    """The lock's text cut at each table header: header -> its text, comments included."""
    out, key = {"": ""}, ""
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            key = line.strip()
            out[key] = ""
        out[key] += line
    return out


def test_bump_moves_a_debian_source_to_the_newest_version_and_keeps_the_rest(archive):
    r = cli("sources", "bump", "hello", env=archive["env"])
    assert r.returncode == 0, r.stderr
    assert f"hello.version: {OLD} -> {NEW}" in r.stdout
    assert "hello.sha256: " in r.stdout and "rebuild" in r.stdout

    after = archive["lock"].read_text()
    before_s, after_s = sections(archive["text"]), sections(after)
    assert list(before_s) == list(after_s)  # order
    for k in before_s:
        if k != "[source.hello]":
            assert after_s[k] == before_s[k], k  # other entries and comments byte for byte
    h = after_s["[source.hello]"]
    assert f'version = "{NEW}"' in h and 'note = "a test pin"  # a comment inside the entry' in h
    assert "# Debian's, from trixie." in after and "# A small lock" in after
    for f in archive["new"]:
        assert (
            f'{{ name = "{f.name}", url = "debian:{POOL}/{f.name}", sha256 = "{file_hash(f)}" }}'
            in h
        )
    want = unpacked_dsc(archive["new"][0], archive["tmp"] / "x-new")
    assert f'sha256 = "{want}"' in h

    # The new pin is fetchable from the archive, from nothing.
    shutil.rmtree(archive["tmp"] / "cache")
    r = cli("sources", "fetch", "hello", env=archive["env"])
    assert r.returncode == 0, r.stderr
    assert (archive["tmp"] / "cache/sources/hello" / want / "main.c").read_text() == (
        'const char *v = "1.10 patched";\n'
    )

    # Newest already: nothing changes.
    r = cli("sources", "bump", "hello", env=archive["env"])
    assert r.returncode == 0 and "already at the newest" in r.stdout
    assert archive["lock"].read_text() == after


def test_a_stale_pin_names_the_bump_command_which_moves_it(archive):
    for f in archive["old"]:
        if f.name != f"{PKG}_1.9.orig.tar.gz":
            (archive["pool"] / f.name).unlink()
    r = cli("sources", "fetch", "hello", env=archive["env"])
    assert r.returncode != 0
    err = error_line(r)
    assert f"source 'hello' {OLD}: the Debian archive no longer serves {PKG}_{OLD}.dsc" in err
    assert "run `chrysopolis sources bump hello`" in err
    r = cli("sources", "bump", "hello", env=archive["env"])
    assert r.returncode == 0, r.stderr
    r = cli("sources", "fetch", "hello", env=archive["env"])
    assert r.returncode == 0, r.stderr


def test_bad_input_changes_nothing(archive):
    r = cli("sources", "bump", "hello", "2.0-1", env=archive["env"])
    assert r.returncode != 0
    assert error_line(r).startswith(f"error: trixie's index has no {PKG} version 2.0-1")
    assert f"trixie's index has no {PKG} version 2.0-1; it carries {NEW}, {OLD}" in r.stderr
    r = cli("sources", "bump", "nosuch", env=archive["env"])
    assert (
        r.returncode != 0
        and "unknown source 'nosuch'; known sources: demo, hello, runtime, tiny" in r.stderr
    )
    (archive["tmp"] / "plain").mkdir()
    r = cli("sources", "bump", "demo", "--from", str(archive["tmp"] / "plain"), env=archive["env"])
    assert r.returncode != 0 and "is not a git repository; give --from" in r.stderr
    r = cli(
        "sources",
        "bump",
        "demo",
        "nosuchtag",
        "--from",
        str(archive["repo"]["path"]),
        env=archive["env"],
    )
    assert r.returncode != 0 and "has no branch, tag or commit 'nosuchtag'" in r.stderr
    assert archive["lock"].read_text() == archive["text"]
    assert not (archive["tmp"] / "cache/sources/demo").exists()


def test_bump_to_a_given_version(archive):
    r = cli("sources", "bump", "hello", OLD, env=archive["env"])
    assert r.returncode == 0 and f"already at {OLD}" in r.stdout
    assert archive["lock"].read_text() == archive["text"]


def test_bump_a_git_source_from_a_local_repository(archive):
    repo = archive["repo"]
    r = cli("sources", "bump", "demo", "--from", str(repo["path"]), env=archive["env"])
    assert r.returncode == 0, r.stderr
    assert f"demo.commit: {repo['commits'][0]} -> {repo['commits'][1]}" in r.stdout
    after = sections(archive["lock"].read_text())
    want = sections(
        archive["text"]
        .replace(repo["commits"][0], repo["commits"][1])
        .replace(repo["hashes"][0], repo["hashes"][1])
    )
    assert after == want  # `ref = "main"  # a branch` and all else kept
    assert (archive["tmp"] / "cache/sources/demo" / repo["hashes"][1] / "src/f1.c").is_file()

    # A tag moves the pin back, and the ref with it; a bare mirror serves as well as a checkout.
    bare = archive["tmp"] / "mirror.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo["path"]), str(bare)], check=True)
    r = cli("sources", "bump", "demo", "v1", "--from", str(bare), env=archive["env"])
    assert r.returncode == 0, r.stderr
    assert "demo.ref: main -> v1" in r.stdout
    text = archive["lock"].read_text()
    assert f'commit = "{repo["commits"][0]}"' in text and 'ref = "v1"  # a branch' in text

    # Without --from: the forge ($CHRYSOPOLIS_FORGE, here a file:// URL), fetched into a
    # temporary repository as from any remote.
    forge = archive["tmp"] / "forge"
    (forge / "example").mkdir(parents=True)
    bare.rename(forge / "example" / "demo")
    env = {**archive["env"], "CHRYSOPOLIS_FORGE": f"file://{forge}"}
    r = cli("sources", "bump", "demo", "main", env=env)
    assert r.returncode == 0, r.stderr
    assert f"demo.commit: {repo['commits'][0]} -> {repo['commits'][1]}" in r.stdout
    assert sections(archive["lock"].read_text()) == want


def test_bump_a_deb_source(archive):
    r = cli("sources", "bump", "tiny", env=archive["env"])
    assert r.returncode == 0, r.stderr
    assert "tiny.version: 1.0-1 -> 1.0-2" in r.stdout
    new = archive["debs"]["1.0-2"]
    tree = archive["tmp"] / "tiny-new"
    subprocess.run(["dpkg-deb", "-x", str(new), str(tree)], check=True)
    h = sections(archive["lock"].read_text())["[source.tiny]"]
    assert f'sha256 = "{tree_hash(tree)}"' in h
    assert f'url = "debian:pool/main/t/tiny/{new.name}", sha256 = "{file_hash(new)}"' in h
    shutil.rmtree(archive["tmp"] / "cache")
    r = cli("sources", "fetch", "tiny", env=archive["env"])
    assert r.returncode == 0, r.stderr


def test_bump_a_set_of_debs_pinned_by_its_suite(archive):
    r = cli("sources", "bump", "runtime", env=archive["env"])
    assert r.returncode == 0, r.stderr
    assert "runtime.version" not in r.stdout and "runtime.url" not in r.stdout
    assert "runtime.files: tiny_1.0-1_amd64.deb other_2.0-1_amd64.deb -> " in r.stdout
    tree = archive["tmp"] / "set-new"
    for d in (archive["debs"]["1.0-2"], archive["other"]):
        subprocess.run(["dpkg-deb", "-x", str(d), str(tree)], check=True)
    h = sections(archive["lock"].read_text())["[source.runtime]"]
    assert f'version = "{SUITE}"' in h and f'sha256 = "{tree_hash(tree)}"' in h
    assert 'url = "debian:pool/main/o/other/other_2.0-1_amd64.deb"' in h
    assert 'url = "debian:pool/main/t/tiny/tiny_1.0-2_amd64.deb"' in h
    r = cli("sources", "bump", "runtime", "1.0-2", env=archive["env"])
    assert r.returncode != 0
    assert "has no other (amd64) 1.0-2; it carries 3:2.0-1" in error_line(r)
