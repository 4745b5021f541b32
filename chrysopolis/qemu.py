# SPDX-License-Identifier: BSD-2-Clause
"""The QEMU harness: boot an image, keep the serial log, wait for markers, always clean up."""

import os
import re
import signal
import subprocess
import sys
import time
import tty
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pexpect

from chrysopolis import boards, toolchain
from chrysopolis.boards import Board
from chrysopolis.errors import UsageError, UserError


class MarkerTimeout(UserError):
    """A marker did not appear on the serial console in time."""


@dataclass(frozen=True)
class Terminal:
    """The terminal a guest's console is: TERM and the window size its TIOCGWINSZ answers.

    QEMU hands both to the guest as fw_cfg files (`-fw_cfg name=opt/chrysopolis/...`),
    which targets/beam/main.c reads at boot: nothing is written to the disk per run."""

    term: str
    rows: int
    cols: int

    def fw_cfg(self) -> list[str]:
        args = ["-fw_cfg", f"name=opt/chrysopolis/winsize,string={self.rows}x{self.cols}"]
        if TERM_RE.fullmatch(self.term):  # a comma would end QEMU's option value
            args += ["-fw_cfg", f"name=opt/chrysopolis/term,string={self.term}"]
        return args


TERM_RE = re.compile(r"[A-Za-z0-9._+-]{1,63}")
DEFAULT_SIZE = (24, 80)  # rows, columns: what the guest assumes when the size is unknown
# Headless runs (checks, --eval): the editing shell on a terminal wide enough that no
# expression of ours wraps, so a result is the text between the echoed line and the prompt.
HEADLESS = Terminal("vt100", 24, 1000)


def guest_term(term: str) -> str:
    """The guest's name for a host TERM: one of the entries built into its libtinfo (stage
    ncurses), the nearest family for one it lacks (xterm-kitty speaks xterm), else vt100."""
    from chrysopolis.stages.ncurses import FALLBACKS

    if term in FALLBACKS:
        return term
    for family, entry in (("tmux", "tmux"), ("screen", "screen")):
        if term.startswith(family):
            return f"{entry}-256color" if "256color" in term else entry
    xterm_like = ("xterm", "kitty", "alacritty", "foot", "wezterm", "rxvt", "konsole", "gnome")
    if "256color" in term or term.startswith(xterm_like):
        return "xterm-256color"
    return "vt100"


def host_terminal() -> Terminal:
    """This terminal, for an interactive run: the user's TERM as the guest knows it
    (`guest_term`; unset: vt100) and the size of the terminal on stdin (else 80x24)."""
    term = guest_term(os.environ.get("TERM") or "vt100")
    try:
        size = os.get_terminal_size(sys.stdin.fileno())
        rows, cols = size.lines, size.columns
    except (OSError, ValueError):
        rows, cols = DEFAULT_SIZE
    if rows <= 0 or cols <= 0:
        rows, cols = DEFAULT_SIZE
    return Terminal(term, rows, cols)


# The guest's last line before it powers off (runtime/pd/power.c): PSCI SYSTEM_OFF carries
# no status, so this line does. QEMU itself exits 0 on a guest power-off.
STATUS = re.compile(rb"beam_server: exit status (\d+)")
STATUS_LINE = re.compile(STATUS.pattern + rb"\r*\n")


def exit_status(console: bytes) -> int | None:
    """The halt status a powered-off guest printed last on `console`, or None when its last
    line is no status line (QEMU quit by Ctrl-A X, killed, or a guest that did not exit)."""
    last = None
    for m in STATUS_LINE.finditer(console):
        last = m
    if last is None or console[last.end() :].strip():
        return None
    return int(last.group(1))


def _console(interactive: bool, console_log: Path | None) -> list[str]:
    if not interactive:
        return ["-serial", "stdio", "-monitor", "none"]
    if console_log is None:
        return ["-serial", "mon:stdio"]
    # As mon:stdio (the monitor muxed on the console, Ctrl-A X quits; no Ctrl-C signal, as
    # -nographic's default), and QEMU also writes what the console prints to `console_log`.
    return [
        "-chardev",
        f"stdio,id=con0,mux=on,signal=off,logfile={console_log}",
        "-serial",
        "chardev:con0",
        "-mon",
        "chardev=con0,mode=readline",
    ]


