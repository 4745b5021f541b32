# SPDX-License-Identifier: BSD-2-Clause
"""The Erlang shell on the serial console, and batch evaluation.

`Shell` drives the Eshell for the checks. The console is a terminal (TERM and the window
size from qemu.HEADLESS), so the Eshell runs OTP's line editor: the editor echoes each typed
line (with cursor-control escape sequences where it redraws), the shell prints the result
and then its next prompt `N> `. A result is the text between the echoed line and that
prompt, once escape sequences and CRs are stripped; HEADLESS is wide enough that no
expression of ours wraps.

`run --eval` does not scrape prompts: `run_batch` boots a scratch copy of the user's disk
holding the program of chrysopolis/evaluator.py and `-noshell -eval` in /chrysopolis/args,
reads the program's marked lines and the halt status, and exits with a status (the
table is in `chrysopolis run --help`).
"""

import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pexpect

from chrysopolis import cache, checks, config, evaluator, logs, qemu, targets, userdisk
from chrysopolis.errors import RunFailed, UsageError, UserError

# An escape sequence a terminal acts on: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST),
# or ESC and one character (keypad modes, charset selection).
ANSI = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[ -/]*[0-~])")
# The prompt: a line's start, maybe after the editor's escape sequences, then Eshell's `N> `
# (`(NODE)N> ` on a distributed node) or IEx's `iex(N)> ` (`iex(NODE)N> `).
PROMPT = rb"\n(?:\x1b\[[0-?]*[ -/]*[@-~])*(?:iex\((?:[^()\s]+@[^()\s]+\))?|\([^()\s]+@[^()\s]+\))?(\d+)\)?> "
BOOT_TIMEOUT = 180.0  # QEMU start to the first prompt; about 6 s on an idle machine
EVAL_TIMEOUT = 120.0
# OTP 28+'s shell prints this hint (stdlib shell_hints) when a command runs over 5 s: not
# the result, so eval leaves it out.
LONG_RUNNING_HINT = "Command is taking a long time, type Ctrl+G, then enter 'i' to interrupt"
TIMEOUT = 300.0  # `run --eval --timeout`'s default: the expressions, all together
PROGRAM = "/chrysopolis/batch.erl"  # the evaluator on a batch disk, read by LOADER
# The -eval of a batch boot: reads, parses and runs the evaluator from the disk (kept short:
# main.c reads at most 8 KiB of arguments).
LOADER = (
    f'{{ok, B}} = file:read_file("{PROGRAM}"), '
    "{ok, T, _} = erl_scan:string(unicode:characters_to_list(B)), "
    "{ok, E} = erl_parse:parse_exprs(T), erl_eval:exprs(E, [])."
)
# The runtime's line for exit_group (halt/1), then the PD parks (or powers the machine off).
EXIT_STATUS = qemu.STATUS  # the guest's last line: it powers off next
# A batch ends with its status: the supervisor does not restart a node that ended
# (runtime/posix/supervision.c reads it).
NO_RESTART = ("opt/chrysopolis/restart", "off")
# After the evaluator started, the lines that mean the system died (not an expression).
SYSTEM_DOWN = re.compile(rb"MON\|ERROR|beam_server: ERROR")
# Not in it: ERTS ending the node itself (out of memory: `Crash dump is being written`, a
# dead kernel process): its lines are shown and the run ends with ERTS's exit status, as
# `erl -eval` does on Linux.

# Exit statuses of `run --eval` (the table in `chrysopolis run --help`); halt(N) gives N.
OK, FAILED, USAGE, TIMED_OUT, BROKEN = 0, 1, 2, 124, 125
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
        out = [line for line in lines[start:] if line.rstrip() != LONG_RUNNING_HINT]
        return "\n".join(out).strip("\n")


def require_shell(target: str) -> None:
    """Refuse, before building or booting, a target whose console is no Erlang shell."""
    try:
        st = cache.get(target)
    except UserError as e:  # an unknown target: bad usage
        raise UsageError(str(e)) from None
    if not st.shell:
        with_shell = ", ".join(sorted(n for n, s in cache.load_all().items() if s.shell))
        raise UsageError(
            f"target '{target}' has no Erlang shell, so --eval and --path cannot run on it; "
            f"use `chrysopolis run {target}` to boot it, or a target with a shell: {with_shell}"
        )


