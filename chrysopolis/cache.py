# SPDX-License-Identifier: BSD-2-Clause
"""The stage cache: each stage is a pure function of its inputs, kept by their hash.

A stage's key hashes the lock hashes of its sources, the keys of the stages it uses, our
own files it names (patches, C code), its Python module and every module of ours that one
imports (boards, toolchain, ...: their values reach the build) and buildpaths (how its
compilers run), its options and the Debian
versions of the host tools it runs. It builds into a temporary directory beside the
cache entry and is renamed into place only on success: an interrupted or failed stage
leaves nothing that a later build would take for done. Every stage keeps its log.
"""

import ast
import errno
import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chrysopolis import boards, buildpaths, config, integrity, lock, progress, sources, toolchain
from chrysopolis.errors import StageFailed, UserError, no_space
from chrysopolis.registry import Registry
from chrysopolis.treehash import file_hash, tree_hash

# Bump to invalidate every cached stage (a change in how stages are keyed, laid out or
# built: 3 maps the build paths out of every compiler's output, buildpaths.py).
CACHE_FORMAT = 3

# Our modules whose code never reaches a stage's output: this cache (CACHE_FORMAT stands
# for it), the source store and lock (a source is keyed by its tree hash), the host tool
# table (a tool by its package's version), progress, errors, checks, the boot harness (with
# nodes: it keys its packs itself), the CLI.
NOT_INPUTS = frozenset(
    f"chrysopolis.{m}"
    for m in (
        *("cache", "registry", "sources", "lock", "treehash", "toolchain"),
        *("progress", "errors", "logs", "checks", "qemu", "shell", "cli", "nodes"),
    )
)


@dataclass
class Stage:
    name: str
    recipe: Callable[["Context"], None]  # builds the stage's output into ctx.out
    doc: str = ""
    sources: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # paths relative to the checkout: our files the stage reads
    host: tuple[str, ...] = ()  # Debian packages whose versions the output depends on
    pypi: tuple[str, ...] = ()  # PyPI packages likewise
    options: Mapping[str, object] = field(default_factory=dict)
    target: bool = False  # a user-facing `build` target (its outputs land in the out dir)
    shell: bool = False  # a target whose console is an Erlang shell (`run --eval`, `--path`)


# Upstream components' recipes, then the bootable targets built from them.
REGISTRY: Registry[Stage] = Registry("stage", ["chrysopolis.stages", "chrysopolis.targets"])


def stage(
    name: str,
    *,
    doc: str = "",
    sources: Sequence[str] = (),
    deps: Sequence[str] = (),
    files: Sequence[str] = (),
    host: Sequence[str] = (),
    pypi: Sequence[str] = (),
    options: Mapping[str, object] | None = None,
    target: bool = False,
    shell: bool = False,
):
    """Register the decorated function as the recipe of stage `name`."""

    def register(fn: Callable[["Context"], None]) -> Callable[["Context"], None]:
        REGISTRY.add(
            name,
            Stage(
                name,
                fn,
                doc or (fn.__doc__ or "").strip().split("\n")[0],
                tuple(sources),
                tuple(deps),
                tuple(files),
                tuple(host),
                tuple(pypi),
                dict(options or {}),
                target,
                shell,
            ),
        )
        return fn

    return register


def load_all() -> dict[str, Stage]:
    return REGISTRY.load()


def get(name: str) -> Stage:
    if name not in REGISTRY:
        targets = ", ".join(sorted(n for n, s in load_all().items() if s.target))
        raise UserError(
            f"unknown target '{name}'; targets: {targets} (see `chrysopolis build --list`)"
        )
    return REGISTRY[name]


def cache_root() -> Path:
    return config.cache_dir() / "stages"


BUILDPATHS = "chrysopolis.buildpaths"

# Each stage output records what it was built from (INPUTS) and its files (MANIFEST,
# integrity.py: checked once per process before use).
INPUTS = ".chrysopolis-inputs.json"
MANIFEST = ".chrysopolis-files.json"


