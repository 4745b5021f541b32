"""The OTP applications the system boots, as the tree the FAT disk is built from.

The .beam files come from Debian trixie's erlang-base (lock entry `otp-debs`): compiled
bytecode is architecture-independent, so the amd64 package serves the aarch64 emulator.
Every application's version must equal the one in the OTP source we compile ERTS from
(lock entry `otp`, its lib/<app>/vsn.mk and erts/vsn.mk): a mismatch fails the stage.

Tree (stage output `root/`), booted with `-root / -boot /releases/27/start -mode embedded`:
  lib/<app>-<vsn>/ebin/*.beam, <app>.app     kernel, stdlib, compiler, sasl, erts
  releases/27/start.boot, start.script       kernel and stdlib started, compiler loaded
  releases/27/start_clean.boot               Debian's: kernel and stdlib only (fewer loads)
  releases/27/start_sasl.boot                Debian's: sasl started too
  releases/27/OTP_VERSION
  bin/start.boot, bin/start_clean.boot       init's default boot (`$ROOT/bin/start`)
No executables: the emulator is linked into the seL4 image. Embedded mode loads only what the
boot script names, and loads nothing later, hence our start.boot with the compiler in it (for
`compile:forms`). Paths in boot scripts are `$ROOT/lib/...`; with `-root /` init makes them
`//lib/...` for erl_prim_loader (POSIX, and so our fs layer, must read that as `/lib/...`);
the code server normalises them (`code:which(lists)` is "/lib/stdlib-6.2.2.1/ebin/lists.beam").
tests/test_otp.py boots this tree at / in a chroot with Debian's amd64 emulator to prove it.
"""

import json
import re
import shutil
import struct
from pathlib import Path

from chrysopolis import disk
from chrysopolis.errors import UserError
from chrysopolis.stages import Context, stage

DEB_ROOT = "usr/lib/erlang"  # where erlang-base installs OTP
APPS = ("kernel", "stdlib", "compiler", "sasl", "erts")
BOOT_LOADED = ("compiler",)  # loaded (not started) by our start.boot, after stdlib
RELEASE = "27"


# --- Erlang external term format (term_to_binary), the encoding of .boot files -------------


class Atom(str):
    """An Erlang atom; a plain str is a charlist (an Erlang string)."""

    def __repr__(self) -> str:
        return f"Atom({str(self)!r})"


def etf_decode(data: bytes) -> object:
    if not data or data[0] != 131:
        raise UserError("not an Erlang external term (bad version byte); the boot file is corrupt")
    term, pos = _dec(data, 1)
    if pos != len(data):
        raise UserError("trailing bytes after the Erlang term; the boot file is corrupt")
    return term


def _dec(b: bytes, i: int) -> tuple[object, int]:
    tag = b[i]
    i += 1
    if tag == 97:  # SMALL_INTEGER
        return b[i], i + 1
    if tag == 98:  # INTEGER
        return struct.unpack_from(">i", b, i)[0], i + 4
    if tag in (119, 115):  # SMALL_ATOM_UTF8, SMALL_ATOM
        n = b[i]
        return Atom(b[i + 1 : i + 1 + n].decode("utf-8" if tag == 119 else "latin-1")), i + 1 + n
    if tag in (118, 100):  # ATOM_UTF8, ATOM
        n = struct.unpack_from(">H", b, i)[0]
        return Atom(b[i + 2 : i + 2 + n].decode("utf-8" if tag == 118 else "latin-1")), i + 2 + n
    if tag in (104, 105):  # SMALL_TUPLE, LARGE_TUPLE
        n, i = (b[i], i + 1) if tag == 104 else (struct.unpack_from(">I", b, i)[0], i + 4)
        items = []
        for _ in range(n):
            t, i = _dec(b, i)
            items.append(t)
        return tuple(items), i
    if tag == 106:  # NIL
        return [], i
    if tag == 107:  # STRING: a charlist of bytes
        n = struct.unpack_from(">H", b, i)[0]
        return b[i + 2 : i + 2 + n].decode("latin-1"), i + 2 + n
    if tag == 108:  # LIST
        n = struct.unpack_from(">I", b, i)[0]
        i += 4
        items = []
        for _ in range(n):
            t, i = _dec(b, i)
            items.append(t)
        tail, i = _dec(b, i)
        if tail != []:
            raise UserError("improper list in the boot file; it is not a boot script")
        return items, i
    if tag == 109:  # BINARY
        n = struct.unpack_from(">I", b, i)[0]
        return bytes(b[i + 4 : i + 4 + n]), i + 4 + n
    raise UserError(f"unsupported Erlang term tag {tag} in the boot file")


