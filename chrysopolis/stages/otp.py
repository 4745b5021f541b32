# SPDX-License-Identifier: BSD-2-Clause
"""The OTP applications the system boots, as the tree the FAT disk is built from.

The .beam files come from Debian forky's erlang-base and erlang-inets (lock entry
`otp-debs`): compiled
bytecode is architecture-independent, so the amd64 package serves the aarch64 emulator.
Every application's version must equal the one in the OTP source we compile ERTS from
(lock entry `otp`, its lib/<app>/vsn.mk and erts/vsn.mk): a mismatch fails the stage.

Tree (stage output `root/`), booted with `-root / -boot /releases/29/start -mode interactive`:
  lib/<app>-<vsn>/ebin/*.beam, <app>.app     kernel, stdlib, compiler, sasl, erts, inets
  releases/29/start.boot, start.script       kernel and stdlib started, compiler loaded
  releases/29/start_clean.boot               Debian's: kernel and stdlib only (fewer loads)
  releases/29/start_sasl.boot                Debian's: sasl started too
  releases/29/OTP_VERSION
  bin/start.boot, bin/start_clean.boot       init's default boot (`$ROOT/bin/start`)
  etc/inetrc                                 the resolver: hosts file and DNS, never native
No executables: the emulator is linked into the seL4 image. Embedded mode loads only what the
boot script names, and loads nothing later, hence our start.boot with the compiler in it (for
`compile:forms`); `run --app inets` loads another application at boot. Paths in boot scripts are `$ROOT/lib/...`; with `-root /` init makes them
`//lib/...` for erl_prim_loader (POSIX, and so our fs layer, must read that as `/lib/...`);
the code server normalises them (`code:which(lists)` is "/lib/stdlib-8.1/ebin/lists.beam").
tests/test_otp.py boots this tree at / in a chroot with Debian's amd64 emulator to prove it.
"""

import json
import re
import shutil
from pathlib import Path

from chrysopolis.cache import Context, stage
from chrysopolis.erlterm import Atom, app_spec, erl_format, etf_decode, etf_encode
from chrysopolis.errors import UserError

DEB_ROOT = "usr/lib/erlang"  # where erlang-base installs OTP
APPS = ("kernel", "stdlib", "compiler", "sasl", "erts", "inets")
BOOT_LOADED = ("compiler",)  # loaded (not started) by our start.boot, after stdlib
RELEASE = "29"
# Read through `-kernel inetrc` (targets/beam/main.c). The default lookup, native, runs the
# port program inet_gethost, which a PD cannot spawn: each failed spawn crashes a kernel
# server, and a few take the node down.
INETRC = """%% Name resolution without port programs: the hosts file, then DNS.
{lookup, [file, dns]}.
{host, {127,0,0,1}, ["localhost"]}.
"""


# --- versions -------------------------------------------------------------------------------


def installed_apps(otp_root: Path) -> dict[str, str]:
    """{app: vsn} from the lib/<app>-<vsn> directories of an OTP installation."""
    found: dict[str, str] = {}
    for d in sorted((otp_root / "lib").iterdir()):
        name, sep, vsn = d.name.partition("-")
        if sep and (d / "ebin").is_dir():
            found[name] = vsn
    return found


def source_version(otp_src: Path, app: str) -> str:
    """The version an OTP source tree gives `app` (lib/<app>/vsn.mk, or erts/vsn.mk for erts)."""
    vsn_mk, key = (
        (otp_src / "erts" / "vsn.mk", "VSN")
        if app == "erts"
        else (otp_src / "lib" / app / "vsn.mk", f"{app.upper()}_VSN")
    )
    if not vsn_mk.is_file():
        raise UserError(f"{vsn_mk} is missing; the `otp` source is not an OTP source tree")
    m = re.search(rf"^{key}\s*=\s*(\S+)", vsn_mk.read_text(), re.M)
    if not m:
        raise UserError(f"{vsn_mk} sets no {key}")
    return m.group(1)


def check_versions(otp_src: Path, otp_root: Path, apps: tuple[str, ...] = APPS) -> dict[str, str]:
    """{app: vsn} after checking directory, .app file and source agree for each app, else UserError."""
    have = installed_apps(otp_root)
    problems = []
    for app in apps:
        if app not in have:
            problems.append(f"{app}: not in {otp_root}/lib")
            continue
        want = source_version(otp_src, app)
        app_vsn = app_spec(otp_root / "lib" / f"{app}-{have[app]}" / "ebin" / f"{app}.app")[1].get(
            "vsn"
        )
        if have[app] != want or app_vsn != want:
            problems.append(
                f"{app}: .beam files are {have[app]} (.app says {app_vsn}), source says {want}"
            )
    if problems:
        raise UserError(
            "OTP application versions do not match the OTP source: "
            + "; ".join(problems)
            + "; pin the erlang-base .debs of the same OTP release as the `otp` source"
        )
    return {a: have[a] for a in apps}


