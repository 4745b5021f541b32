# SPDX-License-Identifier: BSD-2-Clause
"""`chrysopolis show`: the picture of a built target, drawn by Graphviz from the model of
chrysopolis/sysgraph.py; the same facts as a table (--text); and `check_svg`, which reads a
drawn SVG back and lists what of the system description it lacks or contradicts.

Every fact carries a Graphviz id, so the SVG can be checked without comparing pixels:
`pd:NAME` (a PD's node), `tree:PARENT:CHILD`, `ch:A:ID--B:ID` (a channel),
`map:PD:REGION` (a mapping: an edge to a shared region's node, or a row of a PD's node,
which Graphviz writes as `a_map:...`), `mr:REGION`, `irq:PD:IRQ`, and `mem:N` for the rows
of the memory map.
"""

import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from chrysopolis.errors import UserError
from chrysopolis.sysgraph import System, size_text

FORMATS = {".svg": "svg", ".png": "png"}
COLORS = {
    "kernel": "#f4a582",
    "monitor": "#fddbc7",
    "elf": "#92c5de",
    "region": "#d1e5f0",
    "stack": "#c2a5cf",
    "ipc": "#e7d4e8",
    "kernel objects": "#fee08b",
    "free": "#ffffff",
    "other": "#dddddd",
}
MIN_ROW_PT = 16  # one line of 8 pt text in its cell
MAX_ROW_PT = 1200  # the largest extent's height; the rest to the same scale
MAX_PT_PER_MIB = 8.0


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _pd_label(model: System, pd, shared: set[str]) -> str:
    elf = size_text(pd.elf_size) if pd.elf_size is not None else "?"
    sched = f"budget {pd.budget}/{pd.period} µs" + (", passive" if pd.passive else "")
    rows = [
        f'<TR><TD ALIGN="CENTER"><B>{_e(pd.name)}</B></TD></TR>',
        f'<TR><TD ALIGN="LEFT">prio {pd.priority} · {_e(sched)} · ELF {elf}</TD></TR>',
    ]
    for m in pd.maps:
        if m.mr in shared:
            continue
        r = model.regions[m.mr]
        dev = "device " if model.is_device(r) else ""
        where = f" @{r.phys_addr:#x}" if r.phys_addr is not None else ""
        rows.append(
            f'<TR><TD ALIGN="LEFT" ID="map:{_e(pd.name)}:{_e(m.mr)}" HREF="#" '
            f'TOOLTIP="{_e(pd.name)} maps {_e(m.mr)} {m.perms}"><FONT POINT-SIZE="8">'
            f"{dev}{_e(r.short())} {size_text(r.size)}{where} {m.perms}</FONT></TD></TR>"
        )
    for q in pd.irqs:
        rows.append(
            f'<TR><TD ALIGN="LEFT" ID="irq:{_e(pd.name)}:{q.irq}" HREF="#" '
            f'TOOLTIP="{_e(pd.name)} IRQ {q.irq}"><FONT POINT-SIZE="8">'
            f"IRQ {q.irq} (id {q.id}, {_e(q.trigger)})</FONT></TD></TR>"
        )
    return '<<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="0">' + "".join(rows) + "</TABLE>>"


