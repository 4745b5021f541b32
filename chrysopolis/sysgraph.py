# SPDX-License-Identifier: BSD-2-Clause
"""The facts of a built target, as a model `chrysopolis show` draws: its protection domains,
channels, memory regions and who maps them with what rights (the Microkit system
description), each PD's loaded ELF size and the physical memory map (Microkit's report.txt,
read as chrysopolis/memreport.py reads it), and the kernel image (the SDK's sel4.elf).
"""

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from chrysopolis import boards, memreport
from chrysopolis.errors import UserError

# Microkit's default when a PD gives no budget (tool/microkit/src/sdf.rs): period = budget.
BUDGET_DEFAULT_US = 1000

# PD name prefix -> the subsystem cluster it is drawn in (names from chrysopolis/system.py).
SUBSYSTEMS = (
    ("timer", "timer"),
    ("serial", "serial"),
    ("blk", "block"),
    ("fat", "FS"),
    ("fs", "FS"),
    ("ethernet", "network"),
    ("eth", "network"),
    ("net", "network"),
    ("beam_net", "network"),
)

LOADER_RE = re.compile(r"^\s*<Region name=PD-ELF (\S+)-(\d+) addr=(0x[0-9a-f]+) size=(\d+)>")
MONITOR_RE = re.compile(
    r"^\s*physical memory: MemoryRegion\(base=(0x[0-9a-f]+), end=(0x[0-9a-f]+)\)"
)


def subsystem(pd: str) -> str | None:
    for prefix, name in SUBSYSTEMS:
        if pd.startswith(prefix):
            return name
    return None


@dataclass
class Map:
    mr: str
    perms: str  # as in the XML: r, rw, x, rx, rwx
    vaddr: int
    cached: bool = True


@dataclass
class Irq:
    irq: int
    id: int
    trigger: str


@dataclass
class PD:
    name: str
    priority: int
    budget: int  # microseconds
    period: int
    passive: bool
    parent: str | None
    child_id: int | None  # the id its parent knows it by
    elf: str
    maps: list[Map] = field(default_factory=list)
    irqs: list[Irq] = field(default_factory=list)
    elf_size: int | None = None  # bytes the loader copies (report.txt), else the file's

    @property
    def subsystem(self) -> str | None:
        return subsystem(self.name)


@dataclass
class End:
    pd: str
    id: int
    pp: bool = False
    notify: bool = True


@dataclass
class Channel:
    a: End
    b: End

    @property
    def key(self) -> str:
        return f"ch:{self.a.pd}:{self.a.id}--{self.b.pd}:{self.b.id}"


@dataclass
class Region:
    name: str
    size: int
    phys_addr: int | None = None

    def short(self) -> str:
        """Without the device prefix sDDF gives it (`pl011@9000000/...`)."""
        head, _, rest = self.name.partition("/")
        return rest if "@" in head and rest else self.name


@dataclass
class Extent:
    """A stretch of physical RAM in the memory map."""

    start: int
    size: int
    kind: str  # kernel, monitor, elf, region, stack, ipc, kernel objects, free, other
    label: str

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass
class System:
    target: str
    pds: dict[str, PD]
    channels: list[Channel]
    regions: dict[str, Region]
    ram_base: int | None = None
    ram_size: int | None = None
    memory: list[Extent] = field(default_factory=list)

    def mappers(self, mr: str) -> list[tuple[str, Map]]:
        return [(pd.name, m) for pd in self.pds.values() for m in pd.maps if m.mr == mr]

    def is_device(self, r: Region) -> bool:
        """Fixed-address and outside the RAM: device registers."""
        if r.phys_addr is None or self.ram_base is None:
            return False
        return not self.ram_base <= r.phys_addr < self.ram_base + (self.ram_size or 0)


def parse_system(xml: str, target: str = "") -> System:
    root = ET.fromstring(xml)
    regions = {}
    for mr in root.findall("memory_region"):
        pa = mr.get("phys_addr")
        regions[mr.get("name")] = Region(
            mr.get("name"), int(mr.get("size"), 0), int(pa, 0) if pa else None
        )
    pds: dict[str, PD] = {}

    def walk(el: ET.Element, parent: str | None) -> None:
        for p in el.findall("protection_domain"):
            budget = int(p.get("budget", str(BUDGET_DEFAULT_US)), 0)
            image = p.find("program_image")
            pd = PD(
                name=p.get("name"),
                priority=int(p.get("priority", "0"), 0),
                budget=budget,
                period=int(p.get("period"), 0) if p.get("period") else budget,
                passive=p.get("passive") == "true",
                parent=parent,
                child_id=int(p.get("id"), 0) if parent and p.get("id") else None,
                elf=image.get("path") if image is not None else "",
            )
            for m in p.findall("map"):
                pd.maps.append(
                    Map(
                        m.get("mr"),
                        m.get("perms", "rw"),
                        int(m.get("vaddr"), 0),
                        m.get("cached", "true") == "true",
                    )
                )
            for q in p.findall("irq"):
                pd.irqs.append(Irq(int(q.get("irq"), 0), int(q.get("id"), 0), q.get("trigger", "")))
            pds[pd.name] = pd
            walk(p, pd.name)

    walk(root, None)
    channels = []
    for c in root.findall("channel"):
        a, b = (
            End(
                e.get("pd"),
                int(e.get("id"), 0),
                e.get("pp") == "true",
                e.get("notify", "true") == "true",
            )
            for e in c.findall("end")
        )
        channels.append(Channel(a, b))
    return System(target, pds, channels, regions)


