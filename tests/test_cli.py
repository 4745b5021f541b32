# SPDX-License-Identifier: BSD-2-Clause
"""The command line as a user meets it: one-line errors, exit codes, nothing changed."""

import subprocess

from conftest import cli


def test_help_lists_the_verbs():
    r = cli("--help")
    assert r.returncode == 0
    for verb in ("setup", "doctor", "sources", "build", "run", "check", "baseline", "fmt"):
        assert f"  {verb}" in r.stdout


def test_unknown_source_is_one_line_error(isolated_cache, tmp_path):
    r = cli("sources", "import", "nope", str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert "unknown source 'nope'; known sources:" in r.stderr
    assert not (isolated_cache / "sources").exists()


def test_import_without_commit_is_refused(isolated_cache, tmp_path):
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    r = cli("sources", "import", "sel4", str(repo))
    assert r.returncode == 1
    assert "does not contain commit 4b97df4c7e24 of 'sel4'" in r.stderr
    assert not list((isolated_cache / "sources").glob("sel4/*"))


def test_sources_list_shows_every_pin(isolated_cache):
    r = cli("sources", "list")
    assert r.returncode == 0
    for name in ("sel4", "microkit", "lionsos", "sddf", "libmicrokitco"):
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(name + " "))
        assert "absent" in line


def test_unknown_target_and_check(isolated_cache):
    r = cli("build", "nope")
    assert r.returncode == 1 and "unknown target 'nope'" in r.stderr
    r = cli("check", "nope")
    assert r.returncode == 1 and "unknown check 'nope'; see `chrysopolis check --list`" in r.stderr


def test_build_list_names_stages(isolated_cache):
    r = cli("build", "--list")
    assert r.returncode == 0, r.stderr


def test_doctor_reports_each_tool():
    r = cli("doctor")
    assert "qemu-system-aarch64" in r.stdout and "sources (store:" in r.stdout
    assert r.returncode in (0, 1)
    if r.returncode == 1:
        assert "run `chrysopolis setup`" in r.stderr


def test_setup_is_idempotent_dry_run():
    r = cli("setup", "--dry-run")
    assert r.returncode == 0
    # On a machine where setup already ran there is nothing left to do.
    if "every pinned host package and Python package is installed" not in r.stdout:
        assert "$ " in r.stdout


def test_doctor_names_the_fix_for_a_missing_package(tmp_path):
    """A package not installed at its pin (here: a pin no machine has) is named with the fix."""
    import os

    from chrysopolis import config

    text = (config.ROOT / "lock.toml").read_text()
    lk = tmp_path / "lock.toml"
    lk.write_text(text.replace('qemu-system-arm = "', 'qemu-system-arm = "0.0-absent~', 1))
    r = cli("doctor", env={**os.environ, "CHRYSOPOLIS_LOCK": str(lk)})
    assert r.returncode == 1
    line = next(ln for ln in r.stdout.splitlines() if "qemu-system-aarch64" in ln)
    assert line.lstrip().startswith("✗") and "qemu-system-arm" in line and "0.0-absent~" in line
    assert "run `chrysopolis setup`" in r.stderr


def test_check_without_sources_names_the_import(isolated_cache):
    r = cli("check", "hello")
    assert r.returncode == 1
    assert "the checks need sources absent from the store: microkit, sel4" in r.stderr
    assert "chrysopolis sources import microkit PATH" in r.stderr
