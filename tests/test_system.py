# SPDX-License-Identifier: BSD-2-Clause
"""The system description: topology, the heap's setvars, blobs into sections, bad input."""

import dataclasses
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import require_sources

from chrysopolis import boards, system, targets
from chrysopolis.errors import UserError

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    require_sources("sddf")
    out = tmp_path_factory.mktemp("system")
    outputs = system.generate(out, heap_mib=256, stack_kib=1024)
    return outputs, ET.parse(outputs.system_file).getroot()


def pds(root):
    return {pd.get("name"): pd for pd in root.iter("protection_domain")}


def test_protection_domains_and_priorities(rendered):
    _, root = rendered
    got = {name: int(pd.get("priority")) for name, pd in pds(root).items()}
    assert got == {
        "supervisor": 254,
        "timer_driver": 253,
        "serial_driver": 100,
        "serial_virt_tx": 99,
        "serial_virt_rx": 98,
        "blk_driver": 200,
        "blk_virt": 199,
        "ethernet_driver": 160,
        "net_virt_tx": 159,
        "net_virt_rx": 158,
        "beam_net_copier": 157,
        "fatfs": 96,
        "beam_server": 1,
    }
    assert pds(root)["timer_driver"].get("passive") is None  # restartable: its own SC
    assert int(pds(root)["beam_server"].get("stack_size"), 0) == 1024 * 1024
    assert pds(root)["fatfs"].find("program_image").get("path") == "fat.elf"
    images = {n: pd.find("program_image").get("path") for n, pd in pds(root).items()}
    assert images["ethernet_driver"] == "eth_driver.elf"
    assert images["beam_net_copier"] == "network_copy.elf"


def test_heap_region_reaches_beam_server_through_setvars(rendered):
    outputs, root = rendered
    (mr,) = (m for m in root.iter("memory_region") if m.get("name") == "beam_heap")
    assert int(mr.get("size"), 0) == 256 * MIB == outputs.heap_size
    assert int(mr.get("page_size"), 0) == 2 * MIB
    (heap_map,) = (m for m in pds(root)["beam_server"].iter("map") if m.get("mr") == "beam_heap")
    assert heap_map.get("setvar_vaddr") == "beam_heap_base"
    assert heap_map.get("setvar_size") == "beam_heap_size"
    assert int(heap_map.get("vaddr"), 0) == outputs.heap_vaddr
    assert outputs.heap_vaddr % (2 * MIB) == 0
    # sdfgen places its own mappings around ours: none may overlap, in any PD.
    sizes = {m.get("name"): int(m.get("size"), 0) for m in root.iter("memory_region")}
    for name, pd in pds(root).items():
        spans = sorted((int(m.get("vaddr"), 0), sizes[m.get("mr")]) for m in pd.findall("map"))
        for (a, size), (b, _) in zip(spans, spans[1:], strict=False):
            assert a + size <= b, (name, hex(a), hex(b))


def test_fat_worker_stacks_are_patched_in(rendered):
    _, root = rendered
    setvars = {m.get("setvar_vaddr") for m in pds(root)["fatfs"].iter("map")}
    for n in ("one", "two", "three", "four"):
        assert f"worker_thread_stack_{n}" in setvars


def test_devices_and_channels(rendered):
    outputs, root = rendered
    assert outputs.blk_node == "virtio_mmio@a000200"
    phys = {m.get("name"): m.get("phys_addr") for m in root.iter("memory_region")}
    assert phys["virtio_mmio@a000200/drivers/blk/virtio/regs"] == "0xa000000"
    assert phys["pl011@9000000/drivers/serial/arm/regs"] == "0x9000000"
    ends = {frozenset(e.get("pd") for e in ch.iter("end")) for ch in root.iter("channel")}
    assert frozenset({"fatfs", "beam_server"}) in ends
    assert frozenset({"blk_virt", "fatfs"}) in ends
    assert frozenset({"timer_driver", "beam_server"}) in ends
    assert frozenset({"blk_virt", "beam_server"}) not in ends  # files only through the FAT server