def etf_encode(term: object) -> bytes:
    """term_to_binary/1 as OTP 27 writes it, for the subset boot scripts use."""
    out = bytearray([131])
    _enc(term, out)
    return bytes(out)


def _enc(t: object, out: bytearray) -> None:
    if isinstance(t, Atom):
        raw = t.encode("utf-8")
        out += (
            bytes([119, len(raw)]) if len(raw) < 256 else struct.pack(">BH", 118, len(raw))
        ) + raw
    elif isinstance(t, bool):
        _enc(Atom("true" if t else "false"), out)
    elif isinstance(t, int):
        out += bytes([97, t]) if 0 <= t < 256 else struct.pack(">Bi", 98, t)
    elif isinstance(t, str):  # charlist: STRING when every code fits a byte, as OTP does
        if not t:
            out.append(106)
        elif len(t) < 65536 and all(ord(c) < 256 for c in t):
            out += struct.pack(">BH", 107, len(t)) + t.encode("latin-1")
        else:
            _enc([ord(c) for c in t], out)
    elif isinstance(t, tuple):
        out += bytes([104, len(t)]) if len(t) < 256 else struct.pack(">BI", 105, len(t))
        for x in t:
            _enc(x, out)
    elif isinstance(t, list):
        if not t:
            out.append(106)
            return
        out += struct.pack(">BI", 108, len(t))
        for x in t:
            _enc(x, out)
        out.append(106)
    elif isinstance(t, bytes):
        out += struct.pack(">BI", 109, len(t)) + t
    else:
        raise TypeError(f"cannot encode {t!r} as an Erlang term")


def erl_format(t: object, indent: int = 0) -> str:
    """Erlang source text of a term (for start.script, the readable twin of start.boot)."""
    pad = " " * indent
    if isinstance(t, Atom):
        return (
            t
            if re.fullmatch(r"[a-z][A-Za-z0-9_@]*", t)
            else "'" + t.replace("\\", "\\\\").replace("'", "\\'") + "'"
        )
    if isinstance(t, str):
        return '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(t, int):
        return str(t)
    if isinstance(t, tuple):
        return "{" + ",".join(erl_format(x, indent) for x in t) + "}"
    if isinstance(t, list):
        flat = "[" + ",".join(erl_format(x, indent) for x in t) + "]"
        if len(flat) + indent < 100:
            return flat
        parts = [erl_format(x, indent + 1) for x in t]
        if any("\n" in x for x in parts):
            return "[" + (",\n" + pad + " ").join(parts) + "]"
        lines, line = [], ""  # fill lines like io_lib_pretty does for atom lists
        for x in parts:
            if line and len(line) + len(x) + indent + 2 > 90:
                lines.append(line)
                line = ""
            line += ("," if line else "") + x
        return "[" + (",\n" + pad + " ").join(lines + [line]) + "]"
    raise TypeError(f"cannot format {t!r}")


# --- .app files (Erlang source text: a small term grammar) ---------------------------------

_TOKEN = re.compile(
    r"""\s+|%[^\n]*|(?P<str>"(?:[^"\\]|\\.)*")|(?P<qatom>'(?:[^'\\]|\\.)*')"""
    r"""|(?P<int>-?\d+)|(?P<atom>[a-z][A-Za-z0-9_@]*)|(?P<punct>[{}\[\],.])"""
)


