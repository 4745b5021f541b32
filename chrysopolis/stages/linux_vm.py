# SPDX-License-Identifier: BSD-2-Clause
"""The full-system Linux peer: the image's ERTS on Debian's arm64 kernel in the same QEMU.

The user-mode baseline (`baseline.py`) has no MMU emulation, so it flatters Linux. This
stage boots Debian bookworm's arm64 kernel (lock `linux-arm64`) in qemu-system-aarch64
with the seL4 image's machine flags, over an initramfs of ours:
  /init                  our script (busybox sh): mounts, a dotted hostname, beam.smp
  /bin/busybox, applets  Debian's busybox-static (lock `busybox-arm64`)
  /bin/beam.smp          the static emulator of stage `baseline` (the image's ERTS objects)
  /lib, /releases, /bin  the OTP tree of stage `otp` (root/), in RAM
  /lib/chrysopolis-*     our Erlang modules (stage erlang-app), as on the seL4 image's disk
  /dev/console           for the kernel to open as init's stdin/out before devtmpfs
  /modules/*.ko          virtio_mmio, failover, net_failover, virtio_net from the same kernel
                         package (all `=m` in its config): init loads them with busybox insmod
ERTS starts with the emulator arguments of targets/beam/main.c (read from it, so the two cannot
drift), then the run's own arguments, if any, and runs the Eshell on the console. The tty echoes each typed line, as the seL4
console does, so chrysopolis.shell.Shell drives both alike. Halting powers the VM off.

OTP on the disk (option otp_from="disk", for bench/beam_bench.py's second VM): the
initramfs holds no OTP tree and no erlang-app modules but the block and FAT modules too
(DISK_MODULES); `booted(disk=..., disk_bus=...)` attaches the seL4 image's disk as
qemu.command does (virtio-blk on run.json's disk_bus, writes to a throw-away overlay), and
init mounts its first partition, /dev/vda1, read-only at /otp (MOUNT says why read-only).
ERTS gets the same arguments with -root, -boot and the inetrc file under /otp (on_disk), so
every .beam comes through virtio-blk and vfat as on seL4 through the FAT server. Nothing
here reads the volume's layout: any cluster size mkfs.fat chose mounts alike.

Networking (for bench/net_bench.py): booted with `net_bus`, the VM has the seL4 image's
virtio-net device on the same virtio-mmio bus and QEMU user network (restrict=on, the same
hostfwd/guestfwd rules); init brings up lo and gives eth0 the address QEMU's DHCP leases
first, 10.0.2.15/24, statically (no DHCP round trips at boot). Without a device the modules
load and find nothing; boot to the prompt did not change measurably (5 interleaved boots:
median 5.52 s before, 5.63 s after, 5.52 s with the device, on a shared, noisy host).

Distribution (for bench/dist_bench.py): `booted(init_args=...)` hands ERTS more init
arguments, as a seL4 node gets them from its disk's /chrysopolis/args: a second, small cpio
holding /args (a `set --` line for init's shell) is appended to the initramfs in a scratch
file; the kernel unpacks both. With dist.init_args and the chrysopolis app in the tree,
the VM joins a cluster exactly as a seL4 node does (docs/distribution.md). Without it init
finds no /args and ERTS starts as before.

The cpio (newc) is written here, sorted with zero mtimes and owners, and compressed with
a zero gzip mtime: the same inputs give the same bytes.
"""

import gzip
import io
import re
import shlex
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from chrysopolis import boards, config, qemu
from chrysopolis.cache import Context, Planner, stage
from chrysopolis.errors import UserError
from chrysopolis.shell import Shell
from chrysopolis.stages import erlang_app

