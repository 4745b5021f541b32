# SPDX-License-Identifier: BSD-2-Clause
"""The `chrysopolis` command: setup, doctor, sources, build, run, disk, check, baseline, show,
fmt."""

import contextlib
import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from chrysopolis import config, lock, progress, sources, toolchain
from chrysopolis.errors import RunFailed, StageFailed, UsageError, UserError

DEFAULT_TARGET = "beam"


def _fail(e: UserError, status: int = 1) -> None:
    """One line naming the fix; a failed stage or boot also shows the end of its own log."""
    click.secho(f"error: {e}", fg="red", err=True)
    log = getattr(e, "log", None)
    if log:
        from chrysopolis import logs

        tail = logs.tail(log)
        if tail:
            click.echo(f"--- last lines of {log} ---\n{tail}", err=True)
    sys.exit(status)


def _terminated(signum, frame) -> None:
    """SIGTERM unwinds like Ctrl-C, so every `with` removes its temporary files."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up
    raise Terminated()


class Terminated(KeyboardInterrupt):
    """The tool got SIGTERM (unwinds as Ctrl-C does)."""


class Group(click.Group):
    def invoke(self, ctx: click.Context):
        signal.signal(signal.SIGTERM, _terminated)
        try:
            return super().invoke(ctx)
        except UserError as e:
            _fail(e)
        except Terminated:
            click.echo("terminated", err=True)
            sys.exit(143)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chrysopolis")
def main() -> None:
    """Erlang/OTP on seL4: build and boot Microkit + LionsOS images from pinned sources."""


@main.command()
@click.option("--dry-run", is_flag=True, help="Print the commands instead of running them.")
def setup(dry_run: bool) -> None:
    """Install the pinned Debian packages and Python packages the build needs (idempotent).

    Decides by package and version (lock.toml [host.debian]), not by commands on PATH;
    apt runs through sudo when you are not root. Python packages go into the environment
    the tool runs in (.venv from ./quickstart), never into the system's Python.
    """
    cmds = toolchain.setup_commands(lock.load())
    if not cmds:
        click.echo("every pinned host package and Python package is installed")
        return
    log = config.cache_dir() / "logs" / "setup.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    for label, cmd in cmds:
        click.echo("$ " + shlex.join(cmd))
        if dry_run:
            continue
        with open(log, "a") as f, progress.step(label):
            f.write(f"$ {shlex.join(cmd)}\n")
            f.flush()
            rc = subprocess.call(
                cmd,
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if rc != 0:
            from chrysopolis import logs

            tail = logs.tail(log, 15)
            click.echo(f"--- last lines of {log} ---\n{tail}", err=True)
            why = next((ln for ln in reversed(tail.splitlines()) if ln.startswith("E: ")), "")
            raise UserError(
                f"`{label}` exited {rc}{': ' + why if why else ''}; "
                "fix that and run `chrysopolis setup` again (`chrysopolis doctor` shows "
                "what is installed)"
            )


@main.command()
@click.option(
    "--verify",
    is_flag=True,
    help="Also hash every stored source and every cached stage output again (slow) "
    "instead of checking sizes and modification times.",
)
def doctor(verify: bool) -> None:
    """Report what the build will use (path, package, version) and how to fix any gap;
    check the stored sources and cached stage outputs."""
    lk = lock.load()
    bad = damaged = 0
    click.echo(
        f"host packages (pins: {lk.path} [host.debian]; commands from {toolchain.SYSTEM_PATH}):"
    )
    have = toolchain.debian_versions(toolchain.packages())
    rows = [(t.command, t.package) for t in toolchain.TOOLS]
    rows += [("", p) for p in toolchain.EXTRA_PACKAGES]
    for command, pkg in rows:
        path = toolchain.find(command) if command else ""
        got, pin = have[pkg], lk.host_debian.get(pkg, "")
        ok = got and got == pin and (path or not command)
        bad += not ok
        where = (path or "missing") if command else "(no command)"
        state = got or "not installed"
        drift = "" if got == pin else f", lock has {pin or 'no pin'}"
        fix = "" if ok else "  fix: chrysopolis setup"
        click.echo(f"  {'✓' if ok else '✗'} {command or pkg:24} {where}  {pkg} {state}{drift}{fix}")
    venv = "" if toolchain.in_venv() else " (the system's: run ./quickstart for .venv)"
    click.echo(f"python packages ({sys.executable}{venv}):")
    for name, want in lk.host_pypi.items():
        got = toolchain.pypi_versions([name])[name]
        mark = "✓" if got == want else "✗"
        bad += got != want
        fix = "" if got == want else "  fix: chrysopolis setup"
        click.echo(f"  {mark} {name:24} {got or 'missing'} (lock {want}){fix}")
    click.echo(f"sources (store: {sources.store_dir()}):")
    for s in lk.sources.values():
        if not sources.present(s):
            click.echo(f"  - {s.name:24} absent: {sources.bring_hint(s)}")
            continue
        with progress.step(f"verify source {s.name}") if verify else contextlib.nullcontext():
            what = sources.damage(s, full=verify)
        if what is None:
            click.echo(f"  ✓ {s.name:24} {s.pin}")
        else:
            damaged += 1
            click.echo(f"  ✗ {s.name:24} {s.pin} changed in the store: {what}")
            click.echo(f"      fix: {sources.bring_hint(s)}")
    damaged += _doctor_stages(verify)
    if bad:
        raise UserError(
            f"{bad} host prerequisite(s) missing or not at their pin; run `chrysopolis setup`"
        )
    if damaged:
        raise UserError(
            f"{damaged} stored source(s) or stage output(s) changed since they were stored; "
            "run the fix shown beside each"
        )


def _doctor_stages(verify: bool) -> int:
    """Check every cached stage output against its record; the number found damaged."""
    from chrysopolis import cache

    outs = sorted(p.parent for p in cache.cache_root().glob(f"*/*/{cache.MANIFEST}"))
    damaged = []
    with progress.step(f"verify {len(outs)} stage outputs") if verify else contextlib.nullcontext():
        for out in outs:
            what = cache.output_damage(out, full=verify)
            if what is not None:
                damaged.append((out, what))
    click.echo(f"stage outputs (cache: {cache.cache_root()}): {len(outs) - len(damaged)} intact")
    for out, what in damaged:
        click.echo(f"  ✗ {out.parent.name} {out.name}: {what}")
        click.echo(f"      fix: chrysopolis build {out.parent.name} --rebuild")
    return len(damaged)


@main.group("sources")
def sources_group() -> None:
    """Pinned upstream sources: list, fetch, import, bump."""


@sources_group.command("list")
def sources_list() -> None:
    """Show each pinned source and whether it is in the store."""
    lk = lock.load()
    for s in lk.sources.values():
        state = "present" if sources.present(s) else "absent"
        click.echo(f"{s.name:14} {s.kind:7} {s.pin:14} {s.sha256[:12]}  {state:8} {s.url}")


def location_options(fn):
    """--debian-mirror URL, --forge URL: where to download from, before the environment's."""
    fn = click.option(
        "--forge",
        "forges",
        multiple=True,
        metavar="URL",
        help="A base URL serving the GitHub-hosted repositories (repeatable; also "
        "$CHRYSOPOLIS_FORGE, space-separated; default GitHub).",
    )(fn)
    return click.option(
        "--debian-mirror",
        "debian_mirrors",
        multiple=True,
        metavar="URL",
        help="A Debian archive mirror's base URL (repeatable; also $CHRYSOPOLIS_DEBIAN_MIRROR, "
        "space-separated; default: the archive URIs of apt's sources).",
    )(fn)


