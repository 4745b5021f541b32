# SPDX-License-Identifier: BSD-2-Clause
"""Driving the Erlang shell on the serial console: boot, evaluate, read results back.

The console is a terminal (TERM and the window size from qemu.HEADLESS), so the Eshell
runs OTP's line editor: the editor echoes each typed line (with cursor-control escape
sequences where it redraws), the shell prints the result and then its next prompt `N> `.
A result is the text between the echoed line and that prompt, once escape sequences and
CRs are stripped; HEADLESS is wide enough that no expression of ours wraps. `run --eval`
and the shell checks use this one driver.
"""

import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from chrysopolis import cache, checks, config, logs, qemu, targets, userdisk
from chrysopolis.errors import UserError

# An escape sequence a terminal acts on: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST),
# or ESC and one character (keypad modes, charset selection).
ANSI = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[ -/]*[0-~])")
# The prompt: a line's start, maybe after the editor's escape sequences, then `N> `.
PROMPT = rb"\n(?:\x1b\[[0-?]*[ -/]*[@-~])*(\d+)> "
BOOT_TIMEOUT = 180.0  # QEMU start to the first prompt; about 6 s on an idle machine
EVAL_TIMEOUT = 120.0
# A whole line that means the system, not just an expression, went wrong.
FATAL = re.compile(rb"(?:" + checks.FATAL_LINE.pattern + rb")[^\r\n]*\r*\n")
USER_ARGS = "/chrysopolis/args"  # read by targets/beam/main.c: extra init arguments, one per line


def plain(raw: bytes) -> str:
    """What a terminal shows of `raw`, line by line: escape sequences and CRs dropped, and
    each backspace taking back the character before it."""
    text = ANSI.sub(b"", raw).decode(errors="replace").replace("\r", "")
    while "\x08" in text:
        text = re.sub(r"[^\n\x08]\x08|^\x08", "", text, flags=re.M)
    return text


