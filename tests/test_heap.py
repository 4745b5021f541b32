# SPDX-License-Identifier: BSD-2-Clause
"""The heap takes the rest of the RAM: from 256 MiB, all of the RAM the SDK keeps from seL4
for it (boards.heap_reserve); below, Microkit patch 0006 (pages over several untypeds, free
memory in report.txt) and image.pack's sizing; memory.txt (needs the sources)."""

import json
import re
import xml.etree.ElementTree as ET

import pytest

from chrysopolis import boards, cache, image, memreport, sources, system, targets
from chrysopolis.errors import UsageError, UserError

MIB = 1024 * 1024
SMALL_RAM_MIB = 192  # below boards.LAZY_HEAP_MIN_MIB: the heap is seL4's own RAM


@pytest.fixture(scope="module")
def beam(stack_planner):
    return stack_planner.ensure("beam")


def make_packer(stack_planner, beam, d, ram_mib=None):
    """pack(heap_mib) of the built beam image's ELFs, as nodes.py packs another MAC, with the
    SDK for `ram_mib` (None: the default RAM)."""
    (d / "elf").mkdir()
    image.gather_elfs(stack_planner, beam, d / "elf")
    sdk = (cache.Planner(ram_mib) if ram_mib else stack_planner).ensure("sdk")

    def pack(heap_mib):
        outputs = image.pack(
            lambda text: None,
            d / "elf",
            d / "system",
            d / "img",
            d / "report.txt",
            "qemu_virt_aarch64",
            sddf=sources.require(stack_planner.lock.source("sddf")),
            microkit=sdk / "bin" / "microkit",
            heap_mib=heap_mib,
            stack_kib=256,
            ram_mib=ram_mib,
        )
        return outputs, (d / "report.txt").read_text()

    return pack


@pytest.fixture(scope="module")
def packer(stack_planner, beam, tmp_path_factory):
    return make_packer(stack_planner, beam, tmp_path_factory.mktemp("pack"))


@pytest.fixture(scope="module")
def small_packer(stack_planner, beam, tmp_path_factory):
    return make_packer(stack_planner, beam, tmp_path_factory.mktemp("pack-small"), SMALL_RAM_MIB)


def kernel_objects(report: str) -> list[tuple[str, int, int]]:
    """(name, cap_addr, phys_addr) of every object in the report's detail section."""
    detail = report.split("# Allocated Kernel Objects Detail")[1].split("\n# ")[0]
    return [
        (m.group(1), int(m.group(2), 16), int(m.group(3), 16))
        for m in map(memreport.OBJECT_RE.match, detail.splitlines())
        if m
    ]


def untypeds(report: str) -> list[tuple[int, int]]:
    return [
        (int(m.group(1), 16), int(m.group(2), 16))
        for m in map(memreport.UNTYPED_RE.match, report.splitlines())
        if m
    ]


@pytest.mark.parametrize("value", ["rest", 256])
def test_heap_option_takes_rest_or_mib(value):
    assert image.check_heap_option(value) == value


@pytest.mark.parametrize("value", ["256", "all", True, 3])
def test_bad_heap_option_is_refused_in_one_line(value):
    with pytest.raises(UserError, match="heap size") as e:
        image.check_heap_option(value)
    assert "\n" not in str(e.value)


def test_a_heap_lies_in_the_ram_kept_from_sel4_in_order(packer):
    outputs, report = packer(1024)
    base, _ = boards.heap_reserve(boards.board("qemu_virt_aarch64"), 2048)
    assert outputs.heap_size == 1024 * MIB
    pages = [o for o in kernel_objects(report) if o[0].startswith("Page(2 MiB): MR=beam_heap ")]
    assert [p for _, _, p in pages] == [base + i * 2 * MIB for i in range(512)]
    caps = [c for _, c, _ in pages]
    assert caps == list(range(caps[0], caps[0] + 512))  # one cap range, mapped in order
    # none of it is seL4's own RAM, which it clears at boot
    uts = untypeds(report)
    assert not any(b <= p < e for _, _, p in pages for b, e in uts)


def test_a_small_ram_heap_beyond_the_largest_untyped_is_split_in_order(small_packer):
    outputs, report = small_packer(96)
    assert outputs.heap_size == 96 * MIB
    pages = [o for o in kernel_objects(report) if "MR=beam_heap #" in o[0]]
    assert [int(n.rsplit("#", 1)[1]) for n, _, _ in pages] == list(range(48))
    caps = [c for _, c, _ in pages]
    assert caps == list(range(caps[0], caps[0] + 48))
    uts = untypeds(report)
    used = {next(i for i, (b, e) in enumerate(uts) if b <= p < e) for _, _, p in pages}
    assert len(used) >= 2


