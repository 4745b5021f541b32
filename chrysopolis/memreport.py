# SPDX-License-Identifier: BSD-2-Clause
"""How the RAM divides among the protection domains, from the Microkit tool's report.txt
(with Microkit patch 0006: the normal-memory untypeds after allocation) and the .system.

Every page object of the report is charged to its memory region (`MR=name`), a region to
the PDs that map it (one PD: that PD's; several: listed once as shared), the tool's own
regions to their PD (`STACK:pd`, `ELF:pd-N`, `IPC Buffer PD=pd`). Pages inside the
normal-memory untypeds are RAM the system took; the PD ELFs sit in the reserved region
(the loader copies them there) and fixed-address regions outside normal memory are
listed apart. Kernel objects = normal memory allocated minus its pages (alignment
padding included), so that PDs + shared + kernel objects + free = normal memory.
"""

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB

OBJECT_RE = re.compile(r"^ {4}(\S.*?)\s+\d+ cap_addr=([0-9a-f]+) phys_addr=([0-9a-f]+)$")
PAGE_RE = re.compile(r"^Page\((\d+) (KiB|MiB)\): (?:MR=(\S+)|IPC Buffer PD=(\S+))")
UNTYPED_RE = re.compile(
    r"^ {4}base=(0x[0-9a-f]+) end=(0x[0-9a-f]+) size=0x[0-9a-f]+ free=(0x[0-9a-f]+)"
)
NORMAL_RE = re.compile(
    r"^normal memory: total=(0x[0-9a-f]+) allocated=(0x[0-9a-f]+) "
    r"free=(0x[0-9a-f]+) free_2mib=(0x[0-9a-f]+)$"
)
SHARED = "shared"


def page(name: str) -> tuple[int, str, str] | None:
    """(bytes, kind, owner) of a page object of the report, None for another object:
    kind ipc, stack or elf (owner: the PD) or region (owner: the memory region)."""
    m = PAGE_RE.match(name)
    if not m:
        return None
    size = int(m.group(1)) * (MIB if m.group(2) == "MiB" else KIB)
    mr, ipc_pd = m.group(3), m.group(4)
    if ipc_pd:
        return size, "ipc", ipc_pd
    if mr.startswith("STACK:"):
        return size, "stack", mr.removeprefix("STACK:")
    if mr.startswith("ELF:"):
        return size, "elf", mr.removeprefix("ELF:").rsplit("-", 1)[0]
    return size, "region", mr


@dataclass
class Usage:
    """Bytes of one owner (a PD, or the shared regions)."""

    regions: int = 0  # its memory regions' pages in normal memory
    stack: int = 0
    ipc: int = 0
    elf: int = 0  # the PD's ELF segments, in the reserved region
    fixed: int = 0  # fixed-address pages outside normal memory (devices, DMA)
    mrs: dict[str, int] = field(default_factory=dict)  # region -> bytes

    @property
    def ram(self) -> int:
        """What the owner takes of normal memory."""
        return self.regions + self.stack + self.ipc


