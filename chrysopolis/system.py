# SPDX-License-Identifier: BSD-2-Clause
"""The system descriptions: which protection domains run, what they share, and their configs.

Every topology a target boots is here: `single_pd` (hello) and `generate`, the LionsOS
stack beneath beam_server (bringup, selftest, beam). `generate` renders the Microkit `.system` file and every PD's config blob with sdfgen
0.28.1 (the version whose blob layouts match our sDDF pin), then `write_sections` puts
each blob into its ELF. The picture, top to bottom:

    supervisor (254): the parent of the PDs it restarts (SUPERVISED), policies per child
    timer_driver (253)  <- protected calls from beam_server
    serial_driver (100) -- serial_virt_tx (99) / serial_virt_rx (98) -- beam_server
    blk_driver (200) -- blk_virt (199) -- fatfs (96) -- beam_server
    ethernet_driver (160) -- net_virt_tx (159) -- beam_server (lwIP, TX)
    ethernet_driver (160) -- net_virt_rx (158) -- beam_net_copier (157) -- beam_server (RX)
    beam_server (1): ERTS over LionsOS libc, with its own heap region
"""

import re
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from chrysopolis import boards, toolchain
from chrysopolis.errors import UserError

KIB = 1024
MIB = 1024 * KIB

# Microkit 2.0.1 on AArch64: the page sizes it maps with, and its PD stack bounds.
SMALL_PAGE = 4 * KIB
LARGE_PAGE = 2 * MIB
PD_STACK_MIN = 4 * KIB
PD_STACK_MAX = 16 * MIB

# Where beam_server sees its heap: 2 MiB aligned for its large pages, clear of the ELF (linked
# at 0x200000); sdfgen places beam_server's other mappings after it.
HEAP_VADDR = 0x2_0000_0000
HEAP_MR = "beam_heap"
# The C globals the Microkit tool patches with the heap's address and size.
HEAP_BASE_SYMBOL = "beam_heap_base"
HEAP_SIZE_SYMBOL = "beam_heap_size"
CLIENT = "beam_server"
# QEMU's fw_cfg registers, mapped uncached into beam_server (runtime/pd/fwcfg.c), below the
# heap; the Microkit tool patches the address into the C global FWCFG_SYMBOL.
FWCFG_MR = "fw_cfg"
FWCFG_VADDR = 0x1_0000_0000
FWCFG_SYMBOL = "fwcfg_base"
# The FAT server's share with beam_server: file data passes through it in 32 KiB buffers, one
# per request in flight. sdfgen 0.28.1 makes it 64 MiB (2048 buffers); 4 MiB (128) leaves the
# rest to Erlang, and LionsOS's helpers stay inside it (patches/lionsos/0003).
FS_SHARE_MR = "fs_fatfs_share"
FS_SHARE_SIZE = 4 * MIB
FS_SHARE_SIZE_SMALL = 1 * MIB  # 32 buffers, below FS_SHARE_SMALL_RAM_MIB of RAM
FS_SHARE_SMALL_RAM_MIB = 512
# Where the share's size sits in both ends' fs configs: magic[8], then the command queue,
# the completion queue and the share as {vaddr, size} (LionsOS include/lions/fs/config.h).
FS_SHARE_SIZE_OFFSET = 8 + 2 * 16 + 8
# The node's MAC address. Always given to sdfgen: without one it draws a random address
# and the image would not rebuild byte-identical. QEMU's locally administered prefix.
DEFAULT_MAC = "52:54:00:c5:00:01"
SDFGEN_VERSION = "0.28.1"  # pairs with sDDF d1f5252 (LionsOS main's meta.py asserts 0.28)

