# SPDX-License-Identifier: BSD-2-Clause
"""Power-off: halt, init:stop and q() end the machine (PSCI SYSTEM_OFF), and the tool
returns the guest's halt status from its last console line (docs/boot.md, "Power-off").

Host tests read the status line and the QEMU command; boot tests run the Erlang image
(they skip unless its sources are stored).
"""

import re
import sys
import time
import xml.etree.ElementTree as ET

import pexpect
import pytest

from chrysopolis import boards, config, logs, qemu, shell, system, targets
from chrysopolis.errors import UserError
from chrysopolis.shell import Shell

# --- host -----------------------------------------------------------------------------------


def test_the_status_is_the_guests_last_line():
    assert qemu.exit_status(b"1> halt(3).\r\nbeam_server: exit status 3\r\n") == 3
    assert qemu.exit_status(b"beam_server: exit status 0\n\r\n") == 0
    # the last status line counts, and only when nothing but blanks follows it
    two = b"beam_server: exit status 7\r\nbeam_server: exit status 134\r\n"
    assert qemu.exit_status(two) == 134
    assert qemu.exit_status(b"beam_server: exit status 3\r\n1> more\r\n") is None
    assert qemu.exit_status(b"1> ") is None
    assert qemu.exit_status(b"") is None


def test_interactive_console_is_copied_to_a_log(tmp_path):
    b = boards.board("qemu_virt_aarch64")
    log = tmp_path / "run.log"
    cmd = " ".join(qemu.command(b, tmp_path / "l.img", interactive=True, console_log=log))
    assert f"-chardev stdio,id=con0,mux=on,signal=off,logfile={log}" in cmd
    assert "-serial chardev:con0 -mon chardev=con0,mode=readline" in cmd
    assert "mon:stdio" not in cmd


def test_interactive_returns_the_guests_status(tmp_path):
    log = tmp_path / "run.log"
    # a stand-in for QEMU: the console log it writes, then its own exit status
    fake = [sys.executable, "-c"]
    line = f"open({str(log)!r}, 'w').write('1> halt(5).\\r\\nbeam_server: exit status 5\\r\\n')"
    assert qemu.interactive([*fake, line], log) == 5
    assert qemu.interactive([*fake, line + "; raise SystemExit(2)"], log) == 2
    assert qemu.interactive([*fake, f"open({str(log)!r}, 'w').write('1> ')"], log) == 0
    assert qemu.interactive([*fake, "pass"], log) == 0  # no log left from the run before


def test_smc_goes_on_the_named_pds_once():
    xml = '<protection_domain name="beam_server" priority="1" stack_size="0x40000">'
    assert system._add_smc(xml, ["beam_server"]) == xml[:-1] + ' smc="true">'
    with pytest.raises(RuntimeError, match="not found once"):
        system._add_smc('<protection_domain name="other" priority="1">', ["beam_server"])


# --- boots ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def beam(stack_planner):
    return targets.image(stack_planner, "beam")


def test_the_default_image_gives_smc_to_beam_server_and_the_supervisor_only(beam):
    """The supervisor powers off when a faulting node is past its budget (system.py's
    DEFAULT_POLICIES); no driver or server may."""
    root = ET.parse(beam.loader.parent / "chrysopolis.system").getroot()
    smc = {pd.get("name"): pd.get("smc") for pd in root.iter("protection_domain")}
    assert smc.pop("beam_server") == "true" and smc.pop("supervisor") == "true"
    assert set(smc.values()) == {None}, smc


def halted(beam, expr: str, name: str, restart: bool = True) -> tuple[int, float, str]:
    """Boot to the shell, type `expr`: (the halt status, seconds from typing it to QEMU's
    exit, the serial log). `restart=False`: the supervisor restarts no node in this boot, as
    in `run --eval` (a fatal error would else restart it: beam-restart)."""
    log = config.runs_dir() / f"test-power-{name}.log"
    fw_cfg = [] if restart else [shell.NO_RESTART]
    with qemu.boot(beam.command(fw_cfg=fw_cfg), log) as s:
        Shell(s).wait_ready()
        t0 = time.monotonic()
        s.send(expr + "\r")
        status = s.wait_exit(60)
        took = time.monotonic() - t0
        assert not s.child.isalive()
    return status, took, log.read_bytes().decode(errors="replace")