def test_a_heap_beyond_the_ram_names_the_smallest_that_fits(packer):
    with pytest.raises(
        UsageError, match=r"^--ram 2G is too small .* give --ram 4160M or more$"
    ) as e:
        packer(4096)
    assert "\n" not in str(e.value)


def test_a_small_ram_heap_beyond_it_names_the_smallest_ram_in_one_line(small_packer):
    with pytest.raises(UsageError, match=r"^--ram 192M is too small .* or more$") as e:
        small_packer(1024)
    assert "\n" not in str(e.value)


def test_a_first_try_too_big_is_lowered_by_the_margin(small_packer, monkeypatch):
    packer = small_packer
    rest, report = packer("rest")
    assert image.free_memory_text(report)["free_2mib"] <= image.HEAP_MARGIN_MIB * MIB
    # The smallest fixed heap the tool refuses, a margin at a time above the rest.
    over = rest.heap_size // MIB
    while True:
        over += image.HEAP_MARGIN_MIB
        try:
            packer(over)
        except UserError as e:
            assert "is too small" in str(e)
            break
    assert over <= rest.heap_size // MIB + 4 * image.HEAP_MARGIN_MIB
    monkeypatch.setattr(image, "_rest_heap_mib", lambda free: over)
    tried, _ = packer("rest")
    assert tried.heap_size == (over - image.HEAP_MARGIN_MIB) * MIB


def test_a_rest_that_never_fits_is_one_line(small_packer, monkeypatch):
    monkeypatch.setattr(image, "_rest_heap_mib", lambda free: 1024)
    with pytest.raises(UserError, match=r"rest of the RAM .*does not fit") as e:
        small_packer("rest")
    assert "\n" not in str(e.value)


def test_the_built_heap_is_the_rest(beam):
    report = (beam / "report.txt").read_text()
    free = image.free_memory(beam / "report.txt")
    manifest = json.loads((beam / targets.MANIFEST).read_text())
    heap = next(
        mr
        for mr in ET.parse(beam / "chrysopolis.system").getroot().iter("memory_region")
        if mr.get("name") == system.HEAP_MR
    )
    assert int(heap.get("size"), 0) == manifest["heap_mib"] * MIB
    # The rest: all the RAM kept from seL4 for it, at its start.
    base, size = boards.heap_reserve(boards.board(manifest["board"]), 2048)
    assert (int(heap.get("phys_addr"), 0), manifest["heap_mib"] * MIB) == (base, size)
    line = re.search(r"^normal memory: .*$", report, re.M).group(0)
    assert line == (
        f"normal memory: total={free['total']:#x} allocated={free['allocated']:#x} "
        f"free={free['free']:#x} free_2mib={free['free_2mib']:#x}"
    )


def test_memory_report_adds_up(beam):
    report = (beam / "report.txt").read_text()
    system_xml = (beam / "chrysopolis.system").read_text()
    m = memreport.parse(report, system_xml)
    # The untyped lines and the summary line agree.
    uts = untypeds(report)
    assert sum(e - b for b, e in uts) == m.total
    frees = [int(x, 16) for x in re.findall(r"^ {4}base=.* free=(0x[0-9a-f]+)$", report, re.M)]
    assert sum(frees) == m.free
    assert m.allocated + m.free == m.total
    assert m.free_2mib <= m.free
    # Every byte of normal memory is a PD's, shared, a kernel object's or free.
    assert sum(u.ram for u in m.owners.values()) + m.kernel_objects + m.free == m.total
    assert 0 < m.kernel_objects < 16 * MIB and m.kernel_object_count > 0
    # Each PD of the .system has its stack and IPC buffer; the heap is beam_server's.
    root = ET.fromstring(system_xml)
    for pd in root.iter("protection_domain"):
        u = m.owners[pd.get("name")]
        assert u.ipc == 4096
        assert u.stack == int(pd.get("stack_size", "0x1000"), 0)
        assert u.elf > 0
    sizes = {mr.get("name"): int(mr.get("size"), 0) for mr in root.iter("memory_region")}
    beam_server = m.owners[system.CLIENT]
    assert beam_server.mrs[system.HEAP_MR] == sizes[system.HEAP_MR]
    # A region mapped by two PDs is counted once, as shared, at its size.
    assert m.owners[memreport.SHARED].mrs["fs_fatfs_share"] == sizes["fs_fatfs_share"]
    # What the image stage wrote is this report.
    assert (beam / "memory.txt").read_text() == m.text()