@sources_group.command("fetch")
@click.argument("names", nargs=-1)
@location_options
@click.option(
    "--mirror",
    "mirrors",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A local mirror directory to try before the network (repeatable; "
    f"also ${sources.MIRROR_ENV}, ':'-separated).",
)
def sources_fetch(
    names: tuple[str, ...],
    mirrors: tuple[Path, ...],
    debian_mirrors: tuple[str, ...],
    forges: tuple[str, ...],
) -> None:
    """Bring sources from a local mirror or the network and verify them (all without NAME);
    a stored source that was changed is brought again."""
    from chrysopolis import locations

    locations.use_locations(debian_mirrors, forges)
    if mirrors:
        had = os.environ.get(sources.MIRROR_ENV, "")
        os.environ[sources.MIRROR_ENV] = os.pathsep.join([*map(str, mirrors), *filter(None, [had])])
    lk = lock.load()
    for s in [lk.source(n) for n in names] if names else lk.sources.values():
        with progress.step(f"fetch {s.name} {s.pin}"):
            path = sources.fetch(s)
        click.echo(f"{s.name}: {path}")


@sources_group.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
def sources_import(name: str, path: Path) -> None:
    """Take a source from a local directory, git checkout, bare mirror or tarball."""
    s = lock.load().source(name)
    with progress.step(f"import {s.name} {s.pin} from {path}"):
        dest = sources.import_path(s, path)
    click.echo(f"{s.name}: {dest}")


@sources_group.command("bump")
@click.argument("name")
@click.argument("version", required=False)
@click.option(
    "--from",
    "origin",
    metavar="PATH_OR_URL",
    help="git pins: the checkout, bare mirror or git URL to take the commit from "
    "(default: the forge, $CHRYSOPOLIS_FORGE).",
)
@location_options
def sources_bump(
    name: str,
    version: str | None,
    origin: str | None,
    debian_mirrors: tuple[str, ...],
    forges: tuple[str, ...],
) -> None:
    """Move NAME's pin to the newest version, or VERSION, and rewrite lock.toml.

    Debian pins: the newest version in the index of the entry's `suite` on the first Debian
    mirror that answers. git pins: the newest commit of the entry's branch (`ref`), or
    VERSION as a tag, branch or commit. The files are verified, the tree unpacked, hashed and
    stored before the entry changes; comments and other entries stay as they are.
    """
    from chrysopolis import bump, locations

    locations.use_locations(debian_mirrors, forges)
    with progress.step(f"bump {name}"):
        done = bump.bump(name, version, origin)
    if not done.changes:
        s = lock.load().source(name)
        click.echo(f"{name}: already at {version or 'the newest'} ({s.pin}); nothing changed")
        return
    for key, old, new in done.changes:
        click.echo(f"{name}.{key}: {old} -> {new}")
    click.echo(f"{name}: {done.path}")
    stages = ", ".join(done.stages) or "none"
    click.echo(f"lock.toml rewritten; the stages using {name} rebuild on the next build: {stages}")


RAM_HELP = (
    "The RAM the image is built for and boots with, e.g. 512M or 2G (default: the board's "
    "2G): seL4's memory map is fixed when its SDK is built, one SDK per size."
)


APP_HELP = (
    "An OTP application directory (rebar3's layout, or a prebuilt ebin/) to compile into a "
    "release on the disk and boot into (repeatable; the first names the release)."
)


def release_options(fn):
    """--app DIR, --config FILE, --vm-args FILE: your release on the image (docs/apps.md)."""
    fn = click.option(
        "--vm-args",
        "vm_args",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="A vm.args file: emulator (+P 262144) and init flags for the release.",
    )(fn)
    fn = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="The release's sys.config (with --app).",
    )(fn)
    return fn


