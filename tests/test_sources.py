# SPDX-License-Identifier: BSD-2-Clause
"""The source store: fetch over HTTP (served here), import from directories and git."""

import functools
import http.server
import io
import subprocess
import sys
import tarfile
import threading

import pytest

from chrysopolis import lock, sources
from chrysopolis.errors import UserError
from chrysopolis.treehash import tree_hash

FILES = {"Makefile": "all:\n\ttrue\n", "src/main.c": "int main(void) { return 0; }\n"}


def tarball(files: dict[str, str], top: str = "demo-1.0") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def upstream(tmp_path):
    """A tree, its hash, and a git repository holding it at a known commit."""
    tree = tmp_path / "tree"
    for rel, text in FILES.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["cp", "-r", f"{tree}/.", str(repo)], check=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "v1"], check=True)
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    bare = tmp_path / "mirror.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    return {"tree": tree, "hash": tree_hash(tree), "repo": repo, "bare": bare, "commit": commit}


def source(up, **kw) -> lock.Source:
    base = dict(
        name="demo",
        kind="git",
        url="https://example.invalid/demo",
        sha256=up["hash"],
        commit=up["commit"],
    )
    base.update(kw)
    return lock.Source(**base)


def store_snapshot(cache):
    root = cache / "sources"
    return sorted(p.relative_to(root) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def http_server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1 for the duration of a test."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_fetch_verifies_and_stores(isolated_cache, upstream, http_server):
    www, base = http_server
    (www / "demo.tar.gz").write_bytes(tarball(FILES))
    s = source(upstream, archive=f"{base}/demo.tar.gz")
    path = sources.fetch(s)
    assert path == sources.path_of(s) and sources.present(s)
    assert (path / "src" / "main.c").read_text() == FILES["src/main.c"]
    assert tree_hash(path) == upstream["hash"]


def test_fetch_hash_mismatch_is_refused_and_store_untouched(isolated_cache, upstream, http_server):
    www, base = http_server
    (www / "demo.tar.gz").write_bytes(tarball({**FILES, "evil.sh": "rm -rf /\n"}))
    s = source(upstream, archive=f"{base}/demo.tar.gz")
    before = store_snapshot(isolated_cache)
    with pytest.raises(UserError, match="hash mismatch for 'demo'"):
        sources.fetch(s)
    assert not sources.present(s)
    assert store_snapshot(isolated_cache) == before


def test_fetch_unreachable_url_is_one_line_error(isolated_cache, upstream, http_server):
    _, base = http_server
    with pytest.raises(
        UserError,
        match="cannot download .*missing.tar.gz.*; offline, run `chrysopolis sources import demo PATH`",
    ):
        sources.fetch(source(upstream, archive=f"{base}/missing.tar.gz"))
    assert not sources.present(source(upstream))


@pytest.mark.parametrize("kind", ["tree", "repo", "bare"])
def test_import_directory_checkout_and_bare_mirror(isolated_cache, upstream, kind):
    s = source(upstream)
    path = sources.import_path(s, upstream[kind])
    assert tree_hash(path) == upstream["hash"]
    assert not (path / ".git").exists()


def test_import_missing_commit_names_the_fix(isolated_cache, upstream):
    s = source(upstream, commit="0123456789abcdef0123456789abcdef01234567")
    with pytest.raises(
        UserError, match="does not contain commit 0123456789ab of 'demo'; run `git -C"
    ):
        sources.import_path(s, upstream["bare"])
    assert store_snapshot(isolated_cache) == []
    assert not sources.present(s)


def test_import_wrong_tree_is_refused(isolated_cache, upstream, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("not it")
    s = source(upstream)
    with pytest.raises(UserError, match="hash mismatch"):
        sources.import_path(s, other)
    assert not sources.present(s)
    assert not any(p.name.startswith(".incoming") for p in (isolated_cache / "sources").iterdir())


def test_import_nonexistent_path(isolated_cache, upstream, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        sources.import_path(source(upstream), tmp_path / "nowhere")


def test_require_absent_source_names_import_command(isolated_cache):
    s = lock.load().source("sel4")
    with pytest.raises(UserError, match="chrysopolis sources import sel4 PATH"):
        sources.require(s)


def test_import_reads_the_path_even_when_the_store_has_the_source(
    isolated_cache, upstream, tmp_path
):
    s = source(upstream)
    stored = sources.import_path(s, upstream["tree"])
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("not it")
    with pytest.raises(UserError, match="hash mismatch for 'demo'"):
        sources.import_path(s, other)
    assert sources.present(s) and tree_hash(stored) == upstream["hash"]


def test_cli_import_of_a_path_without_the_pin_fails_when_stored(tmp_path):
    from conftest import require_sources

    require_sources("sel4")
    before = sorted(p.name for p in sources.store_dir().glob("sel4/*"))
    r = subprocess.run(
        [sys.executable, "-m", "chrysopolis", "sources", "import", "sel4", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "hash mismatch for 'sel4'" in r.stderr
    assert "✓" not in r.stderr + r.stdout
    assert sorted(p.name for p in sources.store_dir().glob("sel4/*")) == before


def test_fetch_takes_the_pin_from_a_mirror_first(isolated_cache, upstream, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / f"demo-{upstream['commit']}.tar.gz").write_bytes(tarball(FILES))
    other = tmp_path / "other-mirror"
    other.mkdir()
    monkeypatch.setenv("CHRYSOPOLIS_MIRROR", f"{other}:{mirror}")
    s = source(upstream, archive="http://127.0.0.1:9/unreachable.tar.gz")
    assert tree_hash(sources.fetch(s)) == upstream["hash"]


def test_a_mirror_tarball_with_other_content_is_refused(
    isolated_cache, upstream, tmp_path, monkeypatch
):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / f"demo-{upstream['commit']}.tar.gz").write_bytes(tarball({"other": "x\n"}))
    monkeypatch.setenv("CHRYSOPOLIS_MIRROR", str(mirror))
    with pytest.raises(UserError, match="hash mismatch for 'demo'"):
        sources.fetch(source(upstream))
    assert not sources.present(source(upstream))


def test_a_mirror_that_is_no_directory_is_named(isolated_cache, upstream, tmp_path, monkeypatch):
    monkeypatch.setenv("CHRYSOPOLIS_MIRROR", str(tmp_path / "nowhere"))
    with pytest.raises(
        UserError, match="CHRYSOPOLIS_MIRROR names .*nowhere, which is not a directory"
    ):
        sources.fetch(source(upstream))


def test_a_tarball_member_outside_the_tree_is_refused(isolated_cache, upstream, tmp_path):
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as t:
        data = b"owned\n"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    with pytest.raises(UserError, match="is not a readable tarball .*outside the tree"):
        sources.import_path(source(upstream), bad)
    assert not (tmp_path / "escaped.txt").exists() and not sources.present(source(upstream))


@pytest.mark.parametrize("name", ["otp", "otp-debs"])
def test_a_pinned_debian_file_gone_from_the_archive_names_the_bump_command(
    isolated_cache, http_server, monkeypatch, name
):
    # An archive mirror (served here, empty) that answers 404 as Debian's does for a
    # superseded version.
    _, base = http_server
    monkeypatch.setenv("CHRYSOPOLIS_DEBIAN_MIRROR", base)
    monkeypatch.delenv("CHRYSOPOLIS_MIRROR", raising=False)
    src = lock.load().source(name)
    with pytest.raises(UserError) as e:
        sources.fetch(src)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"source '{name}' {src.version}: the Debian archive no longer serves" in msg
    assert src.files[0].name in msg
    assert f"run `chrysopolis sources bump {name}`" in msg
    assert not sources.present(src)
