# SPDX-License-Identifier: BSD-2-Clause
"""The syscall map is the code: every syscall the runtime answers is a row of a table,
registered from that table only (docs/syscalls.md).

runtime/posix/syscalls.c holds SYSCALLS, the POSIX adapter's rows; runtime/pd/dispatch.c
holds PD_SYSCALLS, the few every image answers; runtime/net/fd_socket.c holds NET_SYSCALLS,
the socket calls of images with the network, and syscalls.c's NO_NET_SYSCALLS refuses
some of the same numbers in images without it (one or the other is registered). A row is {SYS_name, handler, "file.c"}.
These tests read the C sources (no compiler, no QEMU) and hold the map to the code.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "runtime"
HEADERS = RUNTIME / "include" / "chrysopolis"
DIRS = (RUNTIME / "pd", RUNTIME / "posix", RUNTIME / "net")
# Alternatives: an image registers exactly one of them.
ALTERNATIVES = ("NET_SYSCALLS", "NO_NET_SYSCALLS")
TABLE = re.compile(r"static const struct dispatch_syscall (\w+)\[\] = \{(.*?)\n\};", re.DOTALL)
ROW = re.compile(r'\{\s*(SYS_\w+),\s*(\w+),\s*"([\w.]+)"\s*\}')
REGISTER_CALL = re.compile(r"\bdispatch_register\((.*?)\)\s*[!=;]")
LOOP_REGISTER = re.compile(r"^&(\w+)\[i\]$")


def sources() -> list[Path]:
    return sorted(p for d in DIRS for p in d.glob("*.c"))


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.DOTALL)
    return re.sub(r"//[^\n]*", "", text)


def tables() -> dict[str, tuple[Path, list[tuple[str, str, str]]]]:
    found = {}
    for path in sources():
        for name, body in TABLE.findall(strip_comments(path.read_text())):
            found[name] = (path, ROW.findall(body))
    return found


def rows() -> list[tuple[str, str, str, Path]]:
    return [(nr, fn, file, path) for path, rs in tables().values() for nr, fn, file in rs]


def image_rows(alternative: str) -> list[tuple[str, str, str, Path]]:
    """The rows one image registers: every table but the other alternative."""
    return [
        (nr, fn, file, path)
        for name, (path, rs) in tables().items()
        if name not in ALTERNATIVES or name == alternative
        for nr, fn, file in rs
    ]


def test_the_tables_exist():
    t = tables()
    assert set(t) == {"SYSCALLS", "PD_SYSCALLS", "NET_SYSCALLS", "NO_NET_SYSCALLS"}
    assert t["SYSCALLS"][0] == RUNTIME / "posix" / "syscalls.c"
    assert t["NO_NET_SYSCALLS"][0] == RUNTIME / "posix" / "syscalls.c"
    assert t["PD_SYSCALLS"][0] == RUNTIME / "pd" / "dispatch.c"
    assert t["NET_SYSCALLS"][0] == RUNTIME / "net" / "fd_socket.c"
    assert len(t["SYSCALLS"][1]) >= 60 and len(t["PD_SYSCALLS"][1]) >= 1
    # every row of a table is a row the parser understood
    for name, (path, rs) in t.items():
        bodies = dict(TABLE.findall(strip_comments(path.read_text())))
        assert bodies[name].count("{") == len(rs), f"a row of {name} does not parse"


def test_syscalls_c_says_where_the_map_is_explained():
    text = (RUNTIME / "posix" / "syscalls.c").read_text()
    head = text[: text.index("static const struct dispatch_syscall SYSCALLS")]
    assert "docs/syscalls.md" in head.rsplit("*/", 2)[-2]


def test_every_registration_goes_through_a_table():
    t = tables()
    calls = []
    for path in [*sources(), *sorted(RUNTIME.rglob("*.h"))]:
        text = strip_comments(path.read_text())
        assert "runtime_define_syscall" not in text, f"{path}: the old registration call"
        for arg in REGISTER_CALL.findall(text):
            m = LOOP_REGISTER.match(arg.strip())
            if arg.startswith("const struct dispatch_syscall"):
                continue  # the declaration and the definition
            assert (
                m and m.group(1) in t
            ), f"{path.name}: dispatch_register({arg}) is not a table loop"
            assert t[m.group(1)][0] == path, f"{path.name} registers another file's table"
            calls.append(m.group(1))
    assert sorted(calls) == sorted(t), "each table is registered by exactly one loop"
    # Nothing else writes the dispatch table.
    dispatch = strip_comments((RUNTIME / "pd" / "dispatch.c").read_text())
    assert len(re.findall(r"\btable\[[^\]]+\]\s*=[^=]", dispatch)) == 1


@pytest.mark.parametrize(
    "nr,fn,file,table_path", rows(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_each_handler_is_defined_in_the_file_its_row_names(nr, fn, file, table_path):
    candidates = [d / file for d in DIRS if (d / file).is_file()]
    assert len(candidates) == 1, f"{nr}: no single runtime/pd|posix/{file}"
    text = strip_comments(candidates[0].read_text())
    assert re.search(rf"^long {fn}\(", text, re.MULTILINE), f"{nr}: {fn} is not defined in {file}"
    for other in sources():
        if other != candidates[0]:
            assert not re.search(
                rf"^\S.*\b{fn}\([^;]*$", strip_comments(other.read_text()), re.M
            ), f"{fn} is also defined in {other.name}"
    header = HEADERS / (Path(file).stem + ".h")
    assert re.search(
        rf"^long {fn}\(", header.read_text(), re.MULTILINE
    ), f"{fn} not declared in {header.name}"


@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_no_number_appears_twice(alternative):
    names = [nr for nr, _, _, _ in image_rows(alternative)]
    twice = sorted({n for n in names if names.count(n) > 1})
    assert not twice, f"registered twice: {twice}"


def test_without_the_network_the_socket_calls_are_still_answered():
    t = tables()
    no_net = {nr for nr, _, _ in t["NO_NET_SYSCALLS"][1]}
    net = {nr for nr, _, _ in t["NET_SYSCALLS"][1]}
    assert {"SYS_socket", "SYS_getsockopt"} <= no_net <= net
    text = strip_comments((RUNTIME / "posix" / "syscalls.c").read_text())
    assert "#pragma weak fd_socket_init" in text


def test_no_number_appears_twice_by_value():
    """SYS_ names can alias one number: compare the target's numbers when its header is here."""
    headers = sorted(
        Path.home().glob(".cache/chrysopolis/stages/lionsos-libc/*/include/bits/syscall.h")
    )
    if not headers:
        pytest.skip("the target's bits/syscall.h is not built (lionsos-libc stage)")
    numbers = dict(re.findall(r"#define (SYS_\w+)\s+(\d+)", headers[-1].read_text()))
    for alternative in ALTERNATIVES:
        values = [int(numbers[nr]) for nr, _, _, _ in image_rows(alternative)]
        assert len(values) == len(set(values))
        assert max(values) < 512, "DISPATCH_MAX is 512"


def test_every_handler_is_in_a_table():
    named = {fn for _, fn, _, _ in rows()}
    for path in sources():
        for fn in re.findall(r"^long (sys_\w+)\(", strip_comments(path.read_text()), re.MULTILINE):
            assert fn in named, f"{path.name}: {fn} is in no syscall table"


def test_the_docs_map_lists_exactly_the_table():
    """docs/syscalls.md's map names each row's handler and file, and nothing else."""
    doc = (ROOT / "docs" / "syscalls.md").read_text()
    documented = set(re.findall(r"^\| \d+ \| \w+ \| `(\w+)` \| ([\w.]+)[^|]* \|", doc, re.M))
    in_code = {(fn, file) for _, fn, file, _ in rows()}
    assert documented == in_code, (
        f"only in the docs: {sorted(documented - in_code)}; "
        f"only in the code: {sorted(in_code - documented)}"
    )