class Shell:
    def __init__(self, session: qemu.Session) -> None:
        self.session = session
        self.ready_at = 0.0
        self.prompt = 0  # the number of the last prompt seen

    def _next_prompt(self, timeout: float, waiting_for: str) -> str:
        """What the guest printed before its next prompt (a number above the last one: the
        editor redraws the current prompt when a line is entered); a fatal line or a
        timeout raises."""
        s = self.session
        deadline = time.monotonic() + timeout
        seen = b""
        while True:
            try:
                idx = s.child.expect([PROMPT, FATAL], timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                raise qemu.MarkerTimeout(
                    f"no {waiting_for} after {timeout:.0f} s (log: {s.log})"
                ) from None
            if idx == 1:
                line = s.child.after.decode(errors="replace").strip()
                raise UserError(f"the system failed before {waiting_for}: {line} (log: {s.log})")
            seen += s.child.before
            n = int(s.child.match.group(1))
            if n > self.prompt:
                self.prompt = n
                return plain(seen)
            seen += s.child.after  # a redrawn prompt: part of the echo

    def wait_ready(self, timeout: float = BOOT_TIMEOUT) -> float:
        self._next_prompt(timeout, "the Erlang shell prompt")
        self.ready_at = self.session.elapsed()
        return self.ready_at

    def eval(self, expr: str, timeout: float = EVAL_TIMEOUT) -> str:
        """Evaluate one expression (ending in a full stop) and return what the shell printed:
        the lines after the last echo of the expression (the editor may echo it twice)."""
        self.session.send(expr + "\r")
        lines = self._next_prompt(timeout, f"the result of {expr!r}").split("\n")
        echoes = [i for i, line in enumerate(lines) if line.rstrip().endswith(expr)]
        start = echoes[-1] + 1 if echoes else 1
        return "\n".join(lines[start:]).strip("\n")


def require_shell(target: str) -> None:
    """Refuse, before building or booting, a target whose console is no Erlang shell."""
    st = cache.get(target)
    if not st.shell:
        with_shell = ", ".join(sorted(n for n, s in cache.load_all().items() if s.shell))
        raise UserError(
            f"target '{target}' has no Erlang shell, so --eval and --path cannot run on it; "
            f"use `chrysopolis run {target}` to boot it, or a target with a shell: {with_shell}"
        )


def check_expr(expr: str) -> str:
    e = expr.strip()
    if not e.endswith("."):
        raise UserError(
            f"--eval {expr!r}: an Erlang expression must end with a full stop, e.g. '1 + 1.'"
        )
    if "\n" in e:
        raise UserError(f"--eval {expr!r}: give the expression on one line")
    return e


def with_modules(base: Path, paths: Sequence[Path], dest: Path) -> Path:
    """A scratch copy of the disk `base` plus each DIR's .beam files at /user/N, in the code
    path and loaded (the user's own files on `base` stay visible).

    The system boots in embedded mode, which loads nothing on demand: init loads the
    user's modules itself (`-eval`), once the boot script has run.
    """
    extra: dict[str, Path] = {}
    args: list[str] = []
    modules: list[str] = []
    for i, d in enumerate(paths):
        beams = sorted(Path(d).glob("*.beam"))
        if not beams:
            raise UserError(f"--path {d}: no .beam files there; compile your modules first (erlc)")
        extra.update({f"/user/{i}/{b.name}": b for b in beams})  # the .beam files only
        args += ["-pa", f"/user/{i}"]
        modules += [b.stem for b in beams]
    args += ["-eval", "code:ensure_modules_loaded([" + ",".join(f"'{m}'" for m in modules) + "])."]
    argfile = dest.parent / "args"
    argfile.write_text("".join(a + "\n" for a in args))  # one argument per line
    extra[USER_ARGS] = argfile
    userdisk.copy(base, dest)
    userdisk.add_files(dest, extra)
    return dest


@contextmanager
def booted(
    target: str,
    paths: Sequence[Path] = (),
    ram: str | None = None,
    log_name: str = "eval",
    disk: Path | None = None,
    persist: bool = False,
) -> Iterator[Shell]:
    """Boot TARGET headless to its shell. The disk is `disk` (default: the image's pristine
    disk), behind a throw-away overlay unless `persist`; with `paths`, a scratch copy of it
    plus the modules."""
    img = targets.image(cache.Planner(), target)
    runs = config.runs_dir()
    with tempfile.TemporaryDirectory(dir=runs) as tmp:
        d = disk or img.disk
        if paths:
            if d is None:
                raise UserError(f"--path: target '{target}' has no disk to put modules on")
            d = with_modules(d, paths, Path(tmp) / "disk.img")
        cmd = img.command(d, ram=ram, persist=persist and not paths)
        with qemu.boot(cmd, runs / f"{log_name}.log") as s:
            shell = Shell(s)
            shell.wait_ready()
            yield shell


def run_batch(
    target: str,
    exprs: list[str],
    paths: list[Path],
    ram: str | None,
    keep_writes: bool = False,
    fresh_disk: bool = False,
) -> int:
    """`chrysopolis run --eval`: print each result on its own line; non-zero on any failure.
    The user's disk boots behind a throw-away overlay; with `keep_writes`, writes persist."""
    require_shell(target)
    exprs = [check_expr(e) for e in exprs] or ["ok."]
    if keep_writes and paths:
        raise UserError(
            "--keep-writes with --path: the modules go on a scratch copy of your disk, which "
            "is thrown away; drop one of the two options"
        )
    img = targets.image(cache.Planner(), target)
    log = config.runs_dir() / "eval.log"
    with userdisk.in_use(img, target, fresh=fresh_disk) as d:
        try:
            with booted(target, paths, ram, disk=d, persist=keep_writes) as shell:
                for e in exprs:
                    print(shell.eval(e), flush=True)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            print(f"--- last lines of {log} ---\n{logs.tail(log, 20)}", file=sys.stderr)
            return 1
    return 0
