# SPDX-License-Identifier: BSD-2-Clause
"""Your OTP applications as a release on the image (`--app DIR`, chrysopolis/apps.py): the
build-time refusals, the release systools makes, and booting into it."""

import os
import shutil
import sys
import time
from pathlib import Path

import pexpect
import pytest
from conftest import cli

from chrysopolis import apps, checks, config, targets, userdisk

EXAMPLE = config.ROOT / "examples" / "kvstore"


@pytest.fixture(scope="module")
def planner(stack_planner):
    stack_planner.ensure("beam")
    return stack_planner


@pytest.fixture
def app(tmp_path):
    """A copy of examples/kvstore to break, as `kv/` under a fresh directory."""
    d = tmp_path / "kv"
    shutil.copytree(EXAMPLE, d)
    return d


def _build(app: Path, *more: str, cwd: Path | None = None):
    return cli("build", "--app", str(app), *more, cwd=cwd)


def _releases() -> set[str]:
    d = config.cache_dir() / "releases"
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


@pytest.mark.slow
def test_a_syntax_error_is_one_line_with_file_and_line_and_builds_nothing(planner, app):
    src = app / "src" / "kvstore_store.erl"
    lines = src.read_text().splitlines(keepends=True)
    n = next(i for i, ln in enumerate(lines) if ln.startswith("request(Line) ->")) + 1
    lines[n] = lines[n].replace("gen_server:call(", "gen_server:call(( ")
    src.write_text("".join(lines))
    had = _releases()
    r = _build(Path("kv"), cwd=app.parent)
    assert r.returncode == 1, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    want = f"error: kv/src/kvstore_store.erl:{n + 1}: syntax error before:"
    assert errors and errors[0].startswith(want), r.stderr
    assert _releases() == had


@pytest.mark.slow
def test_a_module_the_app_src_names_but_src_lacks_is_refused_at_its_line(planner, app):
    app_src = app / "src" / "kvstore.app.src"
    text = app_src.read_text().replace(
        "{registered,", "{modules, [kvstore_app, kvstore_ghost]},\n    {registered,"
    )
    app_src.write_text(text)
    line = text[: text.index("kvstore_ghost")].count("\n") + 1
    had = _releases()
    r = _build(Path("kv"), cwd=app.parent)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: kv/src/kvstore.app.src:{line}: module kvstore_ghost is in the modules list "
        "but src/ has no kvstore_ghost.erl"
    )
    assert _releases() == had


@pytest.mark.slow
def test_unknown_dependency_missing_start_and_bad_config_are_refused(planner, app, tmp_path):
    app_src = app / "src" / "kvstore.app.src"
    good = app_src.read_text()
    app_src.write_text(good.replace("[kernel, stdlib]", "[kernel, stdlib, cowboy]"))
    r = _build(app)
    assert "kvstore.app.src:6: application cowboy is neither on the disk nor given with --app" in (
        r.stderr
    )
    assert r.returncode == 1
    app_src.write_text(good.replace("{kvstore_app, []}", "{kvstore_sup, []}"))
    r = _build(app)
    assert "kvstore.app.src:7: mod kvstore_sup exports no start/2" in r.stderr, r.stderr
    app_src.write_text(good)
    bad = tmp_path / "sys.config"
    bad.write_text("%% the port\n[{kvstore, [{port 7000}]}].\n")
    r = _build(app, "--config", str(bad))
    assert r.returncode == 1
    assert f"error: {bad}:2: syntax error before: 7000" in r.stderr, r.stderr
    args = tmp_path / "vm.args"
    args.write_text("-boot /elsewhere\n")
    r = _build(app, "--vm-args", str(args))
    assert r.returncode == 1
    assert "-boot is set by the release itself" in r.stderr


@pytest.mark.slow
def test_warnings_are_shown_with_file_and_line(planner, app):
    src = app / "src" / "kvstore_app.erl"
    src.write_text(src.read_text().replace("stop(_State) ->", "stop(State) ->"))
    r = _build(app)
    assert r.returncode == 0, r.stderr
    assert "kvstore_app.erl:9: Warning: variable 'State' is unused" in r.stderr, r.stderr


