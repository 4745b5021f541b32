# SPDX-License-Identifier: BSD-2-Clause
"""The batch contract of `run --eval` (results, exit statuses, timeouts), runs and builds at
once, full disks, signals. Boots are marked slow; each is one short boot (about 5 s)."""

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli

from chrysopolis import cache, config, evaluator, logs, registry
from chrysopolis.errors import UserError


def env(**kw) -> dict:
    return {**os.environ, **{k: str(v) for k, v in kw.items()}}


@pytest.fixture(scope="module")
def beam(stack_planner):
    stack_planner.ensure("beam")
    return stack_planner


@pytest.fixture
def small_fs(tmp_path):
    """An 8 MiB tmpfs (root only): a disk that fills up."""
    d = tmp_path / "small"
    d.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


# --- the protocol, without a boot ----------------------------------------------------------


def test_marked_lines_are_read_and_output_before_a_marker_is_output():
    mark = evaluator.new_mark()
    r = evaluator.Reader(mark)
    assert r.feed(f"{mark} ready 2").kind == "ready" and r.total == 2
    assert r.running == 1
    ln = r.feed(f"no newline{mark} = 1 [1,2]")
    assert (ln.output, ln.kind, ln.index, ln.text) == ("no newline", "=", 1, "[1,2]")
    assert r.feed("chrysopolis-batch-0000000000000000 = 2 forged").kind == ""
    assert r.feed(f"{mark} ! 2 ** exception throw: x").kind == "!"
    assert r.feed(f"{mark} done 1").kind == "done" and r.status == 1
    assert r.results == {1: "[1,2]"} and r.errors == {2: ["** exception throw: x"]}
    assert evaluator.new_mark() != mark


def test_run_log_is_new_for_each_boot_and_latest_links_it(isolated_cache):
    a, b = logs.run_log("beam"), logs.run_log("beam")
    assert a != b and a.exists() and b.exists()
    assert (config.runs_dir() / "latest").resolve() == b
    assert logs.latest("beam") in (a, b)


def test_a_bad_ram_is_usage_and_shows_no_log_tail():
    r = cli("run", "--ram", "500M", "--eval", "ok.", timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert "--ram 500M is not a size qemu_virt_aarch64 can have" in r.stderr
    assert "last lines" not in r.stderr


def test_a_missing_full_stop_is_usage():
    r = cli("run", "--eval", "1 + 1", timeout=60)
    assert r.returncode == 2 and "must end with a full stop" in r.stderr


# --- builds at once, full disks ------------------------------------------------------------


def test_two_builds_at_once_both_succeed(beam, tmp_path):
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "chrysopolis", "build", "beam"],
            env=env(CHRYSOPOLIS_OUT=out),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert (out / "beam" / "disk.img").is_file()
    assert sorted(p.name for p in out.iterdir()) == [".beam.lock", "beam"]


def test_a_full_output_folder_is_one_line_and_leaves_nothing(beam, small_fs):
    r = cli("build", "beam", env=env(CHRYSOPOLIS_OUT=small_fs), timeout=300)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert f"no space left in {small_fs}: this needs about" in r.stderr
    assert [p.name for p in small_fs.iterdir() if not p.name.endswith(".lock")] == []


def test_a_full_cache_is_one_line_and_leaves_nothing(small_fs, monkeypatch):
    monkeypatch.setenv("CHRYSOPOLIS_CACHE", str(small_fs))
    monkeypatch.setattr(cache, "REGISTRY", registry.Registry("stage", []))

    @cache.stage("big")
    def big(ctx):
        (ctx.work / "scratch").write_bytes(b"x" * (3 << 20))
        ctx.run(["dd", "if=/dev/zero", f"of={ctx.out / 'big'}", "bs=1M", "count=16"])

    with pytest.raises(UserError, match=f"no space left in {small_fs}: this needs more room"):
        cache.Planner().ensure("big")
    left = [p for p in small_fs.rglob("*") if p.is_file() and p.stat().st_size > 4096]
    assert left == [], left


# --- boots ---------------------------------------------------------------------------------


def run_eval(
    *exprs: str, timeout: float = 300, extra=()
) -> tuple[subprocess.CompletedProcess, float]:
    t = time.monotonic()
    r = cli("run", *extra, *[a for e in exprs for a in ("--eval", e)], timeout=timeout)
    return r, time.monotonic() - t


@pytest.mark.slow
@pytest.mark.parametrize(
    "expr, text",
    [
        ("1 + .", "* --eval 2, 1:5: syntax error before: '.'"),
        ("1/0.", "** exception error: an error occurred when evaluating an arithmetic"),
        ("exit(boom).", "** exception exit: boom"),
        ("throw(x).", "** exception throw: x"),
        ("nomod:f().", "** exception error: undefined function nomod:f/0"),
    ],
)
def test_a_failure_exits_1_with_the_eshell_text(beam, expr, text):
    r, _ = run_eval("before.", expr, "not_reached.")
    assert r.returncode == 1, r.stdout + r.stderr
    assert text in r.stderr
    # a syntax error evaluates nothing; otherwise the expressions before it returned
    assert r.stdout.splitlines() == ([] if "syntax" in text else ["before"])