# The supervisor PD (runtime/supervisor/supervisor.c, docs/plans/recovery.md): above every
# child, so their faults are handled as they happen. Its children, in child-id order from 1
# (sdfgen 0.28.1 takes a child id of 0 as "allocate one"): they link the reset stub.
SUPERVISOR = "supervisor"
SUPERVISOR_ELF = "supervisor.elf"
SUPERVISED = (
    "timer_driver",
    "serial_driver",
    "serial_virt_tx",
    "serial_virt_rx",
    "blk_driver",
    "blk_virt",
    "fatfs",
    "ethernet_driver",
    "net_virt_tx",
    "net_virt_rx",
    "beam_net_copier",
    "beam_server",  # last: its channel is the protocol page's
)
ELF_OF = {  # a child's ELF, when not NAME.elf (beam_server: generate's)
    "fatfs": "fat.elf",
    "ethernet_driver": "eth_driver.elf",
    "net_virt_tx": "network_virt_tx.elf",
    "net_virt_rx": "network_virt_rx.elf",
    "beam_net_copier": "network_copy.elf",
}
# rest_for_one: a child restarted, and up, before this one (beam_server's open files live
# in the FAT server: a new node starts with a new server, patches/lionsos/0005).
FIRST = {"beam_server": "fatfs"}
# Each child's snapshot of its writable segment (runtime/reset/sup_reset.c): a region
# mapped at SNAP_VADDR in the child only, its address and size patched into the stub.
# Sized per PD: at least the child's RW segment plus SNAP_HEADER (checked on its ELF).
SNAP_SIZE = 64 * KIB
# blk_virt: 1024 request records; beam_server: 2.2 MiB, nearly all .bss
SNAP_SIZES = {"blk_virt": 128 * KIB, "fatfs": 2 * MIB, "beam_server": 2560 * KIB}
# PDs that read the supervisor's page (read-only, `sup_peer_page` in the reset stub): a
# peer holding requests of a child learns of its restarts (patches/sddf/0002).
STATUS_READERS = ("blk_virt", "fatfs")
SNAP_VADDR = 0x8_0000_0000
SNAP_HEADER = 64  # the stub's header before the copy
# The protocol page (runtime/include/chrysopolis/supervisor.h) and its channel: mapped in
# the supervisor and beam_server, whose `sup_status` the Microkit tool patches; its
# channel id in beam_server is fixed (SUP_BEAM_CHANNEL in runtime/posix).
STATUS_MR = "sup_status"
STATUS_VADDR = 0x1_0001_0000
STATUS_SYMBOL = "sup_status"
STATUS_CHANNEL_BEAM = 60
# Fault injection images only (beam option fault_inject): the supervisor's tick PD.
INJECT_PD = "sup_inject"
INJECT_ELF = "sup_inject.elf"
INJECT_CHANNEL = 61  # the supervisor's end (SUP_INJECT_CHANNEL in supervisor.c)
SUP_CONFIG_MAGIC = 0x43505553
SUP_MAX_PDS = 16
SUP_CHILD = struct.Struct("<32sBBBBIIIQB3x8I4x")  # struct child_config
SUP_HEADER = struct.Struct("<IIBB6xQ")  # struct sup_config up to its children
SUP_NO_CHILD = 0xFF
RESTARTS = ("permanent", "transient", "temporary")
GIVEUPS = ("stop", "poweroff")


@dataclass(frozen=True)
class Policy:
    """A child's restart settings, in OTP's words (supervisor child specs)."""

    restart: str = "permanent"
    intensity: int = 3  # restarts allowed within period_ms ...
    period_ms: int = 5000  # ... a sliding window
    on_giveup: str = "stop"  # past the budget: stop the child, or power off
    may_restart: bool = True  # beam_server may ask for a restart (SUP_OP_RESTART)
    # beam_server: exit statuses that restart a transient node, beside fatal errors (abort,
    # a fatal signal, out of memory); halt() (0) always powers off
    exit_statuses: tuple[int, ...] = ()


# The node restarts on a fatal error, like OTP's heart; a crash loop gives up within a
# minute and powers off with the node's status. It cannot ask for its own restart. A
# stopped timer would hang every protected call to it (the node's clock, its sleeps): past
# its budget the machine powers off.
DEFAULT_POLICIES = {
    "beam_server": Policy("transient", 3, 60000, "poweroff", may_restart=False),
    "timer_driver": Policy(on_giveup="poweroff"),
}


def parse_policies(text: str) -> dict[str, Policy]:
    """`NAME:RESTART:INTENSITY:PERIOD_MS:ON_GIVEUP[:STATUS+STATUS...][,...]` (a build option)
    into policies; the exit statuses are beam_server's only."""
    out = {}
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        parts = item.split(":")
        form = "NAME:RESTART:INTENSITY:PERIOD_MS:ON_GIVEUP, e.g. timer_driver:permanent:3:5000:stop"
        if len(parts) not in (5, 6) or not parts[2].isdigit() or not parts[3].isdigit():
            raise UserError(f"restart policy {item!r} is not {form}")
        statuses = _exit_statuses(item, parts[5]) if len(parts) == 6 else ()
        name, restart, intensity, period, giveup = parts[:5]
        if statuses and name != CLIENT:
            raise UserError(
                f"restart policy {item!r}: only {CLIENT} ends with a status; drop ':{parts[5]}'"
            )
        if name not in SUPERVISED:
            raise UserError(
                f"restart policy for {name!r}: only {', '.join(SUPERVISED)} are supervised"
            )
        if restart not in RESTARTS or giveup not in GIVEUPS:
            raise UserError(
                f"restart policy {item!r}: restart is one of {', '.join(RESTARTS)}, "
                f"on_giveup one of {', '.join(GIVEUPS)}"
            )
        if not 1 <= int(intensity) <= 16 or int(period) < 1:
            raise UserError(f"restart policy {item!r}: intensity 1 to 16, period_ms at least 1")
        may = DEFAULT_POLICIES.get(name, Policy()).may_restart
        out[name] = Policy(restart, int(intensity), int(period), giveup, may, statuses)
    return out