def machine(
    board: Board,
    ram: str | None = None,
    interactive: bool = False,
    console_log: Path | None = None,
) -> list[str]:
    """QEMU with the board's machine, CPU, RAM and console: what every guest boots in.
    Interactive, the console is this terminal; `console_log` is a file QEMU copies it to."""
    qemu = toolchain.path("qemu-system-aarch64")
    return [
        qemu,
        "-machine",
        board.qemu_machine,
        "-cpu",
        board.qemu_cpu,
        "-m",
        f"size={ram or board.ram}",
        "-nographic",
        # Interactive: the QEMU monitor muxed on the console (Ctrl-A X quits).
        *_console(interactive, console_log),
    ]


def command(
    board: Board,
    loader: Path,
    disk: Path | None = None,
    ram: str | None = None,
    interactive: bool = False,
    persist: bool = False,
    disk_bus: int | None = None,
    console_log: Path | None = None,
    terminal: Terminal | None = None,
    net_bus: int | None = None,
    mac: str | None = None,
    forwards: Sequence[str] = (),
    guest_forwards: Sequence[tuple[int, int]] = (),
    fw_cfg: Sequence[tuple[str, str]] = (),
    netdev: str | None = None,
) -> list[str]:
    """QEMU booting a Microkit loader image, the disk on virtio-mmio bus `disk_bus` (the
    image's system description chose it: targets.Image.command passes it). Unless
    `persist`, the guest's disk writes go to a throw-away overlay: checks and batch runs
    never change an image (or the cache). `console_log`: see `machine`. `terminal` is what the
    guest's console is (default: this terminal when interactive, else HEADLESS). `ram`: the
    RAM the image is built for (default: the board's); QEMU gets exactly that, and the loader
    goes where it is linked for that size.

    With `net_bus`, a virtio-net device on that bus, on QEMU's user network with
    restrict=on: the guest gets 10.0.2.15 by DHCP and can reach nothing outside it.
    `forwards` are `--forward` specs ([tcp:|udp:]HOSTPORT:GUESTPORT): host ports on
    127.0.0.1 only, forwarded to the guest. `guest_forwards` are (GUESTPORT, HOSTPORT)
    pairs: the guest's TCP connections to 10.0.2.100:GUESTPORT reach 127.0.0.1:HOSTPORT
    (`guest_forward`).

    `fw_cfg`: more (name, value) files for the guest (a node's address and hostname,
    nodes.Settings.fw_cfg). `netdev`: a `-netdev` value with id net0 that replaces the user
    network (a LAN, nodes.joined); forwards need the user network."""
    hostfwd = [parse_forward(f) for f in forwards]  # refused before anything else
    hostfwd += [guest_forward(g, h) for g, h in guest_forwards]
    if hostfwd and net_bus is None:
        raise UsageError("--forward: this image has no network device")
    if hostfwd and netdev is not None:
        raise UsageError(
            "--forward: a LAN node has no user network to forward from; drop --forward or --lan"
        )
    if (fw_cfg and board.fw_cfg_paddr is None) or (netdev is not None and net_bus is None):
        raise UsageError(f"this image on {board.name} cannot take a node's network settings")
    # Exactly the RAM the image's kernel and loader are built for (the SDK's `ram_mib`).
    ram = ram or board.ram
    loader_addr = boards.loader_addr(board, boards.ram_mib(board, ram))
    cmd = [
        *machine(board, ram, interactive, console_log),
        "-device",
        f"loader,file={loader},addr={loader_addr:#x},cpu-num=0",
    ]
    if board.fw_cfg_paddr is not None:
        cmd += (terminal or (host_terminal() if interactive else HEADLESS)).fw_cfg()
        for name, value in fw_cfg:
            if "," in value:  # it would end QEMU's option value
                raise ValueError(f"fw_cfg {name}: {value!r} holds a comma")
            cmd += ["-fw_cfg", f"name={name},string={value}"]
    if disk is not None or net_bus is not None:
        # Modern virtio-mmio, for either device: the sDDF drivers negotiate VERSION_1.
        cmd += ["-global", "virtio-mmio.force-legacy=false"]
    if disk is not None:
        if disk_bus is None:
            raise ValueError("a disk needs the virtio-mmio bus of the system description")
        if not Path(disk).is_file():
            raise UserError(
                f"disk image {disk} does not exist; rebuild the target " "(`chrysopolis build`)"
            )
        # The disk on the bus of the blk node the system description uses.
        cmd += blk_args(disk, disk_bus, persist)
    if net_bus is not None:
        cmd += net_args(net_bus, mac, hostfwd, netdev)
    return cmd


