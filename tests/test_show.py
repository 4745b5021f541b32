# SPDX-License-Identifier: BSD-2-Clause
"""`chrysopolis show`: the picture of each built target says everything its system
description says (parsed back from the SVG, not compared as pixels), the memory map
follows report.txt's addresses and sizes, and bad input is one line."""

import copy
import os
import re
import xml.etree.ElementTree as ET

import pytest
from conftest import cli

from chrysopolis import show, sysgraph

TARGETS = ("beam", "bringup", "selftest", "hello")


@pytest.fixture(scope="module")
def out(stack_planner, tmp_path_factory):
    """Each target built (from the shared cache) into an out directory of its own."""
    d = tmp_path_factory.mktemp("out")
    env = {**os.environ, "CHRYSOPOLIS_OUT": str(d)}
    for t in TARGETS:
        r = cli("build", t, env=env, timeout=3600)
        assert r.returncode == 0, r.stderr
    return d, env


def _model(d, target):
    return sysgraph.load(d / target, target, show.kernel_elf("qemu_virt_aarch64"))


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_picture_has_every_pd_channel_and_mapping(out, target, tmp_path):
    d, env = out
    svg = tmp_path / "s.svg"
    r = cli("show", target, "-o", str(svg), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(svg)
    xml = sysgraph.system_file(d / target).read_text()
    model = _model(d, target)
    # The model holds all of the XML (counted here without it) ...
    root = ET.fromstring(xml)
    assert set(model.pds) == {p.get("name") for p in root.iter("protection_domain")}
    assert sum(len(p.maps) for p in model.pds.values()) == len(list(root.iter("map")))
    assert sum(len(p.irqs) for p in model.pds.values()) == len(list(root.iter("irq")))
    assert len(model.channels) == len(root.findall("channel"))
    # ... and the picture all of the model.
    text = svg.read_text()
    assert show.check_svg(text, model) == []
    ids = {el.get("id") for el in ET.fromstring(text).iter()}
    for c in root.findall("channel"):
        (a, ia), (b, ib) = ((e.get("pd"), e.get("id")) for e in c.findall("end"))
        assert f"ch:{a}:{ia}--{b}:{ib}" in ids


@pytest.mark.slow
def test_beam_tree_and_default_path(out):
    d, env = out
    r = cli("show", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(d / "beam" / "system.svg")
    model = _model(d, "beam")
    children = [p for p in model.pds.values() if p.parent == "supervisor"]
    assert len(children) == 12
    ids = {el.get("id") for el in ET.parse(d / "beam" / "system.svg").iter()}
    for p in children:
        assert f"tree:supervisor:{p.name}" in ids


@pytest.mark.slow
def test_png(out, tmp_path):
    _, env = out
    png = tmp_path / "s.png"
    r = cli("show", "beam", "-o", str(png), env=env)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.parametrize("shared", [True, False])
def test_checker_catches_wrong_rights(out, shared):
    """Draw beam with one mapping's rights flipped: the checker the test above uses must
    name exactly that mapping."""
    d, _ = out
    model = _model(d, "beam")
    wrong = copy.deepcopy(model)
    pd, m = next(
        (pd, m)
        for pd in wrong.pds.values()
        for m in pd.maps
        if (len(model.mappers(m.mr)) > 1) == shared and m.perms in ("r", "rw")
    )
    m.perms = "r" if m.perms == "rw" else "rw"
    assert show.check_svg(show.graph(model).pipe(format="svg").decode(), model) == []
    problems = show.check_svg(show.graph(wrong).pipe(format="svg").decode(), model)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"map {pd.name}:{m.mr}: drawn {m.perms!r}")


@pytest.mark.slow
@pytest.mark.parametrize("target", ("beam", "hello"))
def test_memory_map_follows_report(out, target, tmp_path):
    d, env = out
    svg = tmp_path / "m.svg"
    r = cli("show", target, "--memory", "-o", str(svg), env=env)
    assert r.returncode == 0, r.stderr
    model = _model(d, target)
    ext = model.memory
    # Every byte of the RAM once, in address order.
    assert ext[0].start == model.ram_base
    assert all(a.end == b.start for a, b in zip(ext, ext[1:], strict=False))
    assert ext[-1].end == model.ram_base + model.ram_size
    # The report's own addresses: each PD's ELF where the loader puts it, the monitor.
    report = (d / target / "report.txt").read_text()
    starts = {e.start: e for e in ext}
    for name, seg, addr, _ in re.findall(r"PD-ELF (\S+)-(\d+) addr=(0x\w+) size=(\d+)", report):
        if seg == "0":
            assert starts[int(addr, 16)].label == f"{name} ELF"
    base, end = re.search(
        r"physical memory: MemoryRegion\(base=(0x\w+), end=(0x\w+)\)", report
    ).groups()
    assert starts[int(base, 16)].size == int(end, 16) - int(base, 16)
    for mr in model.regions.values():
        if mr.phys_addr is not None and not model.is_device(mr):
            assert starts[mr.phys_addr].label == mr.name and starts[mr.phys_addr].size == mr.size
    # Drawn: highest address on top, each row as high as its size at one scale.
    rows = show.memory_rows(svg.read_text())
    assert [i for i, _, _ in rows] == list(reversed(range(len(ext))))
    scale = show.memory_scale(model)
    for i, h, t in rows:
        assert f"{ext[i].start:#010x}" in t
        assert abs(h - show.row_height(ext[i].size, scale)) <= 1, (ext[i], h)
    big = [(ext[i].size, h) for i, h, _ in rows if h > 2 * show.MIN_ROW_PT]
    assert big
    ratio = big[0][1] / big[0][0]
    assert all(abs(h / s / ratio - 1) < 0.05 for s, h in big)


@pytest.mark.slow
def test_text_lists_every_pd_channel_and_region(out):
    d, env = out
    r = cli("show", "beam", "--text", env=env)
    assert r.returncode == 0, r.stderr
    model = _model(d, "beam")
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    for pd in model.pds.values():
        assert any(line.split()[:2] == [pd.name, str(pd.priority)] for line in lines), pd.name
    for c in model.channels:
        assert any(
            line.split()[0] == f"{c.a.pd}:{c.a.id}" and f"-- {c.b.pd}:{c.b.id}" in line
            for line in lines
        ), c.key
    for mr in model.regions.values():
        row = next(line for line in lines if line.split()[0] == mr.name)
        for pd, m in model.mappers(mr.name):
            assert f"{pd}:{m.perms}" in row.split()
    r = cli("show", "beam", "--memory", "--text", env=env)
    assert r.returncode == 0, r.stderr
    assert any("beam_heap" in line for line in r.stdout.splitlines())
    assert any("seL4 kernel" in line for line in r.stdout.splitlines())


def test_unbuilt_target_is_one_line(tmp_path):
    env = {**os.environ, "CHRYSOPOLIS_OUT": str(tmp_path)}
    r = cli("show", "hello", env=env)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "error: target 'hello' is not built: run `chrysopolis build hello`"
    ]
    assert list(tmp_path.iterdir()) == []


def test_bad_extension_is_one_line(tmp_path):
    env = {**os.environ, "CHRYSOPOLIS_OUT": str(tmp_path)}
    r = cli("show", "beam", "-o", str(tmp_path / "x.pdf"), env=env)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"error: -o {tmp_path / 'x.pdf'}: give a file name ending in .svg or .png"
    ]
    assert list(tmp_path.iterdir()) == []