def _exit_statuses(item: str, text: str) -> tuple[int, ...]:
    """beam_server's `STATUS+STATUS...` field: exit statuses 1 to 255."""
    if not re.fullmatch(r"\d+(\+\d+)*", text) or not all(
        1 <= int(v) <= 255 for v in text.split("+")
    ):
        raise UserError(
            f"restart policy {item!r}: the exit statuses are numbers 1 to 255 joined by '+', "
            "e.g. beam_server:transient:3:60000:poweroff:75+76"
        )
    return tuple(sorted({int(v) for v in text.split("+")}))


def parse_inject(text: str | bool) -> str:
    """The fault_inject option: False, or `NAME:DELAY_MS[,...]` (crash NAME DELAY_MS after boot)."""
    if text is False or text == "":
        return ""
    if not isinstance(text, str) or not re.fullmatch(r"\w+:\d+(,\w+:\d+)*", text):
        raise UserError(
            f"fault_inject {text!r} is not NAME:DELAY_MS[,NAME:DELAY_MS], "
            "e.g. timer_driver:40000"
        )
    for item in text.split(","):
        if item.split(":")[0] not in SUPERVISED:
            raise UserError(
                f"fault_inject names {item.split(':')[0]!r}; it can crash {', '.join(SUPERVISED)}"
            )
    return text


@dataclass(frozen=True)
class Blob:
    """One config blob and the ELF section it must land in."""

    elf: str
    section: str
    data: Path


@dataclass(frozen=True)
class SystemOutputs:
    system_file: Path
    dtb: Path
    blobs: tuple[Blob, ...]
    heap_size: int
    heap_vaddr: int
    blk_node: str
    blk_bus: int  # QEMU's `-device virtio-blk-device,bus=virtio-mmio-bus.N`
    net_node: str
    net_bus: int  # QEMU's `-device virtio-net-device,bus=virtio-mmio-bus.N`
    mac: str  # the MAC in the net blobs (virt_rx's filter and beam_server's netif)


def _client_blobs(client: str, client_elf: str) -> list[tuple[str, str, str]]:
    return [
        (client_elf, ".serial_client_config", f"serial_client_{client}.data"),
        (client_elf, ".timer_client_config", f"timer_client_{client}.data"),
        (client_elf, ".fs_client_config", f"fs_client_{client}.data"),
        (client_elf, ".net_client_config", f"net_client_{client}.data"),
        (client_elf, ".lib_sddf_lwip_config", f"lib_sddf_lwip_config_{client}.data"),
    ]


# (ELF, section, blob file sdfgen writes): the sections the upstream C declares, as in
# LionsOS examples/fileio/fileio.mk. sdfgen's fat_config.data has no section in this FAT
# server and is left out.
SERVICE_BLOBS = [
    ("serial_driver.elf", ".device_resources", "serial_driver_device_resources.data"),
    ("serial_driver.elf", ".serial_driver_config", "serial_driver_config.data"),
    ("serial_virt_tx.elf", ".serial_virt_tx_config", "serial_virt_tx.data"),
    ("serial_virt_rx.elf", ".serial_virt_rx_config", "serial_virt_rx.data"),
    ("timer_driver.elf", ".device_resources", "timer_driver_device_resources.data"),
    ("blk_driver.elf", ".device_resources", "blk_driver_device_resources.data"),
    ("blk_driver.elf", ".blk_driver_config", "blk_driver.data"),
    ("blk_virt.elf", ".blk_virt_config", "blk_virt.data"),
    ("fat.elf", ".blk_client_config", "blk_client_fatfs.data"),
    ("fat.elf", ".fs_server_config", "fs_server_fatfs.data"),
    ("eth_driver.elf", ".device_resources", "ethernet_driver_device_resources.data"),
    ("eth_driver.elf", ".net_driver_config", "net_driver.data"),
    ("network_virt_rx.elf", ".net_virt_rx_config", "net_virt_rx.data"),
    ("network_virt_tx.elf", ".net_virt_tx_config", "net_virt_tx.data"),
    ("network_copy.elf", ".net_copy_config", "net_copy_beam_net_copier.data"),
]


def check_sdfgen() -> None:
    """The config blob layouts must match our sDDF pin: only sdfgen SDFGEN_VERSION writes them."""
    try:
        have = metadata.version("sdfgen")
    except metadata.PackageNotFoundError:
        have = None
    if have != SDFGEN_VERSION:
        raise UserError(
            f"sdfgen {have or 'is not installed'}{' is installed' if have else ''}, "
            f"the system needs {SDFGEN_VERSION}; run `chrysopolis setup`"
        )