@pytest.mark.slow
def test_halt_n_powers_off_with_status_n(beam):
    status, took, text = halted(beam, "halt(3).", "halt3")
    assert status == 3
    assert took < 10, f"QEMU exited {took:.1f} s after halt(3)."
    assert text.rstrip().endswith("beam_server: exit status 3")


@pytest.mark.slow
@pytest.mark.parametrize("expr", ["q().", "init:stop()."])
def test_q_and_init_stop_power_off_with_0(beam, expr):
    status, took, _ = halted(beam, expr, re.sub(r"\W", "", expr))
    assert status == 0 and took < 30


@pytest.mark.slow
def test_a_crash_dump_slogan_powers_off_with_1(beam):
    status, _, text = halted(beam, 'erlang:halt("boom").', "boom")
    assert status == 1
    # ERTS writes the slogan straight to fd 2 while the line editor may redraw its line: the
    # two can interleave on the console, so each part is looked for on its own.
    assert "boom" in text and "Crash dump is being written to: erl_crash.dump..." in text
    assert "done" in text.split("Crash dump is being written to", 1)[1]


@pytest.mark.slow
def test_kernel_pid_terminated_powers_off_with_1(beam):
    expr = "exit(whereis(application_controller), kill)."
    status, _, text = halted(beam, expr, "kernelpid")
    assert status == 1
    assert "Kernel pid terminated (application_controller) (killed)" in text


@pytest.mark.slow
def test_out_of_memory_powers_off_with_1(beam):
    status, _, text = halted(beam, "binary:copy(<<1>>, 1 bsl 33).", "enomem", restart=False)
    assert status == 1
    assert 'Cannot allocate 8589934592 bytes of memory (of type "binary")' in text
    assert text.rstrip().endswith("beam_server: exit status 1")


@pytest.mark.slow
def test_an_erts_abort_powers_off_with_134(beam):
    """ERTS aborts (halt(abort), as on ERTS_ERROR_EXIT): musl's abort() tkills SIGABRT."""
    status, _, text = halted(beam, "erlang:halt(abort).", "abort", restart=False)
    assert status == 128 + 6
    assert "beam_server: killed by signal 6 (Aborted)" in text


@pytest.mark.slow
def test_wait_exit_names_a_guest_that_does_not_power_off(beam):
    log = config.runs_dir() / "test-power-running.log"
    with qemu.boot(beam.command(), log) as s:
        Shell(s).wait_ready()
        with pytest.raises(qemu.MarkerTimeout, match="did not power off within 1 s"):
            s.wait_exit(1)


@pytest.mark.slow
def test_chrysopolis_run_exits_with_the_halt_status(tmp_path, monkeypatch, beam):
    """The interactive run on a pty, as a user types: halt(5). ends it with status 5."""
    monkeypatch.setenv("CHRYSOPOLIS_OUT", str(tmp_path / "out"))
    child = pexpect.spawn(sys.executable, ["-m", "chrysopolis", "run"], timeout=180)
    try:
        child.expect(r"\n1> ")
        child.send("halt(5).\r")
        child.expect("beam_server: exit status 5")
        child.expect(pexpect.EOF, timeout=30)
    finally:
        child.close(force=True)
    assert child.exitstatus == 5, child.before
    assert qemu.exit_status(logs.latest("beam").read_bytes()) == 5


def test_wait_exit_refuses_a_qemu_without_a_status_line(tmp_path):
    log = tmp_path / "fake.log"
    with qemu.boot([sys.executable, "-c", "print('1> ')"], log) as s:
        with pytest.raises(UserError, match="no 'beam_server: exit status N'"):
            s.wait_exit(30)
    with qemu.boot([sys.executable, "-c", "raise SystemExit(3)"], log) as s:
        with pytest.raises(UserError, match="QEMU exited with status 3"):
            s.wait_exit(30)
