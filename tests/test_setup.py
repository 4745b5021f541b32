# SPDX-License-Identifier: BSD-2-Clause
"""Set-up as a new user meets it: pinned packages, tools by path, installs, progress on a tty."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest
from conftest import cli

from chrysopolis import cache, config, lock, toolchain

ROOT = config.ROOT


def lock_with(tmp_path: Path, old: str, new: str) -> dict[str, str]:
    """An environment whose lock file is ours with one line changed."""
    text = (ROOT / "lock.toml").read_text()
    assert old in text
    p = tmp_path / "lock.toml"
    p.write_text(text.replace(old, new))
    return {**os.environ, "CHRYSOPOLIS_LOCK": str(p)}


def copy_checkout(dest: Path, *paths: str) -> Path:
    """The checkout's tracked and untracked (not ignored) files under `paths` (all: none)."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "-co", "--exclude-standard", "--", *paths],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    return dest


def test_every_package_the_build_needs_is_pinned():
    lk = lock.load()
    assert set(toolchain.packages()) <= set(lk.host_debian)
    assert "libxml2-utils" in toolchain.packages()  # seL4's tools/xmllint.sh


def test_setup_decides_by_package_version_not_by_path(tmp_path):
    """A package not at its pin is installed at the pin, whatever commands PATH has."""
    pin = lock.load().host_debian["cargo-web"]
    env = lock_with(tmp_path, f'cargo-web = "{pin}"', 'cargo-web = "0.0-not-this"')
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "cargo").write_text("#!/bin/sh\necho rustup cargo\n")
    (shim / "cargo").chmod(0o755)
    env["PATH"] = f"{shim}:{env['PATH']}"
    r = cli("setup", "--dry-run", env=env)
    assert r.returncode == 0, r.stderr
    assert "cargo-web=0.0-not-this" in r.stdout
    assert "apt-get install" in r.stdout
    r = cli("doctor", env=env)
    line = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith(("✓ cargo", "✗ cargo")))
    assert "✗" in line and "lock has 0.0-not-this" in line and "fix: chrysopolis setup" in line
    assert str(shim) not in r.stdout, "doctor must report the cargo the build runs"
    assert r.returncode == 1 and "run `chrysopolis setup`" in r.stderr


def test_build_runs_tools_from_the_system_not_the_users_path(tmp_path, monkeypatch):
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "cmake").write_text("#!/bin/sh\nexit 99\n")
    (shim / "cmake").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    path = toolchain.env()["PATH"].split(":")
    assert str(shim) not in path
    assert path[0] == str(Path(sys.executable).parent)  # seL4's CMake imports our Python packages
    if toolchain.find("cmake"):
        assert toolchain.path("cmake") == shutil.which("cmake", path=toolchain.SYSTEM_PATH)


def test_unpinned_package_is_named(tmp_path):
    pin = lock.load().host_debian["libxml2-utils"]
    env = lock_with(tmp_path, f'libxml2-utils = "{pin}"\n', "")
    r = cli("setup", "--dry-run", env=env)
    assert r.returncode == 1
    assert "no [host.debian] pin for libxml2-utils; add their versions" in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_quickstart_refuses_unknown_options():
    r = subprocess.run(
        [str(ROOT / "quickstart"), "--bogus"], capture_output=True, text=True, timeout=30
    )
    assert r.returncode != 0
    assert r.stderr.strip() == (
        "quickstart: error: unknown option '--bogus'; use --no-build or --mirror DIR"
    )