SUPERVISE_HELP = (
    "A restart policy, OTP's words: NAME:RESTART:INTENSITY:PERIOD_MS:ON_GIVEUP, e.g. "
    "fatfs:permanent:5:10000:stop; beam_server's may end with :STATUS+STATUS, the halt "
    "statuses that restart the node (repeatable; docs/recovery.md)."
)


def supervise_option(fn):
    """--supervise POLICY: the supervisor's policy for a PD (the beam stage's `supervision`)."""
    return click.option(
        "--supervise", "policies", multiple=True, metavar="POLICY", help=SUPERVISE_HELP
    )(fn)


def _use_supervision(policies: tuple[str, ...]) -> None:
    from chrysopolis import cache, system

    if policies:
        text = ",".join(policies)
        system.parse_policies(text)  # a bad one is refused before any work
        cache.use_option("beam", "supervision", text)


def _use_release(dirs, config_file: Path | None, vm_args: Path | None) -> None:
    from chrysopolis import apps

    apps.use([Path(d) for d in dirs], config_file, vm_args)


def _use_ram(ram: str | None) -> None:
    """`--ram`: every planner of this process builds and boots images for that size."""
    from chrysopolis import boards, cache

    if ram is not None:
        cache.use_ram(boards.ram_mib(boards.board(boards.DEFAULT_BOARD), ram))


@main.command()
@click.argument("target", required=False, default=DEFAULT_TARGET)
@click.option("--list", "list_", is_flag=True, help="List targets and stages with their state.")
@click.option("--ram", default=None, metavar="SIZE", help=RAM_HELP)
@click.option("-v", "--verbose", is_flag=True, help="Also print how the RAM divides (memory.txt).")
@click.option(
    "--rebuild",
    is_flag=True,
    help="Build TARGET (a target or a stage) again even if it is cached: its stored "
    "output is discarded first (the stages it uses are kept).",
)
@click.option(
    "--app",
    "app_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help=APP_HELP,
)
@release_options
@supervise_option
def build(
    target: str,
    list_: bool,
    ram: str | None,
    verbose: bool,
    rebuild: bool,
    app_dirs: tuple[Path, ...],
    config_file: Path | None,
    vm_args: Path | None,
    policies: tuple[str, ...],
) -> None:
    """Build TARGET (default: the Erlang image) and put its files in the out directory
    (with --app, in out/TARGET-RELEASE)."""
    from chrysopolis import cache, targets

    _use_ram(ram)
    _use_supervision(policies)
    _use_release(app_dirs, config_file, vm_args)
    planner = cache.Planner()
    if list_:
        for st in sorted(cache.load_all().values(), key=lambda s: (not s.target, s.name)):
            kind = "target" if st.target else "stage"
            state = "built" if planner.is_built(st.name) else "-"
            click.echo(f"{st.name:16} {kind:7} {state:6} {st.doc}")
        return
    t0 = time.monotonic()
    st = cache.get(target)
    if rebuild:
        planner.discard(target)
    if st.target:
        from chrysopolis import userdisk

        img = targets.image(planner, target)
        userdisk.adopt_legacy(img, target)  # the user's disk where older versions kept it
        dest = targets.publish(img, userdisk.owner(img, target))
    else:
        if app_dirs:
            raise UsageError(f"--app: '{target}' is a stage; give a target with a disk (beam)")
        dest = planner.ensure(target)
    click.echo(f"{target}: {dest}  ({time.monotonic() - t0:.1f} s)")
    if verbose and (dest / "memory.txt").is_file():
        click.echo((dest / "memory.txt").read_text(), nl=False)


RUN_HELP = """Boot TARGET in QEMU with its serial console on this terminal (Ctrl-A X quits).

    \b
    Which disk boots (`chrysopolis disk path` prints where yours is):
      interactive        your disk, out/TARGET-disk/disk.img; the guest's writes persist
                         across runs and rebuilds (a new image updates the OTP tree on it
                         and keeps your files)
      --path DIR         interactive, on a scratch copy of your disk plus DIR's modules
                         (in the code path and loaded, like `erl -pa`); nothing is kept
      --app APP          the same, with an OTP application of the disk (e.g. inets)
      --sname NAME       the same, as distributed node NAME@localhost (see `cluster --help`)
      --eval             headless, on a scratch copy of your disk: nothing the run writes
                         is kept (--keep-writes keeps it)
    Start clean with --fresh-disk or `chrysopolis disk reset` (the old disk is kept as
    previous-disk.img).

    \b
    --profile-boot: where the boot's time goes. Builds TARGET with its file-system
    call counts (stage option fs_stats), boots it headless on its pristine disk, halts
    it at the first prompt, and prints a table (ms): Microkit loader + seL4 + monitor,
    beam_server's init, ERTS start and, of it, the file-system calls and module loading
    (the .beam files opened). Exit status 0; 2 for bad usage; 1 if the build or boot
    failed (docs/boot.md).

    \b
    With --eval (batch), no shell: each expression is evaluated in order, with the
    bindings of the ones before, until one fails. Stdout gets one line per expression
    that returned, its result in full (`~tp`, no depth or width limit): line K is the
    result of expression K. An --eval text may hold several expressions ('1. 2.' is
    two). What the guest prints (io:format, logger) and the `** exception ...` text of
    a failure go to stderr as they come.

    \b
    Exit status with --eval:
      0    every expression returned
      1    an expression raised an exception, a text did not parse (then nothing is
           evaluated) or a --path module did not load
      2    bad usage, refused before booting (an option's value, a missing full stop)
      N    an expression called halt(N): that status (N modulo 256), at once; or ERTS
           ended the node (out of memory: its message, a crash dump, status 1)
      124  --timeout ran out (or the boot took over 180 s)
      125  the run itself failed: a build, QEMU, the disk, or the guest system died
      130  interrupted (SIGINT); 143: terminated (SIGTERM)
    """


