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
    )
    assert r.returncode == 0, r.stderr
    default = "permanent,3,5000,stop,0}"
    table = ",".join(f"{{{n},running,{default}" for n in system.SUPERVISED)
    restarts = ",".join(f"{{{n},{int(n == 'serial_virt_rx')}}}" for n in system.SUPERVISED)
    assert r.stdout.splitlines() == [
        f"[{table}]",
        "ok",
        "[{serial_virt_rx,restart},{serial_virt_rx,up}]",
        f"[{restarts}]",
        "{error,unknown}",
    ]
    assert re.search(r"SUP\|up pd=serial_virt_rx gen=2", r.stderr)
    # and logger reported both events
    assert "chrysopolis: serial_virt_rx up" in r.stderr