@pytest.mark.slow
def test_the_release_is_systools_own_and_a_prebuilt_ebin_is_taken_as_is(planner, tmp_path):
    img = targets._image(planner, "beam")
    rel = apps.build(planner, img, [EXAMPLE], EXAMPLE / "config" / "sys.config")
    assert (rel.name, rel.vsn) == ("kvstore", "0.1.0")
    files, _ = userdisk.listing(rel.disk)
    for f in ("start.boot", "start.script", "kvstore.rel", "sys.config"):
        assert f"/releases/0.1.0/{f}" in files
    script = userdisk.read_file(rel.disk, "/releases/0.1.0/start.script").decode()
    assert "{apply,{application,start_boot,[kvstore,permanent]}}" in script  # systools'
    assert '{path,["$ROOT/lib/kvstore-0.1.0/ebin"]}' in script
    args = userdisk.read_file(rel.disk, "/chrysopolis/args").decode().split()
    assert args == [
        *("-boot", "/releases/0.1.0/start", "-config", "/releases/0.1.0/sys"),
        *("-mode", "embedded"),
    ]
    assert userdisk.read_file(rel.disk, "/releases/0.1.0/sys.config") == (
        (EXAMPLE / "config" / "sys.config").read_bytes()
    )
    # The same inputs give the same disk, from the cache.
    assert apps.build(planner, img, [EXAMPLE], EXAMPLE / "config" / "sys.config") == rel
    # Its compiled ebin/ (from any BEAM language: .app and .beam files) as an app directory.
    pre = tmp_path / "shipment" / "kvstore"
    (pre / "ebin").mkdir(parents=True)
    for f in files:
        if f.startswith("/lib/kvstore-0.1.0/ebin/"):
            (pre / "ebin" / Path(f).name).write_bytes(userdisk.read_file(rel.disk, f))
    again = apps.build(planner, img, [pre.parent])
    assert (again.name, again.vsn) == ("kvstore", "0.1.0")
    beam = "/lib/kvstore-0.1.0/ebin/kvstore_store.beam"
    assert userdisk.read_file(again.disk, beam) == userdisk.read_file(rel.disk, beam)


@pytest.mark.slow
def test_app_smoke(planner):
    summary = checks.load_all()["app-smoke"].run(planner)
    assert "restarted the store" in summary and "outlived a reboot" in summary


@pytest.mark.slow
def test_app_badstart(planner):
    summary = checks.load_all()["app-badstart"].run(planner)
    assert summary.startswith("OTP's reason on the console, exit status 1"), summary


@pytest.mark.slow
def test_run_eval_runs_after_the_apps_started_and_vm_args_reach_erts(planner, tmp_path):
    vm = tmp_path / "vm.args"
    vm.write_text("# emulator and init flags\n+P 262144\n-kvstore port 7001\n")
    r = cli(
        "run",
        "--app",
        str(EXAMPLE),
        "--vm-args",
        str(vm),
        "--eval",
        "erlang:system_info(process_limit).",
        "--eval",
        "{application:get_env(kvstore, port), init:get_argument(boot)}.",
        "--eval",
        'kvstore_store:request("KEYS").',
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "262144",
        '{{ok,7001},{ok,[["/releases/0.1.0/start"]]}}',
        '"KEYS"',
    ]
    assert "kvstore: listening on TCP port 7001" in r.stderr


@pytest.mark.slow
def test_a_failed_start_fails_the_run_with_otps_reason(planner):
    r = cli("run", "--app", str(config.ROOT / "examples" / "badstart"), "--eval", "ok.")
    assert r.returncode == 1, (r.returncode, r.stderr)
    # OTP's report of the application that exited, and of the runtime ending
    assert "application: badstart\n    exited: {not_today,{badstart_app,start,[normal,[]]}}" in (
        r.stderr
    ), r.stderr
    assert r.stdout == ""


@pytest.mark.slow
def test_no_shell_boots_the_release_without_the_eshell(planner, tmp_path):
    env = {**os.environ, "CHRYSOPOLIS_OUT": str(tmp_path / "out")}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "chrysopolis", "run", "--app", str(EXAMPLE), "--no-shell"],
        env=env,
        cwd=str(config.ROOT),
        timeout=240,
        dimensions=(24, 100),
    )
    try:
        child.expect(r"release kvstore; .*no shell")
        child.expect(r"kvstore: listening on TCP port 7000")
        t0 = time.monotonic()
        i = child.expect([r"Eshell V", pexpect.TIMEOUT], timeout=8)
        assert i == 1, "the Eshell started under --no-shell"
        assert time.monotonic() - t0 >= 7
    finally:
        child.sendcontrol("a")
        child.send("x")
        child.expect(pexpect.EOF, timeout=30)
    assert (tmp_path / "out" / "beam-kvstore-disk" / "disk.img").is_file()


@pytest.mark.slow
def test_the_apps_data_outlives_runs_and_a_new_build_of_the_app(planner, tmp_path, app):
    env = {**os.environ, "CHRYSOPOLIS_OUT": str(tmp_path / "out")}
    put = 'kvstore_store:request("PUT k v").'
    r = cli("run", "--app", str(app), "--eval", put, "--keep-writes", env=env)
    assert (r.returncode, r.stdout) == (0, '"OK"\n'), r.stderr
    r = cli("disk", "ls", "--release", "kvstore", "/data/kvstore", env=env)
    assert r.stdout.split()[-1] == "/data/kvstore/store.log", r.stdout
    # a one-line change to the app: a new release on the disk, the data kept
    src = app / "src" / "kvstore_app.erl"
    src.write_text(src.read_text().replace("stop(_State) ->", "stop(_) ->"))
    r = cli("run", "--app", str(app), "--eval", 'kvstore_store:request("GET k").', env=env)
    assert (r.returncode, r.stdout) == (0, '"VALUE v"\n'), r.stderr
    assert "kvstore: store up with 1 keys" in r.stderr
    # the plain image's disk is another one
    assert not (tmp_path / "out" / "beam-disk").exists()