KERNEL = "vmlinuz"
INITRD = "initramfs.cpio.gz"
HOSTNAME = "linux-vm.chrysopolis"  # dotted: kernel's inet setup spawns no inet_gethost
APPEND = "console=ttyAMA0 quiet rdinit=/init"
EMU_SOURCE = "targets/beam/main.c"
# Applets the init script and a person at the console use.
APPLETS = (
    *("sh", "mount", "hostname", "poweroff", "ls", "cat", "free", "uname", "dmesg"),
    *("insmod", "lsmod", "ip", "sleep"),
)
# The kernel modules for virtio-net over virtio-mmio, in load order (each needs the ones
# before it: modinfo's depends=), under lib/modules/<version>/kernel/ of linux-arm64.
MODULES = (
    "drivers/virtio/virtio_mmio.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
)
# With OTP on the disk (option otp_from="disk"), also virtio-blk and vfat, in load order:
# virtio_blk and fat depend on nothing loadable (virtio core is built in: CONFIG_VIRTIO=y),
# vfat on fat; vfat's mount loads the nls tables of CONFIG_FAT_DEFAULT_CODEPAGE (437) and
# CONFIG_FAT_DEFAULT_IOCHARSET ("ascii"), which busybox cannot modprobe.
DISK_MODULES = (
    "drivers/block/virtio_blk.ko",
    "fs/fat/fat.ko",
    "fs/fat/vfat.ko",
    "fs/nls/nls_cp437.ko",
    "fs/nls/nls_ascii.ko",
)
# Where init mounts the disk's FAT partition (the first, as on the seL4 image).
OTP_MOUNT = "/otp"
OTP_FROM = ("initramfs", "disk")
# The address QEMU's user network leases first, which the seL4 image gets by DHCP.
NET_ADDRESS = "10.0.2.15/24"

INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
hostname {hostname}
for m in {modules}; do insmod /modules/$m; done
{mount}ip link set lo up
if ip link set eth0 up 2>/dev/null; then ip addr add {address} brd + dev eth0; fi
export BINDIR=/bin ROOTDIR=/ EMU=beam PROGNAME=erl HOME=/ TERM=dumb
cd /
set --
if [ -f /args ]; then . /args; fi
/bin/beam.smp {args} "$@" </dev/console >/dev/console 2>&1
echo "linux-vm: beam.smp exited $?"
poweroff -f
"""

# Read-only: ERTS writes nothing under its root at boot, and a read-write vfat would write
# the volume (access dates, the dirty flag) where the seL4 image's FatFs writes nothing.
# Retried a moment in case the partition's device node lags the insmod.
MOUNT = """n=0
until mount -t vfat -o ro /dev/vda1 {mount}; do
  n=$((n + 1))
  if [ $n -ge 100 ]; then echo "linux-vm: cannot mount /dev/vda1"; poweroff -f; fi
  sleep 0.01
done
"""


def on_disk(args: Sequence[str], mount: str = OTP_MOUNT) -> list[str]:
    """`args` with ERTS's OTP paths under `mount`: the values of -root and -boot and the
    kernel's inetrc file (an Erlang string in quotes). -bindir and -home stay: the
    executables and HOME are the initramfs's."""
    out = list(args)
    moved = 0
    for i in range(1, len(out)):
        if out[i - 1] in ("-root", "-boot"):
            out[i] = (mount + out[i]).rstrip("/") or "/"
            moved += 1
        elif out[i - 2 : i] == ["-kernel", "inetrc"] and out[i].startswith("'/"):
            out[i] = f"'{mount}{out[i][1:]}"
            moved += 1
    if moved != 3:
        raise UserError(
            f"{EMU_SOURCE}: expected -root, -boot and -kernel inetrc in emu_args, "
            f"found {moved} of them; keep them there"
        )
    return out


def emu_args(main_c: str) -> list[str]:
    """The emulator arguments of the seL4 image: targets/beam/main.c's emu_args, less argv[0]."""
    m = re.search(r"emu_args\[\]\s*=\s*\{(.*?)\};", main_c, re.S)
    if m is None:
        raise UserError(
            f"{EMU_SOURCE} has no `emu_args[] = {{...}};`; " "keep the ERTS arguments there"
        )
    args = re.findall(r'"([^"]*)"', m.group(1))
    return args[1:]


# --- cpio, "newc" format ------------------------------------------------------------------