def test_download_progress_on_a_terminal(tmp_path, isolated_cache):
    """The first real download on a tty: one live display (rich refuses a second)."""
    import functools
    import http.server
    import threading

    from test_sources import FILES, tarball

    from chrysopolis.treehash import tree_hash

    www = tmp_path / "www"
    www.mkdir()
    (www / "demo.tar.gz").write_bytes(tarball(FILES))
    tree = tmp_path / "tree"
    for rel, text in FILES.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/demo.tar.gz"
        (tmp_path / "lock.toml").write_text(
            f'[source.demo]\nkind = "archive"\nurl = "{url}"\nversion = "1.0"\n'
            f'sha256 = "{tree_hash(tree)}"\n'
        )
        env = {**os.environ, "CHRYSOPOLIS_LOCK": str(tmp_path / "lock.toml"), "TERM": "xterm"}
        child = pexpect.spawn(
            sys.executable,
            ["-m", "chrysopolis", "sources", "fetch", "demo"],
            env=env,
            timeout=60,
            dimensions=(24, 120),
        )
        out = child.read().decode(errors="replace")
        child.close()
    finally:
        srv.shutdown()
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)  # the terminal's colours
    assert "LiveError" not in out and "Traceback" not in out, out
    assert child.exitstatus == 0, out
    assert "✓ fetch demo 1.0" in out


@pytest.mark.slow
def test_non_editable_install_works_outside_the_checkout(tmp_path, isolated_cache):
    src = copy_checkout(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    r = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", str(src)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    shutil.rmtree(src)  # nothing may be read from the tree it was installed from
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run(
        [venv / "bin" / "chrysopolis", "build", "--list"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert any(ln.startswith("beam ") and " target " in ln for ln in r.stdout.splitlines())
    r = subprocess.run(
        [venv / "bin" / "chrysopolis", "sources", "list"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
    )
    assert r.returncode == 0 and "sel4" in r.stdout, r.stderr


def test_stage_key_covers_the_modules_whose_values_reach_it(tmp_path):
    """Editing boards.py (its CPU goes into -mcpu) must rebuild the SDK and what uses it."""
    copy = copy_checkout(
        tmp_path / "checkout", "chrysopolis", "lock.toml", "patches", "targets", "runtime"
    )
    probe = (
        "from chrysopolis import cache; p = cache.Planner(); "
        "print(p.key('sdk'), p.key('hello'), p.key('musl'), p.is_built('sdk'))"
    )

    def keys():
        r = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            cwd=copy,
            env={**os.environ, "PYTHONPATH": str(copy)},
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    before = keys()
    assert before[:3] == [cache.Planner().key(n) for n in ("sdk", "hello", "musl")]
    boards = copy / "chrysopolis" / "boards.py"
    text = boards.read_text()
    assert text.count('"cortex-a53",') >= 1
    boards.write_text(text.replace('"cortex-a53",', '"cortex-a72",', 1))
    after = keys()
    assert after[0] != before[0] and after[1] != before[1], "sdk and hello must rebuild"
    assert after[2] == before[2], "musl does not read boards.py"
    assert after[3] == "False"


def test_run_eval_on_a_target_without_a_shell_is_refused_at_once():
    t0 = time.monotonic()
    r = cli("run", "hello", "--eval", "1 + 1.", timeout=60)
    assert r.returncode == 2  # bad usage
    assert "target 'hello' has no Erlang shell" in r.stderr and "beam" in r.stderr
    assert time.monotonic() - t0 < 20


def test_unimplemented_syscalls_fail_checks_unless_listed(tmp_path, monkeypatch):
    from chrysopolis.errors import UserError
    from chrysopolis.targets import beam

    log = tmp_path / "serial.log"
    log.write_bytes(b"Eshell V17.1\r\nPOSIX|ERROR: Unimplemented syscall number: 999\r\n1> ")
    with pytest.raises(UserError, match="syscall 999, which nothing answers"):
        beam._no_fatal_lines(log)
    monkeypatch.setitem(beam.UNANSWERED_SYSCALLS, 999, "a test's reason")
    beam._no_fatal_lines(log)
    log.write_bytes(log.read_bytes() + b"\r\nMON|ERROR: received a fault\r\n")
    with pytest.raises(UserError, match="error line: 'MON|ERROR"):
        beam._no_fatal_lines(log)


def test_fatal_lines_are_whole_words():
    from chrysopolis import checks

    assert checks.fatal_line(b"the default clause matched\r\nassert ok\r\n") is None
    assert checks.fatal_line(b"ok\r\nvm fault on data at address 0x0\r\n") == (
        "vm fault on data at address 0x0"
    )
    assert "Failed assertion" in checks.fatal_line(b"Failed assertion 'x' at a.c:1\n")
