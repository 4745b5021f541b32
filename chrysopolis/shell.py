# SPDX-License-Identifier: BSD-2-Clause
"""Driving the Erlang shell on the serial console: boot, evaluate, read results back.

The Eshell runs in dumb mode: the PD echoes each typed line, the shell prints the result
and then its next prompt `N> `. A result is the text between the echo and that prompt.
`run --eval` and the shell checks use this one driver.
"""

import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from chrysopolis import cache, checks, config, logs, qemu, targets, userdisk
from chrysopolis.errors import UserError

PROMPT = rb"\n(\d+)> "
BOOT_TIMEOUT = 180.0  # QEMU start to the first prompt; about 6 s on an idle machine
EVAL_TIMEOUT = 120.0
# A whole line that means the system, not just an expression, went wrong.
FATAL = re.compile(rb"(?:" + checks.FATAL_LINE.pattern + rb")[^\r\n]*\r*\n")
USER_ARGS = "/chrysopolis/args"  # read by targets/beam/main.c: extra init arguments, one per line


class Shell:
    def __init__(self, session: qemu.Session) -> None:
        self.session = session
        self.ready_at = 0.0

    def _next_prompt(self, timeout: float, waiting_for: str) -> str:
        """What the guest printed before its next prompt; a fatal line or a timeout raises."""
        s = self.session
        try:
            idx = s.child.expect([PROMPT, FATAL], timeout=timeout)
        except Exception:
            raise qemu.MarkerTimeout(
                f"no {waiting_for} after {timeout:.0f} s (log: {s.log})"
            ) from None
        if idx == 1:
            line = s.child.after.decode(errors="replace").strip()
            raise UserError(f"the system failed before {waiting_for}: {line} (log: {s.log})")
        return s.child.before.decode(errors="replace").replace("\r", "")

    def wait_ready(self, timeout: float = BOOT_TIMEOUT) -> float:
        self._next_prompt(timeout, "the Erlang shell prompt")
        self.ready_at = self.session.elapsed()
        return self.ready_at

    def eval(self, expr: str, timeout: float = EVAL_TIMEOUT) -> str:
        """Evaluate one expression (ending in a full stop) and return what the shell printed."""
        self.session.send(expr + "\r")
        text = self._next_prompt(timeout, f"the result of {expr!r}")
        return "\n".join(text.split("\n")[1:]).strip("\n")  # the first line is the echo


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
