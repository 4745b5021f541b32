# SPDX-License-Identifier: BSD-2-Clause
"""The heap takes the rest of the RAM: Microkit patch 0006 (pages over several untypeds,
free memory in report.txt), image.pack's sizing, memory.txt (needs the sources)."""

import json
import re
import xml.etree.ElementTree as ET

import pytest

from chrysopolis import image, memreport, sources, system, targets
from chrysopolis.errors import UserError

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def beam(stack_planner):
    return stack_planner.ensure("beam")


@pytest.fixture(scope="module")
def packer(stack_planner, beam, tmp_path_factory):
    """pack(heap_mib) of the built beam image's ELFs, as nodes.py packs another MAC."""
    d = tmp_path_factory.mktemp("pack")
    (d / "elf").mkdir()
    image.gather_elfs(stack_planner, beam, d / "elf")

    def pack(heap_mib):
        outputs = image.pack(
            lambda text: None,
            d / "elf",
            d / "system",
            d / "img",
            d / "report.txt",
            "qemu_virt_aarch64",
            sddf=sources.require(stack_planner.lock.source("sddf")),
            microkit=stack_planner.ensure("sdk") / "bin" / "microkit",
            heap_mib=heap_mib,
            stack_kib=256,
        )
        return outputs, (d / "report.txt").read_text()

    return pack


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


def test_a_heap_beyond_the_largest_untyped_is_split_in_order(packer):
    outputs, report = packer(1024)  # the largest untyped at 2G is 512 MiB
    assert outputs.heap_size == 1024 * MIB
    pages = [o for o in kernel_objects(report) if "MR=beam_heap #" in o[0]]
    assert [int(n.rsplit("#", 1)[1]) for n, _, _ in pages] == list(range(512))
    caps = [c for _, c, _ in pages]
    assert caps == list(range(caps[0], caps[0] + 512))  # one cap range, mapped in order
    uts = untypeds(report)
    used = {next(i for i, (b, e) in enumerate(uts) if b <= p < e) for _, _, p in pages}
    assert len(used) >= 2
    assert all(p % (2 * MIB) == 0 for _, _, p in pages)
    assert len({p for _, _, p in pages}) == 512


def test_a_heap_beyond_the_ram_is_the_tools_error_in_one_line(packer):
    with pytest.raises(UserError, match=r"does not fit in the free memory") as e:
        packer(4096)
    assert "\n" not in str(e.value)
    assert "Microkit tool" in str(e.value)


def test_a_first_try_too_big_is_lowered_by_the_margin(packer, monkeypatch):
    rest, report = packer("rest")
    assert image.free_memory_text(report)["free_2mib"] <= image.HEAP_MARGIN_MIB * MIB
    # The smallest fixed heap the tool refuses, a margin at a time above the rest.
    over = rest.heap_size // MIB
    while True:
        over += image.HEAP_MARGIN_MIB
        try:
            packer(over)
        except UserError as e:
            assert "does not fit" in str(e) or "greater than" in str(e)
            break
    assert over <= rest.heap_size // MIB + 4 * image.HEAP_MARGIN_MIB
    monkeypatch.setattr(image, "_rest_heap_mib", lambda free: over)
    tried, _ = packer("rest")
    assert tried.heap_size == (over - image.HEAP_MARGIN_MIB) * MIB


def test_a_rest_that_never_fits_is_one_line(packer, monkeypatch):
    monkeypatch.setattr(image, "_rest_heap_mib", lambda free: 4096)
    with pytest.raises(UserError, match=r"rest of the RAM .*does not fit") as e:
        packer("rest")
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
    # The rest: what 2 MiB pages could still take is at most the margins of the tries.
    assert free["free_2mib"] <= image.HEAP_MARGIN_MIB * image.HEAP_TRIES * MIB
    assert manifest["heap_mib"] * MIB > free["total"] // 2
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
