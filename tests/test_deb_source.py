# SPDX-License-Identifier: BSD-2-Clause
"""The `deb` source kind: a set of binary .deb files, verified, unpacked into one tree."""

import functools
import http.server
import subprocess
import threading
from pathlib import Path

import pytest

from chrysopolis import lock, sources
from chrysopolis.errors import UserError
from chrysopolis.treehash import file_hash, tree_hash


def make_deb(tmp: Path, name: str, files: dict[str, str]) -> Path:
    """A minimal binary package built with dpkg-deb, holding `files` (path -> text)."""
    root = tmp / f"pkg-{name}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test\n"
    )
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    deb = tmp / f"{name}_1.0_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


@pytest.fixture
def debs(tmp_path):
    """Two .deb files served over HTTP on 127.0.0.1, and the tree they unpack to."""
    www = tmp_path / "www"
    www.mkdir()
    a = make_deb(www, "pkg-a", {"usr/lib/x/lib/a-1/ebin/a.beam": "A"})
    b = make_deb(www, "pkg-b", {"usr/lib/x/lib/b-2/ebin/b.beam": "B", "usr/lib/x/README": "b"})
    expect = tmp_path / "expect"
    expect.mkdir()
    for d in (a, b):
        subprocess.run(["dpkg-deb", "-x", str(d), str(expect)], check=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield {"www": www, "base": base, "files": [a, b], "hash": tree_hash(expect)}
    srv.shutdown()


def deb_source(d, sha256: str | None = None, file_sha: dict[str, str] | None = None) -> lock.Source:
    files = tuple(
        lock.SourceFile(p.name, f"{d['base']}/{p.name}", (file_sha or {}).get(p.name, file_hash(p)))
        for p in d["files"]
    )
    return lock.Source(
        name="demo-debs",
        kind="deb",
        url=d["base"],
        sha256=sha256 or d["hash"],
        version="1.0",
        files=files,
    )


def test_fetch_unpacks_every_deb_into_one_tree(isolated_cache, debs):
    tree = sources.fetch(deb_source(debs))
    assert (tree / "usr/lib/x/lib/a-1/ebin/a.beam").read_text() == "A"
    assert (tree / "usr/lib/x/lib/b-2/ebin/b.beam").read_text() == "B"
    assert tree_hash(tree) == debs["hash"]
    assert sources.present(deb_source(debs))


def test_corrupt_deb_is_refused_before_unpacking(isolated_cache, debs):
    src = deb_source(debs, file_sha={debs["files"][1].name: "0" * 64})
    with pytest.raises(UserError, match="hash mismatch for pkg-b_1.0_all.deb"):
        sources.fetch(src)
    assert not sources.present(src)


def test_tree_hash_mismatch_is_refused(isolated_cache, debs):
    src = deb_source(debs, sha256="f" * 64)
    with pytest.raises(UserError, match="hash mismatch for 'demo-debs'"):
        sources.fetch(src)
    assert not sources.present(src)


def test_import_from_a_directory_of_debs(isolated_cache, debs):
    tree = sources.import_path(deb_source(debs), debs["www"])
    assert tree_hash(tree) == debs["hash"]


def test_lock_requires_files_for_deb_kind(tmp_path):
    p = tmp_path / "lock.toml"
    p.write_text('[source.x]\nkind = "deb"\nurl = "http://h/"\nversion = "1"\nsha256 = "ab"\n')
    with pytest.raises(UserError, match="lists no .deb files"):
        lock.load(p)
    p.write_text(
        p.read_text() + 'files = [{ name = "x.deb", url = "http://h/x.deb", sha256 = "cd" }]\n'
    )
    src = lock.load(p).source("x")
    assert src.kind == "deb" and src.files[0].name == "x.deb"


def test_pinned_otp_debs_entry_parses():
    src = lock.load().source("otp-debs")
    assert src.kind == "deb"
    assert all(f.name.endswith(".deb") and f.url.endswith(f.name) for f in src.files)
