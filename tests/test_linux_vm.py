# SPDX-License-Identifier: BSD-2-Clause
"""The full-system Linux peer (stage linux-vm): every input comes from Debian's archive, so
these run anywhere the registries are reachable (the sources are fetched when absent)."""

import stat

import pexpect
import pytest

from chrysopolis import cache, config, lock, sources
from chrysopolis.errors import UserError
from chrysopolis.stages import linux_vm


def _newc(data: bytes) -> list[tuple[str, int, int, int, bytes]]:
    """(name, mode, mtime, rdev, data) of each record of a cpio newc archive."""
    out, pos = [], 0
    while True:
        assert data[pos : pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, mtime, size, namesize = f[1], f[5], f[6], f[11]
        start = pos + 110
        name = data[start : start + namesize - 1].decode()
        body = (start + namesize + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out.append((name, mode, mtime, (f[9] << 8) | f[10], data[body : body + size]))
        pos = (body + size + 3) & ~3


def test_cpio_is_sorted_timeless_and_has_the_console(tmp_path):
    (tmp_path / "lib" / "a").mkdir(parents=True)
    (tmp_path / "lib" / "a" / "x.beam").write_bytes(b"FOR1")
    (tmp_path / "run").write_bytes(b"#!/bin/sh\n")
    (tmp_path / "run").chmod(0o755)
    c = linux_vm.Cpio()
    c.chardev("dev/console", 5, 1)
    c.tree(tmp_path)
    c.symlink("bin/sh", "busybox")
    raw = c.bytes()
    assert len(raw) % 512 == 0 and raw == c.bytes()
    recs = {name: (mode, mtime, rdev, body) for name, mode, mtime, rdev, body in _newc(raw)}
    names = list(recs)
    assert (
        names
        == sorted(names)
        == ["bin", "bin/sh", "dev", "dev/console", "lib", "lib/a", "lib/a/x.beam", "run"]
    )
    assert all(mtime == 0 for _, mtime, _, _ in recs.values())
    assert stat.S_ISCHR(recs["dev/console"][0]) and recs["dev/console"][2] == (5 << 8) | 1
    assert stat.S_ISLNK(recs["bin/sh"][0]) and recs["bin/sh"][3] == b"busybox"
    assert stat.S_IMODE(recs["run"][0]) == 0o755 and recs["lib/a/x.beam"][3] == b"FOR1"


def test_erts_arguments_are_the_sel4_images():
    args = linux_vm.emu_args((config.ROOT / linux_vm.EMU_SOURCE).read_text())
    assert args[:2] == ["-MIscs", "16"]
    assert "-Bd" in args and args.count("--") == 2
    assert args[args.index("-boot") + 1] == "/releases/29/start"


@pytest.fixture(scope="module")
def vm_built() -> None:
    """Fetch the Debian sources of linux-vm and of every stage below it, then build it."""
    lk = lock.load()
    todo, seen = ["linux-vm"], set()
    while todo:
        st = cache.get(todo.pop())
        if st.name not in seen:
            seen.add(st.name)
            todo.extend(st.deps)
            for s in st.sources:
                sources.fetch(lk.source(s))
    cache.Planner().ensure("linux-vm")


@pytest.mark.slow
def test_linux_vm_boots_to_the_eshell_and_evaluates(vm_built):
    with linux_vm.booted(log_name="test-linux-vm") as shell:
        assert shell.ready_at > 0
        assert shell.eval("1 + 1.") == "2"
        assert shell.eval("inet:gethostname().") == '{ok,"linux-vm"}'
        assert shell.eval("erlang:system_info(schedulers).") == "1"
        shell.session.send("halt().\r")
        shell.session.expect(r"beam\.smp exited 0", 30)
        shell.session.child.expect(pexpect.EOF, timeout=30)  # poweroff ends QEMU


def test_net_command_is_the_images_netdev(tmp_path):
    from chrysopolis import boards

    board = boards.board(boards.DEFAULT_BOARD)
    assert "-netdev" not in linux_vm.command(tmp_path, board)
    cmd = linux_vm.command(
        tmp_path, board, net_bus=0, forwards=["tcp:18080:8080"], guest_forwards=[(9000, 19000)]
    )
    netdev = cmd[cmd.index("-netdev") + 1]
    assert netdev.startswith("user,id=net0,restrict=on,")
    assert "hostfwd=tcp:127.0.0.1:18080-:8080" in netdev
    assert "guestfwd=tcp:10.0.2.100:9000-cmd:" in netdev
    assert cmd[cmd.index("-device", cmd.index("-netdev")) + 1] == (
        "virtio-net-device,netdev=net0,bus=virtio-mmio-bus.0"
    )
    assert "virtio-mmio.force-legacy=false" in cmd


def test_init_loads_the_net_modules_in_order():
    names = [m.rsplit("/", 1)[1] for m in linux_vm.MODULES]
    assert names == ["virtio_mmio.ko", "failover.ko", "net_failover.ko", "virtio_net.ko"]
    assert "insmod /modules/$m" in linux_vm.INIT and "ip link set lo up" in linux_vm.INIT


def test_init_passes_the_run_arguments_after_the_images():
    assert "if [ -f /args ]; then . /args; fi" in linux_vm.INIT
    assert '{args} "$@" </dev/console' in linux_vm.INIT


def test_args_cpio_quotes_each_word_for_init(tmp_path):
    import gzip
    import shlex

    words = ["-eval", "{ok, _} = net_kernel:start('a@localhost', #{})."]
    recs = _newc(gzip.decompress(linux_vm.args_cpio(words)))
    assert [r[0] for r in recs] == ["args"]
    line = recs[0][4].decode()
    assert line.startswith("set -- ") and shlex.split(line[len("set -- ") :]) == words
    (tmp_path / linux_vm.INITRD).write_bytes(gzip.compress(b"base", mtime=0))
    out = linux_vm.initrd_with_args(tmp_path, words, tmp_path / "both.gz")
    raw = out.read_bytes()
    base = (tmp_path / linux_vm.INITRD).read_bytes()
    assert (
        raw.startswith(base) and raw[len(base) : (len(base) + 511) // 512 * 512].strip(b"\0") == b""
    )
    assert raw.endswith(linux_vm.args_cpio(words))


def test_on_disk_moves_the_otp_paths_under_the_mount():
    args = linux_vm.emu_args((config.ROOT / linux_vm.EMU_SOURCE).read_text())
    moved = linux_vm.on_disk(args, "/otp")
    assert moved[moved.index("-root") + 1] == "/otp"
    assert moved[moved.index("-boot") + 1] == "/otp/releases/29/start"
    assert moved[moved.index("inetrc") + 1] == "'/otp/etc/inetrc'"
    assert moved[moved.index("-bindir") + 1] == "/bin" and moved[moved.index("-home") + 1] == "/"
    assert len(moved) == len(args)
    with pytest.raises(UserError, match="-root, -boot and -kernel inetrc"):
        linux_vm.on_disk(["-root", "/"], "/otp")


def test_disk_init_mounts_read_only_after_the_block_and_fat_modules():
    names = [m.rsplit("/", 1)[1] for m in linux_vm.DISK_MODULES]
    assert names == ["virtio_blk.ko", "fat.ko", "vfat.ko", "nls_cp437.ko", "nls_ascii.ko"]
    assert "mount -t vfat -o ro /dev/vda1 {mount}" in linux_vm.MOUNT
    assert linux_vm.INIT.index("insmod") < linux_vm.INIT.index("{mount}")


@pytest.mark.slow
def test_fat_vm_initramfs_holds_no_otp(stack_planner):
    """The disk variant's cpio: no OTP tree, the mount point, the block and FAT modules."""
    import gzip

    vm = cache.Planner(options={"linux-vm": {"otp_from": "disk"}}).ensure("linux-vm")
    recs = {r[0]: r for r in _newc(gzip.decompress((vm / linux_vm.INITRD).read_bytes()))}
    assert not any(n.startswith(("lib/", "releases")) for n in recs)
    assert stat.S_ISDIR(recs["otp"][1])
    for m in linux_vm.MODULES + linux_vm.DISK_MODULES:
        assert "modules/" + m.rsplit("/", 1)[1] in recs
    init = recs["init"][4].decode()
    assert "-o ro /dev/vda1 /otp" in init and "-root /otp" in init


@pytest.mark.slow
def test_fat_vm_boots_erts_from_the_sel4_images_disk(stack_planner):
    from chrysopolis import targets

    img = targets.image(stack_planner, "beam")
    with linux_vm.booted(log_name="test-linux-vm-fat", disk=img.disk, disk_bus=img.disk_bus) as sh:
        assert sh.eval("code:which(lists).").startswith('"/otp/lib/stdlib-')
        assert sh.eval("code:root_dir().") == '"/otp"'
        # The shell elides a long binary: the guest matches.
        mounted = (
            '{ok, M} = file:read_file("/proc/mounts"), '
            'binary:match(M, <<"\\n/dev/vda1 /otp vfat ro,">>) =/= nomatch.'
        )
        assert sh.eval(mounted) == "true"
        assert sh.eval("1 + 1.") == "2"
        sh.session.send("halt().\r")
        sh.session.expect(r"beam\.smp exited 0", 30)
        sh.session.child.expect(pexpect.EOF, timeout=30)