def output_damage(out: Path, full: bool = False) -> str | None:
    return integrity.damage(out, out / MANIFEST, full)


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:  # `from chrysopolis.errors import UserError`: not a module
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _imports_of(name: str, file: Path) -> set[str]:
    """The chrysopolis modules `file` imports (anywhere in it, function bodies too)."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            # `from chrysopolis import boards`: boards is a module too
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] == "chrysopolis" and _module_file(m)} - {name}


@functools.cache
def module_closure(name: str) -> dict[str, str]:
    """{module: file hash} for `name` and every module of ours it imports, transitively."""
    out: dict[str, str] = {}
    todo = [name]
    while todo:
        m = todo.pop()
        file = _module_file(m)
        if m in out or m in NOT_INPUTS or file is None:
            continue
        out[m] = file_hash(file)
        todo += sorted(_imports_of(m, file))
    return dict(sorted(out.items()))


def _our_files_digest(paths: Sequence[str]) -> dict[str, str]:
    out = {}
    for rel in paths:
        p = config.ROOT / rel
        if p.is_dir():
            out[rel] = tree_hash(p)
        elif p.is_file():
            out[rel] = file_hash(p)
        else:
            raise UserError(f"stage input {rel} is missing from the checkout")
    return out


# The RAM (MiB) this process builds and boots images for: `--ram` of build, run and check
# (use_ram). Every Planner made without one takes it, so that a check's own boots follow.
_ram_mib: int | None = None


def use_ram(mib: int | None) -> None:
    global _ram_mib
    _ram_mib = mib


# Stage options the command line set (`--supervise`): every Planner of the process starts
# from them, a Planner's own `options` over them.
_cli_options: dict[str, dict[str, object]] = {}


def use_option(stage: str, option: str, value: object) -> None:
    _cli_options.setdefault(stage, {})[option] = value


class Planner:
    """Computes stage keys (memoised) and brings stages up to date.

    `ram_mib`: the RAM the images are for (default: use_ram's, else the default board's):
    the `ram_mib` option of the SDK and the `ram` option of the image targets; every stage
    over the SDK follows its key. `options`: {stage: {option: value}} over a stage's own
    (tests, benches)."""

    def __init__(
        self,
        ram_mib: int | None = None,
        options: Mapping[str, Mapping[str, object]] | None = None,
    ) -> None:
        b = boards.board(boards.DEFAULT_BOARD)
        self.lock = lock.load()
        self.ram_mib = ram_mib or _ram_mib or boards.ram_mib(b, b.ram)
        self._options = {k: dict(v) for k, v in _cli_options.items()}
        for k, v in (options or {}).items():
            self._options.setdefault(k, {}).update(v)
        self._keys: dict[str, str] = {}

    def options(self, st: Stage) -> dict:
        """The options stage `st` is built with here."""
        opts = dict(st.options)
        if "ram_mib" in opts:
            opts["ram_mib"] = self.ram_mib
        if "ram" in opts:
            opts["ram"] = boards.ram_text(self.ram_mib)
        for k, v in self._options.get(st.name, {}).items():
            if k not in opts:
                raise RuntimeError(f"stage {st.name} has no option {k}")
            opts[k] = v
        return opts

    def inputs(self, st: Stage) -> dict:
        return {
            "format": CACHE_FORMAT,
            "stage": st.name,
            "sources": {n: self.lock.source(n).sha256 for n in st.sources},
            "deps": {d: self.key(d) for d in st.deps},
            "files": _our_files_digest(st.files),
            # buildpaths: how every command of every stage runs (its compilers' flags)
            "modules": {**module_closure(st.recipe.__module__), **module_closure(BUILDPATHS)},
            "host": toolchain.debian_versions(st.host),
            "pypi": toolchain.pypi_versions(st.pypi),
            "options": self.options(st),
        }

    def key(self, name: str) -> str:
        if name not in self._keys:
            st = get(name)
            blob = json.dumps(self.inputs(st), sort_keys=True, default=str).encode()
            self._keys[name] = hashlib.sha256(blob).hexdigest()
        return self._keys[name]

    def out_path(self, name: str) -> Path:
        return cache_root() / name / self.key(name)[:20]

    def log_path(self, name: str) -> Path:
        return config.cache_dir() / "logs" / f"{name}-{self.key(name)[:20]}.log"

    def is_built(self, name: str) -> bool:
        return self.out_path(name).is_dir()

    def ensure(self, name: str) -> Path:
        """The output directory of stage `name`, building it and its dependencies if needed."""
        st = get(name)
        out = self.out_path(name)
        if out.is_dir():
            return self._checked(name, out)
        for s in st.sources:  # fail before any work, even on dependencies, if a source is missing
            sources.require(self.lock.source(s))
        for d in st.deps:
            self.ensure(d)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.parent / ".lock", "w") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)  # one builder per stage; others wait, then reuse
            if out.is_dir():
                return self._checked(name, out)
            self._build(st, out)
        integrity.mark_intact(out)
        return out

    def _checked(self, name: str, out: Path) -> Path:
        """`out`, once its files are found as they were built."""
        what = integrity.checked_once(out, lambda: output_damage(out))
        if what is not None:
            raise UserError(
                f"the output of stage {name} ({out}) lost or changed a file after it was "
                f"built: {what}; rebuild it: `chrysopolis build {name} --rebuild`"
            )
        return out

    def discard(self, name: str) -> None:
        """Drop stage `name`'s cached output (its current key), so that it builds again."""
        out = self.out_path(name)
        if out.is_dir():
            out.parent.mkdir(parents=True, exist_ok=True)
            trash = Path(tempfile.mkdtemp(prefix=".old-", dir=out.parent))
            out.rename(trash / "out")
            shutil.rmtree(trash, ignore_errors=True)
        integrity.forget(out)

    def _build(self, st: Stage, out: Path) -> None:
        log = self.log_path(st.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        work = config.cache_dir() / "work" / st.name  # kept after a failure, for inspection
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
        ctx = Context(self, st, tmp, work, log)
        try:
            with open(log, "w") as ctx._log, progress.step(f"stage {st.name}"):
                ctx.note(f"stage {st.name} key {self.key(st.name)}")
                ctx.note(json.dumps(self.inputs(st), sort_keys=True, indent=1, default=str))
                st.recipe(ctx)
            (tmp / INPUTS).write_text(
                json.dumps(self.inputs(st), sort_keys=True, indent=1, default=str)
            )
            integrity.record(tmp, tmp / MANIFEST)
            tmp.rename(out)
        except (UserError, KeyboardInterrupt, Exception) as e:
            if _disk_full(e, out.parent):  # nothing partial is kept: the work tree goes too
                shutil.rmtree(work, ignore_errors=True)
                raise no_space(config.cache_dir()) from None
            if isinstance(e, UserError | KeyboardInterrupt):
                raise
            with open(log, "a") as f:
                traceback.print_exc(file=f)
            raise StageFailed(st.name, log, f"{type(e).__name__}: {e}") from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


FULL = 16 << 20  # a stage that failed with less free space than this ran out of it


def _disk_full(e: BaseException, where: Path) -> bool:
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return True
    if isinstance(e, StageFailed):  # a command of the recipe failed: was it for want of room?
        try:
            return shutil.disk_usage(where).free < FULL
        except OSError:
            return False
    return False


class Context:
    """What a stage's build function gets: its paths, its inputs and a logged `run`."""

    def __init__(self, planner: Planner, st: Stage, out: Path, work: Path, log: Path) -> None:
        self.planner = planner
        self.stage = st
        self.out = out
        self.work = work
        self.log_path = log
        self.options = planner.options(st)
        self.jobs = os.cpu_count() or 1
        self._log = None

    def note(self, msg: str) -> None:
        self._log.write(msg.rstrip("\n") + "\n")
        self._log.flush()

    def src(self, name: str) -> Path:
        if name not in self.stage.sources:
            raise RuntimeError(f"stage {self.stage.name} reads source {name} without declaring it")
        return sources.require(self.planner.lock.source(name))

    def dep(self, name: str) -> Path:
        if name not in self.stage.deps:
            raise RuntimeError(f"stage {self.stage.name} uses stage {name} without declaring it")
        return self.planner.out_path(name)

    def ours(self, rel: str) -> Path:
        if not any(rel == f or rel.startswith(f.rstrip("/") + "/") for f in self.stage.files):
            raise RuntimeError(f"stage {self.stage.name} reads {rel} without declaring it")
        return config.ROOT / rel

    def copy_source(self, name: str, dest: Path | None = None) -> Path:
        """A writable copy of a stored source under the work directory."""
        dest = dest or self.work / name
        shutil.copytree(self.src(name), dest, symlinks=True)
        return dest

    def apply_patches(self, patch_dir: str, tree: Path) -> None:
        """Apply our patch files (sorted by name) with `patch -p1`; each must apply cleanly."""
        for p in sorted(self.ours(patch_dir).glob("*.patch")):
            self.run(["patch", "-p1", "--forward", "--batch", "-i", str(p)], cwd=tree)

    def run(
        self,
        cmd: Sequence[str] | str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        shell: bool = False,
    ) -> None:
        """Run a command with its output appended to the stage log; a failure fails the stage."""
        text = cmd if isinstance(cmd, str) else shlex.join(str(c) for c in cmd)
        self.note(f"$ {text}" + (f"   (in {cwd})" if cwd else ""))
        full_env = buildpaths.env(toolchain.env(dict(env or {})), self.work / ".compilers")
        t0 = time.monotonic()
        r = subprocess.run(
            cmd if shell or not isinstance(cmd, str) else shlex.split(cmd),
            cwd=cwd,
            env=full_env,
            shell=shell,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.note(f"# exit {r.returncode} after {time.monotonic() - t0:.1f} s")
        if r.returncode != 0:
            first = text if len(text) < 80 else text[:77] + "…"
            raise StageFailed(self.stage.name, self.log_path, f"`{first}` exited {r.returncode}")