def check_heap(heap_mib: int) -> int:
    """The heap size in bytes, or a one-line refusal naming the fix."""
    if not isinstance(heap_mib, int) or isinstance(heap_mib, bool) or heap_mib <= 0:
        raise UserError(
            f"heap size {heap_mib!r} MiB is not a positive whole number of MiB; use e.g. 256"
        )
    size = heap_mib * MIB
    if size % LARGE_PAGE:
        lower = size // LARGE_PAGE * LARGE_PAGE // MIB
        nearest = f"{lower} or {lower + LARGE_PAGE // MIB}" if lower else f"{LARGE_PAGE // MIB}"
        raise UserError(
            f"heap size {heap_mib} MiB is not a multiple of the {LARGE_PAGE // MIB} MiB page size; "
            f"use {nearest} MiB"
        )
    return size


def check_stack(stack_kib: int) -> int:
    """The beam_server PD stack size in bytes, or a one-line refusal naming the fix."""
    if not isinstance(stack_kib, int) or isinstance(stack_kib, bool) or stack_kib <= 0:
        raise UserError(
            f"stack size {stack_kib!r} KiB is not a positive whole number of KiB; use e.g. 1024"
        )
    size = stack_kib * KIB
    if size % SMALL_PAGE:
        raise UserError(
            f"stack size {stack_kib} KiB is not a multiple of the 4 KiB page size; "
            "use a multiple of 4"
        )
    if not PD_STACK_MIN <= size <= PD_STACK_MAX:
        raise UserError(
            f"stack size {stack_kib} KiB is outside Microkit's PD stack range "
            f"({PD_STACK_MIN // KIB} KiB to {PD_STACK_MAX // MIB} MiB)"
        )
    return size