def check_expr(expr: str) -> str:
    e = expr.strip()
    if not e.endswith("."):
        raise UsageError(
            f"--eval {expr!r}: an Erlang expression must end with a full stop, e.g. '1 + 1.'"
        )
    return e


def _modules(paths: Sequence[Path]) -> tuple[dict[str, Path], list[str], list[str]]:
    """Each DIR's .beam files at /user/N: (files for the disk, -pa arguments, module names)."""
    files: dict[str, Path] = {}
    args: list[str] = []
    modules: list[str] = []
    for i, d in enumerate(paths):
        beams = sorted(Path(d).glob("*.beam"))
        if not beams:
            raise UsageError(f"--path {d}: no .beam files there; compile your modules first (erlc)")
        files.update({f"/user/{i}/{b.name}": b for b in beams})  # the .beam files only
        args += ["-pa", f"/user/{i}"]
        modules += [b.stem for b in beams]
    return files, args, modules


def app_dirs(apps: Sequence[str]) -> list[str]:
    """The guest's ebin directory of each OTP application named, e.g. inets ->
    /lib/inets-9.8/ebin (from the `otp` stage's tree, which the disk holds); a UsageError
    names the applications there for any other name."""
    lib = cache.Planner().ensure("otp") / "root" / "lib"
    have = {d.name.partition("-")[0]: d.name for d in sorted(lib.iterdir())}
    dirs = []
    for app in apps:
        if app not in have:
            raise UsageError(
                f"--app {app}: the disk has no such OTP application; give one of "
                f"{', '.join(sorted(have))}"
            )
        dirs.append(f"/lib/{have[app]}/ebin")
    return dirs


def with_modules(
    base: Path,
    paths: Sequence[Path],
    dest: Path,
    args: Sequence[str] = (),
    files: dict[str, Path] | None = None,
    load: bool = True,
    apps: Sequence[str] = (),
) -> Path:
    """A scratch copy of the disk `base` plus each DIR's .beam files at /user/N, in the code
    path and (with `load`) loaded, the OTP applications `apps` of the disk in the code path
    and loaded, then `args` and `files` (the user's own files on `base` stay visible; their
    /chrysopolis/args, if any, comes first).

    Init loads the user's modules and the applications' modules itself (`-eval`), once
    the boot script has run, as `erl -pa` users expect them loaded.
    """
    extra, pa, modules = _modules(paths)
    extra.update(files or {})
    lines = [*pa]
    for d in app_dirs(apps):
        lines += ["-pa", d]
    if apps:
        lines += [
            "-eval",
            "[begin application:load(A), {ok, Ms} = application:get_key(A, modules), "
            f"ok = code:ensure_modules_loaded(Ms) end || A <- [{','.join(apps)}]].",
        ]
    if load and modules:
        lines += ["-eval", f"code:ensure_modules_loaded([{','.join(map(repr, modules))}])."]
    lines += args
    userdisk.copy(base, dest)
    theirs = userdisk.read_file(dest, USER_ARGS)
    argfile = dest.parent / "args"
    argfile.write_bytes((theirs or b"").rstrip(b"\n") + b"\n" * bool(theirs))
    with open(argfile, "a") as f:
        f.write("".join(a + "\n" for a in lines))  # one argument per line
    extra[USER_ARGS] = argfile
    userdisk.add_files(dest, extra)
    return dest


@contextmanager
def booted(
    target: str,
    paths: Sequence[Path] = (),
    log_name: str = "eval",
    disk: Path | None = None,
    persist: bool = False,
    apps: Sequence[str] = (),
    forwards: Sequence[str] = (),
) -> Iterator[Shell]:
    """Boot TARGET headless to its shell. The disk is `disk` (default: the image's pristine
    disk), behind a throw-away overlay unless `persist`; with `paths` or `apps`, a scratch
    copy of it plus the modules. The serial log is a new one (logs.run_log(log_name))."""
    img = targets.image(cache.Planner(), target)
    runs = config.runs_dir()
    with tempfile.TemporaryDirectory(dir=runs) as tmp:
        d = disk or img.disk
        if paths or apps:
            if d is None:
                raise UserError(f"--path: target '{target}' has no disk to put modules on")
            d = with_modules(d, paths, Path(tmp) / "disk.img", apps=apps)
        cmd = img.command(d, persist=persist and not (paths or apps), forwards=forwards)
        with qemu.boot(cmd, logs.run_log(log_name)) as s:
            shell = Shell(s)
            shell.wait_ready()
            yield shell