@main.command(help=RUN_HELP)
@click.argument("target", required=False, default=DEFAULT_TARGET)
@click.option(
    "--eval",
    "exprs",
    multiple=True,
    metavar="EXPR",
    help="Evaluate Erlang expressions headless, each ending in a full stop; print each "
    "result on its own line (repeatable).",
)
@click.option(
    "--path",
    "paths",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Put DIR's .beam files on a scratch copy of your disk, in the code path and loaded "
    "(repeatable).",
)
@click.option(
    "--app",
    "apps",
    multiple=True,
    metavar="DIR|APP",
    help="Your OTP application directory: compiled into a release on your disk and booted "
    "(repeatable; docs/apps.md). Or the name of an OTP application of the disk, e.g. "
    "inets, loaded at boot.",
)
@release_options
@click.option(
    "--no-shell",
    "no_shell",
    is_flag=True,
    help="Boot without the Erlang shell: the console shows only what the system prints.",
)
@click.option(
    "--timeout",
    type=float,
    default=None,
    metavar="SECONDS",
    help="With --eval: the time the expressions may take, all together (default 300; the "
    "boot before them has its own 180 s); past it the run ends with status 124.",
)
@click.option("--ram", default=None, metavar="SIZE", help=RAM_HELP)
@click.option(
    "--forward",
    "forwards",
    multiple=True,
    metavar="[tcp:|udp:]HOSTPORT:GUESTPORT",
    help="Forward 127.0.0.1:HOSTPORT on this host to the guest's GUESTPORT (TCP unless "
    "udp:; repeatable). The guest still reaches nothing outside QEMU's user network.",
)
@click.option(
    "--host-port",
    "host_ports",
    multiple=True,
    metavar="HOSTPORT[:GUESTPORT]",
    help="Let the guest reach a TCP server on this host's 127.0.0.1:HOSTPORT at "
    "10.0.2.100:GUESTPORT (default: the same port; repeatable).",
)
@click.option(
    "--node",
    type=int,
    default=None,
    metavar="N",
    help="Boot as node N (0-244): MAC 52:54:00:c5:00:0(N+1) (packed in seconds, no rebuild) "
    "and hostname nodeN.",
)
@click.option("--mac", default=None, help="Boot with this MAC (instead of --node's).")
@click.option(
    "--ip",
    default=None,
    metavar="A.B.C.D/LEN[,GW]",
    help="A static address (and gateway) for eth0 instead of DHCP.",
)
@click.option("--hostname", default=None, help="The guest's host name (uname, inet:gethostname).")
@click.option(
    "--lan",
    default=None,
    metavar="NAME",
    help="Put the node (--node N) on virtual LAN NAME with the other nodes run with the same "
    "NAME, at 10.0.3.(10+N)/24 unless --ip; instead of the user network. Boots a throw-away "
    "copy of the image's disk.",
)
@click.option("--sname", default=None, help="Boot as distributed node NAME@localhost.")
@click.option("--name", default=None, help="Boot as distributed node NAME@127.0.0.1 (long names).")
@click.option("--cookie", default=None, help="The node's cookie (default: your ~/.erlang.cookie).")
@click.option(
    "--cookie-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A file whose first line is the node's cookie.",
)
@click.option(
    "--shell",
    "shell_name",
    default="erl",
    metavar="erl|iex",
    help="The shell: erl (the Eshell, default) or iex (Elixir's IEx; --eval then takes "
    "Elixir, no full stop).",
)
@click.option(
    "--keep-writes",
    is_flag=True,
    help="With --eval: keep what the guest writes on your disk.",
)
@click.option(
    "--fresh-disk",
    is_flag=True,
    help="Start from a clean disk: replace your disk with the image's pristine one first.",
)
@click.option(
    "--profile-boot",
    "profile_boot",
    is_flag=True,
    help="Boot headless once and print where the boot's time goes (see above).",
)
@supervise_option
def run(
    target: str,
    exprs: tuple[str, ...],
    paths: tuple[Path, ...],
    apps: tuple[str, ...],
    timeout: float | None,
    ram: str | None,
    forwards: tuple[str, ...],
    host_ports: tuple[str, ...],
    node: int | None,
    mac: str | None,
    ip: str | None,
    hostname: str | None,
    lan: str | None,
    sname: str | None,
    name: str | None,
    cookie: str | None,
    cookie_file: Path | None,
    shell_name: str,
    keep_writes: bool,
    fresh_disk: bool,
    config_file: Path | None,
    vm_args: Path | None,
    no_shell: bool,
    profile_boot: bool,
    policies: tuple[str, ...],
) -> None:
    from chrysopolis import cache, cluster, dist, iex, logs, nodes, qemu, shell, targets, userdisk

    if profile_boot:
        _profile_boot(target, ram, policies, locals())
    try:
        _use_ram(ram)
        _use_supervision(policies)
        # A value with a slash, or a directory here, is yours; any other an OTP app's name.
        app_dirs = [Path(a) for a in apps if "/" in a or Path(a).is_dir()]
        apps = tuple(a for a in apps if Path(a) not in app_dirs)
        _use_release(app_dirs, config_file, vm_args)
        if no_shell and (exprs or shell_name != "erl"):
            raise UsageError("--no-shell goes with an interactive run of the Erlang shell")
        use_iex = iex.check_shell(shell_name, target) == "iex"
        for f in forwards:
            qemu.parse_forward(f)
        guest_forwards = [qemu.parse_host_port(h) for h in host_ports]
        settings = nodes.settings(node, mac, ip, hostname, lan)
        if lan and (forwards or host_ports):
            flag = "--forward" if forwards else "--host-port"
            raise UsageError(f"{flag} needs the user network, which a --lan node has not")
        dist_node, cookie_value = None, None
        if sname or name:
            if lan:
                raise UsageError(
                    "--sname/--name with --lan: a LAN node has no way to the host's epmd"
                )
            alive, long = dist.parse_name(sname, name)
            dist_node = dist.Node(alive, long, dist.free_port())
            cookie_value = dist.cookie(cookie, cookie_file)
        elif cookie or cookie_file:
            raise UsageError("--cookie goes with --sname or --name; give a node name")
    except UsageError as e:
        _fail(e, shell.USAGE)

    if exprs:
        try:
            status = shell.run_batch(
                target,
                list(exprs),
                list(paths),
                keep_writes,
                fresh_disk,
                shell.TIMEOUT if timeout is None else timeout,
                forwards,
                apps,
                guest_forwards,
                settings,
                dist_node,
                cookie_value,
                elixir=use_iex,
            )
        except UsageError as e:
            _fail(e, shell.USAGE)
        except RunFailed as e:
            _fail(e, e.status)
        except UserError as e:
            _fail(e, shell.BROKEN)
        sys.exit(status)
    for flag, given in (("--keep-writes", keep_writes), ("--timeout", timeout is not None)):
        if given:
            raise UsageError(f"{flag} goes with --eval; give an expression, or drop {flag}")
    planner = cache.Planner()
    img = targets.image(planner, target)
    userdisk.adopt_legacy(img, target)  # the user's disk where older versions kept it
    dest = targets.publish(img, userdisk.owner(img, target))
    if settings.lan:
        sys.exit(_run_lan_node(planner, target, img, settings, paths, fresh_disk))
    if dist_node is not None:
        forwards = (*forwards, f"tcp:{dist_node.port}:{dist_node.port}")
        guest_forwards += dist.guest_forwards([])
    with (
        userdisk.in_use(img, target, fresh=fresh_disk) as disk,
        tempfile.TemporaryDirectory(dir=config.runs_dir(), prefix="path-") as tmp,
        nodes.attached(planner, target, settings) as (node_img, node_kw),
        cluster.registered([dist_node] if dist_node else []),
    ):
        boot_disk, where = disk, f"; disk {disk} (writes persist)" if disk else ""
        if paths or apps or dist_node or use_iex:
            if disk is None:
                raise UsageError(f"--path: target '{target}' has no disk to put modules on")
            shell.require_shell(target)
            init_args = dist.init_args(dist_node, cookie_value) if dist_node else []
            init_args += iex.init_args(planner) if use_iex else []
            boot_disk = shell.with_modules(
                disk, paths, Path(tmp) / "disk.img", args=init_args, apps=apps
            )
            what = [*map(str, paths), *apps]
            where = (
                ("; IEx" if use_iex else "")
                + "; a scratch copy of your disk"
                + (f" with the modules of {', '.join(what)}" if what else "")
                + (f", as node {dist_node.name} on dist port {dist_node.port}" if dist_node else "")
                + " (nothing is kept)"
            )
        # QEMU copies the console here: the guest's halt status is its last line.
        console_log = logs.run_log(target)
        published = (
            dataclasses.replace(img, loader=dest / img.loader.name) if node_img is img else node_img
        )
        if no_shell:
            node_kw = {**node_kw, "fw_cfg": [*node_kw.get("fw_cfg", ()), NO_SHELL]}
            where += "; no shell"
        if img.release:
            where = f"; release {img.release}" + where
        cmd = published.command(
            boot_disk,
            interactive=True,
            persist=True,
            console_log=console_log,
            forwards=forwards,
            guest_forwards=guest_forwards,
            **node_kw,
        )
        click.echo(f"booting {published.loader}{where} (Ctrl-A X quits QEMU)", err=True)
        rc = qemu.interactive(cmd, console_log)
    sys.exit(rc)