def test_net_and_blk_share_one_register_page(rendered):
    """virtio_mmio@a000000 (net) and @a000200 (disk) are one 4 KiB page. Microkit 2.0.1
    rejects overlapping physical regions, so there must be exactly one region at that page,
    mapped by both drivers (sdfgen dedupes it; no region of our own)."""
    outputs, root = rendered
    assert (outputs.net_node, outputs.net_bus) == ("virtio_mmio@a000000", 0)
    page = [m for m in root.iter("memory_region") if m.get("phys_addr") == "0xa000000"]
    assert len(page) == 1
    assert int(page[0].get("size"), 0) == 0x1000
    users = {
        n
        for n, pd in pds(root).items()
        for m in pd.findall("map")  # its own, not its children's
        if m.get("mr") == page[0].get("name")
    }
    assert users == {"blk_driver", "ethernet_driver"}
    # No two physical regions overlap anywhere.
    spans = sorted(
        (int(m.get("phys_addr"), 0), int(m.get("size"), 0))
        for m in root.iter("memory_region")
        if m.get("phys_addr") is not None
    )
    for (a, size), (b, _) in zip(spans, spans[1:], strict=False):
        assert a + size <= b, (hex(a), hex(b))


def test_network_topology(rendered):
    outputs, root = rendered
    ends = {frozenset(e.get("pd") for e in ch.iter("end")) for ch in root.iter("channel")}
    assert frozenset({"ethernet_driver", "net_virt_rx"}) in ends
    assert frozenset({"ethernet_driver", "net_virt_tx"}) in ends
    assert frozenset({"net_virt_rx", "beam_net_copier"}) in ends
    assert frozenset({"beam_net_copier", "beam_server"}) in ends
    assert frozenset({"net_virt_tx", "beam_server"}) in ends
    assert frozenset({"net_virt_rx", "beam_server"}) not in ends  # RX only through the copier
    irqs = [i.get("irq") for i in pds(root)["ethernet_driver"].iter("irq")]
    assert irqs == ["48"]
    mrs = {m.get("mr") for m in pds(root)["beam_server"].iter("map")}
    assert any(m.endswith("/net/lib_sddf_lwip/beam_server") for m in mrs)
    sections = {(b.elf, b.section) for b in outputs.blobs}
    for want in [
        ("eth_driver.elf", ".device_resources"),
        ("eth_driver.elf", ".net_driver_config"),
        ("network_virt_rx.elf", ".net_virt_rx_config"),
        ("network_virt_tx.elf", ".net_virt_tx_config"),
        ("network_copy.elf", ".net_copy_config"),
        ("beam_server.elf", ".net_client_config"),
        ("beam_server.elf", ".lib_sddf_lwip_config"),
    ]:
        assert want in sections


def test_mac_is_fixed_and_in_the_blobs(rendered, tmp_path):
    """The MAC is always given to sdfgen (else it draws a random one): the same in the
    virtualiser's filter and beam_server's netif, and the same on every render."""
    outputs, _ = rendered
    assert outputs.mac == system.DEFAULT_MAC
    mac = bytes.fromhex(outputs.mac.replace(":", ""))
    blob = {b.section: b.data.read_bytes() for b in outputs.blobs}
    assert blob[".net_client_config"].count(mac) == 1
    assert mac in blob[".net_virt_rx_config"]
    again = system.generate(tmp_path, heap_mib=256, stack_kib=1024)
    for a, b in zip(outputs.blobs, again.blobs, strict=True):
        assert a.data.read_bytes() == b.data.read_bytes(), a.data.name
    other = system.generate(tmp_path / "o", mac="52:54:00:c5:00:02")
    assert (
        bytes.fromhex("525400c50002")
        in next(b.data for b in other.blobs if b.section == ".net_client_config").read_bytes()
    )


@pytest.mark.parametrize("mac", ["52:54:00:c5:00", "zz:54:00:c5:00:01", "53:54:00:c5:00:01"])
def test_bad_mac_is_refused(tmp_path, mac):
    with pytest.raises(UserError, match="MAC address"):
        system.generate(tmp_path, mac=mac)


def test_every_blob_written_and_serial_uncoloured(rendered):
    outputs, _ = rendered
    sections = {(b.elf, b.section) for b in outputs.blobs}
    assert ("fat.elf", ".fs_server_config") in sections
    assert ("beam_server.elf", ".fs_client_config") in sections
    assert len(sections) == len(outputs.blobs)  # one blob per section
    for b in outputs.blobs:
        assert b.data.stat().st_size > 0, b.data
    # serial_virt_tx_config_t ends with bool enable_colour, bool enable_rx and 5 bytes of
    # padding (the struct is 8-byte aligned): the colour flag is 7 bytes from the end.
    tx = next(b.data for b in outputs.blobs if b.section == ".serial_virt_tx_config").read_bytes()
    assert tx[:4] == b"sDDF"
    assert (tx[-7], tx[-6]) == (0, 1)  # no colour, RX on


