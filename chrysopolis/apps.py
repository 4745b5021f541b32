# SPDX-License-Identifier: BSD-2-Clause
"""Your OTP applications as a release on the image's disk: `--app DIR` (docs/apps.md).

DIR is an OTP application in rebar3's layout (src/APP.app.src and src/**/*.erl, include/,
priv/), or a prebuilt ebin/APP.app with its .beam files from any BEAM language (taken as
it is), or a directory of such applications (a Gleam erlang-shipment). The baseline
emulator, the image's own ERTS and OTP, compiles the sources and makes the release with
systools (chrysopolis/erl/chrysopolis_release.erl); nothing here writes a boot script.

The release is named after the first application given, with its version. On the disk:

    /lib/APP-VSN/{ebin,priv,include}    each application
    /releases/VSN/start.boot            systools:make_script's, and start.script, NAME.rel
    /releases/VSN/sys.config            --config FILE, or []
    /chrysopolis/args                   -boot and -config for it, then --vm-args' flags

A release's disk is the image's pristine disk plus those files, kept in the cache by a
key over every input; its user disk (what `run` boots, writes persist) is
out/TARGET-NAME-disk, apart from the plain image's.
"""

import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from chrysopolis import baseline, config, targets, userdisk
from chrysopolis.cache import Planner
from chrysopolis.erlterm import Atom, erl_format
from chrysopolis.errors import UsageError, UserError
from chrysopolis.stages import elixir

BUILDER = Path(__file__).parent / "erl" / "chrysopolis_release.erl"
SUBDIRS = ("src", "include", "priv", "ebin")  # what of an app directory goes into the key
# Flags the release sets itself; a --vm-args file may not.
OWN_FLAGS = {"-boot", "-config", "-root", "-bindir", "-progname", "-home"}
DONE = "release.json"


@dataclasses.dataclass(frozen=True)
class Release:
    name: str
    vsn: str
    dir: Path  # its cache entry: tree/ and disk.img
    apps: tuple[str, ...]  # "NAME VSN" of every application in it

    @property
    def disk(self) -> Path:
        return self.dir / "disk.img"


def app_dirs(dirs: Sequence[Path]) -> list[Path]:
    """Each --app DIR as application directories: DIR itself, or the applications in it."""
    found: list[Path] = []
    for d in dirs:
        if not d.is_dir():
            raise UsageError(f"--app {d}: no such directory; give an OTP application directory")
        if _is_app(d):
            found.append(d)
            continue
        inner = sorted(p for p in d.iterdir() if p.is_dir() and _is_app(p))
        if not inner:
            raise UsageError(
                f"--app {d}: no src/APP.app.src or ebin/APP.app there (nor in its "
                f"subdirectories); give an OTP application directory (rebar3's layout)"
            )
        found += inner
    unique: list[Path] = []
    for d in found:
        if d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def _is_app(d: Path) -> bool:
    return any((d / "src").glob("*.app.src")) or any((d / "ebin").glob("*.app"))


def vm_args(path: Path | None) -> list[str]:
    """The flags of a vm.args file, as `erl -args_file` reads it: words, # comments."""
    if path is None:
        return []
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"--vm-args {path}: {e.strerror}; give a readable file") from None
    words: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            words += shlex.split(line, comments=True)
        except ValueError as e:
            raise UsageError(f"{path}:{n}: {e}; fix the quoting") from None
    for w in words:
        if w in OWN_FLAGS:
            raise UsageError(
                f"--vm-args {path}: {w} is set by the release itself; drop it "
                f"(use --config for sys.config)"
            )
    return words


def _key(img: targets.Image, dirs: list[Path], cfg: Path | None, flags: list[str]) -> str:
    h = hashlib.sha256()
    for part in (str(img.dir), BUILDER.read_bytes(), Path(__file__).read_bytes(), flags):
        h.update(repr(part).encode())
    for d in dirs:
        h.update(f"app {d.resolve()}\n".encode())
        for sub in SUBDIRS:
            for p in sorted((d / sub).rglob("*")) if (d / sub).is_dir() else []:
                if p.is_file():
                    h.update(f"{p.relative_to(d)}\n".encode() + p.read_bytes())
    if cfg is not None:
        h.update(b"config\n" + cfg.read_bytes())
    return h.hexdigest()[:20]


