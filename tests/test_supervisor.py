# SPDX-License-Identifier: BSD-2-Clause
"""The supervisor PD in the beam image: fault injection only where asked for, and the
recovery checks (chrysopolis/targets/beam_recovery.py)."""

import re

import pytest

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
    "name", ["timer-recovery", "serial-recovery", "recovery-giveup", "recovery-poweroff"]
)
def test_check(stack_planner, name):
    assert checks.load_all()[name].run(stack_planner)