def graph(model: System):
    """The system: PDs, the parent tree, channels, shared regions, devices and IRQs."""
    import graphviz

    g = graphviz.Digraph(
        f"{model.target or 'system'}",
        graph_attr={
            "rankdir": "TB",
            "fontname": "Helvetica",
            "fontsize": "11",
            "label": f"{model.target}: protection domains, channels, shared memory",
            "labelloc": "t",
            "nodesep": "0.3",
            "ranksep": "0.6",
        },
        node_attr={"fontname": "Helvetica", "fontsize": "9", "shape": "plain"},
        edge_attr={"fontname": "Helvetica", "fontsize": "8"},
    )
    shared = {name for name in model.regions if len(model.mappers(name)) > 1}
    # A region two PDs share is a line of the one edge between them (pairs); one shared
    # by more is a node of its own with an edge to each.
    pairs: dict[tuple[str, str], list[str]] = {}
    hubs = []
    for name in model.regions:
        who = model.mappers(name)
        if len(who) == 2:
            pairs.setdefault((who[0][0], who[1][0]), []).append(name)
        elif len(who) > 2:
            hubs.append(name)
    clusters: dict[str | None, list] = {}
    for pd in model.pds.values():
        clusters.setdefault(pd.subsystem, []).append(("pd", pd))
    for name in hubs:
        subs = {model.pds[p].subsystem for p, _ in model.mappers(name)} - {None}
        clusters.setdefault(subs.pop() if len(subs) == 1 else None, []).append(("mr", name))

    def add(sg, kind, item):
        if kind == "pd":
            sg.node(item.name, _pd_label(model, item, shared), id=f"pd:{item.name}")
        else:
            r = model.regions[item]
            where = f"\n@{r.phys_addr:#x}" if r.phys_addr is not None else ""
            sg.node(
                f"mr {item}",
                f"{r.short()}\n{size_text(r.size)}{where}",
                id=f"mr:{item}",
                shape="note",
                style="filled",
                fillcolor="#eef5fb",
                fontsize="7",
                tooltip=item,
            )

    for sub, items in clusters.items():
        if sub is None:
            for kind, item in items:
                add(g, kind, item)
            continue
        with g.subgraph(name=f"cluster_{sub}") as c:
            c.attr(label=sub, style="rounded,filled", fillcolor="#f7f7f7", color="#999999")
            for kind, item in items:
                add(c, kind, item)
    for pd in model.pds.values():
        if pd.parent:
            g.edge(
                pd.parent,
                pd.name,
                id=f"tree:{pd.parent}:{pd.name}",
                color="#2ca25f",
                penwidth="2.5",
                style="bold",
                arrowhead="odiamond",
                label=f"child {pd.child_id}",
                fontcolor="#2ca25f",
                tooltip=f"{pd.parent} is the parent of {pd.name}",
            )
    for c in model.channels:
        pp = c.a.pp or c.b.pp

        def end(e):
            return f"{e.id} pp" if e.pp else str(e.id)

        g.edge(
            c.a.pd,
            c.b.pd,
            id=c.key,
            taillabel=end(c.a),
            headlabel=end(c.b),
            # The arrow points at the PD called: from the end marked pp (Microkit: that
            # end may call the other).
            dir={(False, False): "none", (True, False): "forward", (False, True): "back"}.get(
                (c.a.pp, c.b.pp), "both"
            ),
            color="#d7301f" if pp else "#444444",
            style="solid",
            tooltip=f"channel {c.a.pd}:{c.a.id} -- {c.b.pd}:{c.b.id}" + (" (ppc)" if pp else ""),
            labelfontcolor="#d7301f" if pp else "#444444",
        )
    for (a, b), names in pairs.items():
        lines = [f"{a} | {b}"]  # whose rights come first on each line
        for name in names:
            (_, ma), (_, mb) = model.mappers(name)
            lines.append(
                f"{model.regions[name].short()} {size_text(model.regions[name].size)} {ma.perms}|{mb.perms}"
            )
        g.edge(
            a,
            b,
            id=f"shm:{a}:{b}",
            label="\\l".join(lines) + "\\l",
            dir="none",
            style="dashed",
            color="#2166ac",
            fontcolor="#2166ac",
            fontsize="7",
            tooltip=f"memory {a} shares with {b} (rights: {a}|{b})",
        )
    for name in hubs:
        for pd, m in model.mappers(name):
            g.edge(
                pd,
                f"mr {name}",
                id=f"map:{pd}:{name}",
                label=m.perms,
                dir="none",
                style="dashed",
                color="#2166ac",
                fontcolor="#2166ac",
                tooltip=f"{pd} maps {name} {m.perms}",
            )
    return g


def memory_scale(model: System) -> float:
    """Points per byte: the largest extent MAX_ROW_PT high, at most MAX_PT_PER_MIB."""
    biggest = max(e.size for e in model.memory)
    return min(MAX_ROW_PT / biggest, MAX_PT_PER_MIB / (1 << 20))


def row_height(size: int, scale: float) -> int:
    return max(MIN_ROW_PT, round(size * scale))


def memory_graph(model: System):
    """The physical memory map to scale: a column of boxes, the highest address on top,
    each as high as its size (at least one line of text)."""
    import graphviz

    if not model.memory:
        raise UserError(
            f"no memory map for '{model.target}': its report.txt or run.json is missing; "
            f"run `chrysopolis build {model.target}`"
        )
    scale = memory_scale(model)
    rows = []
    for i, e in reversed(list(enumerate(model.memory))):
        h = row_height(e.size, scale)
        rows.append(
            f'<TR><TD ID="mem:{i}" HREF="#" TOOLTIP="{e.start:#x} {e.size:#x} {_e(e.label)}" '
            f'HEIGHT="{h}" WIDTH="440" FIXEDSIZE="TRUE" BGCOLOR="{COLORS.get(e.kind, "#ffffff")}" '
            f'ALIGN="LEFT" VALIGN="MIDDLE"><FONT POINT-SIZE="8">{e.start:#010x}  '
            f"{_e(e.label)}  {size_text(e.size)}</FONT></TD></TR>"
        )
    label = (
        '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="1">'
        + "".join(rows)
        + "</TABLE>>"
    )
    g = graphviz.Digraph(
        f"{model.target}-memory",
        graph_attr={
            "fontname": "Helvetica",
            "fontsize": "11",
            "labelloc": "t",
            "label": f"{model.target}: physical RAM {model.ram_base:#x}, {size_text(model.ram_size)}"
            f" (to scale, {scale * (1 << 20):.2f} pt per MiB; rows at least {MIN_ROW_PT} pt)",
        },
        node_attr={"fontname": "Helvetica", "shape": "plain"},
    )
    g.node("ram", label, id="mem")
    return g


