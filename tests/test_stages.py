# SPDX-License-Identifier: BSD-2-Clause
"""The stage cache: keyed by inputs, atomic, logged."""

import pytest

from chrysopolis import cache, logs
from chrysopolis.errors import StageFailed
from chrysopolis.registry import Registry


@pytest.fixture
def registry(isolated_cache, monkeypatch):
    """Test stages in a registry of their own, built in a private cache."""
    reg: Registry[cache.Stage] = Registry("stage", [])
    monkeypatch.setattr(cache, "REGISTRY", reg)
    return reg


def test_build_once_then_cached(registry):
    calls = []

    @cache.stage("leaf", options={"n": 1})
    def leaf(ctx):
        calls.append(1)
        ctx.run(["sh", "-c", "echo built > out.txt"], cwd=ctx.out)

    @cache.stage("top", deps=["leaf"])
    def top(ctx):
        (ctx.out / "sum").write_text((ctx.dep("leaf") / "out.txt").read_text() * 2)

    p = cache.Planner()
    out = p.ensure("top")
    assert (out / "sum").read_text() == "built\nbuilt\n"
    assert calls == [1]
    cache.Planner().ensure("top")
    assert calls == [1], "a cached stage must not rebuild"
    assert "$ sh -c 'echo built > out.txt'" in p.log_path("leaf").read_text()


def test_key_follows_options_and_dependencies(registry):
    @cache.stage("a", options={"v": 1})
    def a(ctx):
        pass

    @cache.stage("b", deps=["a"])
    def b(ctx):
        pass

    k_a, k_b = cache.Planner().key("a"), cache.Planner().key("b")
    registry["a"].options = {"v": 2}
    assert cache.Planner().key("a") != k_a
    assert cache.Planner().key("b") != k_b, "a dependency's change must change the dependent's key"


def test_failed_stage_leaves_nothing_and_keeps_log(registry):
    attempts = []

    @cache.stage("flaky")
    def flaky(ctx):
        attempts.append(1)
        (ctx.out / "half-built").write_text("x")
        ctx.run(["sh", "-c", "echo compiling; echo 'error: boom' >&2; exit 3"])

    p = cache.Planner()
    with pytest.raises(StageFailed) as e:
        p.ensure("flaky")
    assert "exited 3" in str(e.value) and str(p.log_path("flaky")) in str(e.value)
    assert "error: boom" in logs.tail(e.value.log)
    assert not p.out_path("flaky").exists()
    assert [x.name for x in p.out_path("flaky").parent.iterdir() if x.name.startswith(".tmp")] == []
    with pytest.raises(StageFailed):
        p.ensure("flaky")
    assert len(attempts) == 2, "a failed stage is redone by the next build"


def test_interrupted_stage_leaves_nothing(registry):
    state = {"interrupt": True}

    @cache.stage("slow")
    def slow(ctx):
        (ctx.out / "partial").write_text("x")
        if state["interrupt"]:
            raise KeyboardInterrupt

    p = cache.Planner()
    with pytest.raises(KeyboardInterrupt):
        p.ensure("slow")
    assert not p.out_path("slow").exists()
    state["interrupt"] = False
    assert (p.ensure("slow") / "partial").exists()


def test_python_error_in_stage_is_a_stage_failure(registry):
    @cache.stage("buggy")
    def buggy(ctx):
        raise FileNotFoundError("no such file: foo.h")

    with pytest.raises(StageFailed, match="stage 'buggy' failed: FileNotFoundError"):
        cache.Planner().ensure("buggy")


def test_undeclared_inputs_are_refused(registry):
    @cache.stage("sneaky")
    def sneaky(ctx):
        ctx.dep("other")

    with pytest.raises(StageFailed, match="without declaring it"):
        cache.Planner().ensure("sneaky")


def test_unknown_target_lists_targets(registry):
    from chrysopolis.errors import UserError

    @cache.stage("img", target=True)
    def img(ctx):
        pass

    with pytest.raises(UserError, match="unknown target 'nope'; targets: img"):
        cache.get("nope")


def test_missing_source_fails_before_building(registry):
    from chrysopolis.errors import UserError

    ran = []

    @cache.stage("needs-sel4", sources=["sel4"])
    def needs(ctx):
        ran.append(1)

    with pytest.raises(UserError, match="sources import sel4"):
        cache.Planner().ensure("needs-sel4")
    assert ran == []