# --- run --eval: the batch ------------------------------------------------------------------


def batch_disk(
    base: Path,
    paths: Sequence[Path],
    exprs: list[str],
    mark: str,
    dest: Path,
    apps: Sequence[str] = (),
    init_args: Sequence[str] = (),
    elixir: bool = False,
) -> Path:
    """A scratch copy of `base` that boots into the evaluator: the program at PROGRAM,
    `init_args` (a distributed node's, Elixir's code path) then `-noshell -eval LOADER` in
    /chrysopolis/args, the --path modules at /user/N and the --app applications loaded.
    With `elixir`, the program evaluates Elixir (evaluator.ELIXIR_PROGRAM)."""
    _, _, modules = _modules(paths)
    program = dest.parent / "batch.erl"
    code = evaluator.elixir_code(exprs, mark) if elixir else evaluator.code(exprs, mark, modules)
    program.write_text(code)
    return with_modules(
        base,
        paths,
        dest,
        args=[*init_args, "-noshell", "-eval", LOADER],
        files={PROGRAM: program},
        load=False,
        apps=apps,
    )


def run_batch(
    target: str,
    exprs: list[str],
    paths: list[Path],
    keep_writes: bool = False,
    fresh_disk: bool = False,
    timeout: float = TIMEOUT,
    forwards: Sequence[str] = (),
    apps: Sequence[str] = (),
    guest_forwards: Sequence[tuple[int, int]] = (),
    node=None,
    dist_node=None,
    cookie: str | None = None,
    elixir: bool = False,
) -> int:
    """`chrysopolis run --eval`: each result on stdout, one line each, in order; what the
    guest prints and the errors on stderr; the exit status of `run --help`. The user's disk
    boots as a scratch copy; with `keep_writes`, the copy replaces it after the run.
    `node`: nodes.Settings (MAC, address, hostname, LAN) for the run."""
    from chrysopolis import cluster, dist, iex, nodes  # they import this module

    node = node or nodes.Settings()
    require_shell(target)
    if not exprs:
        raise UsageError("run_batch needs an expression")
    exprs = [e.strip() for e in exprs] if elixir else [check_expr(e) for e in exprs]
    if elixir and paths:
        raise UsageError("--path with --shell iex: put Elixir modules in an --eval instead")
    if keep_writes and paths:
        raise UsageError(
            "--keep-writes with --path: the modules go on a scratch copy of your disk, which "
            "is thrown away; drop one of the two options"
        )
    if timeout <= 0:
        raise UsageError(f"--timeout {timeout:g}: give a number of seconds above 0")
    img = targets.image(cache.Planner(), target)
    if img.disk is None:
        raise UsageError(f"target '{target}' boots without a disk, so --eval cannot run on it")
    # Refuses a bad --forward or node setting before any work.
    qemu.command(
        img.board,
        img.loader,
        ram=img.ram,
        net_bus=img.net_bus,
        forwards=forwards,
        guest_forwards=guest_forwards,
        fw_cfg=node.fw_cfg(),
        netdev="lan" if node.lan else None,
    )
    _modules(paths)  # refuses a --path without modules before any work
    app_dirs(apps)  # and an --app the disk does not have
    init_args: list[str] = iex.code_path_args(cache.Planner()) if elixir else []
    if dist_node is not None:
        init_args += dist.init_args(dist_node, cookie)
        forwards = [*forwards, f"tcp:{dist_node.port}:{dist_node.port}"]
        guest_forwards = [*guest_forwards, *dist.guest_forwards([])]
    mark = evaluator.new_mark()
    with (
        userdisk.in_use(img, target, fresh=fresh_disk) as user,
        cluster.registered([dist_node] if dist_node else []),
    ):
        with (
            tempfile.TemporaryDirectory(dir=config.runs_dir(), prefix="batch-") as tmp,
            nodes.attached(cache.Planner(), target, node) as (node_img, node_kw),
        ):
            scratch = batch_disk(
                user, paths, exprs, mark, Path(tmp) / "disk.img", apps, init_args, elixir
            )
            node_kw = {**node_kw, "fw_cfg": [*node_kw.get("fw_cfg", ()), NO_RESTART]}
            cmd = node_img.command(
                scratch,
                persist=True,
                forwards=forwards,
                guest_forwards=guest_forwards,
                **node_kw,
            )
            status = evaluate(cmd, logs.run_log(target), mark, timeout, img.markers)
            if keep_writes:
                _keep(scratch, user, tmp)
    return status