def render(g, out: Path) -> Path:
    """Write `g` as `out` (.svg or .png) with Debian's dot: the binding runs `dot` from
    PATH, which is the system's directories here, as for every other host tool."""
    import os

    from chrysopolis import toolchain

    fmt = output_format(out)
    toolchain.need("dot")
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = toolchain.env()["PATH"]
    try:
        data = g.pipe(format=fmt)
    finally:
        os.environ["PATH"] = saved
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def output_format(out: Path) -> str:
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise UserError(f"-o {out}: give a file name ending in .svg or .png")
    return fmt


# ---- the text table ----


def text(model: System) -> str:
    lines = [f"# {model.target}: protection domains"]
    lines.append(
        f"{'PD':<18}{'prio':>5}  {'budget/period µs':<17}{'ELF':>10}  {'parent:id':<16}IRQs"
    )
    for pd in model.pds.values():
        irqs = ", ".join(f"{q.irq}(id {q.id})" for q in pd.irqs) or "-"
        elf = size_text(pd.elf_size) if pd.elf_size is not None else "?"
        parent = f"{pd.parent}:{pd.child_id}" if pd.parent else "-"
        bp = f"{pd.budget}/{pd.period}" + (" passive" if pd.passive else "")
        lines.append(f"{pd.name:<18}{pd.priority:>5}  {bp:<17}{elf:>10}  {parent:<16}{irqs}")
    lines += ["", "# channels (id at each end; pp: that end may call the other)"]
    for c in model.channels:
        a = f"{c.a.pd}:{c.a.id}" + (" pp" if c.a.pp else "")
        b = f"{c.b.pd}:{c.b.id}" + (" pp" if c.b.pp else "")
        lines.append(f"{a:<24} -- {b}")
    lines += ["", "# memory regions (size, physical address, who maps them with what rights)"]
    for r in model.regions.values():
        where = f"{r.phys_addr:#x}" if r.phys_addr is not None else "-"
        who = " ".join(f"{pd}:{m.perms}" for pd, m in model.mappers(r.name)) or "(unmapped)"
        dev = " device" if model.is_device(r) else ""
        lines.append(f"{r.name:<56}{size_text(r.size):>10} {where:>12}{dev}  {who}")
    return "\n".join(lines) + "\n"


def memory_text(model: System) -> str:
    if not model.memory:
        memory_graph(model)  # the same one-line error
    lines = [
        f"# {model.target}: physical RAM, lowest address first",
        f"{'start':<12}{'end':<12}{'size':>10}  what",
    ]
    for e in model.memory:
        lines.append(f"{e.start:#010x}  {e.end:#010x}  {size_text(e.size):>10}  {e.label}")
    return "\n".join(lines) + "\n"


# ---- reading an SVG back ----


def _svg_ids(svg: str) -> dict[str, ET.Element]:
    # Graphviz writes a cell's ID as a_ID; for an edge with a tooltip, a_ID is the link
    # around its path only: the plain ID (the whole edge) wins.
    root = ET.fromstring(svg)
    out: dict[str, ET.Element] = {}
    for el in root.iter():
        i = el.get("id")
        if i and not i.startswith("a_"):
            out[i] = el
    for el in root.iter():
        i = el.get("id")
        if i and i.startswith("a_"):
            out.setdefault(i.removeprefix("a_"), el)
    return out


def _texts(el: ET.Element) -> list[str]:
    return [t.text.strip() for t in el.iter() if t.tag.endswith("text") and t.text]