def parse_term(text: str, origin: str) -> object:
    """The first term of an Erlang consult-style file (`{application, App, [...]}.`)."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise UserError(f"{origin}: cannot read Erlang term near {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup:
            tokens.append((m.lastgroup, m.group(m.lastgroup)))

    def unescape(s: str) -> str:
        return re.sub(
            r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), s[1:-1]
        )

    def term(i: int) -> tuple[object, int]:
        kind, v = tokens[i]
        if kind == "str":
            return unescape(v) or [], i + 1  # "" is [] in Erlang
        if kind in ("atom", "qatom"):
            return Atom(v if kind == "atom" else unescape(v)), i + 1
        if kind == "int":
            return int(v), i + 1
        if v in "{[":
            close, items, i = "}" if v == "{" else "]", [], i + 1
            while tokens[i][1] != close:
                t, i = term(i)
                items.append(t)
                if tokens[i][1] == ",":
                    i += 1
            return (tuple(items) if close == "}" else items), i + 1
        raise UserError(f"{origin}: unexpected '{v}' in Erlang term")

    try:
        return term(0)[0]
    except IndexError:
        raise UserError(f"{origin}: the Erlang term ends too early") from None


def app_spec(app_file: Path) -> tuple[Atom, dict[str, object], object]:
    """(name, keys, packed spec) of a .app file; the spec as systools_make:pack_app/1 writes it."""
    t = parse_term(app_file.read_text(), str(app_file))
    if not (isinstance(t, tuple) and len(t) == 3 and t[0] == "application"):
        raise UserError(f"{app_file} is not an application resource file")
    keys = {str(k): v for k, v in t[2]}
    packed = [
        (Atom("description"), keys.get("description", [])),
        (Atom("vsn"), keys.get("vsn", [])),
        (Atom("id"), keys.get("id", [])),
        (Atom("modules"), keys.get("modules", [])),
        (Atom("registered"), keys.get("registered", [])),
        (Atom("applications"), keys.get("applications", [])),
        (Atom("optional_applications"), keys.get("optional_applications", [])),
        (Atom("included_applications"), keys.get("included_applications", [])),
        (Atom("env"), keys.get("env", [])),
        (Atom("maxT"), keys.get("maxT", Atom("infinity"))),
        (Atom("maxP"), keys.get("maxP", Atom("infinity"))),
    ]
    for k in ("start_phases", "mod"):
        if k in keys:
            packed.append((Atom(k), keys[k]))
    return Atom(t[1]), keys, (Atom("application"), Atom(t[1]), packed)


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
    (rel_dst / "start.boot").write_bytes(etf_encode(script))
    (rel_dst / "start.script").write_text(
        "%% coding: utf-8\n{script,"
        + erl_format(script[1])
        + ",\n ["
        + ",\n  ".join(erl_format(i, 2) for i in script[2])
        + "]}.\n"
    )
    (out / "bin").mkdir()
    shutil.copy2(rel_dst / "start.boot", out / "bin" / "start.boot")
    shutil.copy2(rel_dst / "start_clean.boot", out / "bin" / "start_clean.boot")
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
    doc="OTP 27.3.4.1 .beam files and boot scripts laid out for the FAT disk (root/)",
)
def build(ctx: Context) -> None:
    manifest = make_tree(ctx.src("otp-debs"), ctx.src("otp"), ctx.out / "root")
    (ctx.out / "otp.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    ctx.note(json.dumps(manifest, sort_keys=True))


@stage(
    "otp-disk",
    deps=("otp",),
    host=("mtools", "dosfstools"),
    doc="FAT32 disk image (MBR, partition at LBA 2048) holding the OTP tree",
)
def build_otp_disk(ctx: Context) -> None:
    info = disk.build_disk(ctx.dep("otp") / "root", ctx.out / "disk.img")
    ctx.note(
        f"disk.img: {info.size_bytes} bytes, {info.files} files, {info.content_bytes} bytes of content"
    )
