# SPDX-License-Identifier: BSD-2-Clause
"""The QEMU harness, driven by a stand-in guest so it runs without any image."""

import os
import sys
import textwrap
from pathlib import Path

import pytest

from chrysopolis import boards, logs, qemu, toolchain
from chrysopolis.errors import UsageError, UserError

GUEST = textwrap.dedent("""
    import sys, time
    print("Bootstrapping kernel", flush=True)
    time.sleep(0.2)
    print("MARKER ready 42", flush=True)
    line = sys.stdin.readline()
    print("echo: " + line.strip(), flush=True)
    time.sleep(600)
""")


def guest_cmd(tmp_path: Path, script: str = GUEST) -> list[str]:
    f = tmp_path / "guest.py"
    f.write_text(script)
    return [sys.executable, str(f)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); its state says it is gone.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_markers_input_and_log(tmp_path):
    log = tmp_path / "serial.log"
    with qemu.boot(guest_cmd(tmp_path), log) as s:
        m = s.expect(r"MARKER ready (\d+)", timeout=10)
        assert m.group(1) == b"42"
        s.send("hi there\n")
        s.expect(r"echo: hi there", timeout=10)
        pid = s.child.pid
    assert not alive(pid), "the guest must be ended when the session closes"
    assert "MARKER ready 42" in log.read_text()


def test_timeout_names_log_and_guest_is_ended(tmp_path):
    log = tmp_path / "serial.log"
    with pytest.raises(qemu.MarkerTimeout, match=f"no 'never' .* after 1 s \\(log: {log}\\)"):
        with qemu.boot(guest_cmd(tmp_path), log) as s:
            pid = s.child.pid
            s.expect("never", timeout=1)
    assert not alive(pid)
    assert "Bootstrapping kernel" in logs.tail(log)


def test_guest_exit_before_marker(tmp_path):
    with pytest.raises(qemu.MarkerTimeout, match="QEMU exited before 'MARKER'"):
        with qemu.boot(guest_cmd(tmp_path, "print('bye')"), tmp_path / "l.log") as s:
            s.expect("MARKER", timeout=10)


def test_guest_ended_on_error_in_body(tmp_path):
    with pytest.raises(RuntimeError):
        with qemu.boot(guest_cmd(tmp_path), tmp_path / "l.log") as s:
            pid = s.child.pid
            raise RuntimeError("test failed midway")
    assert not alive(pid)


def test_guest_ignoring_sigterm_is_killed(tmp_path):
    stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(600)"
    with qemu.boot(guest_cmd(tmp_path, stubborn), tmp_path / "l.log") as s:
        s.expect("up", timeout=10)
        pid = s.child.pid
    assert not alive(pid)


def test_command_has_board_flags_and_pinned_disk(tmp_path):
    b = boards.board("qemu_virt_aarch64")
    (tmp_path / "disk.img").touch()
    cmd = qemu.command(b, tmp_path / "loader.img", tmp_path / "disk.img", disk_bus=1)
    joined = " ".join(cmd)
    assert "-machine virt,virtualization=on -cpu cortex-a53" in joined
    assert f"loader,file={tmp_path}/loader.img,addr=0x70000000,cpu-num=0" in joined
    assert "bus=virtio-mmio-bus.1" in joined and "force-legacy=false" in joined
    assert "-serial stdio -monitor none" in joined
    assert "mon:stdio" in " ".join(qemu.command(b, tmp_path / "l.img", interactive=True))


def test_network_is_restricted_user_net_on_the_given_bus(tmp_path):
    b = boards.board("qemu_virt_aarch64")
    cmd = qemu.command(b, tmp_path / "l.img", net_bus=0, mac="52:54:00:c5:00:01")
    joined = " ".join(cmd)
    assert "-netdev user,id=net0,restrict=on " in joined
    assert "virtio-net-device,netdev=net0,bus=virtio-mmio-bus.0,mac=52:54:00:c5:00:01" in joined
    assert "force-legacy=false" in joined  # modern virtio-mmio without a disk too
    assert "-netdev" not in qemu.command(b, tmp_path / "l.img")  # no bus, no network