def test_a_heap_beyond_one_untyped_is_left_to_the_tool(tmp_path):
    require_sources("sddf")
    # No fit check of ours any more: Microkit patch 0006 spreads the pages over the
    # untypeds, and the tool itself refuses what does not fit (image.pack quotes it).
    out = system.generate(tmp_path, heap_mib=1024)
    assert out.heap_size == 1024 * MIB
    root = ET.parse(out.system_file).getroot()
    heap = next(mr for mr in root.iter("memory_region") if mr.get("name") == system.HEAP_MR)
    assert int(heap.get("size"), 0) == 1024 * MIB


@pytest.mark.parametrize(
    "heap_mib, message",
    [
        (0, "not a positive whole number"),
        (-2, "not a positive whole number"),
        ("256", "not a positive whole number"),
        (3, "not a multiple of the 2 MiB page size; use 2 or 4 MiB"),
        (1, "not a multiple of the 2 MiB page size; use 2 MiB"),
    ],
)
def test_bad_heap_is_refused_in_one_line(tmp_path, heap_mib, message):
    with pytest.raises(UserError, match=message) as e:
        system.generate(tmp_path, heap_mib=heap_mib)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("stack_kib", [0, 2, 6, 32 * 1024])
def test_bad_stack_is_refused(tmp_path, stack_kib):
    with pytest.raises(UserError, match="stack size"):
        system.generate(tmp_path, stack_kib=stack_kib)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"blk_node": "virtio_mmio@a004000"}, "'virtio_mmio@a004000' (block) is not in the"),
        ({"serial_node": "pl011@9999000"}, "'pl011@9999000' (serial) is not in the"),
        ({"timer_node": "soc/timer"}, "'soc/timer' (timer) is not in the"),
        ({"blk_node": "pl011@9000000"}, "'pl011@9000000' is not a virtio-mmio slot"),
        ({"blk_node": "virtio_mmio@a000210"}, "'virtio_mmio@a000210' is not a virtio-mmio slot"),
        ({"net_node": "virtio_mmio@a000210"}, "net node 'virtio_mmio@a000210' is not a"),
        ({"net_node": "virtio_mmio@a000200"}, "net node and block node are both"),
    ],
)
def test_bad_device_node_in_a_board_row_is_refused(tmp_path, kw, message):
    require_sources("sddf")
    board = dataclasses.replace(boards.board(boards.DEFAULT_BOARD), **kw)
    with pytest.raises(UserError, match=re.escape(message)) as e:
        system.generate(tmp_path, board)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "chrysopolis.system").exists()


def test_block_node_picks_the_qemu_bus(rendered, tmp_path):
    outputs, _ = rendered
    assert outputs.blk_bus == 1
    # The QEMU harness pins the disk to the bus of the default block node.
    if shutil.which("qemu-system-aarch64") is None:
        pytest.skip("qemu-system-aarch64 absent: run `chrysopolis setup`")
    board = boards.board(boards.DEFAULT_BOARD)
    (tmp_path / "disk.img").touch()
    img = targets.Image(
        tmp_path, Path("loader.img"), tmp_path / "disk.img", board, {}, 1, 0, system.DEFAULT_MAC
    )
    cmd = " ".join(map(str, img.command()))
    assert f"virtio-blk-device,drive=hd0,bus=virtio-mmio-bus.{outputs.blk_bus}" in cmd
    # The network: user net with restrict=on, on the net node's bus, with the node's MAC.
    assert "-netdev user,id=net0,restrict=on " in cmd
    assert (
        f"virtio-net-device,netdev=net0,bus=virtio-mmio-bus.{outputs.net_bus},"
        f"mac={system.DEFAULT_MAC}" in cmd
    )
    assert cmd.count("virtio-mmio.force-legacy=false") == 1
    assert "hostfwd" not in cmd and "guestfwd" not in cmd
    moved = dataclasses.replace(board, blk_node="virtio_mmio@a000400")
    other = system.generate(tmp_path, moved)
    assert other.blk_bus == 2
    assert "virtio_mmio@a000400/" in other.system_file.read_text()


def test_unknown_board_is_refused(tmp_path):
    with pytest.raises(UserError, match="unknown board 'pc99'"):
        system.generate(tmp_path, board="pc99")