def system_file(out: Path) -> Path | None:
    """The .system of a target's output directory."""
    found = sorted(out.glob("*.system"))
    return found[0] if found else None


def load(out: Path, target: str, kernel: Path | None = None) -> System:
    """The model of the target built into `out` (its published directory)."""
    sysf = system_file(out)
    if sysf is None:
        raise UserError(f"target '{target}' is not built: run `chrysopolis build {target}`")
    model = parse_system(sysf.read_text(), target)
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    if run.get("board"):
        b = boards.board(run["board"])
        model.ram_base = b.ram_base
        model.ram_size = boards.ram_mib(b, run.get("ram") or b.ram) * memreport.MIB
    report = out / "report.txt"
    text = report.read_text() if report.is_file() else ""
    loaded = elf_sizes(text)
    for pd in model.pds.values():
        if pd.name in loaded:
            pd.elf_size = loaded[pd.name]
        elif (out / pd.elf).is_file():
            pd.elf_size = (out / pd.elf).stat().st_size
    if text and model.ram_base is not None:
        model.memory = memory_map(text, model, kernel_region(kernel) if kernel else None)
    return model


def elf_sizes(report_text: str) -> dict[str, int]:
    """PD -> the bytes of its ELF segments the loader copies (report.txt, Loader Regions)."""
    sizes: dict[str, int] = {}
    for line in report_text.splitlines():
        if m := LOADER_RE.match(line):
            sizes[m.group(1)] = sizes.get(m.group(1), 0) + int(m.group(4))
    return sizes


def kernel_region(sel4_elf: Path) -> tuple[int, int] | None:
    """The kernel image's physical [start, end): its first loadable segment to `ki_end`,
    as the Microkit tool takes it out of normal memory (kernel_self_mem)."""
    from elftools.elf.elffile import ELFFile

    if not sel4_elf.is_file():
        return None
    with open(sel4_elf, "rb") as f:
        elf = ELFFile(f)
        seg = next(s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD")
        syms = elf.get_section_by_name(".symtab")
        ki_end = syms.get_symbol_by_name("ki_end") if syms else None
        if not ki_end:
            return None
        base = seg["p_paddr"]
        return base, ki_end[0]["st_value"] - seg["p_vaddr"] + base


PAGE_LABELS = {"ipc": "{} IPC buffer", "stack": "{} stack", "elf": "{} ELF", "region": "{}"}


def memory_map(report_text: str, model: System, kernel: tuple[int, int] | None) -> list[Extent]:
    """The RAM from its lowest address to its highest, every byte in one extent: the
    kernel, the monitor, each PD's ELF, stack and IPC buffer, each memory region's pages
    (heap regions included), the kernel objects (the allocated rest of normal memory),
    free memory (report.txt's untypeds after allocation), and what the report does not
    name (`other`)."""
    lo, hi = model.ram_base, model.ram_base + model.ram_size
    pieces: list[Extent] = []
    section = ""
    untypeds: list[tuple[int, int, int]] = []
    for line in report_text.splitlines():
        if line.startswith("# "):
            section = line
            continue
        if section == "# Allocated Kernel Objects Detail" and (
            m := memreport.OBJECT_RE.match(line)
        ):
            if p := memreport.page(m.group(1)):
                n, kind, owner = p
                pieces.append(Extent(int(m.group(3), 16), n, kind, PAGE_LABELS[kind].format(owner)))
        elif section.startswith("# Normal Memory Untyped") and (
            m := memreport.UNTYPED_RE.match(line)
        ):
            untypeds.append(tuple(int(g, 16) for g in m.groups()))
        elif section.startswith("# Monitor") and (m := MONITOR_RE.match(line)):
            a, b = int(m.group(1), 16), int(m.group(2), 16)
            pieces.append(Extent(a, b - a, "monitor", "monitor (initial task)"))
    if kernel:
        pieces.append(Extent(kernel[0], kernel[1] - kernel[0], "kernel", "seL4 kernel"))
    for _, end, free in untypeds:
        if free:
            pieces.append(Extent(end - free, free, "free", "free"))
    pieces = sorted((p for p in pieces if lo <= p.start < hi), key=lambda p: p.start)
    # Merge runs of one label; fill the gaps: inside an untyped's allocated part they are
    # kernel objects, elsewhere `other` (the invocation table, boot memory, alignment).
    merged: list[Extent] = []
    cursor = lo

    def gap(a: int, b: int) -> None:
        while a < b:
            inside = [(ub, ue - f) for ub, ue, f in untypeds if ub <= a < ue - f]
            if inside:
                e = min(b, inside[0][1])
                _push(merged, Extent(a, e - a, "kernel objects", "kernel objects"))
            else:
                nxt = min([ub for ub, ue, f in untypeds if ub > a and ub < ue - f] + [b])
                e = min(b, nxt)
                _push(merged, Extent(a, e - a, "other", "not seL4 normal memory"))
            a = e

    for p in pieces:
        if p.start < cursor:  # overlaps what is placed (e.g. free inside the monitor's)
            continue
        gap(cursor, p.start)
        _push(merged, p)
        cursor = p.end
    gap(cursor, hi)
    return merged


def _push(out: list[Extent], e: Extent) -> None:
    if e.size <= 0:
        return
    if out and out[-1].label == e.label and out[-1].end == e.start:
        out[-1].size += e.size
    else:
        out.append(e)


def size_text(n: int) -> str:
    """Bytes in the largest unit that keeps the figure short (GiB only when whole)."""
    if n >= 1 << 30 and n % (1 << 30) == 0:
        return f"{n >> 30} GiB"
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            v = n / div
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"