@pytest.mark.parametrize(
    "spec, hostfwd",
    [
        ("8080:80", "tcp:127.0.0.1:8080-:80"),
        ("tcp:2222:22", "tcp:127.0.0.1:2222-:22"),
        ("udp:5353:53", "udp:127.0.0.1:5353-:53"),
    ],
)
def test_forward_binds_the_host_side_to_loopback_only(tmp_path, spec, hostfwd):
    assert qemu.parse_forward(spec) == hostfwd
    b = boards.board("qemu_virt_aarch64")
    cmd = qemu.command(b, tmp_path / "l.img", net_bus=0, forwards=[spec, "9:9"])
    netdev = cmd[cmd.index("-netdev") + 1]
    assert netdev == f"user,id=net0,restrict=on,hostfwd={hostfwd},hostfwd=tcp:127.0.0.1:9-:9"


@pytest.mark.parametrize("spec", ["80", "sctp:1:2", "0:80", "80:70000", "a:b", "1.2.3.4:80:80"])
def test_bad_forward_is_refused(tmp_path, spec):
    with pytest.raises(UsageError, match="--forward"):
        qemu.parse_forward(spec)


@pytest.mark.parametrize("spec, pair", [("8000", (8000, 8000)), ("8000:80", (80, 8000))])
def test_host_port_is_a_guest_forward_pair(spec, pair):
    assert qemu.parse_host_port(spec) == pair


@pytest.mark.parametrize("spec", ["", "tcp:80", "0", "80:0", "70000", "1.2.3.4:80"])
def test_bad_host_port_is_refused(spec):
    with pytest.raises(UsageError, match="--host-port"):
        qemu.parse_host_port(spec)


def test_forward_needs_a_network_device(tmp_path):
    b = boards.board("qemu_virt_aarch64")
    with pytest.raises(UsageError, match="no network device"):
        qemu.command(b, tmp_path / "l.img", forwards=["8080:80"])


def test_missing_qemu_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(toolchain, "find", lambda _: None)
    with pytest.raises(UserError, match="qemu-system-aarch64 is missing .*chrysopolis setup"):
        qemu.command(boards.board("qemu_virt_aarch64"), tmp_path / "l.img")


def test_unknown_board_and_config():
    with pytest.raises(
        UserError, match="unknown board 'rpi9'; supported boards: qemu_virt_aarch64"
    ):
        boards.board("rpi9")
    with pytest.raises(UserError, match="unknown config 'fast'"):
        boards.check_config("fast")


def test_ram_is_the_image_size_and_the_board_must_have_it(tmp_path):
    b = boards.board("qemu_virt_aarch64")
    with pytest.raises(UserError, match="--ram 100M is not a size qemu_virt_aarch64 can have"):
        qemu.command(b, tmp_path / "l.img", ram="100M")
    with pytest.raises(UserError, match="e.g. 512M or 2G"):
        qemu.command(b, tmp_path / "l.img", ram="lots")
    cmd = qemu.command(b, tmp_path / "l.img", ram="1G")
    assert "size=1G" in cmd and any("addr=0x70000000," in a for a in cmd)


def test_guest_forward_relays_to_loopback_only(tmp_path):
    b = boards.board("qemu_virt_aarch64")
    cmd = qemu.command(b, tmp_path / "l.img", net_bus=0, guest_forwards=[(9000, 45678)])
    netdev = cmd[cmd.index("-netdev") + 1]
    assert netdev.startswith("user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:9000-cmd:")
    assert netdev.endswith(f"{qemu.RELAY} 45678")
    assert "127.0.0.1" in qemu.RELAY.read_text() and "," not in netdev.split("-cmd:")[1]
    with pytest.raises(UsageError, match="guest forward"):
        qemu.guest_forward(9000, 70000)


def test_relay_joins_stdin_to_a_loopback_port():
    """relay.py as QEMU runs it: its stdin/stdout is the guest's connection (a socket)."""
    import socket
    import subprocess
    import sys
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)

    def echo_upper():
        c, _ = srv.accept()
        with c:
            c.settimeout(10)
            data = b""
            while chunk := c.recv(4096):
                data += chunk
            c.sendall(data.upper())

    t = threading.Thread(target=echo_upper, daemon=True)
    t.start()
    guest, relay_end = socket.socketpair()
    p = subprocess.Popen(
        [sys.executable, str(qemu.RELAY), str(srv.getsockname()[1])],
        stdin=relay_end,
        stdout=relay_end,
        stderr=relay_end,
    )
    relay_end.close()
    guest.settimeout(10)
    guest.sendall(b"hello")
    guest.shutdown(socket.SHUT_WR)
    got = b""
    while chunk := guest.recv(4096):
        got += chunk
    assert got == b"HELLO"
    assert p.wait(10) == 0
    t.join(5)
    srv.close()