def test_write_sections_puts_each_blob_in_its_section(rendered, tmp_path):
    clang, objcopy = shutil.which("clang-19"), shutil.which("llvm-objcopy-19")
    if not (clang and objcopy):
        pytest.skip("clang-19/llvm-objcopy-19 absent: run `chrysopolis setup`")
    outputs, _ = rendered
    # Stand-in PD objects that declare the sections the upstream C declares.
    for elf in {b.elf for b in outputs.blobs}:
        decls = "".join(
            f'__attribute__((section("{b.section}"))) char v{i}[1];\n'
            for i, b in enumerate(outputs.blobs)
            if b.elf == elf
        )
        (tmp_path / "pd.c").write_text(decls)
        subprocess.run(
            [clang, "-target", "aarch64-none-elf", "-c", "-o", tmp_path / elf, tmp_path / "pd.c"],
            check=True,
        )
    system.write_sections(outputs, tmp_path)
    for b in outputs.blobs:
        dump = tmp_path / "dump"
        subprocess.run(
            [objcopy, "--dump-section", f"{b.section}={dump}", tmp_path / b.elf], check=True
        )
        assert dump.read_bytes() == b.data.read_bytes(), (b.elf, b.section)


def test_write_sections_names_a_missing_section(rendered, tmp_path):
    clang = shutil.which("clang-19")
    if not clang:
        pytest.skip("clang-19 absent: run `chrysopolis setup`")
    outputs, _ = rendered
    (tmp_path / "pd.c").write_text("int x;\n")
    for elf in {b.elf for b in outputs.blobs}:
        subprocess.run(
            [clang, "-target", "aarch64-none-elf", "-c", "-o", tmp_path / elf, tmp_path / "pd.c"],
            check=True,
        )
    with pytest.raises(UserError, match="cannot write .* into serial_driver.elf section"):
        system.write_sections(outputs, tmp_path)


def test_other_sdfgen_versions_are_refused(tmp_path, monkeypatch):
    # Another sdfgen writes blobs in other layouts: refuse before rendering anything.
    monkeypatch.setattr(system.metadata, "version", lambda name: "0.30.0")
    with pytest.raises(UserError, match="sdfgen 0.30.0 is installed, the system needs 0.28.1"):
        system.generate(tmp_path)
    assert not any(tmp_path.iterdir())


def test_fat_share_is_resized_in_the_system_and_both_configs(rendered):
    outputs, root = rendered
    share = next(m for m in root.findall("memory_region") if m.get("name") == system.FS_SHARE_MR)
    assert int(share.get("size"), 0) == system.FS_SHARE_SIZE
    for section in (".fs_server_config", ".fs_client_config"):
        blob = next(b.data for b in outputs.blobs if b.section == section).read_bytes()
        assert blob[:8] == b"LionsOS\x01"
        (vaddr, size) = struct.unpack_from("<QQ", blob, system.FS_SHARE_SIZE_OFFSET - 8)
        maps = [
            int(m.get("vaddr"), 0) for m in root.iter("map") if m.get("mr") == system.FS_SHARE_MR
        ]
        assert vaddr in maps and size == system.FS_SHARE_SIZE