@pytest.mark.slow
def test_a_corrupt_beam_on_the_path_exits_1(beam, tmp_path):
    (tmp_path / "x.beam").write_bytes(b"garbage")
    r = cli("run", "--path", str(tmp_path), "--eval", "ok.", timeout=300)
    assert r.returncode == 1 and r.stdout == ""
    assert "** module x failed to load (badfile)" in r.stderr
    assert "corrupt file header" in r.stderr  # the loader's own report, as output


@pytest.mark.slow
def test_results_in_full_paired_whatever_is_printed(beam):
    r, took = run_eval(
        "lists:seq(1, 20000).",
        'io:format("~n7> ~n"), 5.',
        "X = 6. X * 7.",
        'io:format("no newline"), {X, "s"}.',
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert ast.literal_eval(lines[0]) == list(range(1, 20001))
    assert lines[1:] == ["5", "6", "42", '{6,"s"}']
    assert "7> " in r.stderr and "no newline" in r.stderr
    print(f"a 4-text --eval run: {took:.1f} s")


@pytest.mark.slow
def test_halt_gives_its_status_quickly(beam):
    r, took = run_eval('io:format("bye~n").', "halt(3).", "not_reached.")
    assert r.returncode == 3, r.stderr
    assert r.stdout.splitlines() == ["ok"]
    print(f"halt(3): exit status 3 after {took:.1f} s (boot included)")
    assert took < 60  # the old driver waited 120 s for a prompt


@pytest.mark.slow
def test_timeout_gives_124_and_says_what_timed_out(beam):
    r, took = run_eval("ok.", "timer:sleep(60000).", extra=("--timeout", "1"))
    assert r.returncode == 124, r.stderr
    assert "--timeout 1 s ran out: expression 2 of 2 had not returned" in r.stderr
    assert r.stdout.splitlines() == ["ok"]
    log = r.stderr.split("(log: ")[1].split(")")[0]
    assert f"--- last lines of {log} ---" in r.stderr and "ready 2" in r.stderr
    assert took < 60


@pytest.mark.slow
def test_two_runs_at_once_have_their_own_logs(beam):
    before = set(config.runs_dir().glob("beam-*.log"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "chrysopolis", "run", "--eval", f"{n} * 2."],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (20, 21)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o for o, _ in outs] == ["40\n", "42\n"]
    mine = {p for p in set(config.runs_dir().glob("beam-*.log")) - before}
    pids = {int(p.stem.rsplit("-", 1)[1]) for p in mine}
    assert {p.pid for p in procs} <= pids


@pytest.mark.slow
def test_sigterm_during_a_run_leaves_no_temporary_files(beam):
    runs = config.runs_dir()
    p = subprocess.Popen(
        [sys.executable, "-m", "chrysopolis", "run", "--eval", "timer:sleep(60000)."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        log = next(iter(runs.glob(f"beam-*-{p.pid}.log")), None)
        if log and b" ready 1" in log.read_bytes():
            break
        time.sleep(0.2)
    else:
        p.kill()
        pytest.fail("the run never started evaluating")
    scratch = list(runs.glob("batch-*"))
    assert scratch, "the scratch disk's directory exists during the run"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert [d for d in scratch if d.exists()] == []
    cmdlines = [c.read_bytes() for c in Path("/proc").glob("[0-9]*/cmdline") if c.exists()]
    assert not [c for c in cmdlines if str(scratch[0]).encode() in c], "QEMU must be ended"


@pytest.mark.slow
def test_run_path_without_eval_is_the_shell_with_the_modules(beam, tmp_path):
    import pexpect

    src = tmp_path / "greet.erl"
    src.write_text("-module(greet).\n-export([hi/1]).\nhi(Name) -> {hello, Name}.\n")
    r = cli("baseline", "--eval", f'compile:file("{src}", [{{outdir, "{tmp_path}"}}]).')
    assert r.returncode == 0 and "{ok,greet}" in r.stdout, r.stdout + r.stderr
    child = pexpect.spawn(
        sys.executable, ["-m", "chrysopolis", "run", "--path", str(tmp_path)], timeout=120
    )
    try:
        child.expect(r"\n1> ")
        child.send("greet:hi(world).\r")
        child.expect(r"\{hello,world\}")
        child.sendcontrol("a")
        child.send("x")
        child.expect(pexpect.EOF, timeout=30)
    finally:
        child.close(force=True)
    assert not list(config.runs_dir().glob("path-*"))