# run's options that --profile-boot goes with (it profiles the image, nothing else).
PROFILE_WITH = {"target", "ram", "policies", "profile_boot", "shell_name"}


def _profile_boot(target: str, ram: str | None, policies: tuple[str, ...], given: dict) -> None:
    from chrysopolis import bootprofile, shell

    try:
        params = click.get_current_context().command.params
        others = [p.opts[0] for p in params if p.name not in PROFILE_WITH and given[p.name]]
        others += ["--shell"] if given["shell_name"] != "erl" else []
        if others:
            raise UsageError(f"--profile-boot profiles the image alone; drop {others[0]}")
        _use_ram(ram)
        _use_supervision(policies)
        bootprofile.require(target)
    except UsageError as e:
        _fail(e, shell.USAGE)
    bootprofile.main(target)
    sys.exit(0)


# This boot's extra init flags (targets/beam/main.c reads them from fw_cfg).
NO_SHELL = ("opt/chrysopolis/args", "-noshell")


def _run_lan_node(planner, target, img, settings, paths, fresh_disk) -> int:
    """An interactive LAN node: several run at once, so none may write your disk; each
    boots the image's pristine disk behind a throw-away overlay."""
    from chrysopolis import logs, nodes, qemu

    for flag, given in (("--path", paths), ("--fresh-disk", fresh_disk)):
        if given:
            raise UsageError(f"{flag} does not go with --lan (a LAN node boots a throw-away disk)")
    console_log = logs.run_log(f"{target}-lan-{settings.lan}-{settings.node}")
    with nodes.attached(planner, target, settings) as (node_img, node_kw):
        cmd = node_img.command(interactive=True, persist=False, console_log=console_log, **node_kw)
        click.echo(
            f"booting node {settings.node} ({settings.hostname}, {settings.mac}, {settings.ip}) "
            f"on LAN {settings.lan}, a throw-away copy of the image's disk (Ctrl-A X quits QEMU)",
            err=True,
        )
        return qemu.interactive(cmd, console_log)


