# SPDX-License-Identifier: BSD-2-Clause
"""musl, ERTS and the Linux baseline: all inputs come from Debian's archive, so these run
anywhere the registries are reachable (the sources are fetched when absent)."""

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from chrysopolis import baseline, cache, lock, sources
from chrysopolis.errors import UserError


def _fetch_for(*names: str) -> None:
    """Fetch the Debian/archive sources of these stages and their dependencies."""
    lk = lock.load()
    seen: set[str] = set()
    todo = list(names)
    while todo:
        st = cache.get(todo.pop())
        if st.name in seen:
            continue
        seen.add(st.name)
        todo.extend(st.deps)
        for s in st.sources:
            src = lk.source(s)
            if src.kind != "git":
                sources.fetch(src)
            elif not sources.present(src):
                pytest.skip(f"stage {st.name} needs GitHub source '{s}': {sources.bring_hint(src)}")


@pytest.fixture(scope="module")
def planner() -> cache.Planner:
    _fetch_for("baseline", "otp")
    return cache.Planner()


def _ar_members(path: Path) -> dict[str, bytes]:
    """The members of a System V / GNU archive (what llvm-ar writes), by name."""
    data = path.read_bytes()
    assert data.startswith(b"!<arch>\n"), f"{path} is not an ar archive"
    pos, names, out = 8, b"", {}
    while pos + 60 <= len(data):
        hdr = data[pos : pos + 60]
        name, size = hdr[:16].decode().rstrip(), int(hdr[48:58])
        body = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name == "//":
            names = body
        elif name in ("/", "/SYM64/"):
            continue
        elif name.startswith("/") and name[1:].isdigit():
            off = int(name[1:])
            out[names[off : names.index(b"/\n", off)].decode()] = body
        else:
            out[name.rstrip("/")] = body
    return out


def _defined(elf: ELFFile) -> set[str]:
    symtab = elf.get_section_by_name(".symtab")
    return {
        s.name
        for s in symtab.iter_symbols()
        if s["st_shndx"] != "SHN_UNDEF" and s["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK")
    }


@pytest.mark.slow
def test_libbeam_is_aarch64_with_erl_start_and_no_main(planner):
    erts = planner.ensure("erts")
    members = _ar_members(erts / "lib" / "libbeam.a")
    assert len(members) > 100
    defined: dict[str, set[str]] = {}
    for name, body in members.items():
        elf = ELFFile(io.BytesIO(body))
        assert elf["e_machine"] == "EM_AARCH64", name
        assert elf["e_type"] == "ET_REL", name
        for sym in _defined(elf):
            defined.setdefault(sym, set()).add(name)
    assert defined.get("erl_start") == {"erl_init.o"}
    assert "main" not in defined
    assert not any(s.startswith("__aarch64_") for s in defined)  # built without outline atomics
    for helper in (
        "libz.a",
        "libepcre.a",
        "libryu.a",
        "libzstd.a",
        "libethread.a",
        "liberts_internal_r.a",
    ):
        assert _ar_members(erts / "lib" / helper), helper


def _svc_count(archive: Path) -> int:
    dis = subprocess.run(
        ["llvm-objdump-19", "-d", str(archive)], capture_output=True, text=True, check=True
    ).stdout
    return dis.count("\tsvc\t")


@pytest.mark.slow
def test_sel4_musl_has_no_svc_and_calls_through_sysinfo(planner):
    musl = planner.ensure("musl")
    assert _svc_count(musl / "linux" / "lib" / "libc.a") > 100  # the disassembly does find svc
    sel4 = musl / "sel4" / "lib" / "libc.a"
    assert _svc_count(sel4) == 0
    syms = subprocess.run(
        ["llvm-nm-19", str(sel4)], capture_output=True, text=True, check=True
    ).stdout
    defined = {
        line.split()[-1]
        for line in syms.splitlines()
        if len(line.split()) == 3 and line.split()[1] in "TDBRW"
    }
    assert "__sysinfo" in defined
    assert "__assert_fail" not in defined  # libmicrokit 2.0.1 has the strong one
    assert (musl / "include" / "stdio.h").is_file() and (
        musl / "include" / "bits" / "alltypes.h"
    ).is_file()


@pytest.mark.slow
def test_baseline_evaluates_expressions(planner):
    planner.ensure("baseline")
    assert baseline.evaluate(["1 + 1.", "lists:seq(1, 5)."]) == ["2", "[1,2,3,4,5]"]


@pytest.mark.slow
def test_baseline_compiles_in_the_callers_directory(planner, tmp_path, monkeypatch):
    (tmp_path / "greet.erl").write_text("-module(greet).\n-export([hi/0]).\nhi() -> hello.\n")
    monkeypatch.chdir(tmp_path)
    assert baseline.evaluate(['compile:file("greet.erl").']) == ["{ok,greet}"]
    assert (tmp_path / "greet.beam").read_bytes()[:4] == b"FOR1"


@pytest.mark.slow
def test_baseline_carries_bindings_and_reports_exceptions(planner):
    got = baseline.evaluate(["X = 6 * 7.", "{X, X div 2}", "1 / 0.", "not_reached."])
    assert got[:2] == ["42", "{42,21}"]
    assert got[2].startswith("** exception error: an error occurred when evaluating an arith")
    assert len(got) == 3  # evaluation stops at the first failure, as `run --eval` does


def test_corrupted_otp_file_is_refused_before_configure(tmp_path, monkeypatch):
    # Files that are not the pinned ones (a tampered or truncated download): same names.
    src = lock.load().source("otp")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for f in src.files:
        (mirror / f.name).write_bytes(b"not the pinned file\n")
    monkeypatch.setenv("CHRYSOPOLIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CHRYSOPOLIS_MIRROR", str(mirror))
    with pytest.raises(UserError, match=r"hash mismatch for erlang_29\.1\.1\+dfsg.* of 'otp'"):
        sources.fetch(src)
    assert not sources.present(src)
    assert not list((tmp_path / "cache" / "sources").glob("otp/*"))

    planner = cache.Planner()
    with pytest.raises(
        UserError, match=r"source 'otp' .* is not in the store; run `chrysopolis sources fetch otp`"
    ):
        planner.ensure("erts")
    assert not planner.log_path("erts").exists()  # no stage ran: configure never started
    assert not planner.is_built("musl")  # nor did its dependencies
    assert not list(tmp_path.rglob("CONFIGURE_RAN"))


def test_corrupted_musl_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CHRYSOPOLIS_CACHE", str(tmp_path / "cache"))
    src = lock.load().source("musl")
    files = tmp_path / "files"
    files.mkdir()
    for f in src.files:
        (files / f.name).write_bytes(b"not the pinned file\n")
    with pytest.raises(UserError, match=r"hash mismatch for musl_.* of 'musl'"):
        sources.import_path(src, files)
    assert not sources.present(src)
    shutil.rmtree(files)