class Cpio:
    def __init__(self) -> None:
        self.entries: dict[str, tuple[int, bytes, int]] = {}  # path -> (mode, data, rdev)

    def dir(self, path: str) -> None:
        self.entries[path] = (stat.S_IFDIR | 0o755, b"", 0)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._parents(path)
        self.entries[path] = (stat.S_IFREG | mode, data, 0)

    def symlink(self, path: str, target: str) -> None:
        self._parents(path)
        self.entries[path] = (stat.S_IFLNK | 0o777, target.encode(), 0)

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._parents(path)
        self.entries[path] = (stat.S_IFCHR | mode, b"", (major << 8) | minor)

    def tree(self, src: Path, dest: str = "") -> None:
        """Every file and directory under `src`, at `dest` (modes kept: executable or not)."""
        for p in sorted(src.rglob("*")):
            rel = f"{dest}/{p.relative_to(src).as_posix()}".lstrip("/")
            if p.is_symlink():
                self.symlink(rel, str(p.readlink()))
            elif p.is_dir():
                self._parents(rel + "/x")
            else:
                self.file(rel, p.read_bytes(), 0o755 if p.stat().st_mode & 0o111 else 0o644)

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.entries:
                self.dir(d)

    def bytes(self) -> bytes:
        out = io.BytesIO()
        for ino, (name, (mode, data, rdev)) in enumerate(sorted(self.entries.items()), start=1):
            _record(out, name, ino, mode, data, rdev)
        _record(out, "TRAILER!!!", 0, 0, b"", 0)
        out.write(b"\0" * (-out.tell() % 512))
        return out.getvalue()


def _record(out: io.BytesIO, name: str, ino: int, mode: int, data: bytes, rdev: int) -> None:
    nlink = 2 if stat.S_ISDIR(mode) else 1
    raw = name.encode() + b"\0"
    # magic, ino, mode, uid, gid, nlink, mtime, filesize, dev maj/min, rdev maj/min, namesize, check
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev >> 8, rdev & 0xFF, len(raw), 0)
    out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + raw)
    out.write(b"\0" * (-out.tell() % 4))
    out.write(data)
    out.write(b"\0" * (-out.tell() % 4))