@main.group("disk")
def disk_group() -> None:
    """Your disk: the FAT disk interactive runs boot and write to (kept across rebuilds)."""


def _disk_image(target: str):
    from chrysopolis import cache, targets

    img = targets.image(cache.Planner(), target)
    if img.disk is None:
        raise UserError(
            f"target '{target}' boots without a disk; give a target that has one, e.g. `beam`"
        )
    return img


@disk_group.command("path")
@click.argument("target", required=False, default=DEFAULT_TARGET)
def disk_path(target: str) -> None:
    """Print where TARGET's disk is (the first `chrysopolis run` makes it)."""
    from chrysopolis import userdisk

    _disk_image(target)
    p = userdisk.path(target)
    click.echo(p)
    if not p.exists():
        click.echo(f"(not made yet: `chrysopolis run {target}` makes it)", err=True)


@disk_group.command("reset")
@click.argument("target", required=False, default=DEFAULT_TARGET)
def disk_reset(target: str) -> None:
    """Replace TARGET's disk with the image's pristine one (the old one: previous-disk.img)."""
    from chrysopolis import userdisk

    img = _disk_image(target)
    had = userdisk.path(target).exists()
    p = userdisk.reset(img, target)
    kept = f"; the old one is {p.with_name(userdisk.PREVIOUS)}" if had else ""
    click.echo(f"{target}: a fresh disk at {p}{kept}")


def TARGET_OPTION(fn):
    fn = click.option(
        "--release",
        default=None,
        metavar="NAME",
        help="The disk of release NAME (`run --app`'s: out/TARGET-NAME-disk).",
    )(fn)
    return click.option(
        "--target", default=DEFAULT_TARGET, show_default=True, help="Whose disk (a target)."
    )(fn)


def _user_disk(target: str, exclusive: bool = False):
    """TARGET's disk under its lock; nothing is built (a disk file is all these need).
    `target` may name a release's disk, TARGET-RELEASE (the `--release` option)."""
    from chrysopolis import cache, userdisk

    base, _, release = target.partition("/")
    if not cache.get(base).target:
        raise UserError(f"'{base}' is a build stage, not a target; see `chrysopolis build --list`")
    return userdisk.locked(base, exclusive, release or None)


def _owner(target: str, release: str | None) -> str:
    return f"{target}/{release}" if release else target


@disk_group.command("ls")
@click.argument("path", default="/")
@click.option("-r", "--recursive", is_flag=True, help="The whole tree under PATH.")
@TARGET_OPTION
def disk_ls(path: str, recursive: bool, target: str, release: str | None) -> None:
    """List PATH on your disk: size and path of each file, directories ending in /."""
    from chrysopolis import userdisk

    target = _owner(target, release)
    with _user_disk(target) as d:
        for p, size in userdisk.ls(d, path, target, recursive):
            click.echo(f"{'' if size is None else size:>10}  {p}")


