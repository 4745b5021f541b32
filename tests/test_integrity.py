# SPDX-License-Identifier: BSD-2-Clause
"""Stored sources and stage outputs are checked before each use: an edited, deleted or added
file is refused with the command that restores it; `doctor --verify` rehashes."""

import os
import subprocess
import sys

import pytest

from chrysopolis import cache, integrity, lock, sources
from chrysopolis.errors import UserError
from chrysopolis.registry import Registry
from chrysopolis.treehash import tree_hash

FILES = {"Makefile": "all:\n\ttrue\n", "src/main.c": "int main(void) { return 0; }\n"}


@pytest.fixture
def stored(isolated_cache, tmp_path, monkeypatch):
    """A source imported from a directory into a private store; the process forgets
    which trees it found intact (each test starts as a new process would)."""
    monkeypatch.setattr(integrity, "_intact", set())
    tree = tmp_path / "upstream"
    for rel, text in FILES.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    src = lock.Source(name="demo", kind="git", url="github:x/demo", sha256=tree_hash(tree))
    sources.import_path(src, tree)
    return src, tree


def _refused(src) -> str:
    integrity._intact.clear()  # as a new process
    with pytest.raises(UserError) as e:
        sources.require(src)
    msg = str(e.value)
    assert "\n" not in msg and "sources import demo" in msg
    return msg


def test_an_intact_source_is_used(stored):
    src, _ = stored
    assert sources.require(src) == sources.path_of(src)
    assert sources.damage(src, full=True) is None


def test_an_edited_file_in_the_store_is_refused_then_repaired_by_import(stored):
    src, tree = stored
    main = sources.path_of(src) / "src" / "main.c"
    main.write_text("int main(void) { return 1; }\n")  # same size, new mtime
    assert "src/main.c changed" in _refused(src)
    sources.import_path(src, tree)  # the repair: the verified tree replaces the damaged one
    integrity._intact.clear()
    assert sources.require(src) and main.read_text() == FILES["src/main.c"]
    assert sources.damage(src, full=True) is None


@pytest.mark.parametrize("change", ["delete", "add"])
def test_a_deleted_or_added_file_is_refused(stored, change):
    src, _ = stored
    root = sources.path_of(src)
    if change == "delete":
        (root / "Makefile").unlink()
        assert "Makefile is missing" in _refused(src)
    else:
        (root / "src" / "extra.h").write_text("#define X 1\n")
        assert "src/extra.h was added" in _refused(src)


def test_an_edit_that_keeps_size_and_mtime_is_caught_by_a_full_check(stored):
    src, _ = stored
    main = sources.path_of(src) / "src" / "main.c"
    st = main.stat()
    main.write_text("int main(void) { return 7; }\n")
    os.utime(main, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sources.damage(src) is None  # the cheap check cannot see it
    assert "hashes to" in sources.damage(src, full=True)


def test_a_store_from_before_the_records_is_hashed_once(stored):
    src, _ = stored
    sources.manifest_of(src).unlink()
    assert sources.damage(src) is None and sources.manifest_of(src).is_file()


def test_fetch_replaces_a_damaged_source_from_a_mirror(stored, tmp_path, monkeypatch):
    src, tree = stored
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    commit_src = lock.Source(
        name="demo", kind="archive", url="demo.tar.gz", sha256=src.sha256, archive="demo.tar.gz"
    )
    subprocess.run(["tar", "-czf", mirror / "demo.tar.gz", "-C", tree, "."], check=True)
    monkeypatch.setenv(sources.MIRROR_ENV, str(mirror))
    (sources.path_of(src) / "Makefile").unlink()
    assert sources.fetch(commit_src) == sources.path_of(src)
    assert sources.damage(src, full=True) is None


@pytest.fixture
def registry(isolated_cache, monkeypatch):
    reg: Registry[cache.Stage] = Registry("stage", [])
    monkeypatch.setattr(cache, "REGISTRY", reg)
    monkeypatch.setattr(integrity, "_intact", set())
    return reg


def test_a_stage_output_that_lost_a_file_is_refused_and_rebuilt_on_request(registry):
    built = []

    @cache.stage("libs")
    def libs(ctx):
        built.append(1)
        (ctx.out / "lib").mkdir()
        (ctx.out / "lib" / "libryu.a").write_bytes(b"!<arch>\n")

    p = cache.Planner()
    out = p.ensure("libs")
    assert (out / cache.MANIFEST).is_file() and cache.output_damage(out, full=True) is None
    (out / "lib" / "libryu.a").unlink()
    integrity._intact.clear()
    with pytest.raises(UserError) as e:
        cache.Planner().ensure("libs")
    msg = str(e.value)
    assert "\n" not in msg and "lib/libryu.a is missing" in msg
    assert "chrysopolis build libs --rebuild" in msg
    p = cache.Planner()
    p.discard("libs")
    assert (p.ensure("libs") / "lib" / "libryu.a").is_file() and built == [1, 1]


def test_a_stage_output_edited_in_place_is_caught(registry):
    @cache.stage("blob")
    def blob(ctx):
        (ctx.out / "data").write_bytes(b"x" * 100)

    out = cache.Planner().ensure("blob")
    st = (out / "data").stat()
    (out / "data").write_bytes(b"y" * 100)
    assert "data changed (modified" in cache.output_damage(out)
    os.utime(out / "data", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.output_damage(out) is None
    assert "contents" in cache.output_damage(out, full=True)


def test_doctor_names_the_damaged_entries_and_their_fixes(stored, registry):
    src, _ = stored

    @cache.stage("blob")
    def blob(ctx):
        (ctx.out / "data").write_text("x")

    out = cache.Planner().ensure("blob")
    (out / "data").unlink()
    env = {**os.environ}
    r = subprocess.run(
        [sys.executable, "-m", "chrysopolis", "doctor", "--verify"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert f"✗ blob {out.name}: data is missing" in r.stdout
    assert "fix: chrysopolis build blob --rebuild" in r.stdout
    assert r.returncode != 0 and "changed since they were stored" in r.stderr


def test_the_manifest_records_symlinks_by_target(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a").write_text("a")
    (tmp_path / "t" / "l").symlink_to("a")
    m = tmp_path / "m.json"
    integrity.record(tmp_path / "t", m)
    assert integrity.damage(tmp_path / "t", m, full=True) is None
    (tmp_path / "t" / "l").unlink()
    (tmp_path / "t" / "l").symlink_to("b")
    assert "not the symlink" in integrity.damage(tmp_path / "t", m)


def test_a_stage_running_python_from_a_stored_source_leaves_it_intact(
    isolated_cache, tmp_path, monkeypatch
):
    """seL4's build runs its Python tools from the store: no __pycache__ lands there."""
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    monkeypatch.setattr(integrity, "_intact", set())
    monkeypatch.setattr(cache, "REGISTRY", Registry("stage", []))
    tree = tmp_path / "upstream"
    tree.mkdir()
    (tree / "gen.py").write_text("VALUE = 7\n")
    (tree / "run.py").write_text("import gen\nprint(gen.VALUE)\n")
    src = lock.Source(name="demo", kind="git", url="github:x/demo", sha256=tree_hash(tree))
    sources.import_path(src, tree)
    monkeypatch.setattr(lock.Lock, "source", lambda self, name: src)

    @cache.stage("gen", sources=["demo"])
    def gen(ctx):
        ctx.run([sys.executable, ctx.src("demo") / "run.py"], cwd=ctx.out)

    cache.Planner().ensure("gen")
    assert not (sources.path_of(src) / "__pycache__").exists()
    assert sources.damage(src) is None