def compile_dts(dts: Path, dtb: Path) -> Path:
    """Compile sDDF's board device tree with dtc, as sDDF's common.mk does."""
    r = subprocess.run(
        [toolchain.path("dtc"), "-q", "-I", "dts", "-O", "dtb", "-o", str(dtb), str(dts)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        raise UserError(f"dtc could not compile {dts}: {last}")
    return dtb


def _node(dtb, path: str, role: str):
    try:
        return dtb.node(path)
    except Exception:
        raise UserError(
            f"device tree node '{path}' ({role}) is not in the board's device tree; "
            "fix the board's row in chrysopolis/boards.py"
        ) from None


def generate(
    out_dir: Path,
    board: str | boards.Board = boards.DEFAULT_BOARD,
    *,
    sddf: Path | None = None,
    heap_mib: int = 256,
    heap_paddr: int | None = None,
    stack_kib: int = 1024,
    mac: str = DEFAULT_MAC,
    fs_share: int = FS_SHARE_SIZE,
    client_elf: str = "beam_server.elf",
    system_name: str = "chrysopolis.system",
    elf_dir: Path | None = None,
    policies: dict[str, Policy] | None = None,
    inject: bool = False,
) -> SystemOutputs:
    """Render the LionsOS stack into `out_dir`: the .system file, the DTB and every config blob.

    `board` is a name from chrysopolis/boards.py (or a row of that table). `sddf` is the sDDF
    tree whose device tree is used (default: the stored pinned source). Bad options are
    refused with a UserError before the Microkit tool would see them. With `elf_dir`, the
    supervisor's config names each child's restart PC from its ELF (else 0: a render only).
    `policies` overrides the default Policy per child; `inject` adds the fault injection tick.
    """
    check_sdfgen()
    from sdfgen import DeviceTree, LionsOs, Sddf, SystemDescription

    sb = board if isinstance(board, boards.Board) else boards.board(board)
    heap_size = check_heap(heap_mib)
    stack_size = check_stack(stack_kib)
    if sddf is None:
        from chrysopolis import lock, sources

        sddf = sources.require(lock.load().source("sddf"))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blk_bus = boards.virtio_mmio_bus(sb, sb.blk_node)
    net_bus = boards.virtio_mmio_bus(sb, sb.net_node, "net")
    if sb.net_node == sb.blk_node:
        raise UserError(
            f"the board's net node and block node are both '{sb.net_node}'; give each device "
            "its own virtio-mmio slot in chrysopolis/boards.py"
        )
    mac = check_mac(mac)
    dtb_path = compile_dts(Path(sddf) / sb.sddf_dts, out_dir / f"{sb.name}.dtb")
    dtb = DeviceTree(dtb_path.read_bytes())
    serial_dev = _node(dtb, sb.serial_node, "serial")
    timer_dev = _node(dtb, sb.timer_node, "timer")
    blk_dev = _node(dtb, sb.blk_node, "block")
    net_dev = _node(dtb, sb.net_node, "net")

    PD = SystemDescription.ProtectionDomain
    sdf = SystemDescription(SystemDescription.Arch.AARCH64, sb.paddr_top)
    sddf_meta = Sddf(str(sddf))  # noqa: F841 -- sdfgen reads sDDF's driver metadata while it lives

    # The supervisor: the parent of the PDs it restarts (added to the system, they are not).
    supervisor = PD(SUPERVISOR, SUPERVISOR_ELF, priority=254)

    # Timer: below the supervisor; not passive, so a restart never runs on a caller's
    # scheduling context (docs/plans/recovery.md, 1.7).
    timer_driver = PD("timer_driver", "timer_driver.elf", priority=253)
    timer = Sddf.Timer(sdf, timer_dev, timer_driver)

    # Serial: one PL011 driver, a virtualiser each way, plain (uncoloured) output.
    serial_driver = PD("serial_driver", "serial_driver.elf", priority=100)
    serial_virt_tx = PD("serial_virt_tx", "serial_virt_tx.elf", priority=99)
    serial_virt_rx = PD("serial_virt_rx", "serial_virt_rx.elf", priority=98)
    serial = Sddf.Serial(
        sdf, serial_dev, serial_driver, serial_virt_tx, virt_rx=serial_virt_rx, enable_color=False
    )

    # Block: virtio-blk driver, then the virtualiser that reads the MBR.
    blk_driver = PD("blk_driver", "blk_driver.elf", priority=200)
    blk_virt = PD("blk_virt", "blk_virt.elf", priority=199, stack_size=0x2000)
    blk = Sddf.Blk(sdf, blk_dev, blk_driver, blk_virt)

    # The client: ERTS over LionsOS libc, its heap in a region of its own.
    beam_server = PD(CLIENT, client_elf, priority=1, stack_size=stack_size)
    # At `heap_paddr`: RAM the SDK kept from seL4 (boards.heap_reserve), which it does not clear.
    at = {} if heap_paddr is None else {"paddr": heap_paddr}
    heap = SystemDescription.MemoryRegion(sdf, HEAP_MR, heap_size, **at)
    sdf.add_mr(heap)
    beam_server.add_map(SystemDescription.Map(heap, HEAP_VADDR, "rw"))
    if sb.fw_cfg_paddr is not None:
        fw_cfg = SystemDescription.MemoryRegion(sdf, FWCFG_MR, 0x1000, paddr=sb.fw_cfg_paddr)
        sdf.add_mr(fw_cfg)
        beam_server.add_map(SystemDescription.Map(fw_cfg, FWCFG_VADDR, "rw", cached=False))
    serial.add_client(beam_server)
    timer.add_client(beam_server)

    # Network: virtio-net driver, a virtualiser each way, and a copier that gives beam_server
    # RX buffers of its own (the device's are shared with every client). lwIP runs inside
    # beam_server (lib_sddf_lwip: its pbuf pool region and config).
    eth_driver = PD("ethernet_driver", "eth_driver.elf", priority=160)
    net_virt_tx = PD("net_virt_tx", "network_virt_tx.elf", priority=159)
    net_virt_rx = PD("net_virt_rx", "network_virt_rx.elf", priority=158)
    net_copier = PD("beam_net_copier", "network_copy.elf", priority=157)
    net = Sddf.Net(sdf, net_dev, eth_driver, net_virt_tx, net_virt_rx)
    net.add_client_with_copier(beam_server, net_copier, mac_addr=mac)
    lwip = Sddf.Lwip(sdf, net, beam_server)

    # Files: the LionsOS FAT server, a block client serving beam_server.
    fatfs = PD("fatfs", "fat.elf", priority=96)
    fs = LionsOs.FileSystem.Fat(sdf, fatfs, beam_server, blk=blk, partition=sb.partition)

    supervised = (
        timer_driver,
        serial_driver,
        serial_virt_tx,
        serial_virt_rx,
        blk_driver,
        blk_virt,
        fatfs,
        eth_driver,
        net_virt_tx,
        net_virt_rx,
        net_copier,
        beam_server,
    )
    assert tuple(pd.name for pd in supervised) == SUPERVISED
    snaps = []  # sdfgen frees its native objects on __del__: keep them until render()
    for child_id, pd in enumerate(supervised, start=1):
        supervisor.add_child_pd(pd, child_id)
        snap = SystemDescription.MemoryRegion(sdf, f"sup_snap_{pd.name}", snap_size(pd.name))
        sdf.add_mr(snap)
        pd.add_map(SystemDescription.Map(snap, SNAP_VADDR, "rw"))
        snaps.append(snap)
    status = SystemDescription.MemoryRegion(sdf, STATUS_MR, SMALL_PAGE)
    sdf.add_mr(status)
    supervisor.add_map(SystemDescription.Map(status, STATUS_VADDR, "rw"))
    beam_server.add_map(SystemDescription.Map(status, STATUS_VADDR, "rw"))
    for pd in supervised[:-1]:
        if pd.name in STATUS_READERS:
            pd.add_map(SystemDescription.Map(status, STATUS_VADDR, "r"))
    sdf.add_pd(supervisor)

    # The FAT server registers itself as a block client, so it connects before the block
    # system; lwIP's pbuf pool sits on the net client, so it connects after the net system.
    for subsystem in (fs, serial, timer, blk, net, lwip):
        if not subsystem.connect():
            raise UserError(f"sdfgen could not connect the {type(subsystem).__name__} subsystem")
        if not subsystem.serialise_config(str(out_dir)):
            raise UserError(
                f"sdfgen could not write the {type(subsystem).__name__} configs into {out_dir}"
            )

    # The supervisor's channels, after the subsystems took theirs: one to each child (its
    # reset stub notifies it when up); beam_server's, with a fixed id there, also carries the
    # protocol page's requests.
    channels = [SystemDescription.Channel(supervisor, pd) for pd in supervised[:-1]]
    channels.append(SystemDescription.Channel(supervisor, beam_server, b_id=STATUS_CHANNEL_BEAM))
    if inject:
        tick = PD(INJECT_PD, INJECT_ELF, priority=0)
        sdf.add_pd(tick)
        channels.append(SystemDescription.Channel(tick, supervisor, a_id=0, b_id=INJECT_CHANNEL))
    for ch in channels:
        sdf.add_channel(ch)
    given = policies or {}
    policies = {n: given.get(n, DEFAULT_POLICIES.get(n, Policy())) for n in SUPERVISED}
    sup_blob = out_dir / "supervisor_config.data"
    sup_blob.write_bytes(
        supervisor_config(
            [(n, i + 1, channels[i].pd_a_id, policies[n]) for i, n in enumerate(SUPERVISED)],
            channels[len(SUPERVISED) - 1].pd_a_id,
            STATUS_VADDR,
            elf_dir,
            client_elf,
        )
    )
    smc = [CLIENT] + [SUPERVISOR] * any(p.on_giveup == "poweroff" for p in policies.values())
    xml = _add_smc(_add_heap_setvars(_not_passive(sdf.render(), "timer_driver")), smc)
    xml = _add_map_setvars(xml, STATUS_MR, CLIENT, f'setvar_vaddr="{STATUS_SYMBOL}"')
    for name in SUPERVISED:
        setvars = 'setvar_vaddr="sup_snap_base" setvar_size="sup_snap_size"'
        xml = _add_map_setvars(xml, f"sup_snap_{name}", name, setvars)
    for name in STATUS_READERS:
        xml = _add_map_setvars(xml, STATUS_MR, name, 'setvar_vaddr="sup_peer_page"')
    xml = _resize_fs_share(xml, out_dir, fs_share)
    if sb.fw_cfg_paddr is not None:
        xml = _add_fwcfg_setvar(xml)
    system_file = out_dir / system_name
    system_file.write_text(xml)

    blobs = tuple(
        Blob(elf, section, out_dir / data)
        for elf, section, data in SERVICE_BLOBS + _client_blobs(CLIENT, client_elf)
    ) + (Blob(SUPERVISOR_ELF, ".supervisor_config", sup_blob),)
    for b in blobs:
        if not b.data.is_file():
            raise UserError(
                f"sdfgen wrote no {b.data.name}; is sdfgen 0.28.1 installed (`chrysopolis setup`)?"
            )
    return SystemOutputs(
        system_file,
        dtb_path,
        blobs,
        heap_size,
        HEAP_VADDR,
        sb.blk_node,
        blk_bus,
        sb.net_node,
        net_bus,
        mac,
    )


def check_mac(mac: str) -> str:
    """A unicast MAC address as sdfgen wants it (six lower-case hex pairs), or a refusal."""
    if not isinstance(mac, str) or not re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", mac):
        raise UserError(f"MAC address {mac!r} is not six hex pairs like {DEFAULT_MAC}")
    if int(mac[:2], 16) & 1:
        raise UserError(f"MAC address {mac} is a multicast address; use a unicast one")
    return mac.lower()


def _add_heap_setvars(xml: str) -> str:
    """Give the heap 2 MiB pages and patch its address and size into beam_server's globals.

    sdfgen 0.28.1 has neither `page_size` on regions nor `setvar_vaddr` on maps (0.30 added
    the latter); Microkit 2.0.1 accepts both.
    """
    mr_re = re.compile(
        rf'(<memory_region name="{HEAP_MR}" size="0x[0-9a-f]+"(?: phys_addr="0x[0-9a-f]+")?)( />)'
    )
    map_re = re.compile(
        rf'(<map mr="{HEAP_MR}" vaddr="0x[0-9a-f]+" perms="rw"(?: cached="true")?)( />)'
    )
    xml, n_mr = mr_re.subn(rf'\1 page_size="{LARGE_PAGE:#x}"\2', xml)
    xml, n_map = map_re.subn(
        rf'\1 setvar_vaddr="{HEAP_BASE_SYMBOL}" setvar_size="{HEAP_SIZE_SYMBOL}"\2', xml
    )
    if (n_mr, n_map) != (1, 1):  # sdfgen changed how it renders: fail here, not at boot
        raise RuntimeError(
            f"heap region/map not found once in the rendered system ({n_mr}, {n_map})"
        )
    return xml


def fs_share_size(ram_mib: int | None) -> int:
    """The FAT share for a RAM of `ram_mib` (None: the board's default)."""
    small = ram_mib is not None and ram_mib < FS_SHARE_SMALL_RAM_MIB
    return FS_SHARE_SIZE_SMALL if small else FS_SHARE_SIZE


def _resize_fs_share(xml: str, out_dir: Path, size: int) -> str:
    """Give the FAT share `size` bytes: its region in the system, its size in the configs
    of the server (fatfs) and the client (beam_server), which sdfgen wrote for 64 MiB."""
    mr_re = re.compile(rf'(<memory_region name="{FS_SHARE_MR}" size=")(0x[0-9a-f]+)(")')
    found = mr_re.findall(xml)
    if len(found) != 1:  # sdfgen changed how it renders: fail here, not at boot
        raise RuntimeError(f"FAT share region not found once in the rendered system ({len(found)})")
    old = int(found[0][1], 16)
    blobs = [Path(out_dir) / "fs_server_fatfs.data", Path(out_dir) / f"fs_client_{CLIENT}.data"]
    for blob in blobs:
        data = bytearray(blob.read_bytes())
        (got,) = struct.unpack_from("<Q", data, FS_SHARE_SIZE_OFFSET)
        if got != old:
            raise RuntimeError(
                f"{blob.name}: share size {got:#x} at offset {FS_SHARE_SIZE_OFFSET}, the system "
                f"says {old:#x}: LionsOS's fs config layout changed"
            )
        struct.pack_into("<Q", data, FS_SHARE_SIZE_OFFSET, size)
        blob.write_bytes(bytes(data))
    return mr_re.sub(rf"\g<1>{size:#x}\g<3>", xml)


def _add_smc(xml: str, names: list[str]) -> str:
    """Let beam_server make SMC calls: it powers the machine off with PSCI SYSTEM_OFF (and
    the supervisor, when a child's policy powers off past its budget).

    sdfgen 0.28.1 has no `smc` on protection domains; Microkit 2.0.1 accepts it when the
    kernel allows SMC calls (our SDK patch 0004). Only the PDs in `names` get it.
    """
    for name in names:
        pd_re = re.compile(rf'(<protection_domain name="{name}" [^>]*?)(>)')
        xml, n = pd_re.subn(r'\1 smc="true"\2', xml)
        if n != 1:  # sdfgen changed how it renders: fail here, not at boot
            raise RuntimeError(
                f"{name}'s protection_domain not found once in the rendered system ({n})"
            )
    if xml.count('smc="') != len(names):
        raise RuntimeError(f"smc is on other PDs than {names}")
    return xml


def _not_passive(xml: str, name: str) -> str:
    """sdfgen 0.28.1's Sddf.Timer makes its driver passive; a supervised one must not be."""
    pd_re = re.compile(rf'(<protection_domain name="{name}" [^>]*?) passive="true"(>)')
    xml, n = pd_re.subn(r"\1\2", xml)
    if n != 1:  # sdfgen changed how it renders: fail here, not at boot
        raise RuntimeError(f"{name} is not rendered passive once ({n})")
    return xml


def _add_map_setvars(xml: str, mr: str, pd: str, setvars: str) -> str:
    """Patch a map's address (and size) into `pd`'s globals: sdfgen 0.28.1 has no setvar."""
    start = xml.index(f'<protection_domain name="{pd}" ')
    map_re = re.compile(
        rf'(<map mr="{mr}" vaddr="0x[0-9a-f]+" perms="rw?"(?: cached="true")?)( />)'
    )
    m = map_re.search(xml, start)
    if m is None or xml.rfind("<protection_domain ", 0, m.start()) != start:
        raise RuntimeError(f"map of {mr} not found in {pd} in the rendered system")
    return xml[: m.start()] + f"{m.group(1)} {setvars}{m.group(2)}" + xml[m.end() :]


def _elf_symbol(elf: Path, symbol: str) -> int:
    from chrysopolis.stages.lionsos import LLVM_BIN

    r = subprocess.run(
        [str(LLVM_BIN / "llvm-nm"), "--defined-only", str(elf)], capture_output=True, text=True
    )
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == symbol:
            return int(parts[0], 16)
    raise UserError(
        f"{elf.name} has no {symbol}: link it with the reset stub (mk/lionsos.mk SUP_RESET_ELFS)"
    )


def _rw_segment_size(elf: Path) -> int:
    from chrysopolis.stages.lionsos import LLVM_BIN

    r = subprocess.run(
        [str(LLVM_BIN / "llvm-readelf"), "-lW", str(elf)], capture_output=True, text=True
    )
    sizes = [
        int(ln.split()[5], 16)
        for ln in r.stdout.splitlines()
        if ln.split()[:1] == ["LOAD"] and "RW" in ln
    ]
    return max(sizes, default=0)


def snap_size(name: str) -> int:
    """The size of `name`'s snapshot region (its writable segment and the stub's header)."""
    return SNAP_SIZES.get(name, SNAP_SIZE)


def supervisor_config(
    children: list[tuple[str, int, int, Policy]],
    status_channel: int,
    status_vaddr: int,
    elf_dir: Path | None,
    client_elf: str = "beam_server.elf",
) -> bytes:
    """The supervisor's `.supervisor_config` (struct sup_config in supervisor.c): per child
    (name, child id, the supervisor's channel to it, policy), its restart PC, the child
    restarted before it (FIRST) and the exit statuses that restart it."""
    names = [c[0] for c in children]
    beam = names.index(CLIENT) if CLIENT in names else SUP_NO_CHILD
    out = SUP_HEADER.pack(SUP_CONFIG_MAGIC, len(children), status_channel, beam, status_vaddr)
    elf_of = {**ELF_OF, CLIENT: client_elf}
    for name, child_id, channel, p in children:
        reset_pc = 0
        if elf_dir is not None:
            elf = Path(elf_dir) / elf_of.get(name, f"{name}.elf")
            reset_pc = _elf_symbol(elf, "sup_reset")
            if _rw_segment_size(elf) + SNAP_HEADER > snap_size(name):
                raise UserError(
                    f"{elf.name}'s writable segment does not fit its {snap_size(name) // KIB} KiB "
                    f"snapshot region; raise SNAP_SIZES[{name!r}] in chrysopolis/system.py"
                )
        out += SUP_CHILD.pack(
            name.encode(),
            child_id,
            channel,
            RESTARTS.index(p.restart),
            GIVEUPS.index(p.on_giveup),
            p.intensity,
            p.period_ms,
            int(p.may_restart),
            reset_pc,
            names.index(FIRST[name]) if FIRST.get(name) in names else SUP_NO_CHILD,
            *_bitmap(p.exit_statuses),
        )
    return out + bytes(SUP_CHILD.size * (SUP_MAX_PDS - len(children)))


def _bitmap(statuses: Sequence[int]) -> list[int]:
    """Exit statuses 0-255 as eight 32-bit words (struct child_config's exit_statuses)."""
    words = [0] * 8
    for v in statuses:
        words[v // 32] |= 1 << (v % 32)
    return words


def _add_fwcfg_setvar(xml: str) -> str:
    """Patch fw_cfg's address into beam_server's `fwcfg_base` (sdfgen 0.28.1 has no setvar)."""
    map_re = re.compile(
        rf'(<map mr="{FWCFG_MR}" vaddr="0x[0-9a-f]+" perms="rw" cached="false")( />)'
    )
    xml, n = map_re.subn(rf'\1 setvar_vaddr="{FWCFG_SYMBOL}"\2', xml)
    if n != 1:
        raise RuntimeError(f"fw_cfg map not found once in the rendered system ({n})")
    return xml


def write_sections(outputs: SystemOutputs, elf_dir: Path, objcopy: str = "llvm-objcopy-19") -> None:
    """Write every config blob into its section of the PD ELFs in `elf_dir`, in place."""
    for b in outputs.blobs:
        elf = Path(elf_dir) / b.elf
        if not elf.is_file():
            raise UserError(f"{elf} is missing; build the PD images before writing their configs")
        r = subprocess.run(
            [objcopy, "--update-section", f"{b.section}={b.data}", str(elf)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["?"])[-1]
            raise UserError(
                f"cannot write {b.data.name} into {b.elf} section {b.section}: {last} "
                "(the ELF and sdfgen must come from the pinned sDDF/LionsOS)"
            )


def single_pd(board: boards.Board, name: str, elf: str, priority: int = 100) -> str:
    """The Microkit system file of one PD running `elf`, and nothing else."""
    check_sdfgen()
    from sdfgen import SystemDescription

    sdf = SystemDescription(SystemDescription.Arch.AARCH64, board.paddr_top)
    # Keep the PD referenced until render(): sdfgen frees its native object on __del__.
    pd = SystemDescription.ProtectionDomain(name, elf, priority=priority)
    sdf.add_pd(pd)
    return sdf.render()
