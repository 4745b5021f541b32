# SPDX-License-Identifier: BSD-2-Clause
"""The LionsOS stack stages: LionsOS libc, libmicrokitco per user, sDDF PDs, the FAT server."""

import dataclasses
import shutil
import subprocess

import pytest
from conftest import require_sources
from elftools.elf.elffile import ELFFile

from chrysopolis import cache, image, system
from chrysopolis.stages import libmicrokitco, lionsos

LLVM = lionsos.LLVM_BIN


@pytest.fixture(scope="module")
def planner():
    require_sources("sel4", "microkit", "lionsos", "sddf", "libmicrokitco", "musl")
    return cache.Planner()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    require_sources("sddf")
    return system.generate(tmp_path_factory.mktemp("system"))


def _sections(path) -> dict[str, int]:
    with open(path, "rb") as f:
        elf = ELFFile(f)
        assert elf.elfclass == 64 and elf.header["e_machine"] == "EM_AARCH64", path
        assert elf.header["e_type"] == "ET_EXEC", path
        return {s.name: s["sh_size"] for s in elf.iter_sections()}


@pytest.mark.slow
@pytest.mark.sources
def test_libc_is_musl_plus_the_lionsos_posix_layer(planner):
    out = planner.ensure("lionsos-libc")
    assert (out / "include" / "stdio.h").is_file()
    members = subprocess.run(
        [LLVM / "llvm-ar", "t", out / "lib" / "libc.a"], capture_output=True, text=True, check=True
    ).stdout.split()
    lionsos_objs = {"fd.o", "file.o", "io.o", "mem.o", "posix.o", "sock.o", "helpers.o"}
    assert lionsos_objs <= set(members)
    assert "printf.lo" in members and "malloc.lo" in members  # musl itself
    # Only LionsOS's own seL4 calls trap; every musl system call goes through __sysinfo.
    dump = subprocess.run(
        [LLVM / "llvm-objdump", "-d", out / "lib" / "libc.a"], capture_output=True, text=True
    ).stdout
    member, trapping = None, set()
    for line in dump.splitlines():
        if line.endswith("file format elf64-littleaarch64"):
            member = line.split("(")[-1].split(")")[0]
        elif "\tsvc\t" in line:
            trapping.add(member)
    assert trapping and trapping <= lionsos_objs


@pytest.mark.slow
@pytest.mark.sources
def test_libmicrokitco_is_built_per_user(planner):
    beam = planner.ensure("libmicrokitco-beam")
    fat = planner.ensure("libmicrokitco-fat")
    opts = (beam / "include" / "libmicrokitco_opts.h").read_text()
    assert f"LIBMICROKITCO_MAX_COTHREADS {libmicrokitco.BEAM_MAX_COTHREADS}" in opts
    assert "FAT_THREAD_NUM" in (fat / "include" / "libmicrokitco_opts.h").read_text()
    for out in (beam, fat):
        syms = subprocess.run(
            [LLVM / "llvm-nm", out / "lib" / "libmicrokitco.a"], capture_output=True, text=True
        ).stdout
        assert " T microkit_cothread_init" in syms and " T co_switch" in syms


@pytest.mark.slow
@pytest.mark.sources
def test_pd_config_sections_match_sdfgen_blobs(planner, outputs):
    elf_dirs = [planner.ensure("sddf") / "elf", planner.ensure("fatfs") / "elf"]
    elfs = {p.name: p for d in elf_dirs for p in d.iterdir()}
    assert set(elfs) == set(lionsos.SDDF_ELFS) | {"fat.elf"}
    for b in outputs.blobs:
        if b.elf in elfs:  # beam_server.elf is the next stage's
            # The struct layouts of our sDDF/LionsOS pins and of sdfgen 0.28.1 agree.
            assert _sections(elfs[b.elf])[b.section] == b.data.stat().st_size, (b.elf, b.section)
    assert (planner.ensure("sddf") / "lib" / lionsos.UTIL_LIB).is_file()


@pytest.mark.slow
@pytest.mark.sources
def test_got_stays_out_of_the_ipc_buffer_page(planner):
    # Microkit maps the IPC buffer page over whatever the ELF put there (mk/got.ld).
    for d in (planner.ensure("sddf") / "elf", planner.ensure("fatfs") / "elf"):
        for path in d.iterdir():
            with open(path, "rb") as f:
                addr = {s.name: s["sh_addr"] for s in ELFFile(f).iter_sections()}
            if ".got" in addr:
                assert addr[".got"] < addr[".ipc_buffer"], path.name


@pytest.mark.slow
@pytest.mark.sources
def test_fat_server_links_its_worker_stacks(planner):
    fat = planner.ensure("fatfs") / "elf" / "fat.elf"
    syms = subprocess.run([LLVM / "llvm-nm", fat], capture_output=True, text=True).stdout
    for n in ("one", "two", "three", "four"):
        assert f"worker_thread_stack_{n}" in syms  # patched by the Microkit tool (setvar_vaddr)


@pytest.mark.slow
@pytest.mark.sources
def test_blobs_go_into_the_built_elfs(planner, outputs, tmp_path):
    for d in (planner.ensure("sddf") / "elf", planner.ensure("fatfs") / "elf"):
        for elf in d.iterdir():
            shutil.copyfile(elf, tmp_path / elf.name)
    ours = dataclasses.replace(
        outputs, blobs=tuple(b for b in outputs.blobs if b.elf not in image.OWN_ELFS)
    )
    system.write_sections(ours, tmp_path)
    for b in ours.blobs:
        dump = tmp_path / "dump"
        subprocess.run(
            [LLVM / "llvm-objcopy", "--dump-section", f"{b.section}={dump}", tmp_path / b.elf],
            check=True,
        )
        assert dump.read_bytes() == b.data.read_bytes(), (b.elf, b.section)


@pytest.mark.slow
@pytest.mark.sources
def test_lwip_stage_builds_with_our_options(planner):
    from chrysopolis import config

    out = planner.ensure("lwip")
    members = subprocess.run(
        [LLVM / "llvm-ar", "t", out / "lib" / lionsos.LWIP_LIB], capture_output=True, text=True
    ).stdout.split()
    assert {"lib_sddf_lwip.o", "dhcp.o", "tcp.o", "udp.o", "etharp.o", "netif.o"} <= set(members)
    # The headers the library was compiled with are ours, byte for byte.
    for rel in ("lwipopts.h", "arch/cc.h"):
        ours = config.ROOT / lionsos.LWIP_OPTS / rel
        assert (out / "include" / rel).read_bytes() == ours.read_bytes(), rel

    # lwIP's globals clash with nothing in the libc it is linked with.
    def globals_of(archive):
        r = subprocess.run(
            [LLVM / "llvm-nm", "-g", "--defined-only", archive], capture_output=True, text=True
        )
        return {f[2] for f in (line.split() for line in r.stdout.splitlines()) if len(f) == 3}

    libc = planner.ensure("lionsos-libc") / "lib" / "libc.a"
    assert not globals_of(out / "lib" / lionsos.LWIP_LIB) & globals_of(libc)