@disk_group.command("get")
@click.argument("guestpath")
@click.argument("hostdest", required=False, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite host files that exist.")
@TARGET_OPTION
def disk_get(
    guestpath: str, hostdest: Path | None, force: bool, target: str, release: str | None
) -> None:
    """Copy a file or directory of your disk to the host (default ./NAME)."""
    from chrysopolis import userdisk

    target = _owner(target, release)
    with _user_disk(target) as d:
        got = userdisk.get(d, guestpath, hostdest, target, force)
    click.echo(f"{target}:{guestpath} -> {got}")


@disk_group.command("put")
@click.argument("hostpath", type=click.Path(path_type=Path))
@click.argument("guestdest", default="/")
@click.option("--force", is_flag=True, help="Overwrite files already on the disk.")
@TARGET_OPTION
def disk_put(hostpath: Path, guestdest: str, force: bool, target: str, release: str | None) -> None:
    """Copy a host file or directory onto your disk (default into /; into GUESTDEST if it
    ends with / or is a directory). Not while a `chrysopolis run` uses the disk."""
    from chrysopolis import userdisk

    target = _owner(target, release)
    with _user_disk(target, exclusive=True) as d:
        dest = userdisk.put(d, hostpath, guestdest, target, force)
    click.echo(f"{hostpath} -> {target}:{dest}")


CLUSTER_HELP = """Boot N seL4 nodes (default 2) of TARGET in one Erlang cluster.

  The nodes are PREFIX1@localhost ... PREFIXN@localhost (with --long, @127.0.0.1), each
  on a scratch copy of the image's disk (nothing is kept), with its own dist port on
  this host's 127.0.0.1 and its own serial log. The first node's console is this
  terminal (Ctrl-A X quits; the others stop with it); the others run headless.

  The cookie is --cookie, the first line of --cookie-file, or your ~/.erlang.cookie
  (made if missing, as `erl` does); the image has none. A Linux node on this host joins
  with ordinary flags (docs/distribution.md), e.g.

    erl -sname linux@localhost -setcookie COOKIE -kernel inet_dist_listen_min 9100 inet_dist_listen_max 9109

  and `erl -sname me@localhost -setcookie COOKIE -remsh beam1@localhost` is a shell on
  the first node. Names and ports are found through the host's epmd on 127.0.0.1:4369
  (the one running, or the tool's own while the cluster runs).
"""


@main.command(help=CLUSTER_HELP)
@click.argument("count", type=click.IntRange(1, 8), default=2, required=False)
@click.option("--target", default=DEFAULT_TARGET, help="The image every node boots.")
@click.option("--prefix", default="beam", help="Node names: PREFIX1, PREFIX2, ...")
@click.option("--long", "long_names", is_flag=True, help="Long names: NAME@127.0.0.1.")
@click.option("--cookie", default=None, help="The cluster's cookie.")
@click.option(
    "--cookie-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A file whose first line is the cookie.",
)
@click.option("--ram", default=None, metavar="SIZE", help=RAM_HELP)
def cluster(
    count: int,
    target: str,
    prefix: str,
    long_names: bool,
    cookie: str | None,
    cookie_file: Path | None,
    ram: str | None,
) -> None:
    from chrysopolis import cache, dist, shell, targets
    from chrysopolis import cluster as cl

    try:
        _use_ram(ram)
        if not dist.ALIVE.fullmatch(f"{prefix}{count}"):
            raise UsageError(
                f"--prefix {prefix!r}: a letter, then letters, digits, _ or -, e.g. --prefix beam"
            )
        value = dist.cookie(cookie, cookie_file)
    except UsageError as e:
        _fail(e, shell.USAGE)
    shell.require_shell(target)
    img = targets.image(cache.Planner(), target)
    if img.net_bus is None or img.disk is None:
        raise UsageError(f"target '{target}' has no network or no disk; use beam")
    nodes = [dist.Node(f"{prefix}{i}", long_names, dist.free_port()) for i in range(1, count + 1)]
    for n in nodes:
        click.echo(f"{n.name}: dist port {n.port} on 127.0.0.1", err=True)
    click.echo(
        "join from Linux: erl " + " ".join(dist.linux_flags("linux", long_names, "COOKIE")),
        err=True,
    )
    sys.exit(cl.interactive(img, nodes, value))


@main.command()
@click.argument("names", nargs=-1)
@click.option("--list", "list_", is_flag=True, help="List the checks.")
@click.option("--ram", default=None, metavar="SIZE", help=RAM_HELP)
@click.option(
    "--app",
    "app_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Run the checks on the image with this application's release booted (repeatable).",
)
@release_options
@supervise_option
def check(
    names: tuple[str, ...],
    list_: bool,
    ram: str | None,
    app_dirs: tuple[Path, ...],
    config_file: Path | None,
    vm_args: Path | None,
    policies: tuple[str, ...],
) -> None:
    """Boot images headless and assert on their serial output (all checks when no NAME)."""
    from chrysopolis import cache, checks

    _use_ram(ram)
    _use_supervision(policies)
    _use_release(app_dirs, config_file, vm_args)
    known = checks.load_all()
    if list_:
        for c in known.values():
            click.echo(f"{c.name:16} {c.doc}")
        return
    for n in names:
        if n not in known:
            raise UserError(f"unknown check '{n}'; see `chrysopolis check --list`")
    planner = cache.Planner()
    wanted = names or tuple(known)
    absent = sorted(
        {s for n in wanted for s in known[n].needs if not sources.present(planner.lock.source(s))}
    )
    if absent:
        raise UserError(
            f"the checks need sources absent from the store: {', '.join(absent)}; "
            f"{sources.bring_hint(planner.lock.source(absent[0]))} (and likewise the others)"
        )
    failed = 0
    for n in wanted:
        t0 = time.monotonic()
        try:
            summary = known[n].run(planner)
        except StageFailed:
            raise
        except UserError as e:
            failed += 1
            click.secho(f"FAIL {n}: {e}", fg="red")
            from chrysopolis import logs

            log = getattr(e, "log", None) or _log_in(str(e))
            if log:
                click.echo(logs.tail(Path(log), 20))
            continue
        click.secho(f"PASS {n} ({time.monotonic() - t0:.1f} s): {summary}", fg="green")
    if failed:
        sys.exit(1)


def _log_in(msg: str) -> str | None:
    import re

    m = re.search(r"\(log: ([^)]+)\)", msg)
    return m.group(1) if m else None


@main.command()
@click.option(
    "--eval",
    "exprs",
    multiple=True,
    metavar="EXPR",
    help="An Erlang expression to evaluate (repeatable).",
)
@click.option("--sname", default=None, help="Run as a Linux node NAME@localhost of a cluster.")
@click.option("--name", default=None, help="Run as a Linux node NAME@127.0.0.1 (long names).")
@click.option("--cookie", default=None, help="The cluster's cookie (default ~/.erlang.cookie).")
@click.option(
    "--cookie-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A file whose first line is the cookie.",
)
@click.option(
    "--remsh",
    default=None,
    metavar="NODE",
    help="With --sname/--name: evaluate each line on NODE (a remote shell, e.g. into a seL4 node).",
)
def baseline(
    exprs: tuple[str, ...],
    sname: str | None,
    name: str | None,
    cookie: str | None,
    cookie_file: Path | None,
    remsh: str | None,
) -> None:
    """Evaluate EXPR on the same ERTS as a static Linux beam under qemu-aarch64 (the
    reference); or, with --sname/--name, run it as a Linux node of a cluster (`chrysopolis
    cluster`), one expression per line on this terminal."""
    from chrysopolis import baseline as bl
    from chrysopolis import dist, shell

    if sname or name:
        if exprs:
            _fail(UsageError("--eval with --sname/--name: give one of the two"), shell.USAGE)
        try:
            alive, long = dist.parse_name(sname, name)
            value = dist.cookie(cookie, cookie_file)
        except UsageError as e:
            _fail(e, shell.USAGE)
        from chrysopolis import cluster as cl

        if remsh is not None:
            r_alive, r_long = dist.parse_name(None if long else remsh, remsh if long else None)
            remsh = f"{r_alive}@{dist.HOSTS[r_long]}"
        sys.exit(cl.linux_interactive(alive, long, value, remsh))
    if not exprs:
        _fail(UsageError("give --eval EXPR, or --sname NAME to join a cluster"), shell.USAGE)
    for line in bl.evaluate(list(exprs)):
        click.echo(line)


@main.command()
@click.argument("target", required=False, default=DEFAULT_TARGET)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the document to FILE (default: stdout).",
)
@click.option(
    "--ram", default=None, metavar="SIZE", help="The image built with `build --ram SIZE`."
)
def sbom(target: str, output: Path | None, ram: str | None) -> None:
    """Write an SPDX 2.3 JSON document of TARGET's built image (default: the Erlang image).

    It lists this checkout (version, git commit), every stage and pinned source the
    image was built from (version or commit, tree hash, licence, download location on
    this machine; a Debian source's files with their sha256), our patches, the Debian
    and PyPI versions of the host tools each stage ran, and the image's files with their
    sha1 and sha256. Nothing is built: build TARGET first. The same build gives the same
    document; its time is $SOURCE_DATE_EPOCH, else the commit time of HEAD, else now."""
    from chrysopolis import cache
    from chrysopolis import sbom as sb

    _use_ram(ram)
    build = f"chrysopolis build {target}" + (f" --ram {ram}" if ram else "")
    text = sb.render(sb.document(cache.Planner(), target, build))
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text)
    except OSError as e:
        raise UserError(f"cannot write {output}: {e.strerror}; give a writable path") from None