def blk_args(disk: Path, bus: int, persist: bool = False) -> list[str]:
    """A raw `disk` as a virtio-blk device on virtio-mmio bus `bus`; unless `persist`, the
    guest's writes go to a throw-away overlay."""
    return [
        "-drive",
        f"file={disk},if=none,format=raw,id=hd0{'' if persist else ',snapshot=on'}",
        "-device",
        f"virtio-blk-device,drive=hd0,bus=virtio-mmio-bus.{bus}",
    ]


FORWARD = re.compile(r"(?:(tcp|udp):)?(\d{1,5}):(\d{1,5})")


def parse_forward(spec: str) -> str:
    """`[tcp:|udp:]HOSTPORT:GUESTPORT` (TCP by default) as QEMU's hostfwd value, bound to
    127.0.0.1 only; the guest side is the guest's DHCP address. UsageError otherwise."""
    m = FORWARD.fullmatch(spec.strip())
    if not m:
        raise UsageError(
            f"--forward {spec!r} is not [tcp:|udp:]HOSTPORT:GUESTPORT; e.g. --forward tcp:8080:80"
        )
    proto, host, guest = m.group(1) or "tcp", int(m.group(2)), int(m.group(3))
    for port in (host, guest):
        if not 1 <= port <= 65535:
            raise UsageError(f"--forward {spec!r}: port {port} is not in 1-65535")
    return f"{proto}:127.0.0.1:{host}-:{guest}"


HOST_PORT = re.compile(r"(\d{1,5})(?::(\d{1,5}))?")


def parse_host_port(spec: str) -> tuple[int, int]:
    """`HOSTPORT[:GUESTPORT]` (`run --host-port`) as a (GUESTPORT, HOSTPORT) pair for
    `guest_forwards`: the guest reaches 127.0.0.1:HOSTPORT at 10.0.2.100:GUESTPORT
    (GUESTPORT defaults to HOSTPORT). UsageError otherwise."""
    m = HOST_PORT.fullmatch(spec.strip())
    if not m:
        raise UsageError(f"--host-port {spec!r} is not HOSTPORT[:GUESTPORT]; e.g. --host-port 8000")
    host = int(m.group(1))
    guest = int(m.group(2) or host)
    for port in (host, guest):
        if not 1 <= port <= 65535:
            raise UsageError(f"--host-port {spec!r}: port {port} is not in 1-65535")
    return guest, host


# Where the guest reaches a guest_forward: an otherwise unused address of QEMU's user
# network. libslirp refuses guestfwd rules on the host alias 10.0.2.2 itself (and on the
# DNS address 10.0.2.3): "Conflicting/invalid host:port in guest forwarding rule".
GUESTFWD_ADDR = "10.0.2.100"
RELAY = Path(__file__).resolve().parent / "relay.py"


def guest_forward(guest_port: int, host_port: int) -> str:
    """A netdev `guestfwd=` rule: the guest's TCP connections to 10.0.2.100:guest_port run
    relay.py, which connects to 127.0.0.1:host_port (restrict=on drops everything else the
    guest sends out). QEMU 7.2's `-dev` form (a chardev) would connect once, at startup;
    `cmd:` runs the relay per connection. As a net_args `hostfwd` item (see there)."""
    for port in (guest_port, host_port):
        if not 1 <= int(port) <= 65535:
            raise UsageError(f"guest forward: port {port} is not in 1-65535")
    for p in (sys.executable, str(RELAY)):
        if "," in p or " " in p:
            raise UsageError(f"guest forward: {p!r} holds a comma or a space")
    return f"guestfwd=tcp:{GUESTFWD_ADDR}:{int(guest_port)}-cmd:{sys.executable} {RELAY} {int(host_port)}"