def test_supervisor_is_the_parent_of_the_restartable_pds(rendered):
    outputs, root = rendered
    top = {pd.get("name") for pd in root.findall("protection_domain")}
    assert "supervisor" in top and not top & set(system.SUPERVISED)
    sup = pds(root)["supervisor"]
    kids = {pd.get("name"): int(pd.get("id")) for pd in sup.findall("protection_domain")}
    assert kids == {name: i for i, name in enumerate(system.SUPERVISED, start=1)}
    # beam_server's default policy powers off past its budget: the supervisor may too
    assert sup.get("passive") is None and sup.get("smc") == "true"
    # each child maps its snapshot region with the stub's setvars
    for name in system.SUPERVISED:
        (m,) = (m for m in pds(root)[name].iter("map") if m.get("mr") == f"sup_snap_{name}")
        assert (m.get("setvar_vaddr"), m.get("setvar_size")) == ("sup_snap_base", "sup_snap_size")
    # the protocol page: in the supervisor and beam_server (setvar), channel 60 in beam_server
    (m,) = (m for m in pds(root)["beam_server"].iter("map") if m.get("mr") == "sup_status")
    assert m.get("setvar_vaddr") == "sup_status"
    # blk_virt and fatfs read it (the restarts of the driver and of the client:
    # patches/sddf/0002, patches/lionsos/0005), their own copies read-only
    for reader in ("blk_virt", "fatfs"):
        (m,) = (m for m in pds(root)[reader].findall("map") if m.get("mr") == "sup_status")
        assert (m.get("perms"), m.get("setvar_vaddr")) == ("r", "sup_peer_page")
    sizes = {m.get("name"): int(m.get("size"), 0) for m in root.iter("memory_region")}
    assert sizes["sup_snap_blk_virt"] == system.snap_size("blk_virt") > system.SNAP_SIZE
    ends = [{e.get("pd"): int(e.get("id")) for e in ch.iter("end")} for ch in root.iter("channel")]
    (status,) = (e for e in ends if set(e) == {"supervisor", "beam_server"})
    assert status["beam_server"] == system.STATUS_CHANNEL_BEAM
    # the config blob: the defaults, each child's channel as rendered
    (blob,) = (b for b in outputs.blobs if b.section == ".supervisor_config")
    data = blob.data.read_bytes()
    magic, n, status_ch, beam, vaddr = system.SUP_HEADER.unpack_from(data)
    assert (magic, n, status_ch, beam, vaddr) == (
        system.SUP_CONFIG_MAGIC,
        len(system.SUPERVISED),
        status["supervisor"],
        system.SUPERVISED.index("beam_server"),
        system.STATUS_VADDR,
    )
    none = system.SUP_NO_CHILD
    for i, name in enumerate(system.SUPERVISED):
        got = system.SUP_CHILD.unpack_from(data, system.SUP_HEADER.size + i * system.SUP_CHILD.size)
        if name == "beam_server":  # its channel is the protocol page's; transient, fatfs first
            fatfs = system.SUPERVISED.index("fatfs")
            assert got[1:11] == (i + 1, status["supervisor"], 1, 1, 3, 60000, 0, 0, fatfs, 0)
            continue
        (ch,) = (e["supervisor"] for e in ends if set(e) == {"supervisor", name})
        giveup = int(name == "timer_driver")  # poweroff: a stopped timer hangs its callers
        want = (name.encode().ljust(32, b"\0"), i + 1, ch, 0, giveup, 3, 5000, 1, 0, none)
        assert got == (*want, *[0] * 8)
    assert "sup_inject" not in outputs.system_file.read_text()


def test_policies_reach_the_blob_and_poweroff_gets_smc(tmp_path):
    require_sources("sddf")
    policies = system.parse_policies("serial_virt_rx:temporary:2:100:poweroff")
    out = system.generate(tmp_path, policies=policies)
    root = ET.parse(out.system_file).getroot()
    assert pds(root)["supervisor"].get("smc") == "true"
    (blob,) = (b for b in out.blobs if b.section == ".supervisor_config")
    off = system.SUP_HEADER.size + 3 * system.SUP_CHILD.size
    got = system.SUP_CHILD.unpack_from(blob.data.read_bytes(), off)
    assert got[3:8] == (2, 1, 2, 100, 1)


def test_named_exit_statuses_reach_beam_servers_bitmap():
    (p,) = system.parse_policies("beam_server:transient:2:1000:stop:75+3+75").values()
    assert (p.restart, p.exit_statuses, p.may_restart) == ("transient", (3, 75), False)
    words = system._bitmap(p.exit_statuses)
    assert words[0] == 1 << 3 and words[2] == 1 << (75 - 64) and sum(map(bool, words)) == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("timer_driver:forever:3:5000:stop", "restart is one of permanent"),
        ("timer_driver:permanent:3", "is not NAME:RESTART"),
        ("blk_driver:permanent:3:5000:stop:75", "only beam_server ends with a status"),
        ("beam_server:transient:3:5000:stop:0", "exit statuses are numbers 1 to 255"),
        ("beam_server:transient:3:5000:stop:75+x", "exit statuses are numbers 1 to 255"),
        ("sup_inject:permanent:3:5000:stop", "only timer_driver"),
        ("timer_driver:permanent:0:5000:stop", "intensity 1 to 16"),
    ],
)
def test_bad_policy_is_refused_in_one_line(text, message):
    with pytest.raises(UserError, match=message) as e:
        system.parse_policies(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["timer_driver", "timer_driver:soon", "sup_inject:100", True])
def test_bad_fault_injection_is_refused(text):
    with pytest.raises(UserError, match="fault_inject"):
        system.parse_inject(text)
