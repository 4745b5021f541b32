# SPDX-License-Identifier: BSD-2-Clause
"""Every compiler a stage runs maps the cache's and the checkout's paths out of its output:
the same stage built under two cache paths gives the same bytes."""

import shutil

import pytest

from chrysopolis import buildpaths, cache, config, integrity
from chrysopolis.registry import Registry

C = "const char *where = __FILE__;\nint f(int x) { return x + 1; }\n"
S = ".text\n.global f\nf:\n\tret\n"
COMPILERS = {
    "clang": ["clang-19", "--target=aarch64-linux-gnu", "-g", "-c"],
    "gcc": ["aarch64-linux-gnu-gcc", "-g", "-c"],
    "as": ["aarch64-linux-gnu-as", "-g"],  # libmicrokit's crt0.s: its wrapper drops -g
}


@pytest.fixture
def registry(monkeypatch):
    reg: Registry[cache.Stage] = Registry("stage", [])
    monkeypatch.setattr(cache, "REGISTRY", reg)
    monkeypatch.setattr(integrity, "_intact", set())
    return reg


@pytest.mark.parametrize("compiler", sorted(COMPILERS))
def test_objects_do_not_depend_on_the_cache_path(registry, tmp_path, monkeypatch, compiler):
    if shutil.which(COMPILERS[compiler][0]) is None:
        pytest.skip(f"{COMPILERS[compiler][0]} is missing; run `chrysopolis setup`")

    @cache.stage("obj")
    def obj(ctx):
        src = ctx.work / "src" / ("x.s" if compiler == "as" else "x.c")
        src.parent.mkdir()
        src.write_text(S if compiler == "as" else C)
        ctx.run([*COMPILERS[compiler], src, "-o", ctx.out / "x.o"])

    built = []
    for where in ("one", "a/much/longer/cache/path"):
        monkeypatch.setenv("CHRYSOPOLIS_CACHE", str(tmp_path / where))
        data = (cache.Planner().ensure("obj") / "x.o").read_bytes()
        assert str(tmp_path).encode() not in data
        if compiler != "as":
            assert b"/cache/work/obj/src" in data
        built.append(data)
    assert built[0] == built[1]


def test_the_longer_prefix_wins_when_the_cache_is_inside_the_checkout(monkeypatch):
    monkeypatch.setenv("CHRYSOPOLIS_CACHE", str(config.ROOT / ".cache"))
    flags = buildpaths.clang_flags()
    assert flags[0] == f"-ffile-prefix-map={config.ROOT.resolve() / '.cache'}=/cache"
    assert buildpaths.gcc_flags()[-1] == flags[0]  # GCC: the last match wins
    assert buildpaths.prefix_map_variable().endswith(f"/cache={config.ROOT.resolve() / '.cache'}")