def check_svg(svg: str, model: System) -> list[str]:
    """What the drawn `svg` lacks or gets wrong of `model`: every PD (name, priority),
    every parent->child edge, every channel with both ends' ids, every mapping of every
    region with its rights, every IRQ. Empty when the picture says it all."""
    ids = _svg_ids(svg)
    problems = []
    for pd in model.pds.values():
        el = ids.get(f"pd:{pd.name}")
        if el is None:
            problems.append(f"PD {pd.name}: not drawn")
            continue
        t = " ".join(_texts(el))
        if pd.name not in t or f"prio {pd.priority} " not in t:
            problems.append(f"PD {pd.name}: its label lacks the name or priority {pd.priority}")
        if pd.parent and f"tree:{pd.parent}:{pd.name}" not in ids:
            problems.append(f"PD {pd.name}: no tree edge from {pd.parent}")
        for q in pd.irqs:
            el = ids.get(f"irq:{pd.name}:{q.irq}")
            if el is None or f"IRQ {q.irq}" not in " ".join(_texts(el)):
                problems.append(f"PD {pd.name}: IRQ {q.irq} not drawn")
    for c in model.channels:
        el = ids.get(c.key)
        if el is None:
            problems.append(f"channel {c.key}: not drawn")
            continue
        ends = {t.removesuffix(" pp") for t in _texts(el)}
        if str(c.a.id) not in ends or str(c.b.id) not in ends:
            problems.append(f"channel {c.key}: end ids {sorted(ends)} in the picture")
    for pd in model.pds.values():
        for m in pd.maps:
            drawn = _drawn_rights(ids, model, pd.name, m.mr)
            if drawn is None:
                problems.append(f"map {pd.name}:{m.mr}: not drawn")
                continue
            if drawn != m.perms:
                problems.append(
                    f"map {pd.name}:{m.mr}: drawn {drawn!r}, the system says {m.perms!r}"
                )
    return problems


def _drawn_rights(ids: dict, model: System, pd: str, mr: str) -> str | None:
    """The rights the picture gives `pd` on `mr`: the last word of its row or edge, or
    for a region two PDs share, its line on their edge (`name size tail|head`)."""
    el = ids.get(f"map:{pd}:{mr}")
    if el is not None:
        t = " ".join(_texts(el)).split()
        return t[-1] if t else ""
    who = [p for p, _ in model.mappers(mr)]
    el = ids.get(f"shm:{who[0]}:{who[-1]}") if len(who) == 2 else None
    if el is None:
        return None
    r = model.regions[mr]
    for line in _texts(el):
        if line.startswith(f"{r.short()} {size_text(r.size)} "):
            return line.split()[-1].split("|")[who.index(pd)]
    return None


def memory_rows(svg: str) -> list[tuple[int, float, str]]:
    """The memory map's rows as drawn, top to bottom: (index into the model's extents,
    height in points, text)."""
    rows = []
    for i, el in _svg_ids(svg).items():
        if not re.fullmatch(r"mem:\d+", i):
            continue
        poly = next(p for p in el.iter() if p.tag.endswith("polygon"))
        ys = [float(pt.split(",")[1]) for pt in poly.get("points").split()]
        rows.append((int(i.split(":")[1]), min(ys), max(ys) - min(ys), " ".join(_texts(el))))
    rows.sort(key=lambda r: r[1])
    return [(i, h, t) for i, _, h, t in rows]


# ---- the command ----


def kernel_elf(board: str) -> Path | None:
    """The SDK's kernel image, if the sdk stage is in the cache (for the memory map)."""
    from chrysopolis import cache
    from chrysopolis.stages.lionsos import CONFIG
    from chrysopolis.stages.sdk import board_dir

    planner = cache.Planner()
    if not planner.is_built("sdk"):
        return None
    try:
        return board_dir(planner.ensure("sdk"), board, CONFIG) / "elf" / "sel4.elf"
    except FileNotFoundError:
        return None


def load(target: str) -> System:
    """The model of TARGET as `chrysopolis build TARGET` published it."""
    import json

    from chrysopolis import cache, config, sysgraph

    cache.load_all()
    st = cache.get(target)  # an unknown name fails here, naming the targets
    out = config.out_dir() / target
    if not st.target or sysgraph.system_file(out) is None:
        raise UserError(f"target '{target}' is not built: run `chrysopolis build {target}`")
    run = out / "run.json"
    board = json.loads(run.read_text()).get("board") if run.is_file() else None
    return sysgraph.load(out, target, kernel_elf(board) if board else None)


def main(target: str, output: Path | None, memory: bool, as_text: bool) -> str:
    """What `chrysopolis show` prints: the table, or the path of the picture it wrote."""
    from chrysopolis import config

    if output is not None:
        output_format(output)  # a bad name fails before anything is read
    model = load(target)
    if as_text:
        return memory_text(model) if memory else text(model)
    name = "memory.svg" if memory else "system.svg"
    out = output or config.out_dir() / target / name
    render(memory_graph(model) if memory else graph(model), out)
    return str(out)
