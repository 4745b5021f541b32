# SPDX-License-Identifier: BSD-2-Clause
"""The console as a terminal: TERM and the window size through QEMU's fw_cfg, the escape
sequences the shell driver strips, the ncurses stage's pins, and OTP's line editor driven
by keystrokes (check shell-edit)."""

import pytest

from chrysopolis import boards, checks, lock, qemu, system, toolchain
from chrysopolis.shell import plain
from chrysopolis.stages import ncurses


def test_terminal_reaches_qemu_as_fw_cfg_files(tmp_path):
    loader = tmp_path / "x.img"
    t = qemu.Terminal("xterm-256color", 30, 100)
    cmd = qemu.command(boards.board("qemu_virt_aarch64"), loader, terminal=t)
    assert "name=opt/chrysopolis/winsize,string=30x100" in cmd
    assert "name=opt/chrysopolis/term,string=xterm-256color" in cmd
    headless = qemu.command(boards.board("qemu_virt_aarch64"), loader)
    assert f"name=opt/chrysopolis/term,string={qemu.HEADLESS.term}" in headless


def test_a_term_qemu_cannot_carry_is_left_to_the_guests_default():
    args = qemu.Terminal("evil,file=/etc/passwd", 24, 80).fw_cfg()
    assert not any("term," in a for a in args)
    assert "name=opt/chrysopolis/winsize,string=24x80" in args


def test_host_terminal_without_a_tty_is_80x24(monkeypatch):
    monkeypatch.setenv("TERM", "")
    monkeypatch.setattr(qemu.os, "get_terminal_size", lambda fd: (_ for _ in ()).throw(OSError))
    assert qemu.host_terminal() == qemu.Terminal("vt100", 24, 80)


@pytest.mark.parametrize(
    "host, guest",
    [
        ("xterm-256color", "xterm-256color"),
        ("linux", "linux"),
        ("xterm-kitty", "xterm-256color"),
        ("alacritty", "xterm-256color"),
        ("screen.xterm-256color", "screen-256color"),
        ("tmux-direct", "tmux"),
        ("eterm-color", "vt100"),
    ],
)
def test_a_term_the_guest_lacks_maps_to_the_nearest_it_has(host, guest):
    assert qemu.guest_term(host) == guest


def test_plain_drops_escape_sequences_and_backspaces():
    raw = b"\x1b[A\x1b[J1> 1 + 2.xyz\x08\x08\x08\x1b[K\r\r\r\n3\r\r\n\x1b]0;title\x07\x1b(B"
    assert plain(raw) == "1> 1 + 2.\n3\n"


def test_fw_cfg_is_mapped_into_beam_server_with_its_setvar(tmp_path):
    pytest.importorskip("sdfgen")
    try:
        out = system.generate(tmp_path)
    except Exception as e:  # the sDDF source is not stored
        pytest.skip(str(e))
    xml = out.system_file.read_text()
    assert 'phys_addr="0x9020000"' in xml
    assert 'setvar_vaddr="fwcfg_base"' in xml


def test_ncurses_stage_is_pinned_and_builds_only_libtinfo_with_fallbacks():
    src = lock.load().source("ncurses")
    assert src.kind == "debian" and any(f.name.endswith(".dsc") for f in src.files)
    flags = ncurses.CONFIGURE_FLAGS
    assert "--disable-database" in flags and "--with-termlib" in flags
    assert f"--with-fallbacks={','.join(ncurses.FALLBACKS)}" in flags
    for term in ("xterm-256color", "vt100", "screen", "tmux-256color", "dumb"):
        assert term in ncurses.FALLBACKS
    # every host package the stage runs is in the toolchain table, pinned in the lock
    host = set(toolchain.packages())
    pins = lock.load().host_debian
    for pkg in ("ncurses-bin", "ncurses-base", "ncurses-term"):
        assert pkg in host and pkg in pins


@pytest.fixture(scope="module")
def planner(stack_planner):
    stack_planner.ensure("beam")
    return stack_planner


@pytest.mark.slow
def test_shell_edit(planner):
    assert checks.load_all()["shell-edit"].run(planner)