@dataclass
class MemoryReport:
    total: int
    allocated: int
    free: int
    free_2mib: int
    owners: dict[str, Usage]  # PD name (and SHARED) -> usage
    kernel_objects: int  # bytes of normal memory that are not pages
    kernel_object_count: int
    mr_pds: dict[str, list[str]]

    def text(self) -> str:
        def mib(n: int) -> str:
            return f"{n / MIB:10.3f}"

        lines = [
            "# RAM by protection domain (MiB), from report.txt and the .system",
            "# ram = regions + stack + ipc (normal memory); elf = the PD's ELF in the reserved",
            "# region; fixed = fixed-address regions outside normal memory: devices, DMA and,",
            "# from 256 MiB of RAM, beam_server's heap (not in the total)",
            "",
            f"{'owner':<20}{'ram':>10}{'regions':>10}{'stack':>10}{'ipc':>10}{'elf':>10}"
            f"{'fixed':>10}",
        ]
        for name, u in sorted(self.owners.items(), key=lambda kv: (kv[0] == SHARED, -kv[1].ram)):
            lines.append(
                f"{name:<20}{mib(u.ram)}{mib(u.regions)}{mib(u.stack)}{mib(u.ipc)}"
                f"{mib(u.elf)}{mib(u.fixed)}"
            )
        lines += [
            f"{'kernel objects':<20}{mib(self.kernel_objects)}"
            f"   ({self.kernel_object_count} objects and their alignment)",
            f"{'free':<20}{mib(self.free)}   (2 MiB pages could still take {self.free_2mib / MIB:.2f})",
            f"{'normal memory':<20}{mib(self.total)}",
            "",
            "# memory regions: MiB, where they are mapped",
        ]
        for name, u in sorted(self.owners.items()):
            for mr, size in sorted(u.mrs.items(), key=lambda kv: -kv[1]):
                pds = ", ".join(self.mr_pds.get(mr, [])) or name
                lines.append(f"{mr:<40}{mib(size)}  {pds}")
        return "\n".join(lines) + "\n"


def _region_maps(system_xml: str) -> dict[str, list[str]]:
    """Memory region -> the PDs that map it, in the order of the .system."""
    root = ET.fromstring(system_xml)
    maps: dict[str, list[str]] = {}
    for pd in root.iter("protection_domain"):
        for m in pd.findall("map"):
            pds = maps.setdefault(m.get("mr"), [])
            if pd.get("name") not in pds:
                pds.append(pd.get("name"))
    return maps


def parse(report_text: str, system_xml: str) -> MemoryReport:
    untypeds: list[tuple[int, int]] = []
    normal = None
    objects: list[tuple[str, int]] = []
    section = ""
    for line in report_text.splitlines():
        if line.startswith("# "):
            section = line
            continue
        if m := NORMAL_RE.match(line):
            normal = [int(g, 16) for g in m.groups()]
        elif section.startswith("# Normal Memory Untyped") and (m := UNTYPED_RE.match(line)):
            untypeds.append((int(m.group(1), 16), int(m.group(2), 16)))
        elif section == "# Allocated Kernel Objects Detail" and (m := OBJECT_RE.match(line)):
            objects.append((m.group(1), int(m.group(3), 16)))
    if normal is None or not untypeds:
        raise ValueError("report.txt has no normal-memory section (is Microkit patch 0006 in?)")
    total, allocated, free, free_2mib = normal

    def in_normal(addr: int) -> bool:
        return any(base <= addr < end for base, end in untypeds)

    mr_pds = _region_maps(system_xml)
    owners: dict[str, Usage] = {}
    pages_normal = 0
    kernel_object_count = 0
    for name, phys in objects:
        p = page(name)
        if p is None:
            kernel_object_count += 1
            continue
        size, kind, owner = p
        normal_page = in_normal(phys)
        pages_normal += size if normal_page else 0
        if kind != "region":  # ipc, stack, elf: the PD's own
            u = owners.setdefault(owner, Usage())
            setattr(u, kind, getattr(u, kind) + size)
            continue
        mr = owner
        pds = mr_pds.get(mr, [])
        u = owners.setdefault(pds[0] if len(pds) == 1 else SHARED, Usage())
        u.mrs[mr] = u.mrs.get(mr, 0) + size
        if normal_page:
            u.regions += size
        else:
            u.fixed += size
    return MemoryReport(
        total,
        allocated,
        free,
        free_2mib,
        owners,
        allocated - pages_normal,
        kernel_object_count,
        mr_pds,
    )


def write(report: Path, system_file: Path, out: Path) -> str:
    """memory.txt from `report` and `system_file`; returns its text."""
    text = parse(Path(report).read_text(), Path(system_file).read_text()).text()
    Path(out).write_text(text)
    return text
