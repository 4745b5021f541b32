# SPDX-License-Identifier: BSD-2-Clause
"""The lock file and the canonical tree hash."""

import os
import subprocess
import tarfile

import pytest
from conftest import cli

from chrysopolis import lock, sources
from chrysopolis.errors import UserError
from chrysopolis.treehash import tree_hash


def make_tree(root, files):
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    return root


def test_repo_lock_pins_every_github_source():
    lk = lock.load()
    for name in ("sel4", "microkit", "lionsos", "sddf", "libmicrokitco"):
        s = lk.source(name)
        assert s.kind == "git" and len(s.commit) == 40 and len(s.sha256) == 64
        assert s.url.startswith("github:")
        assert s.archive_urls() == [
            f"https://github.com/{s.url.removeprefix('github:')}/archive/{s.commit}.tar.gz"
        ]


def test_the_lock_names_no_host():
    """Pins name what a source is; where to fetch it from is configuration (locations.py)."""
    text = lock.lock_path().read_text()
    assert "://" not in text


def test_debian_locations_come_from_apt_or_the_environment(tmp_path, monkeypatch):
    from chrysopolis import locations

    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security/\nSuites: bookworm-security\n"
    )
    (apt / "sources.list").write_text("deb [arch=amd64] http://old.example/debian bookworm main\n")
    monkeypatch.setattr(locations, "APT_SOURCES", apt)
    monkeypatch.delenv(locations.DEBIAN_MIRROR_ENV, raising=False)
    assert locations.urls("debian:pool/main/m/musl/x.dsc") == [
        "http://old.example/debian/pool/main/m/musl/x.dsc",
        "http://mirror.example/debian/pool/main/m/musl/x.dsc",
        "http://mirror.example/debian-security/pool/main/m/musl/x.dsc",
    ]
    monkeypatch.setenv(locations.DEBIAN_MIRROR_ENV, "http://near.example/debian/")
    assert locations.urls("debian:pool/x") == ["http://near.example/debian/pool/x"]
    monkeypatch.setenv(locations.FORGE_ENV, "https://forge.example/")
    assert locations.urls("github:o/r") == ["https://forge.example/o/r"]
    monkeypatch.setattr(locations, "APT_SOURCES", tmp_path / "none")
    monkeypatch.delenv(locations.DEBIAN_MIRROR_ENV)
    with pytest.raises(UserError, match="CHRYSOPOLIS_DEBIAN_MIRROR"):
        locations.urls("debian:pool/x")


def test_locations_given_on_the_command_line_come_first(monkeypatch):
    from chrysopolis import locations

    monkeypatch.setenv(locations.FORGE_ENV, "https://a.example https://b.example/")
    assert locations.urls("github:o/r") == ["https://a.example/o/r", "https://b.example/o/r"]
    monkeypatch.setenv(locations.DEBIAN_MIRROR_ENV, "http://env.example/debian")
    locations.use_locations(("http://cli.example/debian/",), ())
    assert locations.urls("debian:pool/x") == [
        "http://cli.example/debian/pool/x",
        "http://env.example/debian/pool/x",
    ]


def test_a_location_that_is_no_url_is_refused_by_the_command():
    r = cli("sources", "fetch", "musl", "--debian-mirror", "mirror.example/debian")
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0 and "is not a URL" in r.stderr


def test_unknown_source_names_the_known_ones():
    with pytest.raises(UserError, match="unknown source 'nope'; known sources: .*sel4"):
        lock.load().source("nope")


def test_bad_lock_is_one_line_error(tmp_path):
    bad = tmp_path / "lock.toml"
    bad.write_text('[source.x]\nkind = "svn"\nurl = "u"\nsha256 = "0"\n')
    with pytest.raises(UserError, match="kind 'svn'; use one of"):
        lock.load(bad)
    bad.write_text("[source.x\n")
    with pytest.raises(UserError, match="not valid TOML"):
        lock.load(bad)
    bad.write_text('[source.x]\nkind = "git"\nurl = "u"\nsha256 = "0"\n')
    with pytest.raises(UserError, match="has no 'commit'"):
        lock.load(bad)


def test_hash_ignores_mtime_owner_and_umask_but_not_content_or_exec_bit(tmp_path):
    a = make_tree(tmp_path / "a", {"x.c": "int x;\n", "d/y.h": "#pragma once\n"})
    b = make_tree(tmp_path / "b", {"d/y.h": "#pragma once\n", "x.c": "int x;\n"})
    os.utime(b / "x.c", (1, 1))
    os.chmod(b / "d" / "y.h", 0o600)
    assert tree_hash(a) == tree_hash(b)
    (b / "x.c").write_text("int y;\n")
    assert tree_hash(a) != tree_hash(b)
    (b / "x.c").write_text("int x;\n")
    os.chmod(b / "x.c", 0o755)
    assert tree_hash(a) != tree_hash(b)


def test_hash_covers_symlinks_and_skips_dot_git(tmp_path):
    a = make_tree(tmp_path / "a", {"f": "1"})
    h = tree_hash(a)
    (a / ".git").mkdir()
    (a / ".git" / "HEAD").write_text("ref")
    assert tree_hash(a) == h
    (a / "link").symlink_to("f")
    assert tree_hash(a) != h


def test_hash_of_git_archive_equals_hash_of_checkout(tmp_path):
    repo = make_tree(tmp_path / "repo", {"src/a.c": "a", "README": "r"})
    os.chmod(repo / "src" / "a.c", 0o755)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    out = tmp_path / "out"
    out.mkdir()
    arch = subprocess.run([*git, "archive", "HEAD"], capture_output=True, check=True).stdout
    (tmp_path / "a.tar").write_bytes(arch)
    with tarfile.open(tmp_path / "a.tar") as t:
        sources._extract(t, out)  # as an import unpacks it (Python 3.11.2 has no filters)
    assert tree_hash(out) == tree_hash(repo)