# --- boot scripts ---------------------------------------------------------------------------


def _find(instrs: list, item: tuple) -> int:
    try:
        return instrs.index(item)
    except ValueError:
        raise UserError(
            f"boot script has no {item}; it is not a systools-generated script"
        ) from None


def add_loaded_app(script: tuple, app_dir: str, spec: object) -> tuple:
    """`script` with one more library application loaded (not started), as systools lays it out."""
    kind, rel, instrs = script
    instrs = list(instrs)
    modules = next(v for k, v in spec[2] if k == "modules")
    ebin = f"$ROOT/lib/{app_dir}/ebin"
    loaded = _find(instrs, (Atom("progress"), Atom("modules_loaded")))
    instrs[loaded:loaded] = [(Atom("path"), [ebin]), (Atom("primLoad"), sorted(modules))]
    full_path = loaded + 3
    tag, paths = instrs[full_path]
    if tag != "path":
        raise UserError("boot script has no code path after modules_loaded")
    instrs[full_path] = (tag, [*paths, ebin])
    apps_loaded = _find(instrs, (Atom("progress"), Atom("applications_loaded")))
    instrs.insert(apps_loaded, (Atom("apply"), (Atom("application"), Atom("load"), [spec])))
    return (kind, rel, instrs)


def write_boot(script: tuple, rel_dir: Path) -> None:
    """start.boot and its readable twin start.script in `rel_dir`."""
    (rel_dir / "start.boot").write_bytes(etf_encode(script))
    (rel_dir / "start.script").write_text(
        "%% coding: utf-8\n{script,"
        + erl_format(script[1])
        + ",\n ["
        + ",\n  ".join(erl_format(i, 2) for i in script[2])
        + "]}.\n"
    )


def check_boot(root: Path, boot: Path) -> int:
    """Every module the boot script loads exists under `root` ($ROOT) at its path; returns the count."""
    _, _, instrs = etf_decode(boot.read_bytes())
    path: list[str] = []
    count, missing = 0, []
    for ins in instrs:
        if ins[0] == "path":
            path = [p.replace("$ROOT", str(root)) for p in ins[1]]
        elif ins[0] == "primLoad":
            for m in ins[1]:
                count += 1
                if not any((Path(p) / f"{m}.beam").is_file() for p in path):
                    missing.append(str(m))
    if missing:
        raise UserError(
            f"{boot.name} loads modules missing from the tree: {', '.join(missing[:10])}"
        )
    return count


def make_tree(deb_tree: Path, otp_src: Path, out: Path) -> dict:
    """Lay out the disk tree under `out` from the unpacked .debs; returns a manifest."""
    otp_root = deb_tree / DEB_ROOT
    versions = check_versions(otp_src, otp_root)
    for app, vsn in versions.items():
        d = f"{app}-{vsn}"
        shutil.copytree(otp_root / "lib" / d / "ebin", out / "lib" / d / "ebin")
    rel_src, rel_dst = otp_root / "releases" / RELEASE, out / "releases" / RELEASE
    rel_dst.mkdir(parents=True)
    for name in ("start_clean.boot", "start_sasl.boot", "OTP_VERSION"):
        shutil.copy2(rel_src / name, rel_dst / name)
    script = etf_decode((rel_src / "start_clean.boot").read_bytes())
    for app in BOOT_LOADED:
        d = f"{app}-{versions[app]}"
        script = add_loaded_app(script, d, app_spec(out / "lib" / d / "ebin" / f"{app}.app")[2])
    write_boot(script, rel_dst)
    (out / "bin").mkdir()
    shutil.copy2(rel_dst / "start.boot", out / "bin" / "start.boot")
    shutil.copy2(rel_dst / "start_clean.boot", out / "bin" / "start_clean.boot")
    (out / "etc").mkdir()
    (out / "etc" / "inetrc").write_text(INETRC)
    loads = {
        b: check_boot(out, rel_dst / b)
        for b in ("start.boot", "start_clean.boot", "start_sasl.boot")
    }
    return {
        "otp_version": (rel_src / "OTP_VERSION").read_text().strip(),
        "apps": versions,
        "boot": f"/releases/{RELEASE}/start",
        "boot_module_loads": loads,
    }


@stage(
    "otp",
    sources=("otp-debs", "otp"),
    doc="OTP 29.1.1 .beam files (inets too) and boot scripts laid out for the FAT disk (root/)",
)
def otp(ctx: Context) -> None:
    manifest = make_tree(ctx.src("otp-debs"), ctx.src("otp"), ctx.out / "root")
    (ctx.out / "otp.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    ctx.note(json.dumps(manifest, sort_keys=True))
