# SPDX-License-Identifier: BSD-2-Clause
"""The supervisor PD in the beam image: fault injection only where asked for, and the
recovery checks (chrysopolis/targets/beam_recovery.py)."""

import re

import pytest
from conftest import cli

from chrysopolis import cache, checks, system

# What injection adds: its tick PD and channel in the system, its code and lines in the ELF.
INJECT_WORDS = (b"inject", b"crash")


def _strings(path) -> list[bytes]:
    """Printable runs of 4 bytes or more, as strings(1) lists them."""
    return [s.lower() for s in re.findall(rb"[\x20-\x7e]{4,}", path.read_bytes())]


def _traces(out) -> list:
    text = (out / "chrysopolis.system").read_text()
    found = [w for w in (system.INJECT_PD, f'id="{system.INJECT_CHANNEL}"') if w in text]
    strings = _strings(out / system.SUPERVISOR_ELF)
    return found + [w for w in INJECT_WORDS if any(w in s for s in strings)]


def test_default_image_has_no_fault_injection(stack_planner):
    assert _traces(stack_planner.ensure("beam")) == []


@pytest.mark.slow
def test_an_injection_image_has_it(stack_planner):
    planner = cache.Planner(options={"beam": {"fault_inject": "timer_driver:1000"}})
    got = _traces(planner.ensure("beam"))
    assert set(got) == {system.INJECT_PD, f'id="{system.INJECT_CHANNEL}"', *INJECT_WORDS}


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "timer-recovery",
        "serial-recovery",
        "blk-recovery",
        "fat-recovery",
        "net-recovery",
        "recovery-giveup",
        "recovery-poweroff",
        "beam-restart",
    ],
)
def test_check(stack_planner, name):
    assert checks.load_all()[name].run(stack_planner)


@pytest.mark.slow
def test_erlang_sees_the_supervised_pds_and_asks_for_a_restart(stack_planner):
    stack_planner.ensure("beam")
    r = cli(
        "run",
        "--eval",
        "[{N, S, P, I, T, G, R} || #{name := N, state := S, restart := P, intensity := I, "
        "period := T, on_giveup := G, restarts := R} <- chrysopolis:pds()].",
        "--eval",
        "chrysopolis:subscribe(), timer:sleep(300), chrysopolis:restart(serial_virt_rx).",
        "--eval",
        "[receive {chrysopolis, #{pd := P, event := E}} -> {P, E} after 3000 -> none end "
        "|| _ <- [1, 2]].",
        "--eval",
        "[{N, R} || #{name := N, restarts := R} <- chrysopolis:pds()].",
        "--eval",
        "chrysopolis:restart(no_such_pd).",
        "--eval",
        "chrysopolis:restart(beam_server).",
    )
    assert r.returncode == 0, r.stderr
    default = {n: "permanent,3,5000,stop,0}" for n in system.SUPERVISED}
    default["beam_server"] = "transient,3,60000,poweroff,0}"
    default["timer_driver"] = "permanent,3,5000,poweroff,0}"
    table = ",".join(f"{{{n},running,{default[n]}" for n in system.SUPERVISED)
    restarts = ",".join(f"{{{n},{int(n == 'serial_virt_rx')}}}" for n in system.SUPERVISED)
    assert r.stdout.splitlines() == [
        f"[{table}]",
        "ok",
        "[{serial_virt_rx,restart},{serial_virt_rx,up}]",
        f"[{restarts}]",
        "{error,unknown}",
        "{error,not_allowed}",
    ]
    assert re.search(r"SUP\|up pd=serial_virt_rx gen=2", r.stderr)
    # and logger reported both events
    assert "chrysopolis: serial_virt_rx up" in r.stderr


@pytest.mark.slow
def test_a_batch_ends_with_its_status_and_no_restart(stack_planner):
    """`run --eval` boots with restarts off: an abort ends the run with 134, as on Linux."""
    stack_planner.ensure("beam")
    r = cli("run", "--eval", "erlang:halt(abort).")
    assert r.returncode == 134, r.stderr
    assert "SUP|" not in r.stderr


def test_a_bad_supervise_flag_is_refused_in_one_line_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("CHRYSOPOLIS_OUT", str(tmp_path / "out"))
    for cmd in ("build", "run", "check"):
        r = cli(cmd, "--supervise", "timer_driver:forever:3:5000:stop")
        assert r.returncode != 0
        (line,) = r.stderr.strip().splitlines()
        assert "restart is one of permanent" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_supervise_flag_reaches_the_image(stack_planner, tmp_path, monkeypatch):
    monkeypatch.setenv("CHRYSOPOLIS_OUT", str(tmp_path / "out"))
    r = cli("build", "--supervise", "fatfs:temporary:1:1000:stop")
    assert r.returncode == 0, r.stderr
    r = cli(
        "run",
        "--supervise",
        "fatfs:temporary:1:1000:stop",
        "--eval",
        "[{R, I, P} || #{name := fatfs, restart := R, intensity := I, period := P} "
        "<- chrysopolis:pds()].",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[{temporary,1,1000}]"