def build(
    planner: Planner,
    img: targets.Image,
    dirs: Sequence[Path],
    cfg: Path | None = None,
    vm_args_file: Path | None = None,
) -> Release:
    """The release of the applications in `dirs` on a copy of `img`'s disk (cached)."""
    if img.disk is None:
        raise UsageError("--app needs a target with a disk, e.g. beam")
    apps = app_dirs(dirs)
    flags = vm_args(vm_args_file)
    if cfg is not None and not cfg.is_file():
        raise UsageError(f"--config {cfg}: no such file; give a sys.config file")
    entry = config.cache_dir() / "releases" / _key(img, apps, cfg, flags)
    if (entry / DONE).is_file():
        return _load(entry)
    entry.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=entry.parent, prefix=".new-") as tmp:
        work = Path(tmp)
        tree = work / "tree"
        rel = _make(planner, work, tree, apps, cfg)
        for d in apps:  # priv/ as it is: the builder copies ebin/ and include/
            name = next(a for a in rel["apps"] if a.split()[0] == _name(d))
            if (d / "priv").is_dir():
                shutil.copytree(d / "priv", tree / "lib" / name.replace(" ", "-") / "priv")
        # A release boots embedded, as a release should: every module loaded before it starts.
        args = [
            *("-boot", f"/releases/{rel['vsn']}/start", "-config", f"/releases/{rel['vsn']}/sys"),
            *("-mode", "embedded"),
        ]
        (tree / "chrysopolis").mkdir()
        (tree / "chrysopolis" / "args").write_text("".join(a + "\n" for a in [*args, *flags]))
        userdisk.copy(img.disk, work / "disk.img")
        extra = {f"/{p.relative_to(tree)}": p for p in sorted(tree.glob("*/*"))}
        userdisk.add_files(work / "disk.img", extra)
        (work / DONE).write_text(json.dumps(rel, indent=1) + "\n")
        for scratch in (tree, work / "builder"):
            shutil.rmtree(scratch)
        try:
            os.rename(work, entry)
            os.mkdir(work)  # for TemporaryDirectory's clean-up
        except OSError:  # another build made it meanwhile
            pass
    return _load(entry)


def _name(d: Path) -> str:
    src = sorted((d / "src").glob("*.app.src"))
    return src[0].name[: -len(".app.src")] if src else sorted((d / "ebin").glob("*.app"))[0].stem


def _load(entry: Path) -> Release:
    rel = json.loads((entry / DONE).read_text())
    return Release(rel["name"], rel["vsn"], entry, tuple(rel["apps"]))


def _make(planner: Planner, work: Path, tree: Path, apps: list[Path], cfg: Path | None) -> dict:
    """Run the builder on the baseline emulator; its warnings go to stderr, its errors
    (`file:line: message`) raise."""
    root = planner.ensure("otp") / "root"
    beam = planner.ensure("baseline") / "bin" / "beam.smp"
    libs = [planner.ensure("erlang-app") / "lib"]
    libs += sorted({p.parent for p in elixir.lib_dirs(planner.ensure("elixir")).values()})
    report = work / "report.txt"
    spec = work / "spec.config"
    terms = [
        ("otp_lib", str(root / "lib")),
        ("lib_dirs", [str(p) for p in libs]),
        ("apps", [(str(d.resolve()), str(d).rstrip("/")) for d in apps]),
        ("out", str(tree)),
        ("config", (str(cfg.resolve()), str(cfg)) if cfg else Atom("none")),
        ("erts_vsn", _erts_vsn(root)),
        ("report", str(report)),
    ]
    spec.write_text("".join(f"{{{k}, {_erl(v)}}}.\n" for k, v in terms))
    ebin = work / "builder"
    ebin.mkdir()
    exprs = [
        f'{{ok, _}} = compile:file("{BUILDER}", [{{outdir, "{ebin}"}}, report]).',
        f'code:add_patha("{ebin}").',
        f'chrysopolis_release:main("{spec}").',
    ]
    results, out, _ = baseline.run(beam, root, exprs)
    lines = report.read_text().splitlines() if report.is_file() else []
    for ln in lines:
        if ln.startswith("warning: "):
            print(ln, file=sys.stderr)
    errors = [ln.removeprefix("error: ") for ln in lines if ln.startswith("error: ")]
    if errors:
        raise UserError("\n".join(errors))
    if results[-1:] != ["ok"]:
        raise UserError(f"making the release failed: {results[-1:]}\n{out[-1500:]}")
    name, vsn = next(ln.split()[1:] for ln in lines if ln.startswith("release: "))
    if vsn == baseline.RELEASE:
        raise UserError(
            f"release {name} {vsn}: OTP's own release is /releases/{vsn}; give your "
            f"application another vsn"
        )
    return {
        "name": name,
        "vsn": vsn,
        "apps": [ln.removeprefix("app: ") for ln in lines if ln.startswith("app: ")],
    }


def _erl(v: object) -> str:
    return erl_format(v)


def _erts_vsn(root: Path) -> str:
    return sorted(root.glob("lib/erts-*"))[-1].name.removeprefix("erts-")


# --- the release as the image `run` and `check` boot ---------------------------------------


def image(img: targets.Image, rel: Release) -> targets.Image:
    """`img` booting the release: its disk, and a user disk of its own."""
    return dataclasses.replace(img, disk=rel.disk, release=rel.name)


def use(dirs: Sequence[Path], cfg: Path | None = None, vm_args_file: Path | None = None) -> None:
    """Every image of a shell target this process boots (run, check) boots the release of
    `dirs` instead of the plain disk."""
    if not dirs:
        if cfg is not None or vm_args_file is not None:
            flag = "--config" if cfg is not None else "--vm-args"
            raise UsageError(f"{flag} goes with --app DIR; give the application")
        return
    vm_args(vm_args_file)  # refused before any build

    def with_release(planner: Planner, img: targets.Image) -> targets.Image:
        return image(img, build(planner, img, dirs, cfg, vm_args_file))

    targets.RELEASE = with_release