def _keep(scratch: Path, user: Path, tmp: str) -> None:
    """The guest's writes kept: the scratch disk, without the batch's files, becomes the
    user's disk (whole or not at all)."""
    theirs = userdisk.read_file(user, USER_ARGS)
    userdisk.remove_files(scratch, [PROGRAM, *([] if theirs else [USER_ARGS])])
    if theirs:
        f = Path(tmp) / "their-args"
        f.write_bytes(theirs)
        userdisk.add_files(scratch, {USER_ARGS: f})
    userdisk.copy(scratch, user)


def evaluate(cmd: list[str], log: Path, mark: str, timeout: float, markers: dict) -> int:
    """Boot `cmd` (a batch disk), follow the evaluator's lines and return the exit status;
    RunFailed for a timeout (124) or a run that went wrong (125)."""
    reader = evaluator.Reader(mark)
    handoff = markers.get("handoff")
    handoff = re.compile(handoff.encode()) if handoff else None
    shown = handoff is None  # the guest's output is shown from ERTS's start on
    with qemu.boot(cmd, log) as s:
        deadline, limit, buf = s.started + BOOT_TIMEOUT, BOOT_TIMEOUT, b""
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise RunFailed(_timed_out(reader, limit, s.elapsed()), TIMED_OUT, log)
            try:
                buf += s.child.read_nonblocking(1 << 16, timeout=min(deadline - now, 0.5))
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                raise RunFailed(_exited(s, reader, log), BROKEN, log) from None
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.rstrip(b"\r")
                m = EXIT_STATUS.search(line)
                if m:
                    before = line[: m.start()].decode(errors="replace")
                    if before and shown:
                        print(before, file=sys.stderr, flush=True)
                    return int(m.group(1)) & 0xFF
                ln = reader.feed(line.decode(errors="replace"))
                if not ln.kind or ln.output:
                    down = SYSTEM_DOWN if reader.total is not None else FATAL_ANY
                    out = ln.output.encode()
                    if down.search(out) and not ERTS_ENDS.search(out):
                        raise RunFailed(
                            f"the guest system failed: {ln.output.strip()!r}", BROKEN, log
                        )
                    if shown:
                        print(ln.output, file=sys.stderr, flush=True)
                    elif handoff.search(line):
                        shown = True
                if ln.kind == "ready":
                    deadline, limit = time.monotonic() + timeout, timeout
                elif ln.kind == "=":
                    print(ln.text, flush=True)
                elif ln.kind == "!":
                    print(ln.text, file=sys.stderr, flush=True)


FATAL_ANY = checks.FATAL_LINE
# ERTS ending the node itself, e.g. a release whose application did not start: its lines are
# shown and the run ends with its status, before the evaluator started as after.
ERTS_ENDS = re.compile(rb"Kernel pid terminated|Crash dump")


def _timed_out(reader: evaluator.Reader, limit: float, elapsed: float) -> str:
    if reader.total is None:
        return (
            f"the boot timed out: the evaluator had not started {limit:.0f} s after QEMU "
            f"started (a boot takes about 5 s)"
        )
    return (
        f"--timeout {limit:g} s ran out: expression {reader.running} of {reader.total} "
        f"had not returned ({len(reader.results)} returned; {elapsed:.1f} s since QEMU started)"
    )


def _exited(s: qemu.Session, reader: evaluator.Reader, log: Path) -> str:
    s.child.close()
    why = s.child.exitstatus if s.child.exitstatus is not None else s.child.signalstatus
    text = log.read_text(errors="replace").splitlines()
    own = [ln.strip() for ln in text if ln.startswith("qemu-system-")]
    when = "before the guest booted" if reader.total is None else "before the guest halted"
    return f"QEMU exited (status {why}) {when}" + (f": {own[-1]}" if own else "")