@stage(
    "linux-vm",
    sources=("linux-arm64", "busybox-arm64"),
    deps=("baseline", "otp", "erlang-app"),
    files=(EMU_SOURCE,),
    options={"otp_from": "initramfs"},
    doc="Debian's arm64 kernel, an initramfs of busybox, beam.smp and OTP: the Linux peer",
)
def linux_vm(ctx: Context) -> None:
    """vmlinuz and initramfs.cpio.gz: Linux booting straight into the Eshell, OTP in the
    initramfs or (otp_from="disk") on the seL4 image's FAT disk."""
    otp_from = ctx.options["otp_from"]
    if otp_from not in OTP_FROM:
        raise UserError(f"linux-vm: otp_from is {otp_from!r}; use one of {', '.join(OTP_FROM)}")
    kernels = sorted((ctx.src("linux-arm64") / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise UserError(f"expected one boot/vmlinuz-* in source linux-arm64, found {len(kernels)}")
    shutil.copyfile(kernels[0], ctx.out / KERNEL)

    args = emu_args(ctx.ours(EMU_SOURCE).read_text())
    cpio = Cpio()
    if otp_from == "disk":
        args = on_disk(args)
        cpio.dir(OTP_MOUNT.lstrip("/"))
    else:
        cpio.tree(ctx.dep("otp") / "root")
        cpio.tree(ctx.dep("erlang-app") / "lib" / erlang_app.LIB, f"lib/{erlang_app.LIB}")
    ctx.note("ERTS arguments: " + " ".join(args))
    for d in ("proc", "sys", "dev", "tmp"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.file("bin/busybox", (ctx.src("busybox-arm64") / "bin" / "busybox").read_bytes(), 0o755)
    for applet in APPLETS:
        cpio.symlink(f"bin/{applet}", "busybox")
    trees = sorted((ctx.src("linux-arm64") / "lib" / "modules").glob("*/kernel"))
    if len(trees) != 1:
        raise UserError(
            f"expected one lib/modules/*/kernel in source linux-arm64, found {len(trees)}"
        )
    names = []
    for m in MODULES + (DISK_MODULES if otp_from == "disk" else ()):
        names.append(Path(m).name)
        cpio.file(f"modules/{names[-1]}", (trees[0] / m).read_bytes())
    cpio.file("bin/beam.smp", (ctx.dep("baseline") / "bin" / "beam.smp").read_bytes(), 0o755)
    cpio.file(
        "init",
        INIT.format(
            hostname=HOSTNAME,
            modules=" ".join(names),
            mount=MOUNT.format(mount=OTP_MOUNT) if otp_from == "disk" else "",
            address=NET_ADDRESS,
            # Quoted for the shell: main.c's words reach ERTS as they are (`'/etc/inetrc'`
            # keeps its quotes, which make it an Erlang term).
            args=" ".join(map(shlex.quote, args)),
        ).encode(),
        0o755,
    )
    raw = cpio.bytes()
    (ctx.out / INITRD).write_bytes(gzip.compress(raw, compresslevel=6, mtime=0))
    ctx.note(f"initramfs: {len(cpio.entries)} entries, {len(raw) / 2**20:.1f} MiB uncompressed")


def args_cpio(init_args: Sequence[str]) -> bytes:
    """A gzipped cpio of /args: init's shell sources it and hands the words to ERTS after
    the image's arguments."""
    c = Cpio()
    c.file("args", ("set -- " + " ".join(map(shlex.quote, init_args)) + "\n").encode())
    return gzip.compress(c.bytes(), compresslevel=6, mtime=0)


def initrd_with_args(vm: Path, init_args: Sequence[str], dest: Path) -> Path:
    """`dest`: the stage's initramfs, zero-padded to 512 bytes, then args_cpio (the kernel
    unpacks concatenated archives in turn, skipping the zeros between them)."""
    base = (vm / INITRD).read_bytes()
    dest.write_bytes(base + b"\0" * (-len(base) % 512) + args_cpio(init_args))
    return dest


def command(
    vm: Path,
    board: boards.Board,
    ram: str | None = None,
    net_bus: int | None = None,
    forwards: Sequence[str] = (),
    guest_forwards: Sequence[tuple[int, int]] = (),
    initrd: Path | None = None,
    disk: Path | None = None,
    disk_bus: int | None = None,
) -> list[str]:
    """QEMU for the Linux peer: the machine, CPU, RAM and console flags of qemu.command.
    With `net_bus` (the seL4 image's, run.json), its virtio-net device and user network
    with `forwards` and `guest_forwards` as qemu.command makes them. `initrd`: another
    initramfs than the stage's (initrd_with_args). `disk` on `disk_bus`: the seL4 image's
    disk as qemu.command attaches it (virtio-blk, writes to a throw-away overlay)."""
    cmd = [
        *qemu.machine(board, ram),
        "-kernel",
        str(vm / KERNEL),
        "-initrd",
        str(initrd or vm / INITRD),
        "-append",
        APPEND,
    ]
    if disk is not None or net_bus is not None:
        cmd += ["-global", "virtio-mmio.force-legacy=false"]
    if disk is not None:
        if disk_bus is None:
            raise ValueError("a disk needs the virtio-mmio bus of the system description")
        cmd += qemu.blk_args(disk, disk_bus)
    if net_bus is not None:
        rules = [qemu.parse_forward(f) for f in forwards]
        rules += [qemu.guest_forward(g, h) for g, h in guest_forwards]
        cmd += qemu.net_args(net_bus, None, rules)
    return cmd


@contextmanager
def booted(
    ram: str | None = None,
    log_name: str = "linux-vm",
    timeout: float = 300,
    init_args: Sequence[str] = (),
    disk: Path | None = None,
    disk_bus: int | None = None,
    **net,
) -> Iterator[Shell]:
    """Boot the Linux peer to its Eshell; `shell.ready_at` is QEMU start to the first prompt.
    `init_args`: more arguments for ERTS (initrd_with_args); `net`: command's net_bus,
    forwards and guest_forwards. With `disk` (a seL4 image's, on its `disk_bus`: run.json),
    the VM built with otp_from="disk" boots ERTS from that disk's FAT partition instead."""
    otp_from = "disk" if disk is not None else "initramfs"
    planner = Planner(options={"linux-vm": {"otp_from": otp_from}})
    vm = planner.ensure("linux-vm")
    board = boards.board(boards.DEFAULT_BOARD)
    log = config.runs_dir() / f"{log_name}.log"
    with tempfile.TemporaryDirectory(dir=config.runs_dir()) as tmp:
        initrd = initrd_with_args(vm, init_args, Path(tmp) / INITRD) if init_args else None
        cmd = command(vm, board, ram, initrd=initrd, disk=disk, disk_bus=disk_bus, **net)
        with qemu.boot(cmd, log) as s:
            shell = Shell(s)
            shell.wait_ready(timeout)
            yield shell