def net_args(
    bus: int, mac: str | None, hostfwd: Sequence[str] = (), netdev: str | None = None
) -> list[str]:
    """virtio-net on virtio-mmio bus `bus`, on QEMU's user network with restrict=on (the
    guest reaches nothing but the user network's own DHCP; `hostfwd` values from
    `parse_forward` let the host reach the guest). `mac` only names the device in QEMU
    (`info network`): the driver and lwIP use the MAC of the system description. `netdev`
    replaces the user network (then no `hostfwd`)."""
    device = f"virtio-net-device,netdev=net0,bus=virtio-mmio-bus.{bus}"
    if mac is not None:
        device += f",mac={mac}"
    rules = [h if h.startswith("guestfwd=") else f"hostfwd={h}" for h in hostfwd]
    if netdev is None:
        netdev = "user,id=net0,restrict=on" + "".join(f",{r}" for r in rules)
    return ["-netdev", netdev, "-device", device]


@dataclass
class Session:
    """A running QEMU with its serial console; `expect` waits on what it prints."""

    child: pexpect.spawn
    log: Path
    started: float

    def expect(self, pattern: str, timeout: float) -> re.Match:
        """Wait for `pattern` (a regex) on the console; MarkerTimeout names the log."""
        try:
            self.child.expect(pattern, timeout=timeout)
        except pexpect.TIMEOUT:
            raise MarkerTimeout(
                f"no '{pattern}' on the serial console after {timeout:.0f} s " f"(log: {self.log})"
            ) from None
        except pexpect.EOF:
            raise MarkerTimeout(
                f"QEMU exited before '{pattern}' appeared " f"(log: {self.log})"
            ) from None
        return self.child.match

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def send(self, text: str) -> None:
        self.child.send(text)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the guest to power off (QEMU exits by itself) and return its halt status:
        0 for `q()`, N for `halt(N)`, non-zero for an ERTS crash. MarkerTimeout if QEMU is
        still running after `timeout` s; UserError if QEMU failed or the guest printed no
        status line last."""
        try:
            self.child.expect(pexpect.EOF, timeout=timeout)
        except pexpect.TIMEOUT:
            raise MarkerTimeout(
                f"the guest did not power off within {timeout:.0f} s (log: {self.log})"
            ) from None
        rc = self.child.wait()
        if self.child.logfile_read is not None:
            self.child.logfile_read.flush()
        if rc != 0:
            raise UserError(f"QEMU exited with status {rc} (log: {self.log})")
        status = exit_status(self.log.read_bytes())
        if status is None:
            raise UserError(
                f"QEMU exited, but the guest's last line is no 'beam_server: exit status N' "
                f"(log: {self.log})"
            )
        return status


@contextmanager
def boot(cmd: Sequence[str], log: Path, terminal: Terminal = HEADLESS) -> Iterator[Session]:
    """Start QEMU headless on a pty of `terminal`'s size (the size `cmd` gave the guest);
    whatever happens in the body, QEMU is ended on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    logf = open(log, "wb")
    child = pexpect.spawn(
        cmd[0],
        list(cmd[1:]),
        timeout=None,
        echo=False,
        dimensions=(terminal.rows, terminal.cols),
    )
    # Raw pty: the log holds the guest's bytes as sent (no CR doubling) and input reaches
    # the guest as typed (Enter is CR, as from a terminal).
    tty.setraw(child.child_fd)
    child.logfile_read = logf  # what the guest printed, not what we typed
    try:
        yield Session(child, log, time.monotonic())
    finally:
        _end(child)
        logf.close()


def _end(child: pexpect.spawn) -> None:
    if child.isalive():
        child.kill(signal.SIGTERM)
        for _ in range(50):
            if not child.isalive():
                break
            time.sleep(0.05)
        else:
            child.kill(signal.SIGKILL)
    child.close(force=True)


def interactive(cmd: Sequence[str], console_log: Path | None = None) -> int:
    """QEMU on this terminal (Ctrl-A X leaves it). With the `console_log` the command writes
    (`command(..., console_log=)`), the guest's halt status when it powered off; otherwise,
    or when QEMU failed or was quit, QEMU's own exit status."""
    if console_log is not None:
        console_log.parent.mkdir(parents=True, exist_ok=True)
        console_log.unlink(missing_ok=True)  # a status line from an earlier run is no answer
    rc = subprocess.call(list(cmd))
    if rc != 0 or console_log is None or not console_log.is_file():
        return rc
    status = exit_status(console_log.read_bytes())
    return rc if status is None else status
