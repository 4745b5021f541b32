# SPDX-License-Identifier: BSD-2-Clause
"""Erlang terms in Python: the external term format (term_to_binary, the encoding of .boot
files), Erlang's text syntax for consult-style files, and the .app resource file.

The otp stage reads and writes boot scripts with these, byte for byte as systools does,
without running an Erlang on the build host.
"""

import re
import struct
from pathlib import Path

from chrysopolis.errors import UserError

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
    """term_to_binary/1 as OTP 29 writes it, for the subset boot scripts use."""
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
