# SPDX-License-Identifier: BSD-2-Clause
"""Our Erlang modules (erlang/*.erl) as the OTP application `chrysopolis` for the disk.

Compiled by the baseline emulator (the image's own ERTS and OTP under qemu-aarch64) with
`deterministic`, so the .beam files carry no paths or times: the same sources give the
same bytes. Output: lib/chrysopolis-<VSN>/ebin/*.beam and chrysopolis.app, which the beam
target puts on the disk at /lib (docs/distribution.md: chrysopolis_epmd), and
releases/<REL>/start.boot: the otp stage's boot script with this application loaded too
(a release booted in embedded mode loads nothing on demand, and `chrysopolis:pds()` must
work in its shell).
"""

from pathlib import Path

from chrysopolis import baseline
from chrysopolis.cache import Context, stage
from chrysopolis.erlterm import app_spec, etf_decode
from chrysopolis.errors import UserError
from chrysopolis.stages import otp

APP = "chrysopolis"
VSN = "0.1.0"
LIB = f"{APP}-{VSN}"
SOURCES = "erlang"


def app_file(modules: list[str]) -> str:
    mods = ", ".join(modules)
    return (
        f'{{application, {APP}, [{{description, "Chrysopolis: Erlang on seL4"}}, '
        f'{{vsn, "{VSN}"}}, {{modules, [{mods}]}}, {{registered, []}}, '
        f"{{applications, [kernel, stdlib]}}]}}.\n"
    )


@stage(
    "erlang-app",
    deps=("baseline", "otp"),
    files=(SOURCES,),
    doc="our Erlang modules (erlang/) compiled into the OTP application chrysopolis",
)
def erlang_app(ctx: Context) -> None:
    ebin = ctx.out / "lib" / LIB / "ebin"
    ebin.mkdir(parents=True)
    srcs = sorted(ctx.ours(SOURCES).glob("*.erl"))
    if not srcs:
        raise UserError(f"{SOURCES}/ holds no .erl file")
    opts = f'[deterministic, report, warnings_as_errors, {{outdir, "{ebin}"}}]'
    exprs = [f'compile:file("{s}", {opts}).' for s in srcs]
    results, out, _ = baseline.run(
        ctx.dep("baseline") / "bin" / "beam.smp", ctx.dep("otp") / "root", exprs
    )
    modules = [s.stem for s in srcs]
    want = [f"{{ok,{m}}}" for m in modules]
    if results != want:
        raise UserError(f"compiling {SOURCES}/ failed: {results!r}\n{out[-2000:]}")
    (ebin / f"{APP}.app").write_text(app_file(modules))
    rel = ctx.out / "releases" / otp.RELEASE
    rel.mkdir(parents=True)
    root = ctx.dep("otp") / "root"
    script = etf_decode((root / "releases" / otp.RELEASE / "start.boot").read_bytes())
    script = otp.add_loaded_app(script, LIB, app_spec(ebin / f"{APP}.app")[2])
    otp.write_boot(script, rel)
    ctx.note(f"{LIB}: {', '.join(modules)}")


def boot_files(root: Path) -> dict[str, Path]:
    """The disk paths our boot script replaces, with its files in the stage output `root`."""
    rel = root / "releases" / otp.RELEASE
    return {
        f"/releases/{otp.RELEASE}/start.boot": rel / "start.boot",
        f"/releases/{otp.RELEASE}/start.script": rel / "start.script",
        "/bin/start.boot": rel / "start.boot",
    }


def ebin_dir(root: Path) -> Path:
    """The ebin directory of the app in a stage output `root`."""
    return root / "lib" / LIB / "ebin"