@main.command()
@click.argument("target", required=False, default=DEFAULT_TARGET)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the picture, FILE.svg or FILE.png (default out/TARGET/system.svg).",
)
@click.option("--memory", is_flag=True, help="The physical memory map, to scale.")
@click.option("--text", "as_text", is_flag=True, help="The same facts as a table on stdout.")
def show(target: str, output: Path | None, memory: bool, as_text: bool) -> None:
    """Draw the built TARGET: its protection domains, channels, shared memory, devices and
    IRQs (from its system description and Microkit's report), or its memory map."""
    from chrysopolis import show as show_mod

    click.echo(show_mod.main(target, output, memory, as_text), nl=not as_text)


# Our C, by directory; musl-sel4 holds musl's own arch files in musl's style.
C_DIRS = ("runtime", "targets", "tests/runtime_host")


def c_sources() -> list[Path]:
    files = [p for d in C_DIRS for p in (config.ROOT / d).rglob("*.[ch]")]
    return sorted(p for p in files if "musl-sel4" not in p.parts)


@main.command()
@click.option("--check", "check_only", is_flag=True, help="Only report files that need formatting.")
def fmt(check_only: bool) -> None:
    """Format our Python (ruff) and C (clang-format) sources."""
    root = config.ROOT
    py = [sys.executable, "-m", "ruff", "format", *(["--check"] if check_only else []), str(root)]
    rc = subprocess.call(py)
    cfiles = [str(p) for p in c_sources()]
    clang_format = toolchain.find("clang-format-19")
    if cfiles and clang_format:
        args = ["--dry-run", "--Werror"] if check_only else ["-i"]
        rc |= subprocess.call([clang_format, *args, *cfiles])
    elif cfiles:
        click.echo(
            "clang-format-19 is missing; run `chrysopolis setup` (C files not formatted)", err=True
        )
    sys.exit(1 if rc else 0)


if __name__ == "__main__":
    main()
