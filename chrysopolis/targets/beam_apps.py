# SPDX-License-Identifier: BSD-2-Clause
"""Checks of releases booted from the image's disk (`--app`, chrysopolis/apps.py):
`app-smoke` boots into examples/kvstore, talks to it over TCP and watches its supervisor
restart the store; `app-badstart` boots an application whose start fails."""

import re
import socket
import tempfile
import time
from pathlib import Path

from chrysopolis import apps, config, logs, qemu, targets, userdisk
from chrysopolis.cache import Planner
from chrysopolis.checks import check
from chrysopolis.errors import UserError
from chrysopolis.shell import Shell
from chrysopolis.targets.beam import NEEDS, _eval_match, _free_port, _halt, _no_fatal_lines

EXAMPLE = config.ROOT / "examples" / "kvstore"
BADSTART = config.ROOT / "examples" / "badstart"
KV_PORT = 7000  # examples/kvstore/config/sys.config
STORE_UP = r"kvstore: store up with (\d+) keys from /data/kvstore/store\.log"
LISTENING = rf"kvstore: listening on TCP port {KV_PORT}"
BOOT = 180.0


def release_image(planner: Planner, app: Path, cfg: Path | None = None) -> targets.Image:
    img = targets._image(planner, "beam")  # the plain image, whatever --app this process has
    return apps.image(img, apps.build(planner, img, [app], cfg))


class Client:
    """One line-protocol connection to the guest through a hostfwd on 127.0.0.1."""

    def __init__(self, port: int, log: Path) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.log = log

    def ask(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        reply = self.file.readline()
        if not reply:
            raise UserError(f"the guest closed the connection after {line!r} (log: {self.log})")
        return reply.decode().rstrip("\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _expect_reply(c: Client, line: str, want: str) -> None:
    got = c.ask(line)
    if got != want:
        raise UserError(f"{line!r} got {got!r}, expected {want!r} (log: {c.log})")


@check("app-smoke", needs=NEEDS)
def app_smoke(planner: Planner) -> str:
    """Boot into examples/kvstore's release: its start-up lines, then over TCP (a hostfwd)
    a PUT and a GET; a bad request crashes the store, its supervisor restarts it (OTP's
    report on the console), and the store reads its data back from the FAT disk; the shell
    runs beside it; a second boot of the same disk finds the key."""
    img = release_image(planner, EXAMPLE, EXAMPLE / "config" / "sys.config")
    port = _free_port()
    with tempfile.TemporaryDirectory(dir=config.runs_dir(), prefix="app-") as tmp:
        disk = Path(tmp) / "disk.img"
        userdisk.copy(img.disk, disk)
        cmd = img.command(disk, persist=True, forwards=[f"tcp:{port}:{KV_PORT}"])
        log = logs.run_log("app-smoke")
        with qemu.boot(cmd, log) as s:
            m = s.expect(STORE_UP, BOOT)
            if m.group(1) != b"0":
                raise UserError(f"a fresh disk's store has {m.group(1)!r} keys (log: {log})")
            s.expect(LISTENING, 60)
            first_output = s.elapsed()
            shell = Shell(s)
            shell.wait_ready()
            c = Client(port, log)
            _expect_reply(c, "PUT colour blue", "OK")
            _expect_reply(c, "GET colour", "VALUE blue")
            before = _eval_match(shell, log, "whereis(kvstore_store).", r"<[\d.]+>", "pid")[0]
            _expect_reply(
                c, "FLY me to the moon", "ERROR bad request; the store crashed and was restarted"
            )
            s.expect(r"Generic server kvstore_store terminating", 30)
            s.expect(STORE_UP.replace(r"(\d+)", "1"), 30)
            _expect_reply(c, "GET colour", "VALUE blue")
            after = _eval_match(shell, log, "whereis(kvstore_store).", r"<[\d.]+>", "pid")[0]
            if after == before:
                raise UserError(f"the store kept its pid {before} after the crash (log: {log})")
            _eval_match(
                shell,
                log,
                "[{Id, is_pid(P)} || {Id, P, _, _} <- supervisor:which_children(kvstore_sup)].",
                r"\[\{kvstore_listener,true\},\{kvstore_store,true\}\]",
                "the supervisor's children",
            )
            c.close()
            _halt(shell, 0)
        _no_fatal_lines(log)
        log2 = logs.run_log("app-smoke-again")
        with qemu.boot(img.command(disk, persist=True), log2) as s:
            s.expect(STORE_UP.replace(r"(\d+)", "1"), BOOT)
            Shell(s).wait_ready()
    return (
        f"kvstore up and listening {first_output:.1f} s after QEMU started; a bad request "
        f"restarted the store ({before} -> {after}) with its data; the data outlived a reboot"
    )


# OTP's reason for a start/2 that returned {error, not_today}, as init prints it.
BADSTART_REASON = (
    r"\{application_start_failure,badstart,\{not_today,\{badstart_app,start,\[normal,\[\]\]\}\}\}"
)


@check("app-badstart", needs=NEEDS)
def app_badstart(planner: Planner) -> str:
    """Boot into a release whose application's start/2 returns an error: OTP's reason on
    the console, and the node ends with a non-zero status."""
    img = release_image(planner, BADSTART)
    log = logs.run_log("app-badstart")
    t0 = time.monotonic()
    with qemu.boot(img.command(), log) as s:
        s.expect(r"Kernel pid terminated \(application_controller\) \(\"" + BADSTART_REASON, BOOT)
        status = s.wait_exit(120)
    if status == 0:
        raise UserError(f"a failed start powered off with status 0 (log: {log})")
    text = log.read_text(errors="replace")
    if re.search(r"Eshell V", text):
        raise UserError(f"the shell started although the release did not (log: {log})")
    return f"OTP's reason on the console, exit status {status} ({time.monotonic() - t0:.1f} s)"
